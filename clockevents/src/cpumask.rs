//! CPUs: a typed CPU index and a fixed-size set of them.

use core::fmt;

/// The number of CPUs a [`CpuMask`] can name.
pub const MAX_CPUS: usize = 64;

/// A CPU, by its index in the embedder's CPU numbering (Linux's `unsigned
/// int cpu`; Rust-for-Linux's `CpuId`). An index, not an APIC ID: the
/// embedder maps one to the other. It is a name, not a proof: whether the
/// CPU exists is checked where it is used — a [`CpuMask`] holds indices
/// below [`MAX_CPUS`], a tick system its own number of CPUs — and an index
/// out of range is refused there, never indexed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CpuId(u32);

impl CpuId {
    /// CPU 0, the boot CPU.
    pub const BOOT: CpuId = CpuId(0);

    /// The CPU of index `index`.
    pub const fn new(index: u32) -> Self {
        CpuId(index)
    }

    /// The CPU of index `index`, if it fits a `u32` (every real one does).
    pub const fn from_index(index: usize) -> Option<Self> {
        if index <= u32::MAX as usize {
            Some(CpuId(index as u32))
        } else {
            None
        }
    }

    /// Its index, for the embedder's per-CPU arrays.
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// CPUs `0..n`, lowest first.
    pub fn first(n: usize) -> impl Iterator<Item = CpuId> {
        (0..n.min(u32::MAX as usize) as u32).map(CpuId)
    }
}

impl fmt::Debug for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

impl fmt::Display for CpuId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

impl From<CpuId> for usize {
    fn from(c: CpuId) -> usize {
        c.index()
    }
}

/// A set of CPU indices `0..MAX_CPUS`, as a bitmap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CpuMask(u64);

impl CpuMask {
    /// No CPU.
    pub const EMPTY: CpuMask = CpuMask(0);
    /// Every CPU.
    pub const ALL: CpuMask = CpuMask(u64::MAX);

    const fn bit(cpu: CpuId) -> u64 {
        if cpu.index() < MAX_CPUS {
            1 << cpu.index()
        } else {
            0
        }
    }

    /// The set holding only `cpu` (empty if `cpu ≥ MAX_CPUS`).
    pub const fn single(cpu: CpuId) -> Self {
        CpuMask(Self::bit(cpu))
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
    pub const fn contains(self, cpu: CpuId) -> bool {
        self.0 & Self::bit(cpu) != 0
    }
    /// Adds `cpu` (nothing if `cpu ≥ MAX_CPUS`).
    pub fn insert(&mut self, cpu: CpuId) {
        self.0 |= Self::bit(cpu);
    }
    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: CpuId) {
        self.0 &= !Self::bit(cpu);
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether the set is exactly `{cpu}`.
    pub const fn is_only(self, cpu: CpuId) -> bool {
        let b = Self::bit(cpu);
        self.0 == b && b != 0
    }
    /// The number of CPUs in the set.
    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }
    /// Set intersection.
    pub const fn and(self, o: CpuMask) -> CpuMask {
        CpuMask(self.0 & o.0)
    }
    /// The indices of the CPUs in the set, lowest first (for per-CPU
    /// arrays).
    pub fn indices(self) -> impl Iterator<Item = usize> {
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
    /// The CPUs in the set, lowest first.
    pub fn iter(self) -> impl Iterator<Item = CpuId> {
        self.indices().map(|i| CpuId(i as u32)) // i < MAX_CPUS
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.indices()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_holds_cpus_below_max_cpus_only() {
        let mut m = CpuMask::EMPTY;
        m.insert(CpuId::new(3));
        m.insert(CpuId::new(63));
        m.insert(CpuId::new(64)); // past MAX_CPUS: nothing
        m.insert(CpuId::new(u32::MAX));
        assert_eq!(m.len(), 2);
        assert!(m.contains(CpuId::new(63)) && !m.contains(CpuId::new(64)));
        assert_eq!(m.indices().collect::<std::vec::Vec<_>>(), [3, 63]);
        assert!(CpuMask::single(CpuId::new(5)).is_only(CpuId::new(5)));
        assert!(!CpuMask::single(CpuId::new(70)).is_only(CpuId::new(70)));
        assert_eq!(
            m.iter().collect::<std::vec::Vec<_>>(),
            [CpuId::new(3), CpuId::new(63)]
        );
    }

    #[test]
    fn a_cpu_is_named_by_its_index() {
        assert_eq!(CpuId::new(7).index(), 7);
        assert_eq!(std::format!("{}", CpuId::new(7)), "cpu7");
        assert_eq!(CpuId::from_index(usize::MAX), None);
        assert_eq!(
            CpuId::first(3)
                .map(CpuId::index)
                .collect::<std::vec::Vec<_>>(),
            [0, 1, 2]
        );
    }
}
