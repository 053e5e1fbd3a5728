//! The guest kernel's binary: `kmain`, called by the PVH boot code
//! (`guest::boot`), and the panic handler.
//!
//! Built only for `x86_64-unknown-none` (`cargo xtask build`); on the host
//! this binary is a stub that says so, so that `cargo build --workspace`
//! and `cargo test --workspace` still work.
//!
//! ```text
//!  kmain: serial + log → boot info (start info, command line, RSDP)
//!         → IDT, PIC remapped and masked, sti
//!         → interrupt self-test: int3 returns; `int 0x40` reaches a
//!           registered handler (skipped under KVM, see below)
//!         → test=<name> → exit (pass / fail)
//! ```
//!
//! `test=harness-pass|harness-panic|harness-page-fault|harness-triple-fault|
//! harness-hang` end the run in each way the host runner must classify
//! (pass; guest fail; guest fail; reset; timeout), to test the runner.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::panic::PanicInfo;

    use guest::cmdline;
    use guest::exit::{exit, ExitCode};
    use guest::{boot, cpu, idt, interrupts, pic, println, pvh, serial};
    use log::{error, info, warn, LevelFilter};
    use raw_cpuid::Hypervisor;

    /// The vector the boot self-test registers a handler on.
    const SELF_TEST_VECTOR: u8 = 0x40;

    /// The entry from `guest::boot`: `start_info` is the physical address
    /// of the PVH `hvm_start_info`.
    #[no_mangle]
    extern "sysv64" fn kmain(start_info: u32) -> ! {
        serial::init(LevelFilter::Info);
        println!(
            "dynticks guest {} (PVH boot, start_info at {start_info:#x})",
            env!("CARGO_PKG_VERSION")
        );

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

        let parsed = cmdline::parse(boot.cmdline());
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

        idt::init();
        pic::remap_and_mask();
        cpu::enable_interrupts();
        info!("IDT loaded, PIC remapped and masked, interrupts enabled");

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

        if let Some(test) = parsed.options.test {
            harness_check(test);
            error!("test={test}: no such test");
            exit(ExitCode::Fail);
        }
        println!("boot: ok");
        exit(ExitCode::Pass)
    }

    fn report_boot_info(boot: &boot::BootInfo) {
        let si = &boot.start_info;
        info!("hvm_start_info v{} flags={:#x}", si.version, si.flags);
        info!("cmdline: {:?}", boot.cmdline());
        if let Some(problem) = boot.cmdline_problem() {
            warn!("cmdline: {problem}");
        }
        match boot.rsdp {
            Some(rsdp) => info!("ACPI RSDP at {rsdp}"),
            None => warn!("no ACPI RSDP from the loader"),
        }
        // SAFETY: `si` was read by `boot::init` from the loader's structure,
        // which is still intact (nothing writes below the kernel image).
        let ram: u64 = unsafe { pvh::memory_map(si) }
            .filter(|r| r.kind == pvh::MemoryKind::Ram)
            .map(|r| r.size)
            .sum();
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
