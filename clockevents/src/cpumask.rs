//! A fixed-size set of CPUs.

use core::fmt;

/// The number of CPUs a [`CpuMask`] can name.
pub const MAX_CPUS: usize = 64;

/// A set of CPU indices `0..MAX_CPUS`, as a bitmap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuMask(u64);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask(0);
    /// Every CPU.
    pub const ALL: CpuMask = CpuMask(u64::MAX);

    /// The set holding only `cpu` (empty if `cpu ≥ MAX_CPUS`).
    pub const fn single(cpu: usize) -> Self {
        if cpu < MAX_CPUS {
            CpuMask(1 << cpu)
        } else {
            CpuMask(0)
        }
    }
    /// The set of CPUs `0..n`.
    pub const fn first(n: usize) -> Self {
        if n >= MAX_CPUS {
            CpuMask(u64::MAX)
        } else {
            CpuMask((1 << n) - 1)
        }
    }
    /// The raw bitmap.
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.0 & (1 << cpu) != 0
    }
    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: usize) {
        self.0 |= CpuMask::single(cpu).0;
    }
    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !CpuMask::single(cpu).0;
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether the set is exactly `{cpu}`.
    pub const fn is_only(self, cpu: usize) -> bool {
        self.0 == CpuMask::single(cpu).0 && self.0 != 0
    }
    /// The number of CPUs in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }
    /// Set intersection.
    pub const fn and(self, o: CpuMask) -> CpuMask {
        CpuMask(self.0 & o.0)
    }
    /// The CPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        core::iter::from_fn(move || {
            if bits == 0 {
                None
            } else {
                let cpu = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                Some(cpu)
            }
        })
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}
