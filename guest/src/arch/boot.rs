//! From the PVH entry to `kmain`, and what the loader told us.
//!
//! # How the machine gets to Rust
//!
//! QEMU (`-kernel guest.elf`, hw/i386/x86.c) loads each `PT_LOAD` segment at
//! its physical address, reads the entry point from the Xen
//! `PHYS32_ENTRY` note (type 18, name "Xen", an 8-byte descriptor for
//! ELF64, in a `PT_NOTE` segment) and its firmware jumps there in 32-bit
//! protected mode: paging off, flat segments, interrupts off, `%ebx` = the
//! physical address of the `hvm_start_info`, no stack.
//!
//! ```text
//!  pvh_start32 (.code32)                         pvh_start64 (.code64)
//!   zero .bss (page tables, stack)                 data segments = 0x10
//!   PML4[0] → PDPT[0..4] → 4 PDs                    rsp = top of 1 MiB stack
//!   2048 × 2 MiB pages, phys == virt, 0–4 GiB       edi = ebx (start_info)
//!   3–4 GiB (MMIO: IOAPIC, HPET, LAPIC): PCD|PWT    call kmain → never returns
//!   CR4.PAE, CR3, EFER.LME, CR0.PG|WP
//!   lgdt, ljmp 0x08:pvh_start64 ───────────────►
//! ```
//!
//! `%ebx` is kept untouched from entry to the call (the code only uses
//! `eax`, `ecx`, `edx` and `edi`). The GDT has a 64-bit code segment (0x08)
//! and a data segment (0x10), no TSS: an exception on a broken stack
//! (a double fault) therefore ends in a triple fault, which the host reads
//! as a failure. NX is not enabled (no page uses it).
//!
//! The binary must define the function the entry calls:
//!
//! ```text
//! #[no_mangle]
//! extern "sysv64" fn kmain(start_info: u32) -> !
//! ```

use core::arch::global_asm;
use core::fmt;

use crate::arch::cmdline;
use crate::arch::phys::IdentityMap;
use crate::arch::pvh::{self, PhysAddr, StartInfo, StartInfoError};

/// Bytes of the boot stack (in `.bss`).
/// 4 MiB: the kernel state (the tick system for 8 CPUs, ~190 KiB with each
/// CPU's timer wheel; the timer slots are a static of their own) is built
/// on the stack and moved into its static, several copies deep (~1.3 MiB
/// measured); the tests keep fixed arrays there too. [`stack_high_water`]
/// reports the deepest use (the boot log prints it).
pub const STACK_SIZE: usize = 4 * 1024 * 1024;

global_asm!(
    r#"
    /* Xen ELF note: XEN_ELFNOTE_PHYS32_ENTRY = 18, descriptor = entry. */
    .section .note.Xen, "a", @note
    .balign 4
    .long .Lxen_name_end - .Lxen_name   /* namesz */
    .long .Lxen_desc_end - .Lxen_desc   /* descsz: 8 for ELF64 */
    .long 18                            /* type */
.Lxen_name:
    .asciz "Xen"
.Lxen_name_end:
    .balign 4
.Lxen_desc:
    .quad pvh_start32
.Lxen_desc_end:
    .balign 4

    .section .text.boot32, "ax", @progbits
    .code32
    .globl pvh_start32
    .type pvh_start32, @function
pvh_start32:
    cli
    cld

    /* Zero .bss: the page tables and the stack live there. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    /* PML4[0] -> PDPT (present, writable). */
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4

    /* PDPT[i] -> PD i, i = 0..4: one PD per GiB. */
    xorl %ecx, %ecx
.Lpdpt_loop:
    movl %ecx, %eax
    shll $12, %eax
    addl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt(, %ecx, 8)
    incl %ecx
    cmpl $4, %ecx
    jb .Lpdpt_loop

    /* PD entry i maps 2 MiB at i << 21: present, writable, PS. From 3 GiB
       (entry 1536) on, also PCD|PWT: the MMIO of the IOAPIC (0xFEC00000),
       HPET (0xFED00000) and LAPIC (0xFEE00000) is uncached. */
    xorl %ecx, %ecx
.Lpd_loop:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb .Lpd_cached
    orl $0x18, %eax
.Lpd_cached:
    movl %eax, boot_pd(, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb .Lpd_loop

    /* CR4.PAE, CR3, EFER.LME, then CR0.PG (with WP) turns long mode on. */
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $pvh_start64

    .code64
pvh_start64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %ebx, %edi
    call kmain
.Lhang:
    cli
    hlt
    jmp .Lhang
    .size pvh_start32, . - pvh_start32

    /* Null, 64-bit code (0x08), data (0x10); accessed bits preset so the
       CPU never writes to the table. */
    .section .rodata.boot_gdt, "a", @progbits
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4 * 4096

    .section .bss.boot_stack, "aw", @nobits
    .balign 16
    .globl boot_stack_bottom
boot_stack_bottom:
    .skip {stack_size}
    .globl boot_stack_top
boot_stack_top:
"#,
    stack_size = const STACK_SIZE,
    options(att_syntax)
);

extern "C" {
    static boot_stack_bottom: u8;
}

/// The most bytes of the boot stack ever used: the stack starts zeroed
/// (it is in `.bss`) and grows down, so the lowest non-zero byte marks the
/// deepest point reached (a conservative estimate: a frame that wrote only
/// zeros is not seen).
pub fn stack_high_water() -> usize {
    let bottom = core::ptr::addr_of!(boot_stack_bottom);
    let untouched = (0..STACK_SIZE)
        // SAFETY: `bottom .. bottom + STACK_SIZE` is the boot stack, mapped
        // and readable; bytes below the current stack pointer are not in
        // use, and reading a byte has no side effect.
        .take_while(|&i| unsafe { bottom.add(i).read_volatile() } == 0)
        .count();
    STACK_SIZE - untouched
}

/// The longest command line kept; a longer one is cut (and reported).
pub const CMDLINE_MAX: usize = 2048;

/// What the loader told the kernel, read once at boot.
#[derive(Debug)]
pub struct BootInfo {
    /// The parsed `hvm_start_info`.
    pub start_info: StartInfo,
    /// The ACPI RSDP's physical address, if the loader gave one.
    pub rsdp: Option<PhysAddr>,
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    cmdline_problem: Option<CmdlineProblem>,
    /// The bytes of the word the length limit cut in two (dropped).
    cut_word: core::ops::Range<usize>,
}

/// Why the command line is not exactly what the loader passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineProblem {
    /// It was longer than [`CMDLINE_MAX`] and was cut after its last whole
    /// word (a word the limit went through is dropped:
    /// [`cmdline::whole_words`]).
    Truncated,
    /// Its address is not in mapped memory: there is no command line.
    Unreadable(pvh::CmdlineError),
    /// It was not UTF-8; only the part before byte `valid_up_to` is kept.
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
}

impl fmt::Display for CmdlineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineProblem::Truncated => write!(
                f,
                "longer than {CMDLINE_MAX} bytes, cut after its last whole word"
            ),
            CmdlineProblem::Unreadable(e) => write!(f, "{e}"),
            CmdlineProblem::NotUtf8 { valid_up_to } => {
                write!(f, "not UTF-8 after byte {valid_up_to}, cut there")
            }
        }
    }
}

impl BootInfo {
    /// The command line (a copy, so it stays valid whatever the loader's
    /// memory becomes).
    pub fn cmdline(&self) -> &str {
        let bytes = &self.cmdline[..self.cmdline_len];
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            // Cannot happen: `init` keeps only the valid prefix.
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Whether the command line had to be cut.
    pub fn cmdline_problem(&self) -> Option<CmdlineProblem> {
        self.cmdline_problem
    }

    /// What was left of the word the length limit cut in two, which was
    /// dropped (not applied); `None` if the cut fell between words.
    pub fn cut_word(&self) -> Option<&str> {
        let bytes = self.cmdline.get(self.cut_word.clone())?;
        let s = match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        };
        Some(s).filter(|s| !s.is_empty())
    }
}

static BOOT_INFO: spin::Once<BootInfo> = spin::Once::new();

/// Reads the loader's start info at `start_info_paddr` (the `kmain`
/// argument) once, and keeps it for [`boot_info`].
///
/// # Safety
///
/// `start_info_paddr` must be the value the PVH loader passed in `%ebx`,
/// with the conditions of [`pvh::read_start_info`].
pub unsafe fn init(start_info_paddr: u32) -> Result<&'static BootInfo, StartInfoError> {
    // SAFETY: forwarded from this function's contract.
    let start_info = unsafe { pvh::read_start_info(start_info_paddr) }?;
    Ok(BOOT_INFO.call_once(|| {
        let mut info = BootInfo {
            start_info,
            rsdp: start_info.rsdp,
            cmdline: [0; CMDLINE_MAX],
            cmdline_len: 0,
            cmdline_problem: None,
            cut_word: 0..0,
        };
        if let Some(addr) = start_info.cmdline {
            // SAFETY: the boot page tables identity-map 0–4 GiB (set up
            // before `kmain`), and the loader's string is in RAM: reading it
            // has no side effect. `copy_cmdline` reads nothing at or past
            // 4 GiB.
            let mem = unsafe { IdentityMap::new() };
            let copied = pvh::copy_cmdline(&mem, addr, &mut info.cmdline);
            let mut len = match copied {
                Ok(c) => {
                    if let Some(next) = c.next {
                        // Keep whole words: the cut may have gone through one.
                        info.cmdline_problem = Some(CmdlineProblem::Truncated);
                        let keep = cmdline::whole_words(&info.cmdline[..c.len], next);
                        info.cut_word = keep..c.len;
                        keep
                    } else {
                        c.len
                    }
                }
                Err(e) => {
                    info.cmdline_problem = Some(CmdlineProblem::Unreadable(e));
                    0
                }
            };
            if let Err(e) = core::str::from_utf8(&info.cmdline[..len]) {
                len = e.valid_up_to();
                info.cmdline_problem = Some(CmdlineProblem::NotUtf8 { valid_up_to: len });
            }
            info.cmdline_len = len;
        }
        info
    }))
}

/// What the loader told the kernel, once [`init`] has run.
pub fn boot_info() -> Option<&'static BootInfo> {
    BOOT_INFO.get()
}
