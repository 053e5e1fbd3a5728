//! Booting the guest in QEMU: one run = one [`RunSpec`] in, one
//! [`RunOutcome`] out.
//!
//! ```text
//!  RunSpec ──qemu_args──► qemu-system-x86_64 … -kernel guest -append "…"
//!                            │ COM1 (-serial stdio) ──► serial (echoed live)
//!                            │ stderr               ──► stderr (echoed live)
//!                            ▼
//!                         exit status ──RunStatus::from_exit──► RunOutcome
//!                         (or killed at the timeout: TimedOut)
//! ```
//!
//! The guest ends a run through `isa-debug-exit` (`guest::arch::exit`): only
//! status 33 is a pass. QEMU runs with `-no-reboot`, so a triple fault
//! (reset) makes it exit with 0, which is a failure like any other status.
//!
//! `-display none` (rather than `-nographic`) keeps SeaBIOS off the serial
//! line: with `-nographic` it mirrors its screen to COM1, starting with an
//! `ESC c` that resets the host terminal, and the transcript would begin
//! with firmware output instead of the guest's.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use guest::arch::exit::ExitCode;

use crate::{Error, Result};

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// What to install when [`QEMU`] is missing (Debian/Ubuntu).
pub const QEMU_PACKAGE_HINT: &str = "apt-get install qemu-system-x86";
/// The minimal firmware used under KVM (SeaBIOS takes ~3.5 s under a
/// software KVM; qboot a few ms).
pub const QBOOT: &str = "/usr/share/qemu/qboot.rom";
/// The device node that must open read-write for KVM.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// i440FX + PIIX (`-M pc`).
    Pc,
    /// Q35 + ICH9 (`-M q35`).
    Q35,
    /// QEMU's minimal machine (`-M microvm`): no PCI, no firmware tables
    /// beyond ACPI's MADT/FADT/DSDT (`acpi=on`), its legacy devices (PIT,
    /// 8259s, RTC) each switchable, PVH `-kernel` boot through its own
    /// qboot-based firmware.
    Microvm,
}

impl Machine {
    /// The `-M` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm",
        }
    }
}

/// The accelerator of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's binary translator.
    Tcg,
    /// The host's KVM.
    Kvm,
}

impl Accel {
    /// The `-accel` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    /// The default `-cpu` model: everything TCG can emulate; under KVM the
    /// host CPU without `arch-capabilities`, whose MSR (0x10a) some KVM
    /// implementations (PVM) refuse, aborting QEMU at start.
    pub fn default_cpu(self) -> &'static str {
        match self {
            Accel::Tcg => "max",
            Accel::Kvm => "host,-arch-capabilities",
        }
    }
}

/// Whether KVM can be used: `/dev/kvm` opens read-write.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .is_ok()
}

/// Everything that defines one QEMU run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The guest ELF.
    pub kernel: PathBuf,
    /// Machine type.
    pub machine: Machine,
    /// Extra `-M` options (`hpet=off`), appended after the machine type.
    pub machine_opts: Option<String>,
    /// Accelerator.
    pub accel: Accel,
    /// `-cpu` model.
    pub cpu: String,
    /// `-bios` image; `None` for QEMU's default (SeaBIOS).
    pub bios: Option<PathBuf>,
    /// Guest memory, MiB.
    pub memory_mib: u32,
    /// CPUs (`-smp`; 1 adds no option).
    pub smp: u32,
    /// `-icount` value (TCG only): guest time from the instruction count,
    /// e.g. `shift=10,sleep=off` for a deterministic ~1 µs an instruction.
    pub icount: Option<String>,
    /// The guest command line (`-append`).
    pub cmdline: String,
    /// ACPI tables QEMU adds after its own (`-acpitable file=…`, each a
    /// whole table; a `:` in a path would split it in two for QEMU).
    pub acpi_tables: Vec<PathBuf>,
    /// Wall-clock limit; the run is killed and fails after it.
    pub timeout: Duration,
    /// Copy the guest's serial output and QEMU's stderr to ours as they come.
    pub echo: bool,
    /// Device properties (`-global driver.prop=value`), e.g. the HPET's
    /// `hpet.msi=on`.
    pub globals: Vec<String>,
}

impl RunSpec {
    /// A run of `kernel` with the defaults: the accelerator's CPU, qboot
    /// under KVM (if installed; microvm has its own), 128 MiB, no command
    /// line, 30 s, echo on.
    pub fn new(kernel: impl Into<PathBuf>, machine: Machine, accel: Accel) -> Self {
        let bios = match accel {
            Accel::Kvm if machine != Machine::Microvm && Path::new(QBOOT).exists() => {
                Some(PathBuf::from(QBOOT))
            }
            _ => None,
        };
        RunSpec {
            kernel: kernel.into(),
            machine,
            machine_opts: None,
            accel,
            cpu: accel.default_cpu().to_string(),
            bios,
            memory_mib: 128,
            smp: 1,
            icount: None,
            cmdline: String::new(),
            acpi_tables: Vec::new(),
            timeout: crate::cli::DEFAULT_TIMEOUT,
            echo: true,
            globals: Vec::new(),
        }
    }

    /// The arguments QEMU is started with.
    pub fn qemu_args(&self) -> Vec<OsString> {
        let machine = match &self.machine_opts {
            Some(o) => format!("{},{o}", self.machine.as_str()),
            None => self.machine.as_str().to_string(),
        };
        let mut args: Vec<OsString> = [
            "-M",
            &machine,
            "-accel",
            self.accel.as_str(),
            "-cpu",
            &self.cpu,
            "-m",
            &format!("{}M", self.memory_mib),
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if self.smp > 1 {
            args.push("-smp".into());
            args.push(self.smp.to_string().into());
        }
        if self.accel == Accel::Kvm {
            // KVM's in-kernel PIT re-injects the ticks it could not deliver
            // in time ("delay"), a burst that makes a periodic PIT tick run
            // ahead of every clock (280 ticks in 1 s were seen here);
            // "discard" drops them, as the PIT's own coalescing would.
            args.push("-global".into());
            args.push("kvm-pit.lost_tick_policy=discard".into());
        }
        for g in &self.globals {
            args.push("-global".into());
            args.push(g.into());
        }
        if let Some(icount) = &self.icount {
            args.push("-icount".into());
            args.push(icount.into());
        }
        if let Some(bios) = &self.bios {
            args.push("-bios".into());
            args.push(bios.into());
        }
        for table in &self.acpi_tables {
            // QEMU's option syntax: a comma in a value is written twice.
            let mut opt = OsString::from("file=");
            opt.push(table.to_string_lossy().replace(',', ",,"));
            args.push("-acpitable".into());
            args.push(opt);
        }
        args.push("-kernel".into());
        args.push(self.kernel.clone().into());
        args.push("-append".into());
        args.push(self.cmdline.clone().into());
        args
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The guest wrote `ExitCode::Pass` (QEMU status 33).
    Pass,
    /// The guest wrote `ExitCode::Fail` (QEMU status 35).
    GuestFail,
    /// QEMU exited with 0: the guest reset (a triple fault, with
    /// `-no-reboot`) or shut the machine down.
    Reset,
    /// QEMU exited with another status (its own error, e.g. bad options).
    QemuError(i32),
    /// QEMU was killed by a signal it did not get from us.
    Killed,
    /// Still running at the timeout; killed.
    TimedOut,
}

impl RunStatus {
    /// The status for QEMU's exit code (`None`: killed by a signal).
    pub fn from_exit(code: Option<i32>) -> Self {
        match code {
            None => RunStatus::Killed,
            Some(0) => RunStatus::Reset,
            Some(c) => match ExitCode::from_qemu_status(c) {
                Some(ExitCode::Pass) => RunStatus::Pass,
                Some(ExitCode::Fail) => RunStatus::GuestFail,
                None => RunStatus::QemuError(c),
            },
        }
    }

    /// Only [`RunStatus::Pass`] passes.
    pub fn is_pass(self) -> bool {
        self == RunStatus::Pass
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunStatus::Pass => write!(f, "pass (exit status 33)"),
            RunStatus::GuestFail => write!(f, "FAIL: the guest reported failure (exit status 35)"),
            RunStatus::Reset => write!(
                f,
                "FAIL: the guest reset, e.g. a triple fault (exit status 0)"
            ),
            RunStatus::QemuError(c) => write!(f, "FAIL: QEMU exited with status {c}"),
            RunStatus::Killed => write!(f, "FAIL: QEMU was killed by a signal"),
            RunStatus::TimedOut => write!(f, "FAIL: timed out (a hang), QEMU killed"),
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// Everything the guest wrote to COM1, `\r\n` turned into `\n`.
    pub serial: String,
    /// QEMU's own messages.
    pub stderr: String,
    /// From starting QEMU to its exit (or to the kill).
    pub duration: Duration,
}

/// Boots `spec.kernel` and waits for the end (or the timeout).
///
/// Errors only when QEMU cannot be started at all ([`Error::QemuMissing`]
/// if it is not installed); everything the guest does is a [`RunStatus`].
pub fn run_qemu(spec: &RunSpec) -> Result<RunOutcome> {
    let start = Instant::now();
    let mut child = Command::new(QEMU)
        .args(spec.qemu_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::QemuMissing,
            _ => Error::Io(format!("starting {QEMU}"), e),
        })?;
    let stdout = child
        .stdout
        .take()
        .map(|s| pump(s, spec.echo, Sink::Stdout));
    let stderr = child
        .stderr
        .take()
        .map(|s| pump(s, spec.echo, Sink::Stderr));

    // Poll for the exit (std cannot wait with a timeout); 2 ms is far below
    // a boot's ~0.1 s and costs nothing measurable.
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::Io(format!("waiting for {QEMU}"), e))?
        {
            break Some(status);
        }
        if start.elapsed() >= spec.timeout {
            // Kill fails only if it already exited: then reap it all the same.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(POLL_INTERVAL);
    };
    let duration = start.elapsed();

    let serial = stdout.map(join_pump).unwrap_or_default();
    let stderr = stderr.map(join_pump).unwrap_or_default();
    Ok(RunOutcome {
        status: match status {
            Some(status) => RunStatus::from_exit(status.code()),
            None => RunStatus::TimedOut,
        },
        serial: normalize_newlines(&String::from_utf8_lossy(&serial)),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        duration,
    })
}

const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Where a pump echoes to.
#[derive(Debug, Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

/// Reads `from` to its end on a thread, echoing each chunk to `sink` as it
/// arrives when `echo` is set; the thread returns everything read.
fn pump(
    mut from: impl Read + Send + 'static,
    echo: bool,
    sink: Sink,
) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if echo {
                        // Echo is best effort: a closed terminal must not
                        // lose the captured output.
                        let _ = match sink {
                            Sink::Stdout => write_flush(&mut io::stdout().lock(), &buf[..n]),
                            Sink::Stderr => write_flush(&mut io::stderr().lock(), &buf[..n]),
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        all
    })
}

fn write_flush(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

fn join_pump(handle: thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    handle.join().unwrap_or_default()
}

/// `\r\n` → `\n` (the guest's UART sends CR LF, like a terminal line).
pub fn normalize_newlines(s: &str) -> String {
    s.replace("\r\n", "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_status_33_passes() {
        assert_eq!(RunStatus::from_exit(Some(33)), RunStatus::Pass);
        assert!(RunStatus::from_exit(Some(33)).is_pass());
        assert_eq!(RunStatus::from_exit(Some(35)), RunStatus::GuestFail);
        assert_eq!(RunStatus::from_exit(Some(0)), RunStatus::Reset);
        assert_eq!(RunStatus::from_exit(Some(1)), RunStatus::QemuError(1));
        assert_eq!(RunStatus::from_exit(None), RunStatus::Killed);
        for s in [
            RunStatus::GuestFail,
            RunStatus::Reset,
            RunStatus::QemuError(1),
            RunStatus::Killed,
            RunStatus::TimedOut,
        ] {
            assert!(!s.is_pass(), "{s:?}");
        }
    }

    #[test]
    fn statuses_agree_with_the_guest_exit_codes() {
        assert_eq!(
            RunStatus::from_exit(Some(ExitCode::Pass.qemu_status())),
            RunStatus::Pass
        );
        assert_eq!(
            RunStatus::from_exit(Some(ExitCode::Fail.qemu_status())),
            RunStatus::GuestFail
        );
    }

    #[test]
    fn tcg_spec_gives_the_documented_command_line() {
        let mut spec = RunSpec::new("/k/guest", Machine::Q35, Accel::Tcg);
        spec.cmdline = "nohz=on hz=100".into();
        let args: Vec<String> = spec
            .qemu_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "-M q35 -accel tcg -cpu max -m 128M -display none -no-reboot -serial stdio \
             -monitor none -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -kernel /k/guest -append nohz=on hz=100"
        );
    }

    #[test]
    fn icount_goes_before_the_kernel() {
        let mut spec = RunSpec::new("/k/guest", Machine::Pc, Accel::Tcg);
        spec.icount = Some("shift=10,sleep=off".into());
        let args: Vec<String> = spec
            .qemu_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let line = args.join(" ");
        assert!(
            line.contains("-icount shift=10,sleep=off -kernel /k/guest"),
            "{line}"
        );
    }

    #[test]
    fn machine_options_follow_the_machine_type() {
        let mut spec = RunSpec::new("/k/guest", Machine::Pc, Accel::Tcg);
        spec.machine_opts = Some("hpet=off".into());
        let args = spec.qemu_args();
        assert_eq!(args[0], "-M");
        assert_eq!(args[1], "pc,hpet=off");
    }

    #[test]
    fn acpi_tables_go_before_the_kernel_with_commas_doubled() {
        let mut spec = RunSpec::new("/k/guest", Machine::Pc, Accel::Tcg);
        spec.acpi_tables = vec!["/t/hpet.dat".into(), "/t/a,b.dat".into()];
        let args: Vec<String> = spec
            .qemu_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let at = args.iter().position(|a| a == "-acpitable").unwrap();
        assert_eq!(
            args[at..at + 5],
            [
                "-acpitable",
                "file=/t/hpet.dat",
                "-acpitable",
                "file=/t/a,,b.dat",
                "-kernel"
            ]
        );
    }

    #[test]
    fn microvm_keeps_its_own_firmware_and_takes_its_options() {
        let mut spec = RunSpec::new("/k/guest", Machine::Microvm, Accel::Kvm);
        assert_eq!(spec.bios, None);
        spec.machine_opts = Some("acpi=on,pit=off".into());
        let args = spec.qemu_args();
        assert_eq!(args[1], "microvm,acpi=on,pit=off");
        assert!(!args.iter().any(|a| a == "-bios"));
    }

    #[test]
    fn kvm_spec_uses_the_host_cpu_and_qboot_when_installed() {
        let spec = RunSpec::new("/k/guest", Machine::Pc, Accel::Kvm);
        assert_eq!(spec.cpu, "host,-arch-capabilities");
        assert_eq!(spec.bios.is_some(), Path::new(QBOOT).exists());
        let args = spec.qemu_args();
        let pos = args.iter().position(|a| a == "-accel").unwrap();
        assert_eq!(args[pos + 1], "kvm");
    }

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        assert_eq!(normalize_newlines("a\r\nb\rc\n"), "a\nb\rc\n");
    }
}
