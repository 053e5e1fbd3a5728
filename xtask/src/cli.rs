//! Command-line arguments of `cargo xtask` (pure; tested below).

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::qemu::Machine;

/// The usage text.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--features F]...
      build the guest kernel (x86_64-unknown-none, release) and print its path;
      --features replaces the default set (all sources) with exactly F
  run [--accel tcg|kvm|auto] [--machine pc|q35|microvm] [--cpu MODEL] [--smp N] [--features F]...
      [--timeout SECS] [-- CMDLINE...]
      build, then boot the guest in QEMU; exits 0 only if the guest reports pass.
      Without test= on CMDLINE the guest prints its boot table and the NO_HZ
      idle demonstration.
  test [--accel tcg|kvm|auto|both] [--machine pc|q35|both]
      [--source hpet|lapic|pit|tsc|acpi_pm|all]
      [--fast] [--features F]... [--timeout SECS] [--verbose]
      build, then run the in-guest suite for every source configuration and
      print the table (configuration x test); exits non-zero on any failure.
      TCG always; KVM too when a probe boot passes (else \"KVM unusable here\").
      --fast drops the nohz=off and per-clocksource rows.
  bench [--accel tcg|kvm|auto] [--machine pc|q35] [--source hpet|lapic|pit|all]
      [--vs-linux] [--repeat N] [--smp N] [--timeline-only]
      build, then boot the guest's bench-* tests per tick device (NO_HZ,
      nohz=off, tsc=reliable; clock reads and calibrations once; under TCG
      the LAPIC timer's lateness on a slow vCPU, -icount shift=9|10,sleep=off)
      and print the tables; logs and report-<accel>-<machine>.md go to
      target/bench/.
      --vs-linux also runs bench/linux/run (default, nohz=off, tsc=reliable)
      and compares; Linux runs under TCG only, so our guest then runs under
      TCG too.
      --smp N boots every guest and Linux with N CPUs (1-8): the idle rows
      compare every CPU's interrupts, and a table shows cross-CPU timers'
      lateness (bench-cross).
      --repeat N boots the figures the comparison reads (lapic NO_HZ,
      nohz=off, tsc=reliable, and the read/calibration boot) N times
      (default 5) and prints each as median (min-max); with --vs-linux, ours
      and Linux alternate (run i: our four boots, then Linux's three) and
      each ratio is taken within a run. The rest of the suite runs once, in
      run 1. --repeat 1 is a single run.
      Also draws target/bench/timeline.svg: every timer interrupt of 2 s of
      idle, ours periodic and NO_HZ on the LAPIC timer, Linux NO_HZ with
      --vs-linux, all under TCG; --timeline-only runs just those boots.
  fuzz [--target cmdline|pvh|hpet|lapic|pit|tsc] [--iterations N] [--seed S]
      build the fuzz harness (fuzz/) in release and run every target (or T)
      for N inputs (default 1000000) from seed S (default: from the clock,
      printed); on a failure it prints the input and the command that runs
      it alone (--seed <its seed> --iterations 1). See TESTING.md.
  help
      this text

defaults: run:  --accel auto (KVM if /dev/kvm opens read-write, else TCG),
                --machine pc, --cpu max (TCG) / host,-arch-capabilities (KVM),
                --timeout 30
          test: --accel auto (TCG, and KVM if usable), --machine both,
                --source all, --timeout 120 per boot (300 under KVM)
          bench: --accel tcg, --machine pc, --source all, --repeat 5";

/// Default `--repeat` of `bench`.
pub const DEFAULT_REPEAT: u32 = 5;

/// The largest `--repeat` taken (a typo guard: each run takes minutes).
pub const MAX_REPEAT: u32 = 100;

/// Default wall-clock limit of one QEMU run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which accelerator the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelChoice {
    /// TCG (always works).
    Tcg,
    /// KVM (fails if /dev/kvm is not usable).
    Kvm,
    /// KVM if /dev/kvm opens read-write, else TCG.
    Auto,
}

/// Options of `build` (and of `run`, which builds first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildArgs {
    /// Cargo features of the guest, as given (each may be a comma list).
    pub features: Vec<String>,
}

/// Options of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunArgs {
    /// What to build.
    pub build: BuildArgs,
    /// Accelerator.
    pub accel: AccelChoice,
    /// Machine type.
    pub machine: Machine,
    /// `-cpu` model, if not the accelerator's default.
    pub cpu: Option<String>,
    /// `--smp N`: CPUs.
    pub smp: u32,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// The guest command line, word by word (after `--`).
    pub cmdline: Vec<String>,
}

/// Options of `test`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestArgs {
    /// What to build.
    pub build: BuildArgs,
    /// Accelerators: TCG always; KVM per `--accel`.
    pub accel: AccelChoice,
    /// Also KVM when usable (`auto`, `both`); KVM only (`kvm`).
    pub tcg: bool,
    /// Machine types.
    pub machines: Vec<Machine>,
    /// `--source`, `None` for all.
    pub source: Option<crate::matrix::Source>,
    /// `--fast`.
    pub fast: bool,
    /// Per-boot wall-clock limit, if given.
    pub timeout: Option<Duration>,
    /// Echo every boot's serial output.
    pub verbose: bool,
}

/// Options of `bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchArgs {
    /// Accelerator.
    pub accel: AccelChoice,
    /// Machine type.
    pub machine: Machine,
    /// `--source`, `None` for all.
    pub source: Option<crate::matrix::Source>,
    /// `--vs-linux`: compare with Linux in the same QEMU.
    pub vs_linux: bool,
    /// `--repeat`: how many runs of the compared boots (and of Linux), ≥ 1.
    pub repeat: u32,
    /// `--timeline-only`: only the idle timeline's boots and its SVG.
    pub timeline_only: bool,
    /// `--smp N`: CPUs of every boot, ours and Linux's (1–8, the guest's
    /// limit).
    pub smp: u32,
}

impl BenchArgs {
    /// The `cargo xtask bench` command that asks for these options: those
    /// not at their default, and `--repeat` always (a report names it).
    pub fn command_line(&self) -> String {
        let mut s = String::from("cargo xtask bench");
        match self.accel {
            AccelChoice::Tcg => {}
            AccelChoice::Kvm => s.push_str(" --accel kvm"),
            AccelChoice::Auto => s.push_str(" --accel auto"),
        }
        if self.machine != Machine::Pc {
            let _ = write!(s, " --machine {}", self.machine.as_str());
        }
        if let Some(source) = self.source {
            let _ = write!(s, " --source {}", source.name());
        }
        if self.vs_linux {
            s.push_str(" --vs-linux");
        }
        let _ = write!(s, " --repeat {}", self.repeat);
        if self.smp > 1 {
            let _ = write!(s, " --smp {}", self.smp);
        }
        if self.timeline_only {
            s.push_str(" --timeline-only");
        }
        s
    }
}

/// Options of `fuzz` (`None`: the harness's default).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FuzzArgs {
    /// `--target`: one target.
    pub target: Option<String>,
    /// `--iterations`: inputs per target.
    pub iterations: Option<u64>,
    /// `--seed`: the seed of the first input.
    pub seed: Option<u64>,
}

/// A parsed `cargo xtask` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `build`.
    Build(BuildArgs),
    /// `run`.
    Run(RunArgs),
    /// `test`.
    Test(TestArgs),
    /// `bench`.
    Bench(BenchArgs),
    /// `fuzz`.
    Fuzz(FuzzArgs),
    /// `help`, `-h`, `--help`, or nothing.
    Help,
}

/// A mistake in the arguments, with what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Parses the arguments after `cargo xtask`.
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator<Item = String>,
{
    let mut args = args.into_iter();
    let command = match args.next() {
        None => return Ok(Command::Help),
        Some(c) => c,
    };
    let mut run = RunArgs {
        build: BuildArgs::default(),
        accel: AccelChoice::Auto,
        machine: Machine::Pc,
        cpu: None,
        smp: 1,
        timeout: DEFAULT_TIMEOUT,
        cmdline: Vec::new(),
    };
    let is_run = match command.as_str() {
        "help" | "-h" | "--help" => return Ok(Command::Help),
        "build" => false,
        "run" => true,
        "test" => return parse_test(args),
        "bench" => return parse_bench(args),
        "fuzz" => return parse_fuzz(args),
        other => return err(format!("unknown command `{other}`")),
    };
    while let Some(arg) = args.next() {
        if arg == "--" {
            if !is_run {
                return err("`build` takes no guest command line");
            }
            run.cmdline.extend(args.by_ref());
            break;
        }
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| flag_value(inline.clone(), &mut args, name);
        match (flag.as_str(), is_run) {
            ("--features" | "-F", _) => run.build.features.push(value(&flag)?),
            ("--accel", true) => {
                run.accel = match value(&flag)?.as_str() {
                    "tcg" => AccelChoice::Tcg,
                    "kvm" => AccelChoice::Kvm,
                    "auto" => AccelChoice::Auto,
                    other => return err(format!("`--accel {other}`: expected tcg, kvm or auto")),
                }
            }
            ("--machine" | "-M", true) => {
                run.machine = match value(&flag)?.as_str() {
                    "pc" => Machine::Pc,
                    "q35" => Machine::Q35,
                    "microvm" => Machine::Microvm,
                    other => {
                        return err(format!("`--machine {other}`: expected pc, q35 or microvm"))
                    }
                }
            }
            ("--cpu", true) => run.cpu = Some(value(&flag)?),
            ("--smp", true) => {
                let v = value(&flag)?;
                run.smp = match v.parse::<u32>() {
                    Ok(n) if (1..=16).contains(&n) => n,
                    _ => return err(format!("`--smp {v}`: expected 1 to 16 CPUs")),
                }
            }
            ("--timeout", true) => {
                let v = value(&flag)?;
                run.timeout = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                        Duration::from_secs_f64(s)
                    }
                    _ => return err(format!("`--timeout {v}`: expected seconds, > 0")),
                }
            }
            _ => return err(format!("unknown option `{arg}` for `{command}`")),
        }
    }
    Ok(if is_run {
        Command::Run(run)
    } else {
        Command::Build(run.build)
    })
}

/// `--flag=value` or `--flag value`: the flag, and its inline value if any.
fn split_flag(arg: &str) -> (String, Option<String>) {
    match arg.split_once('=') {
        Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
        _ => (arg.to_string(), None),
    }
}

/// The value of flag `name`: the inline one, else the next argument.
fn flag_value(
    inline: Option<String>,
    args: &mut impl Iterator<Item = String>,
    name: &str,
) -> Result<String, UsageError> {
    match inline.or_else(|| args.next()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => err(format!("`{name}` needs a value")),
    }
}

/// Parses the options of `test`.
fn parse_test<I: Iterator<Item = String>>(mut args: I) -> Result<Command, UsageError> {
    let mut t = TestArgs {
        build: BuildArgs::default(),
        accel: AccelChoice::Auto,
        tcg: true,
        machines: vec![Machine::Pc, Machine::Q35],
        source: None,
        fast: false,
        timeout: None,
        verbose: false,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| flag_value(inline.clone(), &mut args, name);
        match flag.as_str() {
            "--features" | "-F" => t.build.features.push(value(&flag)?),
            "--accel" => {
                (t.accel, t.tcg) = match value(&flag)?.as_str() {
                    "tcg" => (AccelChoice::Tcg, true),
                    "kvm" => (AccelChoice::Kvm, false),
                    "auto" | "both" => (AccelChoice::Auto, true),
                    other => {
                        return err(format!(
                            "`--accel {other}`: expected tcg, kvm, auto or both"
                        ))
                    }
                }
            }
            "--machine" | "-M" => {
                t.machines = match value(&flag)?.as_str() {
                    "pc" => vec![Machine::Pc],
                    "q35" => vec![Machine::Q35],
                    "both" => vec![Machine::Pc, Machine::Q35],
                    other => return err(format!("`--machine {other}`: expected pc, q35 or both")),
                }
            }
            "--source" => {
                t.source = crate::matrix::Source::parse(&value(&flag)?).map_err(UsageError)?
            }
            "--fast" => t.fast = true,
            "--verbose" | "-v" => t.verbose = true,
            "--timeout" => {
                let v = value(&flag)?;
                t.timeout = match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                        Some(Duration::from_secs_f64(s))
                    }
                    _ => return err(format!("`--timeout {v}`: expected seconds, > 0")),
                }
            }
            _ => return err(format!("unknown option `{arg}` for `test`")),
        }
    }
    Ok(Command::Test(t))
}

/// Parses the options of `bench`.
fn parse_bench<I: Iterator<Item = String>>(mut args: I) -> Result<Command, UsageError> {
    use crate::matrix::Source;
    let mut b = BenchArgs {
        accel: AccelChoice::Tcg,
        machine: Machine::Pc,
        source: None,
        vs_linux: false,
        repeat: DEFAULT_REPEAT,
        timeline_only: false,
        smp: 1,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| flag_value(inline.clone(), &mut args, name);
        match flag.as_str() {
            "--accel" => {
                b.accel = match value(&flag)?.as_str() {
                    "tcg" => AccelChoice::Tcg,
                    "kvm" => AccelChoice::Kvm,
                    "auto" => AccelChoice::Auto,
                    other => return err(format!("`--accel {other}`: expected tcg, kvm or auto")),
                }
            }
            "--machine" | "-M" => {
                b.machine = match value(&flag)?.as_str() {
                    "pc" => Machine::Pc,
                    "q35" => Machine::Q35,
                    other => return err(format!("`--machine {other}`: expected pc or q35")),
                }
            }
            "--source" => {
                // Only sources with a tick device have benchmarks.
                b.source = match value(&flag)?.as_str() {
                    v @ ("hpet" | "lapic" | "pit" | "all") => {
                        Source::parse(v).map_err(UsageError)?
                    }
                    v => return err(format!("`--source {v}`: expected hpet, lapic, pit or all")),
                }
            }
            "--vs-linux" if inline.is_none() => b.vs_linux = true,
            "--repeat" => {
                let v = value(&flag)?;
                b.repeat = match v.parse::<u32>() {
                    Ok(n) if (1..=MAX_REPEAT).contains(&n) => n,
                    _ => {
                        return err(format!(
                            "`--repeat {v}`: expected a whole number from 1 to {MAX_REPEAT}"
                        ))
                    }
                }
            }
            "--timeline-only" if inline.is_none() => b.timeline_only = true,
            "--smp" => {
                let v = value(&flag)?;
                b.smp = match v.parse::<u32>() {
                    Ok(n) if (1..=8).contains(&n) => n,
                    _ => return err(format!("`--smp {v}`: expected 1 to 8 CPUs")),
                }
            }
            _ => return err(format!("unknown option `{arg}` for `bench`")),
        }
    }
    Ok(Command::Bench(b))
}

/// Parses the options of `fuzz`.
fn parse_fuzz<I: Iterator<Item = String>>(mut args: I) -> Result<Command, UsageError> {
    let mut f = FuzzArgs::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = split_flag(&arg);
        let mut value = |name: &str| flag_value(inline.clone(), &mut args, name);
        let number = |flag: &str, v: String| {
            v.replace('_', "")
                .parse::<u64>()
                .map_err(|_| UsageError(format!("`{flag} {v}`: expected a number")))
        };
        match flag.as_str() {
            "--target" => f.target = Some(value(&flag)?),
            "--iterations" | "-n" => f.iterations = Some(number(&flag, value(&flag)?)?),
            "--seed" => f.seed = Some(number(&flag, value(&flag)?)?),
            _ => return err(format!("unknown option `{arg}` for `fuzz`")),
        }
    }
    Ok(Command::Fuzz(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_options() {
        assert_eq!(parse(&["fuzz"]), Ok(Command::Fuzz(FuzzArgs::default())));
        assert_eq!(
            parse(&[
                "fuzz",
                "--target",
                "hpet",
                "--iterations=10_000_000",
                "--seed",
                "7"
            ]),
            Ok(Command::Fuzz(FuzzArgs {
                target: Some("hpet".into()),
                iterations: Some(10_000_000),
                seed: Some(7),
            }))
        );
        assert!(parse(&["fuzz", "--iterations", "many"]).is_err());
        assert!(parse(&["fuzz", "--fast"]).is_err());
    }

    fn parse(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    fn run(args: &[&str]) -> RunArgs {
        match parse(args) {
            Ok(Command::Run(r)) => r,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn no_arguments_is_help() {
        assert_eq!(parse(&[]), Ok(Command::Help));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn run_defaults() {
        let r = run(&["run"]);
        assert_eq!(r.accel, AccelChoice::Auto);
        assert_eq!(r.machine, Machine::Pc);
        assert_eq!(r.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.cpu, None);
        assert!(r.cmdline.is_empty());
        assert!(r.build.features.is_empty());
    }

    #[test]
    fn run_options_in_both_spellings() {
        let r = run(&[
            "run",
            "--accel",
            "tcg",
            "--machine=q35",
            "--features",
            "hpet,lapic",
            "-F",
            "pit",
            "--timeout",
            "2.5",
            "--cpu=Skylake-Client",
        ]);
        assert_eq!(r.accel, AccelChoice::Tcg);
        assert_eq!(r.machine, Machine::Q35);
        assert_eq!(r.build.features, ["hpet,lapic", "pit"]);
        assert_eq!(r.timeout, Duration::from_millis(2500));
        assert_eq!(r.cpu.as_deref(), Some("Skylake-Client"));
        assert_eq!(run(&["run", "-M", "microvm"]).machine, Machine::Microvm);
    }

    #[test]
    fn everything_after_double_dash_is_the_guest_cmdline() {
        let r = run(&[
            "run",
            "--accel",
            "kvm",
            "--",
            "nohz=on",
            "--timeout",
            "hz=100",
        ]);
        assert_eq!(r.accel, AccelChoice::Kvm);
        assert_eq!(r.timeout, DEFAULT_TIMEOUT);
        assert_eq!(r.cmdline, ["nohz=on", "--timeout", "hz=100"]);
    }

    #[test]
    fn build_takes_features_only() {
        assert_eq!(
            parse(&["build", "--features", "hpet"]),
            Ok(Command::Build(BuildArgs {
                features: vec!["hpet".into()]
            }))
        );
        assert!(parse(&["build", "--accel", "tcg"]).is_err());
        assert!(parse(&["build", "--", "nohz=on"]).is_err());
    }

    #[test]
    fn test_defaults_and_options() {
        let Ok(Command::Test(t)) = parse(&["test"]) else {
            panic!()
        };
        assert_eq!((t.accel, t.tcg, t.fast), (AccelChoice::Auto, true, false));
        assert_eq!(t.machines, [Machine::Pc, Machine::Q35]);
        assert_eq!(t.source, None);
        let Ok(Command::Test(t)) = parse(&[
            "test",
            "--accel",
            "kvm",
            "--machine=q35",
            "--source",
            "hpet",
            "--fast",
            "-F",
            "hpet",
        ]) else {
            panic!()
        };
        assert_eq!((t.accel, t.tcg, t.fast), (AccelChoice::Kvm, false, true));
        assert_eq!(t.machines, [Machine::Q35]);
        assert_eq!(t.source, Some(crate::matrix::Source::Hpet));
        assert_eq!(t.build.features, ["hpet"]);
        // bisect-tests/acpi_pm runs this one.
        let Ok(Command::Test(t)) = parse(&["test", "--accel", "tcg", "--source", "acpi_pm"]) else {
            panic!()
        };
        assert_eq!(t.source, Some(crate::matrix::Source::AcpiPm));
        for bad in [
            &["test", "--source", "rtc"][..],
            &["test", "--machine", "virt"],
            &["test", "--accel", "xen"],
            &["test", "--", "x"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bench_defaults_and_options() {
        let Ok(Command::Bench(b)) = parse(&["bench"]) else {
            panic!()
        };
        assert_eq!(
            b,
            BenchArgs {
                accel: AccelChoice::Tcg,
                machine: Machine::Pc,
                source: None,
                vs_linux: false,
                repeat: 5,
                timeline_only: false,
                smp: 1,
            }
        );
        assert_eq!(b.command_line(), "cargo xtask bench --repeat 5");
        let Ok(Command::Bench(b)) = parse(&[
            "bench",
            "--accel=kvm",
            "-M",
            "q35",
            "--source",
            "lapic",
            "--vs-linux",
            "--repeat=3",
            "--timeline-only",
            "--smp",
            "4",
        ]) else {
            panic!()
        };
        assert_eq!(b.accel, AccelChoice::Kvm);
        assert_eq!(b.machine, Machine::Q35);
        assert_eq!(b.source, Some(crate::matrix::Source::Lapic));
        assert!(b.vs_linux);
        assert!(b.timeline_only);
        assert_eq!(b.repeat, 3);
        assert_eq!(
            b.command_line(),
            "cargo xtask bench --accel kvm --machine q35 --source lapic --vs-linux --repeat 3 \
             --smp 4 --timeline-only"
        );
        let Ok(Command::Bench(b)) = parse(&["bench", "--vs-linux", "--repeat", "1"]) else {
            panic!()
        };
        assert_eq!(b.repeat, 1);
        assert_eq!(b.command_line(), "cargo xtask bench --vs-linux --repeat 1");
        for bad in [
            &["bench", "--repeat", "0"][..],
            &["bench", "--repeat", "-1"],
            &["bench", "--repeat", "2.5"],
            &["bench", "--repeat", "101"],
            &["bench", "--repeat"],
            &["bench", "--source", "tsc"],
            &["bench", "--source", "acpi_pm"],
            &["bench", "--source", "rtc"],
            &["bench", "--accel", "both"],
            &["bench", "--vs-linux=yes"],
            &["bench", "--timeline-only=1"],
            &["bench", "--fast"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for args in [
            &["frobnicate"][..],
            &["run", "--accel", "xen"],
            &["run", "--machine", "virt"],
            &["run", "--timeout", "0"],
            &["run", "--timeout", "-3"],
            &["run", "--timeout", "NaN"],
            &["run", "--timeout"],
            &["run", "--accel="],
            &["run", "--bogus"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }
}
