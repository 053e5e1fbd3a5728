//! Starting the other CPUs (the application processors, APs) the MADT
//! lists: INIT-SIPI-SIPI (Intel SDM Vol. 3A §8.4.4, "MP Initialization
//! Example"; Linux `arch/x86/kernel/smpboot.c`, `wakeup_secondary_cpu_via_init`).
//!
//! ```text
//!   BSP                                         AP (APIC ID a)
//!   copy the trampoline to 0x8000 (below 1 MiB, page-aligned: SIPI vector 0x08)
//!   slots: CR3 (the boot page tables), stack, entry, index
//!   INIT ──────────────────────────────────────► reset, waits for SIPI
//!   10 ms
//!   SIPI 0x08 ─────────────────────────────────► 0x8000, real mode (16-bit)
//!   200 µs, SIPI again (if not yet up)            lgdt, CR0.PE ─► 32-bit
//!                                                 CR4.PAE, CR3, EFER.LME, CR0.PG ─► 64-bit
//!   wait ≤ 100 ms for `alive`  ◄──────────────── rsp = its stack; ap_entry(index)
//!   next AP                                        x2APIC on if the BSP's is; alive = APIC ID
//!                                                  warp check, own LAPIC, IDT;
//!                                                  idles with interrupts on
//! ```
//!
//! One AP is started at a time, the trampoline's slots filled for it. The
//! trampoline's page (and its GDT, which the AP keeps) is never reused.
//! An AP that does not answer within 100 ms is reported by APIC ID, and
//! the boot goes on with the CPUs that did.
//!
//! Each AP, once up, runs the TSC warp check with the BSP (Linux
//! `tsc_sync.c`, the `tsc` crate's `WarpCheck`, [`WARP_READS`] reads each,
//! interrupts off on both): a warp means the TSCs are not in step, and the
//! caller marks the TSC unstable.
//!
//! Then each AP hands itself to the embedding
//! ([`crate::embed::aps::ap_main`]): its own LAPIC timer registered with
//! the tick layer, and its idle loop.
//!
//! Which CPU code runs on ([`this_cpu`]) is read from the stack pointer:
//! every AP runs on its own stack here, the BSP on the boot stack, and
//! with no TSS an interrupt stays on the stack it arrives on.

use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use clocksource::Nanos;

use crate::platform::apic;

/// Where the trampoline runs: page 8, whose SIPI vector is 0x08.
pub const TRAMPOLINE: usize = 0x8000;
/// The most CPUs the guest starts (the BSP and 7 APs): the tick layer
/// keeps this many CPUs' state (a timer wheel of ~23 KiB each, built on the
/// boot stack and moved into its static).
pub const MAX_CPUS: usize = 8;
/// Each AP's stack.
const AP_STACK: usize = 64 * 1024;

global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 16
    .set TR, 0x8000
    .globl ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    movw %ax, %ss
    lgdtl (TR + (ap_tr_gdtr - ap_trampoline_start))
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $(TR + (ap_tr_32 - ap_trampoline_start))

    .code32
ap_tr_32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl (TR + (ap_tr_cr3 - ap_trampoline_start)), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80010000, %eax           /* PG | WP */
    movl %eax, %cr0
    ljmpl $0x08, $(TR + (ap_tr_64 - ap_trampoline_start))

    .code64
ap_tr_64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq (TR + (ap_tr_stack - ap_trampoline_start)), %rsp
    movl (TR + (ap_tr_index - ap_trampoline_start)), %edi
    movq (TR + (ap_tr_entry - ap_trampoline_start)), %rax
    callq *%rax
1:  cli
    hlt
    jmp 1b

    .balign 8
ap_tr_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF        /* 0x10: flat data */
    .quad 0x00CF9A000000FFFF        /* 0x18: 32-bit code */
ap_tr_gdt_end:
ap_tr_gdtr:
    .word ap_tr_gdt_end - ap_tr_gdt - 1
    .long TR + (ap_tr_gdt - ap_trampoline_start)
    .balign 8
    .globl ap_tr_cr3
ap_tr_cr3:
    .quad 0
    .globl ap_tr_stack
ap_tr_stack:
    .quad 0
    .globl ap_tr_entry
ap_tr_entry:
    .quad 0
    .globl ap_tr_index
ap_tr_index:
    .quad 0
    .globl ap_trampoline_end
ap_trampoline_end:
    .text
    "#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    static ap_tr_cr3: u8;
    static ap_tr_stack: u8;
    static ap_tr_entry: u8;
    static ap_tr_index: u8;
}

/// The APs' stacks: memory only the APs touch, through their `rsp`.
#[repr(C, align(16))]
struct Stacks(UnsafeCell<[[u8; AP_STACK]; MAX_CPUS - 1]>);

// SAFETY: Rust code never reads or writes the stacks; each AP uses its own.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new([[0; AP_STACK]; MAX_CPUS - 1]));

/// The CPU index (0: the BSP; `i`: the `i`-th AP started) of the code
/// that calls this, from its stack pointer: an AP's stack is the `i`-th
/// of [`STACKS`]; anything else is the boot stack. Interrupt handlers run
/// on the stack they interrupted (no TSS, no IST), so the answer holds
/// there too.
#[inline]
pub fn this_cpu() -> usize {
    let rsp: usize;
    // SAFETY: reads the stack pointer into a register; no memory access.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    let base = STACKS.0.get() as usize;
    match rsp.checked_sub(base) {
        Some(off) if off < (MAX_CPUS - 1) * AP_STACK => off / AP_STACK + 1,
        _ => 0,
    }
}

/// The APIC ID of the BSP, as [`start_aps`] found it (`u32::MAX`: not run).
static BSP_ID: AtomicU32 = AtomicU32::new(u32::MAX);

/// The APIC ID of CPU `index` (0: the BSP), if it is up.
pub fn apic_id(index: usize) -> Option<u32> {
    if index == 0 {
        let id = BSP_ID.load(Ordering::Acquire);
        return if id == u32::MAX {
            apic::get().map(|l| l.current_id())
        } else {
            Some(id)
        };
    }
    ap_apic_id(index)
}

/// Per AP index: 0 until it runs, then its APIC ID + 1.
static ALIVE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// TSC reads each side of a warp check makes.
pub const WARP_READS: u32 = 10_000;

/// The AP index whose warp check may start (set by the BSP; 0: none).
#[cfg(feature = "tsc")]
static WARP_GO: AtomicU32 = AtomicU32::new(0);
/// The AP index whose warp check is done (set by the AP).
#[cfg(feature = "tsc")]
static WARP_DONE: AtomicU32 = AtomicU32::new(0);
/// Per AP index: reads with a warp, and the largest warp, from its check
/// (`u64::MAX`: not run).
static WARPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(u64::MAX) }; MAX_CPUS];
static MAX_WARP: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// The warp check's shared state for the AP running now.
#[cfg(feature = "tsc")]
fn warp_state() -> &'static tsc::WarpCheck {
    static CHECKS: [tsc::WarpCheck; MAX_CPUS] = [const { tsc::WarpCheck::new() }; MAX_CPUS];
    let i = (WARP_GO.load(Ordering::Acquire) as usize).min(MAX_CPUS - 1);
    &CHECKS[i]
}

/// The AP's side of the warp check, once the BSP says go.
fn ap_warp_check(index: u32) {
    #[cfg(feature = "tsc")]
    {
        let mut spins = 0u64;
        while WARP_GO.load(Ordering::Acquire) != index {
            core::hint::spin_loop();
            spins += 1;
            if spins > 1 << 32 {
                return; // the BSP gave up on us
            }
        }
        warp_state().run(WARP_READS, crate::arch::cpu::rdtsc);
        WARP_DONE.store(index, Ordering::Release);
    }
    #[cfg(not(feature = "tsc"))]
    let _ = index;
}

/// The BSP's side of the warp check with AP `index` (up), interrupts off.
/// Returns `(warps, max_warp)`, `None` if the AP did not finish.
fn bsp_warp_check(index: usize) -> Option<(u64, u64)> {
    #[cfg(feature = "tsc")]
    {
        let done = crate::arch::cpu::without_interrupts(|| {
            WARP_GO.store(index as u32, Ordering::Release);
            warp_state().run(WARP_READS, crate::arch::cpu::rdtsc);
            // 1 s: where `rdtsc` traps (a software KVM), 10 000 reads take
            // well over 100 ms.
            let deadline = crate::embed::kernel::now().saturating_add(Nanos::from_secs(1));
            while WARP_DONE.load(Ordering::Acquire) != index as u32 {
                if crate::embed::kernel::now() >= deadline {
                    return false;
                }
                core::hint::spin_loop();
            }
            true
        });
        if !done {
            return None;
        }
        let r = warp_state().result();
        WARPS[index].store(r.warps, Ordering::Relaxed);
        MAX_WARP[index].store(r.max_warp.get(), Ordering::Relaxed);
        Some((r.warps, r.max_warp.get()))
    }
    #[cfg(not(feature = "tsc"))]
    {
        let _ = index;
        None
    }
}

/// AP `index`'s warp check: `(warps, max_warp in cycles)`, `None` if it
/// did not run (no TSC support built, or the AP is not up).
pub fn warp_result(index: usize) -> Option<(u64, u64)> {
    let w = WARPS.get(index)?.load(Ordering::Relaxed);
    (w != u64::MAX).then(|| (w, MAX_WARP[index].load(Ordering::Relaxed)))
}

/// The last [`start_aps`]' report (none: nothing started).
static REPORT: spin::Once<SmpReport> = spin::Once::new();

/// What [`start_aps`] did, if it ran (a one-CPU machine never starts it).
pub fn report() -> Option<SmpReport> {
    REPORT.get().copied()
}

/// What starting the APs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmpReport {
    /// CPUs running: the BSP and the APs that answered.
    pub up: u32,
    /// CPUs the MADT lists (each APIC ID once).
    pub listed: u32,
    /// The APIC ID of the first AP that did not answer, if any.
    pub first_missing: Option<u32>,
    /// APs not started: past [`MAX_CPUS`].
    pub skipped: u32,
    /// APs whose TSC warp check found a warp.
    pub warped: u32,
    /// The largest warp any check found, in TSC cycles.
    pub max_warp: u64,
}

/// The AP's first Rust code: says it is alive and halts.
extern "sysv64" fn ap_entry(index: u32) -> ! {
    if let Some(l) = apic::get() {
        if l.mode() == apic::Mode::X2Apic {
            // Each CPU's APIC comes out of INIT in xAPIC mode; the BSP's
            // register layer is x2APIC's, so this one must be too.
            let _ = lapic::enable_x2apic(l.msrs());
        }
    }
    let id = apic::get().map_or(u32::MAX - 1, apic::LocalApic::current_id);
    let i = (index as usize).min(MAX_CPUS - 1);
    ALIVE[i].store(id.wrapping_add(1), Ordering::Release);
    ap_warp_check(i as u32);
    // Its own local APIC programmed, the shared IDT loaded: the embedding
    // registers its LAPIC timer and runs its idle loop, with interrupts on.
    if let Some(l) = apic::get() {
        l.program_this_cpu();
    }
    crate::arch::idt::init();
    crate::embed::aps::ap_main(i)
}

/// The vector the BSP pings each AP on ([`ping_aps`]).
pub const PING_VECTOR: u8 = 0x41;

/// Per AP index: pings taken.
static PINGS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

fn ping(_vector: u8) {
    if let Some(l) = apic::get() {
        let id = l.current_id();
        if let Some(i) = (1..MAX_CPUS).find(|&i| ap_apic_id(i) == Some(id)) {
            PINGS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
    apic::eoi();
}

/// Sends each AP that is up `n` fixed IPIs on [`PING_VECTOR`], one at a
/// time, each waited for (≤ 10 ms); returns how many of them were taken.
pub fn ping_aps(n: u32) -> u32 {
    if crate::arch::interrupts::register(PING_VECTOR, ping).is_err() {
        log::warn!("smp: the ping vector {PING_VECTOR:#x} is taken");
        return 0;
    }
    let mut taken = 0;
    for (i, pings) in PINGS.iter().enumerate().skip(1) {
        let Some(id) = ap_apic_id(i) else { continue };
        for _ in 0..n {
            let before = pings.load(Ordering::Relaxed);
            apic::send_fixed(id, PING_VECTOR);
            let deadline = crate::embed::kernel::now().saturating_add(Nanos::from_millis(10));
            while pings.load(Ordering::Relaxed) == before && crate::embed::kernel::now() < deadline
            {
                core::hint::spin_loop();
            }
            taken += u32::from(pings.load(Ordering::Relaxed) != before);
        }
    }
    crate::arch::interrupts::unregister(PING_VECTOR);
    taken
}

/// Busy-waits `d` on the monotonic clock (the kernel is installed).
fn wait(d: Nanos) {
    let end = crate::embed::kernel::now().saturating_add(d);
    while crate::embed::kernel::now() < end {
        core::hint::spin_loop();
    }
}

/// Starts every AP of `apic_ids` (the BSP, `bsp_id`, is skipped), one at a
/// time. Needs the local APIC up, the kernel installed (for the delays) and
/// the page at [`TRAMPOLINE`] to be RAM nothing else uses.
pub fn start_aps(apic_ids: &[u32], bsp_id: u32) -> SmpReport {
    BSP_ID.store(bsp_id, Ordering::Release);
    let mut report = SmpReport {
        up: 1,
        listed: (apic_ids.len() as u32).max(1),
        ..SmpReport::default()
    };
    let aps = apic_ids.iter().copied().filter(|&id| id != bsp_id);
    if apic_ids.len() <= 1 {
        return report;
    }
    // The trampoline's bounds and slots: symbols of one section of this
    // image, identity-mapped; only their addresses are taken.
    let (start, end, slots) = (
        core::ptr::addr_of!(ap_trampoline_start) as usize,
        core::ptr::addr_of!(ap_trampoline_end) as usize,
        [
            core::ptr::addr_of!(ap_tr_cr3) as usize,
            core::ptr::addr_of!(ap_tr_stack) as usize,
            core::ptr::addr_of!(ap_tr_entry) as usize,
            core::ptr::addr_of!(ap_tr_index) as usize,
        ],
    );
    let at = |slot: usize| (TRAMPOLINE + (slot - start)) as *mut u64;
    let cr3 = x86_64::registers::control::Cr3::read()
        .0
        .start_address()
        .as_u64();
    // SAFETY: page 8 (0x8000..0x9000) is RAM below 1 MiB that the loader
    // and this kernel leave unused (the image loads at 1 MiB and up; the
    // caller checked the memory map), identity-mapped and writable; the
    // trampoline is smaller than the page.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE as *mut u8, end - start);
        at(slots[0]).write_volatile(cr3);
        at(slots[2]).write_volatile(ap_entry as *const () as u64);
    }
    for (k, id) in aps.enumerate() {
        let index = k + 1;
        if index >= MAX_CPUS {
            report.skipped += 1;
            continue;
        }
        let top = STACKS.0.get() as usize + index * AP_STACK;
        // SAFETY: the slots are in the page written above; no AP runs the
        // trampoline now (the previous one answered or was given up on,
        // and is halted or never left INIT).
        unsafe {
            at(slots[1]).write_volatile(top as u64);
            at(slots[3]).write_volatile(index as u64);
        }
        apic::send_init(id);
        wait(Nanos::from_millis(10));
        apic::send_startup(id, (TRAMPOLINE >> 12) as u8);
        wait(Nanos::from_micros(200));
        if ALIVE[index].load(Ordering::Acquire) == 0 {
            apic::send_startup(id, (TRAMPOLINE >> 12) as u8);
        }
        let deadline = crate::embed::kernel::now().saturating_add(Nanos::from_millis(100));
        while ALIVE[index].load(Ordering::Acquire) == 0 && crate::embed::kernel::now() < deadline {
            core::hint::spin_loop();
        }
        match ALIVE[index].load(Ordering::Acquire) {
            0 => {
                log::error!("smp: CPU with APIC ID {id} did not come up (100 ms)");
                report.first_missing.get_or_insert(id);
            }
            v => {
                if v - 1 != id {
                    log::warn!("smp: AP {index} says APIC ID {}, the MADT {id}", v - 1);
                }
                report.up += 1;
                match bsp_warp_check(index) {
                    Some((0, _)) => {}
                    Some((warps, max)) => {
                        log::warn!(
                            "smp: TSC warp between the BSP and APIC ID {id}: {warps} of {} reads behind, by up to {max} cycles",
                            2 * WARP_READS
                        );
                        report.warped += 1;
                        report.max_warp = report.max_warp.max(max);
                    }
                    None => {}
                }
            }
        }
    }
    REPORT.call_once(|| report);
    report
}

/// The APIC ID AP `index` reported (`None`: not up).
pub fn ap_apic_id(index: usize) -> Option<u32> {
    ALIVE
        .get(index)
        .map(|a| a.load(Ordering::Acquire))
        .filter(|&v| v != 0)
        .map(|v| v - 1)
}
