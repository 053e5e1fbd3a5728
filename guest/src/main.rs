//! The guest kernel's binary: `kmain`, called by the PVH boot code
//! (`guest::arch::boot`), and the panic handler.
//!
//! Built only for `x86_64-unknown-none` (`cargo xtask build`); on the host
//! this binary is a stub that says so, so that `cargo build --workspace`
//! and `cargo test --workspace` still work.
//!
//! ```text
//!  kmain: serial + log → boot info (start info, command line, RSDP)
//!         → IDT, PIC remapped and masked
//!         → interrupt self-test: int3 returns; `int 0x40` reaches a
//!           registered handler (skipped under KVM, see below)
//!         → test=harness-* → end the run that way (no bring-up)
//!         → firmware (ACPI) → bring-up with interrupts off → install, sti
//!         → boot table, CONFIG line
//!         → test=<names> → each test's RESULT line → exit pass unless one failed
//!           no test=     → the NO_HZ idle demonstration → exit pass
//! ```
//!
//! `test=harness-pass|harness-panic|harness-page-fault|harness-triple-fault|
//! harness-hang` end the run in each way the host runner must classify
//! (pass; guest fail; guest fail; reset; timeout), to test the runner.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::panic::PanicInfo;

    use guest::arch::cmdline::{self, Options};
    use guest::arch::exit::{exit, ExitCode};
    use guest::embed::sources::Inventory;
    use guest::platform::firmware::Platform;
    use guest::rig::expect::LossBound;
    use guest::rig::result::Verdict;
    use guest::{
        arch::boot, arch::cpu, arch::idt, arch::interrupts, arch::pvh, arch::serial, arch::smp,
        embed::kernel, embed::sources, platform::firmware, platform::pic, println, rig::suite,
        rig::table,
    };
    use log::{error, info, warn, LevelFilter};
    use raw_cpuid::Hypervisor;

    /// The vector the boot self-test registers a handler on.
    const SELF_TEST_VECTOR: u8 = 0x40;

    /// The entry from `guest::arch::boot`: `start_info` is the physical address
    /// of the PVH `hvm_start_info`. Each step is one function below, in the
    /// order of the diagram in the module docs.
    #[no_mangle]
    extern "sysv64" fn kmain(start_info: u32) -> ! {
        serial::init(LevelFilter::Info);
        println!(
            "dynticks guest {} (PVH boot, start_info at {start_info:#x})",
            env!("CARGO_PKG_VERSION")
        );
        let boot = boot_info(start_info);
        let parsed = cmdline::parse(boot.cmdline());
        report_options(&parsed);
        interrupts_up();

        let options = parsed.options;
        for test in options.tests() {
            harness_check(test);
        }

        let platform = firmware::discover(boot.rsdp);
        let inventory = bring_up(&platform, &options);
        start_aps(boot, &platform);
        let accel = suite::Accel::detect();
        kernel::with(|k| {
            table::print(k, &inventory, &platform, &options, accel);
            table::print_config(k, &inventory, accel);
        });
        if kernel::early_interrupts() > 0 {
            warn!(
                "{} timer interrupts arrived before the kernel was installed (dropped)",
                kernel::early_interrupts()
            );
        }

        let ctx = suite_context(&inventory, &options, &platform, accel);
        refuse_a_missing_clockevent(&inventory, &options);
        if options.test.is_some() {
            run_tests(&ctx, &options);
        }
        if !suite::demo::run() {
            error!("no tick device: the NO_HZ demonstration cannot run");
            exit(ExitCode::Fail);
        }
        println!("boot: ok");
        exit(ExitCode::Pass)
    }

    /// The loader's start info, checked and reported; memory made
    /// write-back where the firmware left the MTRRs off.
    fn boot_info(start_info: u32) -> &'static boot::BootInfo {
        // SAFETY: `start_info` is what the PVH loader passed in %ebx, handed
        // on unchanged by the boot code; memory is identity-mapped.
        let boot = match unsafe { boot::init(start_info) } {
            Ok(boot) => boot,
            Err(e) => {
                error!("{e}");
                exit(ExitCode::Fail)
            }
        };
        report_boot_info(boot);
        match cpu::ensure_write_back() {
            cpu::Mtrrs::Enabled(def) => {
                info!("MTRRs enabled by firmware (default type {:#x})", def)
            }
            cpu::Mtrrs::EnabledHere(old) => warn!(
                "firmware left the MTRRs disabled (MTRRdefType {old:#x}: all memory uncached); \
                 enabled them with default type write-back (MMIO stays uncached by PAT)"
            ),
            cpu::Mtrrs::Absent => info!("no MTRRs (CPUID.01H:EDX[12] clear)"),
        }
        boot
    }

    /// The options understood and the words ignored.
    fn report_options(parsed: &cmdline::Parsed<'_>) {
        info!("options: {}", parsed.options);
        for warning in parsed.warnings.iter() {
            warn!("cmdline: {warning}");
        }
        if parsed.warnings.dropped() > 0 {
            warn!(
                "cmdline: {} more warnings not shown",
                parsed.warnings.dropped()
            );
        }
    }

    /// IDT and PIC, then the interrupt self-test.
    fn interrupts_up() {
        idt::init();
        pic::remap_and_mask();
        info!("IDT loaded, PIC remapped and masked");

        if matches!(cpu::hypervisor(), Some(Hypervisor::KVM)) {
            // Some KVM implementations (PVM, the software KVM of sandboxed
            // hosts) fail on any `int n` with "KVM internal error: emulation
            // failure", stopping the VM. External interrupts and exceptions
            // work there; TCG runs this test.
            warn!("interrupt self-test skipped under KVM (`int3`/`int n` may not be emulated)");
        } else if let Err(what) = interrupt_round_trips() {
            error!("interrupt self-test failed: {what}");
            exit(ExitCode::Fail);
        } else {
            info!("interrupt self-test passed (#BP returned, vector {SELF_TEST_VECTOR:#x} dispatched)");
        }
    }

    /// The embedding's bring-up ([`sources::bring_up`], interrupts off),
    /// the kernel installed in its static, then interrupts on.
    fn bring_up(platform: &Platform, options: &Options<'_>) -> Inventory {
        let brought_up = cpu::without_interrupts(|| sources::bring_up(platform, options));
        let inventory = match brought_up {
            Ok((k, inv)) => {
                kernel::install(k);
                if options.idle_deep {
                    kernel::set_idle_depth(tick::IdleDepth::Deep);
                    info!("idle=deep: every CPU idles as in C3 (C3STOP devices off, broadcast wakes it)");
                }
                inv
            }
            Err(e) => {
                error!("bring-up failed: {e}");
                exit(ExitCode::Fail);
            }
        };
        cpu::enable_interrupts();
        info!(
            "boot stack: {} KiB of {} KiB used (high-water mark)",
            boot::stack_high_water().div_ceil(1024),
            boot::STACK_SIZE / 1024
        );
        inventory
    }

    /// Starts the other CPUs the MADT lists ([`smp::start_aps`]), if the
    /// trampoline's page is RAM; they come up, report and halt.
    fn start_aps(boot: &boot::BootInfo, platform: &Platform) {
        if platform.apic_ids.count() <= 1 {
            return;
        }
        let page = smp::TRAMPOLINE as u64;
        // SAFETY: as in `report_boot_info`: the loader's structure is intact.
        let map = unsafe { pvh::memory_map(&boot.start_info) };
        let ram = map.into_iter().any(|r| {
            r.kind == pvh::MemoryKind::Ram && r.base <= page && page + 4096 <= r.base + r.size
        });
        if !ram {
            warn!("smp: page {page:#x} is not RAM in the memory map: the other CPUs stay down");
            return;
        }
        let bsp = guest::platform::apic::get().map_or(0, |l| l.current_id());
        let r = smp::start_aps(platform.apic_ids.as_slice(), bsp);
        // Each AP registers its own tick device as it comes up: wait for
        // them (≤ 100 ms each), so the boot table shows every CPU's.
        for i in (1..smp::MAX_CPUS).filter(|&i| smp::ap_apic_id(i).is_some()) {
            let deadline = kernel::now().saturating_add(clocksource::Nanos::from_millis(100));
            while !guest::embed::aps::ready(i) && kernel::now() < deadline {
                core::hint::spin_loop();
            }
            if !guest::embed::aps::ready(i) {
                warn!("smp: CPU {i} did not register its tick device within 100 ms");
            }
        }
        info!(
            "smp: {} of {} CPUs up (BSP APIC ID {bsp}){}",
            r.up,
            r.listed,
            if r.skipped > 0 {
                " — some past the guest's limit not started"
            } else {
                ""
            }
        );
        if let Some(id) = r.first_missing {
            error!(
                "smp: the CPU with APIC ID {id} (and any after it counted above) did not come up"
            );
        }
        if r.warped > 0 {
            // Linux `mark_tsc_unstable("check_tsc_sync_source failed")`.
            let marked = kernel::with(|k| k.tick.mark_clocksource_unstable("tsc")).flatten();
            warn!(
                "smp: TSC warp on {} CPU(s), up to {} cycles: tsc marked unstable ({marked:?})",
                r.warped, r.max_warp
            );
        }
    }

    /// What the suite's tests are given, with the loss bound for how fast
    /// this machine runs.
    fn suite_context<'a>(
        inventory: &'a Inventory,
        options: &'a Options<'a>,
        platform: &'a Platform,
        accel: suite::Accel,
    ) -> suite::Ctx<'a> {
        let (speed, spent) = suite::Speed::measure();
        info!("instruction speed: {speed:?} (200k multiply-adds in {spent})");
        suite::Ctx {
            inv: inventory,
            opts: options,
            platform,
            accel,
            loss: match (accel, speed) {
                (suite::Accel::Kvm, suite::Speed::Fast) => LossBound::Native,
                (_, suite::Speed::Slow) => LossBound::Emulated,
                _ => LossBound::Translated,
            },
        }
    }

    /// `clockevent=` named a tick device that is not here: every test of
    /// this boot would measure another one, so each fails, said once.
    fn refuse_a_missing_clockevent(inventory: &Inventory, options: &Options<'_>) {
        let (Some((_, false)), Some(wanted)) = (inventory.clockevent, options.clockevent) else {
            return;
        };
        let mut failed = 0;
        for n in suite::named(options) {
            failed += 1;
            suite::cannot_run(
                n,
                Verdict::Fail,
                format_args!("clockevent={wanted} requested, no such device here"),
            );
        }
        if failed > 0 {
            exit(ExitCode::Fail);
        }
    }

    /// `test=<names>`: each test's RESULT line, then the count; passes
    /// unless one failed or was unknown.
    fn run_tests(ctx: &suite::Ctx<'_>, options: &Options<'_>) -> ! {
        let mut failed = 0;
        let mut ran = 0;
        for n in suite::named(options) {
            ran += 1;
            match suite::run(n, ctx) {
                Some(Verdict::Fail) => failed += 1,
                Some(_) => {}
                None => {
                    error!("test={n}: no such test");
                    failed += 1;
                }
            }
        }
        println!("tests: {ran} run, {failed} failed");
        exit(if failed == 0 {
            ExitCode::Pass
        } else {
            ExitCode::Fail
        })
    }

    fn report_boot_info(boot: &boot::BootInfo) {
        let si = &boot.start_info;
        info!("hvm_start_info v{} flags={:#x}", si.version, si.flags);
        info!("cmdline: {:?}", boot.cmdline());
        if let Some(problem) = boot.cmdline_problem() {
            warn!("cmdline: {problem}");
        }
        if let Some(word) = boot.cut_word() {
            warn!("cmdline: `{word}`, the start of a word the length limit cut, dropped");
        }
        match boot.rsdp {
            Some(rsdp) => info!("ACPI RSDP at {rsdp}"),
            None => warn!("no ACPI RSDP from the loader"),
        }
        // SAFETY: `si` was read by `boot::init` from the loader's structure,
        // which is still intact (nothing writes below the kernel image).
        let ram = pvh::ram_bytes(unsafe { pvh::memory_map(si) });
        info!("memory map: {} KiB of RAM", ram / 1024);
    }

    static SELF_TEST_HITS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

    fn self_test_handler(vector: u8) {
        if vector == SELF_TEST_VECTOR {
            SELF_TEST_HITS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Proves the IDT → stub → dispatch → `iretq` path: an `int3` that
    /// returns, and a software interrupt reaching a registered handler.
    fn interrupt_round_trips() -> Result<(), &'static str> {
        let before = interrupts::breakpoint_count();
        x86_64::instructions::interrupts::int3();
        if interrupts::breakpoint_count() != before + 1 {
            return Err("#BP handler did not run");
        }
        interrupts::register(SELF_TEST_VECTOR, self_test_handler)
            .map_err(|_| "could not register the self-test vector")?;
        // SAFETY: vector 0x40 has a handler that only counts; a software
        // interrupt pushes no error code, as the stub expects.
        unsafe { core::arch::asm!("int {v}", v = const SELF_TEST_VECTOR) };
        let hits = SELF_TEST_HITS.load(core::sync::atomic::Ordering::Relaxed);
        interrupts::unregister(SELF_TEST_VECTOR);
        if hits != 1 {
            return Err("registered handler did not run exactly once");
        }
        Ok(())
    }

    /// `test=harness-*`: ends the run in each way the host must read as a
    /// failure, so the runner's status mapping can itself be tested.
    /// Returns only for other names.
    fn harness_check(test: &str) {
        match test {
            "harness-pass" => exit(ExitCode::Pass),
            "harness-panic" => panic!("harness-panic requested"),
            "harness-page-fault" => {
                // The boot page tables map 0–4 GiB only.
                let unmapped = 0x1_0000_0000usize as *const u64;
                // SAFETY: not safe by design: the read faults (#PF), and the
                // exception handler ends the run.
                let _ = unsafe { unmapped.read_volatile() };
            }
            "harness-triple-fault" => {
                static EMPTY: x86_64::structures::DescriptorTablePointer =
                    x86_64::structures::DescriptorTablePointer {
                        limit: 0,
                        base: x86_64::VirtAddr::zero(),
                    };
                // SAFETY: not safe by design: with an empty IDT the #UD
                // cannot be delivered, nor the #DF, so the CPU resets.
                unsafe {
                    x86_64::instructions::tables::lidt(&EMPTY);
                    core::arch::asm!("ud2");
                }
            }
            "harness-hang" => cpu::halt_forever(),
            _ => return,
        }
        error!("test={test}: survived what should have ended the run");
        exit(ExitCode::Fail)
    }

    #[panic_handler]
    fn panic(info: &PanicInfo<'_>) -> ! {
        cpu::disable_interrupts();
        serial::emergency_drain();
        serial::emergency_print(format_args!("\nPANIC: {info}\n"));
        exit(ExitCode::Fail)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "guest is a bare-metal kernel: build it for x86_64-unknown-none and boot it \
         with `cargo xtask run`"
    );
    std::process::exit(2);
}
