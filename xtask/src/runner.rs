//! `cargo xtask test`: build the guest once, probe KVM, boot every row of
//! the [`matrix`](crate::matrix) one after the other (timings under TCG
//! depend on the host, so boots do not compete for its CPUs), print the
//! table.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::{AccelChoice, TestArgs};
use crate::matrix::{self, Caps, Row, RowVerdict, Transcript};
use crate::qemu::{self, Accel, Machine, RunSpec, RunStatus};
use crate::{guest_build, Result};

/// Per-boot limit under TCG unless `--timeout` says otherwise.
pub const TCG_TIMEOUT: Duration = Duration::from_secs(120);
/// Per-boot limit under KVM (the software KVM here is slow).
pub const KVM_TIMEOUT: Duration = Duration::from_secs(300);
/// Limit of the KVM probe boot.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

fn spec(kernel: &Path, accel: Accel, machine: Machine, cmdline: &str, args: &TestArgs) -> RunSpec {
    let mut s = RunSpec::new(kernel, machine, accel);
    s.cmdline = cmdline.to_string();
    s.echo = args.verbose;
    s.timeout = args.timeout.unwrap_or(match accel {
        Accel::Tcg => TCG_TIMEOUT,
        Accel::Kvm => KVM_TIMEOUT,
    });
    s
}

/// Boots a tiny guest under KVM: `Ok` if it passes, else why not.
fn probe_kvm(kernel: &Path) -> std::result::Result<(), String> {
    if !qemu::kvm_usable() {
        return Err(format!("{} cannot be opened read-write", qemu::KVM_DEVICE));
    }
    let mut s = RunSpec::new(kernel, Machine::Pc, Accel::Kvm);
    s.cmdline = "test=harness-pass".into();
    s.echo = false;
    s.timeout = PROBE_TIMEOUT;
    match qemu::run_qemu(&s) {
        Ok(o) if o.status.is_pass() => Ok(()),
        Ok(o) => Err(format!(
            "a test boot ended with {}{}",
            o.status,
            o.stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| format!(" ({})", l.trim()))
                .unwrap_or_default()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// What the CPU model offers under `accel` (a `test=caps` boot).
fn caps(kernel: &Path, accel: Accel, args: &TestArgs) -> std::result::Result<Caps, String> {
    let s = spec(kernel, accel, Machine::Pc, "test=caps", args);
    let o = qemu::run_qemu(&s).map_err(|e| e.to_string())?;
    let t = Transcript::parse(&o.serial);
    if !o.status.is_pass() || t.config.is_empty() {
        return Err(format!("caps boot: {}", o.status));
    }
    let flag = |k: &str| t.config.get(k).is_some_and(|v| v == "1");
    Ok(Caps {
        x2apic: flag("cpu_x2apic"),
        tsc_deadline: flag("cpu_tsc_deadline"),
    })
}

fn run_row(kernel: &Path, row: &Row, args: &TestArgs) -> Result<(Transcript, RowVerdict, f64)> {
    let mut s = spec(kernel, row.accel, row.machine, &row.cmdline, args);
    if let Some(cpu) = &row.cpu {
        s.cpu = cpu.clone();
    }
    s.machine_opts = row.machine_opts.map(String::from);
    s.smp = row.smp;
    s.globals = row.globals.iter().map(|g| g.to_string()).collect();
    if let Some(table) = row.acpi_table {
        s.acpi_tables
            .push(table.write(&guest_build::target_dir().join("acpi-tables"))?);
    }
    let o = qemu::run_qemu(&s)?;
    let t = Transcript::parse(&o.serial);
    let status = o.status.to_string();
    let v = matrix::judge(row, o.status == RunStatus::Pass, &status, &t);
    if v.is_fail() && !args.verbose {
        // Show what the guest said, for the log.
        eprintln!("---- serial of the failed row ({}):", row.name);
        for l in o.serial.lines().filter(|l| {
            l.starts_with("RESULT")
                || l.starts_with("CONFIG")
                || l.contains("ERROR")
                || l.contains("PANIC")
                || l.contains("EXCEPTION")
                || l.starts_with("nohz:")
                || l.starts_with("   ")
        }) {
            eprintln!("  {l}");
        }
        eprintln!("----");
    }
    Ok((t, v, o.duration.as_secs_f64()))
}

/// Runs the matrix; true if nothing failed.
pub fn test(args: &TestArgs) -> Result<bool> {
    let started = Instant::now();
    let kernel = guest_build::build(&args.build.features)?;
    let mut accels = Vec::new();
    if args.tcg {
        accels.push(Accel::Tcg);
    }
    if args.accel != AccelChoice::Tcg {
        match probe_kvm(&kernel) {
            Ok(()) => accels.push(Accel::Kvm),
            Err(why) => println!("KVM unusable here: {why}; KVM rows skipped"),
        }
    }
    let mut results: Vec<(Row, Transcript, RowVerdict, f64)> = Vec::new();
    let mut failed = false;
    for accel in accels {
        let caps = match caps(&kernel, accel, args) {
            Ok(c) => c,
            Err(why) => {
                println!("{}: {why}", accel.as_str());
                failed = true;
                continue;
            }
        };
        println!(
            "{}: CPU model offers x2APIC: {}, TSC-deadline: {}",
            accel.as_str(),
            caps.x2apic,
            caps.tsc_deadline
        );
        let rows: Vec<Row> = args
            .machines
            .iter()
            .flat_map(|m| matrix::rows(accel, *m, caps, args.fast))
            .chain(matrix::no_reference_rows(accel))
            .filter(|r| args.source.is_none_or(|s| s == r.source))
            .collect();
        let n = rows.len();
        for (i, row) in rows.into_iter().enumerate() {
            let (t, v, secs) = run_row(&kernel, &row, args)?;
            println!(
                "[{:>2}/{n}] {} {:<4} {:<26} {}",
                i + 1,
                row.accel.as_str(),
                row.machine.as_str(),
                row.name,
                match &v {
                    RowVerdict::Pass => format!("pass ({secs:.1} s)"),
                    RowVerdict::Fail(w) => format!("FAIL ({secs:.1} s): {w}"),
                    RowVerdict::Skip(w) => format!("skip: {w}"),
                }
            );
            failed |= v.is_fail();
            results.push((row, t, v, secs));
        }
    }
    println!();
    print!("{}", matrix::table(&results));

    let fails = results.iter().filter(|r| r.2.is_fail()).count();
    let skips = results
        .iter()
        .filter(|r| matches!(r.2, RowVerdict::Skip(_)))
        .count();
    println!(
        "\n{} boots, {} failed, {} skipped; wall time {:.1} s",
        results.len(),
        fails,
        skips,
        started.elapsed().as_secs_f64()
    );
    Ok(!failed)
}
