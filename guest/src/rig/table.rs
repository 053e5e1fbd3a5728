//! The boot table: every clocksource and clock-event device found, its
//! rating, frequency and how the frequency is known, which are selected,
//! and the tick mode reached (with the reason when it is periodic though
//! one-shot was asked for); then the machine-readable `CONFIG` line.

use core::fmt::{self, Write as _};

use clockevents::{DeviceInfo, Features, Owner, Programming};
use clocksource::{ClockSourceFlags, Hertz, Nanos};

use crate::arch::cmdline::Options;
use crate::embed::kernel::Kernel;
use crate::embed::sources::{self, Inventory};
use crate::platform::acpi::Signature;
use crate::platform::apic;
use crate::platform::firmware::{Origin, Platform};
use crate::println;
use crate::rig::result::{Line, TextBuf};
use crate::rig::suite::{Accel, ModeWord, TickState};

/// A frequency as `100.000 MHz`.
pub struct Freq(pub Hertz);

impl fmt::Display for Freq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hz = self.0.get();
        let (unit, div) = match hz {
            0..=999_999 => ("kHz", 1_000),
            1_000_000..=999_999_999 => ("MHz", 1_000_000),
            _ => ("GHz", 1_000_000_000),
        };
        let s = TextNum(hz, div);
        f.pad(TextBuf::<24>::format(format_args!("{s} {unit}")).as_str())
    }
}

/// A device's counting rate, or `-` for a deadline device (which has none).
struct FreqOrDash(Option<Hertz>);

impl fmt::Display for FreqOrDash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(hz) => fmt::Display::fmt(&Freq(hz), f),
            None => f.pad("-"),
        }
    }
}

/// `n / div` with three decimals.
struct TextNum(u64, u64);

impl fmt::Display for TextNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = self.0 as u128 * 1000 / self.1 as u128;
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

/// A duration, human-sized (`240 ns`, `1.920 us`, `27.462 ms`, `21.474 s`).
pub struct Dur(pub Nanos);

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        let t: TextBuf<24> = match ns {
            0..=999 => TextBuf::format(format_args!("{ns} ns")),
            1_000..=999_999 => TextBuf::format(format_args!("{} us", TextNum(ns, 1_000))),
            1_000_000..=999_999_999 => {
                TextBuf::format(format_args!("{} ms", TextNum(ns, 1_000_000)))
            }
            _ => TextBuf::format(format_args!("{} s", TextNum(ns, 1_000_000_000))),
        };
        f.pad(t.as_str())
    }
}

/// A device's features, and `deadline` for a device programmed by absolute
/// time ([`Programming::Deadline`], Linux's `CLOCK_EVT_FEAT_KTIME`).
struct FeatureWords(DeviceInfo);

impl fmt::Display for FeatureWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t: TextBuf<64> = TextBuf::new();
        let deadline = self.0.programming() == Programming::Deadline;
        for (on, word) in [
            (self.0.features.contains(Features::PERIODIC), "periodic"),
            (self.0.features.contains(Features::ONESHOT), "oneshot"),
            (deadline, "deadline"),
            (self.0.features.contains(Features::PERCPU), "percpu"),
            (self.0.features.contains(Features::C3STOP), "c3stop"),
        ] {
            if on {
                if !t.as_str().is_empty() {
                    let _ = fmt::Write::write_char(&mut t, ',');
                }
                let _ = fmt::Write::write_str(&mut t, word);
            }
        }
        f.pad(t.as_str())
    }
}

struct FlagWords(ClockSourceFlags, bool);

impl fmt::Display for FlagWords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut t: TextBuf<64> = TextBuf::new();
        for (flag, word) in [
            (ClockSourceFlags::CONTINUOUS, "cont"),
            (ClockSourceFlags::VALID_FOR_HRES, "hres"),
            (ClockSourceFlags::MUST_VERIFY, "verify"),
            (ClockSourceFlags::UNSTABLE, "UNSTABLE"),
        ] {
            if self.0.contains(flag) {
                if !t.as_str().is_empty() {
                    let _ = fmt::Write::write_char(&mut t, ',');
                }
                let _ = fmt::Write::write_str(&mut t, word);
            }
        }
        if self.1 && !self.0.contains(ClockSourceFlags::UNSTABLE) {
            let _ = fmt::Write::write_str(&mut t, ",UNSTABLE");
        }
        f.pad(t.as_str())
    }
}

/// Prints the boot table.
pub fn print(k: &Kernel, inv: &Inventory, platform: &Platform, opts: &Options<'_>, accel: Accel) {
    let rule = "==========================================================================================";
    println!("{rule}");
    println!("dynticks boot table");
    print_firmware(inv, platform);
    print_cpu(accel);
    print_clocksources(k, inv);
    print_devices(k, inv);
    print_tick(k, inv, opts);
    println!("{rule}");
}

/// `firmware`: the ACPI tables found, the interrupt routing they give, and
/// what of them was not used.
fn print_firmware(inv: &Inventory, platform: &Platform) {
    let oem = core::str::from_utf8(&platform.oem).unwrap_or("?");
    println!(
        "firmware  ACPI RSDP {} (OEM {}), {} CPU(s){}",
        platform
            .rsdp
            .map_or(TextBuf::<24>::format(format_args!("none")), |r| {
                TextBuf::format(format_args!("{r:#x}"))
            }),
        oem.trim(),
        platform.cpus,
        platform.problem.map_or(TextBuf::<160>::new(), |p| {
            TextBuf::format(format_args!(" — {p}"))
        })
    );
    println!(
        "          local APIC {:#x} ({}), I/O APIC{}{}",
        platform.lapic_base,
        if platform.lapic_origin == Origin::Acpi {
            "MADT"
        } else {
            "IA32_APIC_BASE, last resort"
        },
        match inv.ioapic {
            Some((id, addr, ver, inputs)) => TextBuf::<80>::format(format_args!(
                " id {id} at {addr:#x} (v{ver:#x}, {inputs} inputs)"
            )),
            None => TextBuf::format(format_args!(" none usable")),
        },
        if platform.ioapic_origin == Origin::Acpi {
            " (MADT)"
        } else {
            " (MP-spec default, last resort)"
        }
    );
    let isa0 = platform.isa[0];
    println!(
        "          ISA IRQ0 -> GSI {} ({}, {:?}/{:?}); HPET {}; PM timer {}",
        isa0.gsi,
        if isa0.overridden {
            "MADT override"
        } else {
            "identity"
        },
        isa0.trigger,
        isa0.polarity,
        platform.hpet.map_or(
            TextBuf::<48>::format(format_args!(
                "none ({})",
                if platform.notes.about(Signature::HPET).is_some() {
                    "ACPI HPET table skipped"
                } else {
                    "no ACPI HPET table"
                }
            )),
            |h| { TextBuf::format(format_args!("table #{} at {:#x}", h.number, h.base)) }
        ),
        platform
            .pm_timer_port
            .map_or(TextBuf::<24>::format(format_args!("none")), |p| {
                TextBuf::format(format_args!("port {p:#x}"))
            }),
    );
    for n in platform.notes.iter() {
        println!("          not used: {n}");
    }
    let unlisted = platform.notes.total() as usize - platform.notes.iter().count();
    if unlisted > 0 {
        println!("          not used: {unlisted} more ACPI problems (in the log)");
    }
}

/// `cpu`: the accelerator, the local APIC's mode and the timer features.
fn print_cpu(accel: Accel) {
    if let Some(l) = apic::get() {
        let c = l.cpuid();
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!(
            "cpu       {} ; local APIC id {} via {} ; x2APIC {}, TSC-deadline {}, ARAT {}",
            match accel {
                Accel::Tcg => "QEMU TCG",
                Accel::Kvm => "KVM",
                Accel::Other => "no known hypervisor",
            },
            l.id(),
            l.mode().as_str(),
            yes(c.x2apic),
            yes(c.tsc_deadline),
            yes(c.arat)
        );
    }
    // The other CPUs, and each one's TSC warp check against the BSP.
    if let Some(r) = crate::arch::smp::report() {
        let mut t: TextBuf<256> = TextBuf::new();
        for i in 1..crate::arch::smp::MAX_CPUS {
            let Some(id) = crate::arch::smp::ap_apic_id(i) else {
                continue;
            };
            let _ = match crate::arch::smp::warp_result(i) {
                Some((0, _)) => write!(t, " {id}:tsc-ok"),
                Some((w, max)) => write!(t, " {id}:tsc-warp({w},{max}cyc)"),
                None => write!(t, " {id}:tsc-unchecked"),
            };
        }
        println!(
            "          {} of {} CPUs up; APs by APIC ID:{}",
            r.up,
            r.listed,
            t.as_str()
        );
    }
}

/// `clocksources`: each registered, the current one starred.
fn print_clocksources(k: &Kernel, inv: &Inventory) {
    println!(
        "clocksources       rating  frequency     flags               how the frequency is known"
    );
    let current = k.tick.timekeeper().clocksource().name();
    for e in k.tick.clocksources().iter() {
        let how = inv.source_note(e.name()).map_or("", |n| n.how.as_str());
        println!(
            "  {} {:<14} {:>4}  {:<12}  {:<18}  {how}",
            if e.name() == current { "*" } else { " " },
            e.name(),
            e.rating(),
            Freq(e.frequency()),
            FlagWords(e.flags(), e.is_unstable()),
        );
    }
}

/// `clock-event devices`: each registered, its programming and role, and
/// the devices not used with why.
fn print_devices(k: &Kernel, inv: &Inventory) {
    println!(
        "clock-event devices rating frequency    features                  delta range             role        how / interrupt"
    );
    for (_, d, owner) in k.tick.devices().iter() {
        let note = inv.device_note(d.info().name);
        let role: TextBuf<16> = match owner {
            Owner::Cpu(_) => match owner.cpu() {
                Some(c) => TextBuf::format(format_args!("tick {c}")),
                None => TextBuf::format(format_args!("tick ?")),
            },
            Owner::Broadcast => TextBuf::format(format_args!("broadcast")),
            Owner::Free => TextBuf::format(format_args!("-")),
        };
        let range: TextBuf<40> = match sources::delta_range_ns(&d.info()) {
            Some((min, max)) => TextBuf::format(format_args!(
                "{} .. {}",
                Dur(min.max(Nanos::from_nanos(1))),
                Dur(max)
            )),
            None => TextBuf::format(format_args!("any future time")),
        };
        let how: TextBuf<256> = match note {
            Some(n) => TextBuf::format(format_args!("{}; {}", n.how.as_str(), n.irq.as_str())),
            None => match owner.cpu().filter(|c| c.index() > 0) {
                Some(c) => TextBuf::format(format_args!("set up on {c} as CPU 0's")),
                None => TextBuf::new(),
            },
        };
        println!(
            "  {} {:<15} {:>4}  {:<12} {:<25} {:<23} {:<11} {}",
            if matches!(owner, Owner::Cpu(_)) {
                "*"
            } else {
                " "
            },
            d.info().name,
            d.info().rating,
            FreqOrDash(d.info().frequency()),
            FeatureWords(d.info()),
            range.as_str(),
            role.as_str(),
            how.as_str(),
        );
    }
    for s in inv.skipped.iter().flatten() {
        println!("  not used: {s}");
    }
}

/// `tick`: the mode reached against what was asked, and what became of the
/// `clockevent=` / `clocksource=` overrides.
fn print_tick(k: &Kernel, inv: &Inventory, opts: &Options<'_>) {
    let st = TickState::of(k);
    let cfg = k.tick.config();
    println!(
        "tick      cpu0 on {}: {} (asked: hz={} nohz={} highres={}); broadcast: {}",
        st.device,
        st.mode,
        cfg.hz().get(),
        on_off(cfg.nohz()),
        on_off(cfg.highres()),
        k.tick.broadcast_device().unwrap_or("none"),
    );
    for i in (1..crate::embed::kernel::CPUS).filter(|&i| crate::arch::smp::ap_apic_id(i).is_some())
    {
        let cpu = clockevents::CpuId::new(i as u32);
        if let Some(info) = k.tick.cpu_info(cpu) {
            println!(
                "          {cpu} on {}: {}",
                info.device.unwrap_or("none"),
                info.mode
            );
        }
    }
    if cfg.wants_oneshot() && !st.mode.is_oneshot() {
        match st.reason {
            Some(r) => println!("          periodic although one-shot was asked for: {r}"),
            None if st.mode == tick::TickMode::NoDevice => {
                println!("          no tick device: nothing ticks (tests that need one fail)")
            }
            None => {}
        }
    }
    if let Some((name, found)) = inv.clockevent {
        if !found {
            println!(
                "          clockevent={}: no such device here, ignored",
                opts.clockevent.unwrap_or("")
            );
        } else {
            println!("          clockevent={name}: the tick device is restricted to it");
        }
    }
    if let Some((_, found)) = inv.clocksource {
        if !found {
            println!(
                "          clocksource={}: no such clocksource here, ignored",
                opts.clocksource.unwrap_or("")
            );
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// Prints the `CONFIG` line: what this boot reached, for `xtask test`.
pub fn print_config(k: &Kernel, inv: &Inventory, accel: Accel) {
    let st = TickState::of(k);
    let mut l = Line::config();
    l.field("accel", accel.as_str())
        .field("clocksource", st.clocksource)
        .field("tick", st.device)
        .field("mode", ModeWord(st.mode))
        .field("hz", st.hz)
        .field("broadcast", k.tick.broadcast_device().unwrap_or("none"))
        .field("reference", inv.reference.unwrap_or("none"));
    if let Some(r) = st.reason {
        l.text("periodic_reason", r);
    }
    if let Some(a) = apic::get() {
        let c = a.cpuid();
        l.field("apic", a.mode().as_str())
            .field("cpu_x2apic", c.x2apic as u8)
            .field("cpu_tsc_deadline", c.tsc_deadline as u8)
            .field("cpu_arat", c.arat as u8);
    }
    let mut devs: TextBuf<96> = TextBuf::new();
    for (_, d, _) in k.tick.devices().iter() {
        if !devs.as_str().is_empty() {
            let _ = fmt::Write::write_char(&mut devs, ',');
        }
        let _ = fmt::Write::write_str(&mut devs, d.info().name);
    }
    let mut css: TextBuf<96> = TextBuf::new();
    for e in k.tick.clocksources().iter() {
        if !css.as_str().is_empty() {
            let _ = fmt::Write::write_char(&mut css, ',');
        }
        let _ = fmt::Write::write_str(&mut css, e.name());
    }
    l.field(
        "devices",
        if devs.as_str().is_empty() {
            "none"
        } else {
            devs.as_str()
        },
    )
    .field("clocksources", css.as_str());
    if let Some((name, found)) = inv.clockevent {
        l.field("clockevent", if found { name } else { "missing" });
    }
    if let Some(ppm) = inv.lapic_error_ppm {
        l.field("lapic_cal_ppm", ppm);
    }
    if let Some((_, ppm)) = inv.tsc {
        l.field("tsc_cal_ppm", ppm);
    }
    println!("{}", l.as_str());
}
