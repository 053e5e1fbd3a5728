//! # xtask — host-side tasks for the dynticks guest kernel
//!
//! `cargo xtask build` builds the guest ELF; `cargo xtask run` builds it
//! and boots it in QEMU, exiting 0 only when the guest reports a pass;
//! `cargo xtask test` runs the in-guest suite over every source
//! configuration ([`matrix`]; the malformed ACPI tables of its firmware
//! rows: [`firmware`]) and prints the table ([`runner`]);
//! `cargo xtask bench` boots the guest's benchmarks and prints their
//! tables, beside Linux's with `--vs-linux` ([`bench`]), `--repeat` times
//! with medians and ranges ([`stats`]); `cargo xtask
//! fuzz` runs the fuzz harness in release ([`fuzz`]).
//! (`cargo xtask` is an alias in `.cargo/config.toml`.)
//!
//! A run is [`qemu::run_qemu`]`(&RunSpec) -> Result<RunOutcome>`: the
//! outcome carries the status, the captured serial output and the
//! duration, so a test matrix can run many specs and parse each transcript.

use std::fmt;
use std::io;
use std::process::ExitCode;

mod bench;
mod cli;
mod firmware;
mod fuzz;
mod guest_build;
mod matrix;
mod qemu;
mod runner;
mod stats;
mod timeline;

use cli::{AccelChoice, Command, RunArgs};
use qemu::{Accel, RunSpec};

/// Why a task could not be carried out (distinct from a guest that fails).
#[derive(Debug)]
pub enum Error {
    /// `qemu-system-x86_64` is not installed.
    QemuMissing,
    /// An I/O error, and what was being done.
    Io(String, io::Error),
    /// Anything else, said in words.
    Other(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QemuMissing => write!(
                f,
                "{} not found in PATH: install it with `{}`",
                qemu::QEMU,
                qemu::QEMU_PACKAGE_HINT
            ),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

/// This crate's result.
pub type Result<T> = std::result::Result<T, Error>;

fn main() -> ExitCode {
    let command = match cli::parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            Ok(true)
        }
        Command::Build(args) => guest_build::build(&args.features).map(|elf| {
            println!("{}", elf.display());
            true
        }),
        Command::Run(args) => run(&args),
        Command::Test(args) => {
            if qemu_installed() {
                runner::test(&args)
            } else {
                Err(Error::QemuMissing)
            }
        }
        Command::Fuzz(args) => fuzz::fuzz(&args),
        Command::Bench(args) => {
            if qemu_installed() {
                bench::bench(&args)
            } else {
                Err(Error::QemuMissing)
            }
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `cargo xtask run`: true if the guest passed.
fn run(args: &RunArgs) -> Result<bool> {
    if !qemu_installed() {
        return Err(Error::QemuMissing);
    }
    let accel = match args.accel {
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Auto if qemu::kvm_usable() => Accel::Kvm,
        AccelChoice::Auto => Accel::Tcg,
    };
    if accel == Accel::Kvm && !qemu::kvm_usable() {
        return Err(Error::Other(format!(
            "--accel kvm: {} cannot be opened read-write",
            qemu::KVM_DEVICE
        )));
    }
    let kernel = guest_build::build(&args.build.features)?;
    let mut spec = RunSpec::new(kernel, args.machine, accel);
    if let Some(cpu) = &args.cpu {
        spec.cpu = cpu.clone();
    }
    spec.smp = args.smp;
    spec.cmdline = args.cmdline.join(" ");
    spec.timeout = args.timeout;
    eprintln!(
        "xtask: {} -M {} -accel {} -cpu {}{} -append {:?} (timeout {:?})",
        qemu::QEMU,
        spec.machine.as_str(),
        spec.accel.as_str(),
        spec.cpu,
        spec.bios
            .as_ref()
            .map(|b| format!(" -bios {}", b.display()))
            .unwrap_or_default(),
        spec.cmdline,
        spec.timeout,
    );
    let outcome = qemu::run_qemu(&spec)?;
    eprintln!(
        "xtask: {} in {:.3} s",
        outcome.status,
        outcome.duration.as_secs_f64()
    );
    Ok(outcome.status.is_pass())
}

/// Whether `qemu-system-x86_64` is in `PATH`.
fn qemu_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(qemu::QEMU).is_file()))
}
