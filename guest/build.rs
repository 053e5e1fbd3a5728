//! Links the kernel binary with `link.ld` when building for bare metal.
//!
//! The kernel runs where it is linked (1 MiB, no relocation at load), so it
//! is linked as a non-PIE executable: `--no-pie` here makes that hold even
//! when `RUSTFLAGS` replaces `.cargo/config.toml`'s
//! `-C relocation-model=static` (which only spares the code a GOT).
//!
//! Host builds (`cargo build --workspace`, `cargo test --workspace`) get no
//! linker script: there the binary is a stub that says how to boot the guest.

use std::env;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = dir.join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-pie");
    }
}
