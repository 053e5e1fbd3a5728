//! `cargo xtask fuzz`: builds the fuzz harness (`fuzz/`) in release and
//! runs it — every target, or one — for many inputs. The harness prints a
//! line per target (`fuzz: target=… inputs=… distinct_outcomes=…
//! verdict=…`) and, on a failure, the input, its seed and the command
//! that runs that input alone. `TESTING.md` has the figures of the long
//! runs.

use std::process::Command;

use crate::cli::FuzzArgs;
use crate::guest_build::workspace_root;
use crate::{Error, Result};

/// The cargo arguments that run the harness with `args`.
pub fn cargo_args(args: &FuzzArgs) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--release",
        "--locked",
        "-p",
        "fuzz",
        "--bin",
        "fuzz",
        "--",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if let Some(t) = &args.target {
        v.extend(["--target".into(), t.clone()]);
    }
    if let Some(n) = args.iterations {
        v.extend(["--iterations".into(), n.to_string()]);
    }
    if let Some(s) = args.seed {
        v.extend(["--seed".into(), s.to_string()]);
    }
    v
}

/// Runs the harness; true if no target failed.
pub fn fuzz(args: &FuzzArgs) -> Result<bool> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(cargo_args(args))
        .current_dir(workspace_root())
        .status()
        .map_err(|e| Error::Io("running cargo".into(), e))?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(Error::Other(format!(
            "the fuzz harness did not run ({status})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_passed_on_after_a_release_build() {
        let args = FuzzArgs {
            target: Some("pit".into()),
            iterations: Some(1),
            seed: Some(42),
        };
        let v = cargo_args(&args);
        assert_eq!(&v[..3], ["run", "--release", "--locked"]);
        assert_eq!(
            &v[v.len() - 6..],
            ["--target", "pit", "--iterations", "1", "--seed", "42"]
        );
        let none = cargo_args(&FuzzArgs::default());
        assert_eq!(none.last().map(String::as_str), Some("--"));
    }
}
