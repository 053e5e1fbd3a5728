//! The access traits on real hardware.
//!
//! Port and MSR access go through the `x86_64` crate; MMIO is volatile
//! reads and writes through raw pointers, never a Rust reference (a
//! reference is `dereferenceable`: the compiler may read through it
//! whenever it likes, and an MMIO read is a side effect).

use core::ptr::NonNull;

use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::{Mmio, MsrAccess, MsrFault, PortIo, TscRead};

/// A device's register block mapped at a virtual address.
///
/// # Invariants
///
/// `base .. base + len` is mapped uncached, belongs to the device, and
/// stays mapped for the lifetime of the value.
#[derive(Debug)]
pub struct MetalMmio {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the register block is device memory: accesses from any CPU are
// volatile single accesses, which the device serialises itself.
unsafe impl Sync for MetalMmio {}
// SAFETY: as for `Sync`; the value is only an address.
unsafe impl Send for MetalMmio {}

impl MetalMmio {
    /// Wraps the register block at `base`, `len` bytes long.
    ///
    /// # Safety
    ///
    /// `base .. base + len` must be mapped (uncached) to the device's
    /// registers for as long as the returned value lives, and nothing else
    /// may treat that memory as ordinary memory.
    pub const unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        MetalMmio { base, len }
    }

    fn ptr<T>(&self, offset: usize) -> Option<*mut T> {
        let size = core::mem::size_of::<T>();
        if offset % size != 0 || offset.checked_add(size)? > self.len {
            return None;
        }
        // INVARIANT: inside the mapped block and naturally aligned.
        Some(self.base.as_ptr().wrapping_add(offset).cast::<T>())
    }
}

impl Mmio for MetalMmio {
    fn read32(&self, offset: usize) -> u32 {
        match self.ptr::<u32>(offset) {
            // SAFETY: in bounds and aligned (checked by `ptr`), mapped per
            // the invariant; a volatile read is one bus access.
            Some(p) => unsafe { p.read_volatile() },
            None => u32::MAX,
        }
    }
    fn write32(&self, offset: usize, value: u32) {
        if let Some(p) = self.ptr::<u32>(offset) {
            // SAFETY: as in `read32`.
            unsafe { p.write_volatile(value) }
        }
    }
    fn read64(&self, offset: usize) -> u64 {
        match self.ptr::<u64>(offset) {
            // SAFETY: as in `read32`; x86_64 does 64-bit MMIO in one access.
            Some(p) => unsafe { p.read_volatile() },
            None => u64::MAX,
        }
    }
    fn write64(&self, offset: usize, value: u64) {
        if let Some(p) = self.ptr::<u64>(offset) {
            // SAFETY: as in `read64`.
            unsafe { p.write_volatile(value) }
        }
    }
}

/// Port I/O with `in`/`out`: each method is one instruction of its width
/// (`inl` is one `in eax, dx`), as [`PortIo`]'s contract wants.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetalPorts(());

impl MetalPorts {
    /// Port access for a kernel that owns the ports it touches.
    ///
    /// # Safety
    ///
    /// The caller must own the ports the drivers will use (no other code
    /// programs the PIT or port 0x61 concurrently) and run at CPL 0.
    pub const unsafe fn new() -> Self {
        MetalPorts(())
    }
}

impl PortIo for MetalPorts {
    fn inb(&self, port: u16) -> u8 {
        // SAFETY: `MetalPorts::new`'s contract: we own the port.
        unsafe { Port::<u8>::new(port).read() }
    }
    fn outb(&self, port: u16, value: u8) {
        // SAFETY: as in `inb`.
        unsafe { Port::<u8>::new(port).write(value) }
    }
    fn inw(&self, port: u16) -> u16 {
        // SAFETY: as in `inb`; `in ax, dx`, one 16-bit access.
        unsafe { Port::<u16>::new(port).read() }
    }
    fn outw(&self, port: u16, value: u16) {
        // SAFETY: as in `inb`; `out dx, ax`.
        unsafe { Port::<u16>::new(port).write(value) }
    }
    fn inl(&self, port: u16) -> u32 {
        // SAFETY: as in `inb`; `in eax, dx`, one 32-bit access.
        unsafe { Port::<u32>::new(port).read() }
    }
    fn outl(&self, port: u16, value: u32) {
        // SAFETY: as in `inb`; `out dx, eax`.
        unsafe { Port::<u32>::new(port).write(value) }
    }
}

/// MSR access with `rdmsr`/`wrmsr`, limited to the MSRs listed at creation.
#[derive(Debug, Clone, Copy)]
pub struct MetalMsrs {
    allowed: &'static [u32],
}

impl MetalMsrs {
    /// MSR access to exactly `allowed`; other MSRs answer `MsrFault`.
    ///
    /// # Safety
    ///
    /// Every MSR in `allowed` must exist on this CPU (established by CPUID),
    /// and writes to them must not break memory safety (APIC and TSC
    /// deadline MSRs qualify; `EFER` or `PAT` do not).
    pub const unsafe fn new(allowed: &'static [u32]) -> Self {
        MetalMsrs { allowed }
    }
}

impl MsrAccess for MetalMsrs {
    fn rdmsr(&self, msr: u32) -> Result<u64, MsrFault> {
        if !self.allowed.contains(&msr) {
            return Err(MsrFault { msr });
        }
        // SAFETY: the MSR exists (constructor contract) and reading it has
        // no memory-safety effect.
        Ok(unsafe { Msr::new(msr).read() })
    }
    fn wrmsr(&self, msr: u32, value: u64) -> Result<(), MsrFault> {
        if !self.allowed.contains(&msr) {
            return Err(MsrFault { msr });
        }
        let mut m = Msr::new(msr);
        // SAFETY: the MSR exists and writing it is memory-safe (constructor
        // contract).
        unsafe { m.write(value) };
        Ok(())
    }
}

/// `rdtsc`.
#[derive(Debug, Default, Clone, Copy)]
pub struct MetalTsc;

impl TscRead for MetalTsc {
    #[inline(always)]
    fn rdtsc(&self) -> u64 {
        Self::read()
    }
    fn is_cpu_tsc(&self) -> bool {
        true
    }
}

impl MetalTsc {
    /// `rdtsc`, as a free call for inline clock reads
    /// (`clocksource::PublishedClock::monotonic_inline`).
    #[inline(always)]
    pub fn read() -> u64 {
        // SAFETY: `rdtsc` has no memory effects; CR4.TSD is clear in the
        // kernels this runs in (it only matters at CPL 3).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
}
