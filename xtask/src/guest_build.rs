//! Building the guest kernel with cargo.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The bare-metal target the guest is built for.
pub const GUEST_TARGET: &str = "x86_64-unknown-none";
/// The guest package (and binary) name.
pub const GUEST_PACKAGE: &str = "guest";
/// The profile the guest is built with.
pub const GUEST_PROFILE: &str = "release";

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo arguments that build the guest with `features`: the default
/// set when none are given, else exactly those (`--no-default-features`:
/// a per-source build such as `--features hpet-nohz` must not bring the
/// other sources with it; `--features default` asks for all).
pub fn cargo_args(features: &[String]) -> Vec<String> {
    let mut args = vec![
        "build".to_string(),
        "--package".into(),
        GUEST_PACKAGE.into(),
        "--bin".into(),
        GUEST_PACKAGE.into(),
        "--target".into(),
        GUEST_TARGET.into(),
        "--profile".into(),
        GUEST_PROFILE.into(),
    ];
    if !features.is_empty() {
        args.push("--no-default-features".into());
        args.push("--features".into());
        args.push(features.join(","));
    }
    args
}

/// Where cargo puts the guest ELF: `$CARGO_TARGET_DIR` (or `target/` in the
/// workspace) `/x86_64-unknown-none/release/guest`.
pub fn elf_path(target_dir: Option<&Path>, root: &Path) -> PathBuf {
    target_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.join("target"))
        .join(GUEST_TARGET)
        .join(GUEST_PROFILE)
        .join(GUEST_PACKAGE)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/` in the
/// workspace.
pub fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the guest (cargo's output goes to our stderr) and returns the
/// path of its ELF.
pub fn build(features: &[String]) -> Result<PathBuf> {
    let root = workspace_root();
    // `cargo xtask` runs under cargo, which says which cargo it is.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(cargo_args(features))
        .current_dir(&root)
        .status()
        .map_err(|e| Error::Io("running cargo".into(), e))?;
    if !status.success() {
        return Err(Error::Other(format!(
            "building the guest failed ({status})"
        )));
    }
    let elf = elf_path(Some(&target_dir()), &root);
    if !elf.is_file() {
        return Err(Error::Other(format!(
            "the guest built, but {} is missing",
            elf.display()
        )));
    }
    Ok(elf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_joined_into_one_flag() {
        let args = cargo_args(&["hpet,lapic".into(), "pit".into()]);
        assert_eq!(
            &args[args.len() - 3..],
            ["--no-default-features", "--features", "hpet,lapic,pit"]
        );
        assert!(!cargo_args(&[]).contains(&"--features".to_string()));
    }

    #[test]
    fn elf_lands_under_the_target_dir() {
        let root = Path::new("/w");
        assert_eq!(
            elf_path(None, root),
            Path::new("/w/target/x86_64-unknown-none/release/guest")
        );
        assert_eq!(
            elf_path(Some(Path::new("/t")), root),
            Path::new("/t/x86_64-unknown-none/release/guest")
        );
    }
}
