//! The interrupt descriptor table and its 256 entry stubs.
//!
//! Stable Rust has no `extern "x86-interrupt"` functions, so each vector
//! gets a small assembly stub that makes every entry look alike and calls
//! `interrupts::dispatch`, an ordinary `extern "sysv64"` function.
//!
//! ```text
//!  stub v (16 bytes each, at isr_stubs + 16·v):
//!    push $0            ; only if the CPU pushes no error code for v
//!    push $v
//!    jmp isr_common
//!
//!  isr_common:                       stack, growing down:
//!    push rax rcx rdx rsi rdi          ss rsp rflags cs rip  ← CPU (40 B)
//!         r8 r9 r10 r11                error code            ← CPU or stub
//!    cld                               vector                ← stub
//!    rdi = vector, rsi = error code    9 caller-saved regs   ← isr_common
//!    rdx = &frame (the CPU's rip..ss)
//!    call dispatch
//!    pop the registers, drop vector and error code, iretq
//! ```
//!
//! The CPU aligns RSP to 16 before pushing its 40-byte frame, so after the
//! error code, the vector and nine registers (8 + 8 + 72 = 88 more bytes)
//! RSP is 16-aligned again at the `call`, as the SysV ABI requires. Only
//! the caller-saved registers need saving: `dispatch` preserves the others.
//! The kernel is built for `x86_64-unknown-none`, which uses no SSE/x87
//! registers and no red zone, so no FPU state is touched and the
//! interrupted code's stack below RSP is never in use.
//!
//! Every stub fits in 16 bytes (at most 2 + 5 + 5), so stub `v` sits at
//! `isr_stubs + 16·v`; [`init`] checks the total size to prove it.

use core::arch::global_asm;

use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

use crate::arch::interrupts::dispatch;

/// Bytes per entry stub.
const STUB_SIZE: u64 = 16;

/// Bit `v` set: the CPU pushes an error code for exception `v` (#DF, #TS,
/// #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX; Intel SDM vol. 3, table 6-1).
pub const ERROR_CODE_VECTORS: u32 = (1 << 8)
    | (1 << 10)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 14)
    | (1 << 17)
    | (1 << 21)
    | (1 << 29)
    | (1 << 30);

global_asm!(
    r#"
    .section .text.isr_stubs, "ax", @progbits
    .balign 16
    .globl isr_stubs
isr_stubs:
    .set isr_vector, 0
    .rept 256
    .balign 16
    .if isr_vector < 32
    .if ({error_code_vectors} >> isr_vector) & 1
    .else
    pushq $0
    .endif
    .else
    pushq $0
    .endif
    pushq $isr_vector
    jmp isr_common
    .set isr_vector, isr_vector + 1
    .endr
    .balign 16
    .globl isr_stubs_end
isr_stubs_end:

isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    cld
    movq 72(%rsp), %rdi
    movq 80(%rsp), %rsi
    leaq 88(%rsp), %rdx
    call {dispatch}
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq
"#,
    error_code_vectors = const ERROR_CODE_VECTORS,
    dispatch = sym dispatch,
    options(att_syntax)
);

extern "C" {
    static isr_stubs: u8;
    static isr_stubs_end: u8;
}

static IDT: spin::Once<InterruptDescriptorTable> = spin::Once::new();

fn stub(vector: u8) -> VirtAddr {
    VirtAddr::new(core::ptr::addr_of!(isr_stubs) as u64 + STUB_SIZE * u64::from(vector))
}

/// Builds the IDT (every vector → its stub → `dispatch`) and loads it.
///
/// The reserved vectors 15, 22–27 and 31 stay not-present: the CPU never
/// raises them, and an `int` to one is a #GP, which is reported.
pub fn init() {
    let start = core::ptr::addr_of!(isr_stubs) as u64;
    let end = core::ptr::addr_of!(isr_stubs_end) as u64;
    assert_eq!(
        end - start,
        256 * STUB_SIZE,
        "an IDT stub is longer than 16 bytes"
    );

    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        macro_rules! set {
            ($($field:ident = $vector:literal),* $(,)?) => {$(
                // SAFETY: the stub for this vector pushes exactly what the
                // CPU omits (an error code, or not, per ERROR_CODE_VECTORS),
                // so `isr_common` sees the frame it expects.
                unsafe { idt.$field.set_handler_addr(stub($vector)) };
            )*};
        }
        set!(
            divide_error = 0,
            debug = 1,
            non_maskable_interrupt = 2,
            breakpoint = 3,
            overflow = 4,
            bound_range_exceeded = 5,
            invalid_opcode = 6,
            device_not_available = 7,
            double_fault = 8,
            invalid_tss = 10,
            segment_not_present = 11,
            stack_segment_fault = 12,
            general_protection_fault = 13,
            page_fault = 14,
            x87_floating_point = 16,
            alignment_check = 17,
            machine_check = 18,
            simd_floating_point = 19,
            virtualization = 20,
            cp_protection_exception = 21,
            hv_injection_exception = 28,
            vmm_communication_exception = 29,
            security_exception = 30,
        );
        // SAFETY: as above; vector 9 (coprocessor segment overrun, a
        // private field) is reachable only by index.
        unsafe { idt[9].set_handler_addr(stub(9)) };
        for vector in 32..=255u8 {
            // SAFETY: vectors 32–255 carry no error code and their stubs
            // push a zero in its place.
            unsafe { idt[vector].set_handler_addr(stub(vector)) };
        }
        idt
    });
    idt.load();
}
