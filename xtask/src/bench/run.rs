//! Running the benchmarks: one boot and its log, the boots of a suite,
//! `bench/linux/run`, and `cargo xtask bench` itself, which writes the
//! report.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use super::lines::bench_lines;
use super::linux::{kvm_note, LinuxRun, LinuxVariant};
use super::plan::{devices, plan, Boot, BootResult, Suite};
use super::report::report;
use crate::cli::{AccelChoice, BenchArgs};
use crate::matrix::{Source, Transcript};
use crate::qemu::{self, Accel, Machine, RunSpec, RunStatus};
use crate::runner::{KVM_TIMEOUT, TCG_TIMEOUT};
use crate::stats::{self, RunNo};
use crate::{guest_build, Error, Result};

/// A slow-vCPU boot takes ~70 s here; room for a slower host.
const SLOW_VCPU_TIMEOUT: Duration = Duration::from_secs(600);

/// Where logs and reports go: `$CARGO_TARGET_DIR` (or `target/`) `/bench`.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| guest_build::workspace_root().join("target"))
        .join("bench")
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io(format!("writing {}", path.display()), e))
}

/// The accelerator `--accel` resolves to.
fn resolve_accel(choice: AccelChoice) -> Result<Accel> {
    match choice {
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Auto if qemu::kvm_usable() => Ok(Accel::Kvm),
        AccelChoice::Auto => Ok(Accel::Tcg),
        AccelChoice::Kvm if qemu::kvm_usable() => Ok(Accel::Kvm),
        AccelChoice::Kvm => Err(Error::Other(format!(
            "--accel kvm: {} cannot be opened read-write",
            qemu::KVM_DEVICE
        ))),
    }
}

/// The time limit of the read/calibration boot under KVM: the software
/// KVM here takes ~65 µs per clock read, and 10⁶ reads of each of 5 clocks
/// take over 300 s.
pub const KVM_READ_TIMEOUT: Duration = Duration::from_secs(900);

/// The spec of one boot (the `cargo xtask test` defaults: the
/// accelerator's CPU model, 128 MiB).
fn spec(
    kernel: &Path,
    accel: Accel,
    machine: Machine,
    cmdline: &str,
    cpu: Option<&str>,
) -> RunSpec {
    let mut s = RunSpec::new(kernel, machine, accel);
    s.cmdline = cmdline.to_string();
    s.echo = false;
    s.timeout = match accel {
        Accel::Tcg => TCG_TIMEOUT,
        Accel::Kvm if cmdline.contains("bench-read") => KVM_READ_TIMEOUT,
        Accel::Kvm => KVM_TIMEOUT,
    };
    if let Some(cpu) = cpu {
        s.cpu = cpu.to_string();
    }
    s
}

/// The QEMU command line of `s`, its `-append` value quoted.
fn qemu_line(s: &RunSpec) -> String {
    let args: Vec<String> = s
        .qemu_args()
        .iter()
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(' ') {
                format!("\"{a}\"")
            } else {
                a.into_owned()
            }
        })
        .collect();
    format!("{} {}", qemu::QEMU, args.join(" "))
}

/// `line` with the paths below `root` named relative to it (a report is
/// read on other machines, and may be copied into the repository).
pub fn repo_relative(line: &str, root: &Path) -> String {
    let root = root.to_string_lossy();
    if root.is_empty() || root == "/" {
        return line.to_string();
    }
    line.replace(&format!("{}/", root.trim_end_matches('/')), "")
}

/// Boots `spec`, saves its output to `log`; the serial output and status.
fn boot(spec: &RunSpec, log: &Path) -> Result<(RunStatus, String, f64)> {
    let o = qemu::run_qemu(spec)?;
    let mut text = format!("# {}\n# {}\n", qemu_line(spec), o.status);
    text.push_str(&o.serial);
    if !o.stderr.trim().is_empty() {
        let _ = write!(text, "\n# QEMU stderr:\n{}", o.stderr);
    }
    write_file(log, &text)?;
    Ok((o.status, o.serial, o.duration.as_secs_f64()))
}

/// Makes the bring-up boot under `accel`: the suite with no boots yet,
/// and the boots to make ([`plan`]).
fn start_suite(
    kernel: &Path,
    accel: Accel,
    args: &BenchArgs,
    dir: &Path,
) -> Result<(Suite, Vec<Boot>)> {
    let prefix = format!("{}-{}", accel.as_str(), args.machine.as_str());
    // A bring-up-only boot: what the CPU model offers (and whether it boots).
    let mut caps_spec = spec(kernel, accel, args.machine, "test=caps", None);
    caps_spec.smp = args.smp;
    let (status, serial, _) = boot(&caps_spec, &dir.join(format!("{prefix}-caps.log")))?;
    let caps = Transcript::parse(&serial).config;
    if !status.is_pass() || caps.is_empty() {
        return Err(Error::Other(format!(
            "{}: the bring-up boot (test=caps) ended with {status}",
            accel.as_str()
        )));
    }
    let deadline = caps.get("cpu_tsc_deadline").is_some_and(|v| v == "1");
    let mut notes = Vec::new();
    if !deadline && args.source.is_none_or(|s| s == Source::Lapic) {
        notes.push(format!(
            "lapic-deadline: not run, the CPU model ({}) offers no TSC-deadline",
            caps_spec.cpu
        ));
    }
    let devices = devices(args.source, deadline);
    let boots = plan(&devices, accel, deadline);
    let mut line_spec = caps_spec.clone();
    line_spec.cmdline = "<per boot, below>".into();
    let qemu_line = repo_relative(&qemu_line(&line_spec), &guest_build::workspace_root());
    println!("\n{}: {qemu_line}", accel.as_str());
    if let Some(b) = boots.iter().find(|b| b.cpu.is_some()) {
        notes.push(format!(
            "{} rows: -cpu {} (no TSC-deadline, so that the one-shot mode is used)",
            b.device.name(),
            b.cpu.as_deref().unwrap_or_default()
        ));
    }
    let suite = Suite {
        accel,
        machine: args.machine,
        qemu_line,
        devices,
        boots: Vec::new(),
        notes,
        smp: args.smp,
    };
    Ok((suite, boots))
}

/// Makes `boots` (of run `run`) one after the other and adds their
/// results to `suite`.
pub(crate) fn run_boots(
    kernel: &Path,
    suite: &mut Suite,
    boots: &[Boot],
    dir: &Path,
    run: RunNo,
) -> Result<()> {
    let (accel, machine) = (suite.accel, suite.machine);
    let prefix = format!("{}-{}", accel.as_str(), machine.as_str());
    let n = boots.len();
    for (i, b) in boots.iter().enumerate() {
        let cmdline = b.config.cmdline(b.device);
        let mut s = spec(kernel, accel, machine, &cmdline, b.cpu.as_deref());
        s.smp = suite.smp;
        if let Some(icount) = b.config.icount() {
            s.icount = Some(icount);
            s.timeout = SLOW_VCPU_TIMEOUT;
        }
        let log = dir.join(format!("{prefix}-{}{}.log", b.name(), run.suffix()));
        let (status, serial, secs) = boot(&s, &log)?;
        let r = BootResult::new(b.clone(), accel, status, &serial);
        println!(
            "{}[{:>2}/{n}] {} {:<25} {cmdline:<78} {}",
            run.prefix(),
            i + 1,
            accel.as_str(),
            r.boot.name(),
            match &r.problem {
                None => format!("ok ({secs:.1} s)"),
                Some(p) => format!("{p} ({secs:.1} s; {})", log.display()),
            }
        );
        suite.boots.push(r);
    }
    Ok(())
}

/// The `-cpu` model and memory of every TCG boot, which Linux gets too.
pub(crate) fn linux_machine(kernel: &Path, machine: Machine) -> (String, u32) {
    let s = spec(kernel, Accel::Tcg, machine, "", None);
    (s.cpu, s.memory_mib)
}

/// Runs `bench/linux/run` once; its stderr is echoed as it comes.
pub(crate) fn run_linux(
    variant: LinuxVariant,
    machine: Machine,
    (cpu, memory, smp): (&str, u32, u32),
    dir: &Path,
    run: RunNo,
) -> LinuxRun {
    let script = guest_build::workspace_root().join("bench/linux/run");
    let mut cmd = Command::new(&script);
    cmd.args([
        "--machine",
        machine.as_str(),
        "--accel",
        "tcg",
        "--cpu",
        cpu,
    ])
    .args(["--memory", &memory.to_string()])
    .args(["--smp", &smp.to_string()]);
    if let Some(a) = variant.append() {
        cmd.args(["--append", a]);
    }
    println!(
        "\n{}Linux {}: {}",
        run.prefix(),
        variant.tag(),
        command_line(&cmd)
    );
    let failed = |error: String| LinuxRun {
        variant,
        lines: Vec::new(),
        error: Some(error),
    };
    let mut child = match cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start {}: {e}", script.display())),
    };
    let stderr = child.stderr.take().map(|s| {
        thread::spawn(move || {
            let mut seen = Vec::new();
            for l in BufReader::new(s).lines().map_while(std::result::Result::ok) {
                eprintln!("  {l}");
                seen.push(l);
            }
            seen
        })
    });
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    let status = child.wait();
    let stderr = stderr.and_then(|h| h.join().ok()).unwrap_or_default();
    let log = dir.join(format!(
        "linux-{}-{}{}.log",
        machine.as_str(),
        variant.tag(),
        run.suffix()
    ));
    let mut text = format!("# {}\n{stdout}\n# stderr:\n", command_line(&cmd));
    for l in &stderr {
        let _ = writeln!(text, "{l}");
    }
    let _ = std::fs::write(&log, text);
    let lines = bench_lines(&stdout);
    let ok = matches!(&status, Ok(s) if s.success());
    let error = if ok && lines.iter().any(|l| l.group == "done") {
        None
    } else {
        // The script's and setup's own messages say why.
        let why: Vec<&str> = stderr
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with("run:") || l.starts_with("setup:") || l.contains("rror"))
            .filter(|l| !l.starts_with("run: qemu-system"))
            .collect();
        Some(format!(
            "{} ({})",
            match &status {
                Ok(s) => format!("bench/linux/run exited with {s}"),
                Err(e) => format!("waiting for bench/linux/run: {e}"),
            },
            if why.is_empty() {
                "no message".to_string()
            } else {
                why.join("; ")
            }
        ))
    };
    LinuxRun {
        variant,
        lines,
        error,
    }
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') {
            let _ = write!(s, " \"{a}\"");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    s
}

/// `cargo xtask bench`: true if every boot of ours produced its figures
/// (a failed Linux run is reported but does not fail the task). The boots
/// the comparison reads are made `--repeat` times, alternating with Linux
/// under `--vs-linux` ([`stats`]).
pub fn bench(args: &BenchArgs) -> Result<bool> {
    let accel = resolve_accel(args.accel)?;
    let kernel = guest_build::build(&[])?;
    let dir = out_dir();
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
    if args.timeline_only {
        return crate::timeline::bench(&kernel, args, &dir);
    }
    let mut accels = vec![accel];
    if args.vs_linux && accel == Accel::Kvm {
        println!("{}", kvm_note(accel).unwrap_or_default());
        accels.push(Accel::Tcg);
    }
    let mut ok = true;
    let mut compared = false;
    let mut i = 0;
    while let Some(&a) = accels.get(i) {
        i += 1;
        let (suite, plan) = match start_suite(&kernel, a, args, &dir) {
            Ok(s) => s,
            Err(e) if a == Accel::Kvm && args.accel == AccelChoice::Auto => {
                // `auto` means "KVM if it works".
                println!("KVM unusable here ({e}): TCG instead");
                if !accels.contains(&Accel::Tcg) {
                    accels.push(Accel::Tcg);
                }
                continue;
            }
            Err(e) => {
                println!("{}: {e}", a.as_str());
                ok = false;
                continue;
            }
        };
        // With --vs-linux the comparison, and so the repeating, is TCG's.
        let compare = !args.vs_linux || a == Accel::Tcg;
        let linux = args.vs_linux && a == Accel::Tcg;
        let repeat = if compare { args.repeat } else { 1 };
        let rounds = stats::run_rounds(&kernel, suite, plan, &dir, repeat, linux)?;
        ok &= !rounds
            .iter()
            .any(|r| r.ours.boots.iter().any(BootResult::failed));
        let Some(first) = rounds.first() else {
            continue;
        };
        let mut text = report(&first.ours);
        let mut per_run = String::new();
        if linux || (compare && repeat > 1) {
            compared |= linux;
            text.push('\n');
            if let Some(note) = kvm_note(accel).filter(|_| linux) {
                let _ = writeln!(text, "{note}\n");
            }
            let (summary, runs) = stats::section(&rounds, args);
            text.push_str(&summary);
            per_run = runs;
        }
        let path = dir.join(format!(
            "report-{}-{}.md",
            a.as_str(),
            args.machine.as_str()
        ));
        println!("\n{text}");
        if !per_run.is_empty() {
            println!("(per-run figures: in the report)");
        }
        write_file(&path, &format!("{text}{per_run}"))?;
        println!("(written to {})", path.display());
    }
    // The idle timeline's boots (ours ×2, Linux with --vs-linux) and SVG.
    ok &= crate::timeline::bench(&kernel, args, &dir)?;
    if args.vs_linux && !compared {
        println!("\nno TCG figures of ours: no comparison with Linux");
        return Ok(false);
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_kernel_relative_to_the_repository() {
        let line = "qemu-system-x86_64 -M pc -kernel /src/dynticks/target/x86_64-unknown-none/release/guest -append x";
        assert_eq!(
            repo_relative(line, Path::new("/src/dynticks")),
            "qemu-system-x86_64 -M pc -kernel target/x86_64-unknown-none/release/guest -append x"
        );
        assert_eq!(
            repo_relative(line, Path::new("/src/dynticks/")),
            repo_relative(line, Path::new("/src/dynticks"))
        );
        assert_eq!(repo_relative(line, Path::new("/")), line);
    }
}
