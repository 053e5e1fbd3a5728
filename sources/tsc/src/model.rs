//! Device models (feature `model`, `std`): the TSC itself and a CPUID that
//! says what a test wants.
//!
//! # The TSC model
//!
//! A 64-bit counter driven by a [`hw::TimeBase`] (the simulator's virtual
//! clock, a hypervisor's host clock). Its value is piecewise linear in true
//! time; a segment starts whenever something changes the rate (drift, deep
//! idle, stuck) or the value (a TSC write). Within a segment starting at
//! true time `t_s` with value `V_s` and a fraction `F_s` (atto-cycles,
//! `< 10^18`):
//!
//! ```text
//!   rate  = freq · (10^9 + ppb) / 10^9                 cycles per second
//!   atto  = F_s + (t − t_s) · freq · (10^9 + ppb)       atto-cycles since t_s
//!   value = V_s + ⌊atto / 10^18⌋   (mod 2^64)
//! ```
//!
//! in exact 128-bit integer arithmetic, so a model at 2 GHz reads exactly
//! `2·t_ns` and a drift change leaves no step. What it models
//! (Intel SDM §18.17 "Time-Stamp Counter"):
//!
//! | behaviour | setter | hardware it stands for |
//! |-----------|--------|------------------------|
//! | drift | [`TscModel::set_drift_ppb`] | a crystal off nominal, a TSC scaled by P-states (pre-"constant TSC" parts) |
//! | stops in deep idle | [`TscModel::set_deep_idle`] | a non-invariant TSC halts in C3 and deeper ("invariant TSC", `CPUID.8000_0007H:EDX[8]`, is what forbids it) |
//! | stuck | [`TscModel::set_stuck`] | a TSC that does not count (broken firmware or VM) |
//! | TSC write | [`TscModel::write`] | `WRMSR IA32_TIME_STAMP_COUNTER` (0x10), e.g. a BIOS winding the TSC back to hide an SMI |
//!
//! It has no interrupts, so it is not an `InterruptSource`; the test drives
//! [`TscModel::set_deep_idle`] itself.
//!
//! # The CPUID fake
//!
//! [`FakeCpuid`] is a [`CpuIdReader`] answering leaves 0x0, 0x1, 0x15,
//! 0x16, 0x4000_0000, 0x4000_0010, 0x8000_0000 and 0x8000_0007 as built;
//! every other leaf reads as zeros. Presets: [`FakeCpuid::qemu_tcg`] and
//! [`FakeCpuid::kvm_host_invtsc`].

use std::boxed::Box;
use std::sync::{Arc, Mutex, MutexGuard};

use clocksource::{Hertz, Ktime, NSEC_PER_SEC};
use hw::{TimeBase, TscRead};
use raw_cpuid::{CpuId, CpuIdReader, CpuIdResult};

/// 10^9, as `u128`.
const GIGA: u128 = NSEC_PER_SEC as u128;

/// What a [`TscModel`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscModelConfig {
    frequency: Hertz,
    initial: u64,
    invariant: bool,
}

impl TscModelConfig {
    /// A TSC counting at `frequency` from 0, invariant.
    pub fn new(frequency: Hertz) -> Self {
        TscModelConfig {
            frequency,
            initial: 0,
            invariant: true,
        }
    }
    /// The value at the model's creation.
    pub fn initial(mut self, value: u64) -> Self {
        self.initial = value;
        self
    }
    /// Whether the TSC is invariant: a non-invariant one stops in deep idle.
    pub fn invariant(mut self, yes: bool) -> Self {
        self.invariant = yes;
        self
    }
    /// The nominal frequency.
    pub fn frequency(&self) -> Hertz {
        self.frequency
    }
    /// Whether it is invariant.
    pub fn is_invariant(&self) -> bool {
        self.invariant
    }
}

#[derive(Debug)]
struct Segment {
    start: Ktime,
    value: u64,
    /// Atto-cycles counted past `value` (`< 10^18`).
    frac: u128,
    drift_ppb: i64,
    deep_idle: bool,
    stuck: bool,
}

/// A time-stamp counter driven by true time. See the [module docs](self).
pub struct TscModel {
    time: Arc<dyn TimeBase + Send + Sync>,
    config: TscModelConfig,
    seg: Mutex<Segment>,
    reads: std::sync::atomic::AtomicU64,
}

impl core::fmt::Debug for TscModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TscModel")
            .field("config", &self.config)
            .field("seg", &*self.lock())
            .finish()
    }
}

impl TscModel {
    /// A TSC holding `config.initial` now and counting from there.
    pub fn new(time: Arc<dyn TimeBase + Send + Sync>, config: TscModelConfig) -> Self {
        let start = time.now();
        TscModel {
            time,
            config,
            seg: Mutex::new(Segment {
                start,
                value: config.initial,
                frac: 0,
                drift_ppb: 0,
                deep_idle: false,
                stuck: false,
            }),
            reads: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves the model to the heap for good (for a `&'static` clock source).
    pub fn leak(self) -> &'static TscModel {
        Box::leak(Box::new(self))
    }

    /// The configuration.
    pub fn config(&self) -> TscModelConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, Segment> {
        self.seg.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self, s: &Segment) -> bool {
        !(s.stuck || (s.deep_idle && !self.config.invariant))
    }

    /// (value, frac) at true time `t`.
    fn at(&self, s: &Segment, t: Ktime) -> (u64, u128) {
        if !self.running(s) {
            return (s.value, s.frac);
        }
        let elapsed = t.saturating_since(s.start).as_nanos() as u128;
        let k = (GIGA as i128 + s.drift_ppb as i128).max(0) as u128;
        let (whole, frac) = count(elapsed * self.config.frequency.get() as u128, k, s.frac);
        (s.value.wrapping_add(whole as u64), frac)
    }

    /// Closes the segment at now; the caller then changes the rate or value.
    fn settle(&self, s: &mut Segment) {
        let now = self.time.now();
        let (value, frac) = self.at(s, now);
        s.value = value;
        s.frac = frac;
        s.start = now;
    }

    /// The value now, without counting a read.
    pub fn value(&self) -> u64 {
        let s = self.lock();
        self.at(&s, self.time.now()).0
    }

    /// How many times `rdtsc` was executed on it.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// From now on, counts at `freq · (1 + ppb/10^9)`; the value stays
    /// continuous. `ppb ≤ −10^9` stops it.
    pub fn set_drift_ppb(&self, ppb: i64) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.drift_ppb = ppb;
    }

    /// The drift in force.
    pub fn drift_ppb(&self) -> i64 {
        self.lock().drift_ppb
    }

    /// The rate it counts at now, rounded down: what a perfect calibration
    /// would measure (0 while stopped).
    pub fn true_frequency(&self) -> Hertz {
        let s = self.lock();
        if !self.running(&s) {
            return Hertz::new(0);
        }
        let k = (GIGA as i128 + s.drift_ppb as i128).max(0) as u128;
        Hertz::new((self.config.frequency.get() as u128 * k / GIGA) as u64)
    }

    /// Marks whether the CPU is in a deep C-state (C3 or deeper): a
    /// non-invariant TSC stops meanwhile and resumes from where it stopped;
    /// an invariant one ignores it.
    pub fn set_deep_idle(&self, deep: bool) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.deep_idle = deep;
    }

    /// Freezes the counter (`true`) or lets it run on from the frozen value.
    pub fn set_stuck(&self, stuck: bool) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.stuck = stuck;
    }

    /// `WRMSR IA32_TIME_STAMP_COUNTER`: the counter jumps to `value` and
    /// counts on from there.
    pub fn write(&self, value: u64) {
        let mut s = self.lock();
        self.settle(&mut s);
        s.value = value;
        s.frac = 0;
    }
}

impl TscRead for TscModel {
    fn rdtsc(&self) -> u64 {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.value()
    }
}

impl TscRead for &TscModel {
    fn rdtsc(&self) -> u64 {
        (**self).rdtsc()
    }
}

/// Adds `ef · k` atto-cycles (`ef` = elapsed ns · Hz, `k` = 10^9 + ppb) to
/// `frac < 10^18`; returns whole cycles and the new fraction.
///
/// `ef · k` may exceed `u128`, so with `ef = a·10^9 + b` and
/// `b·k + frac = c·10^9 + d`: total = `(a·k + c)·10^9 + d`; with
/// `a·k + c = q·10^9 + r` that is `q` cycles and `r·10^9 + d` atto-cycles.
fn count(ef: u128, k: u128, frac: u128) -> (u128, u128) {
    let (a, b) = (ef / GIGA, ef % GIGA);
    let m = b * k + frac;
    let (c, d) = (m / GIGA, m % GIGA);
    let n = a.saturating_mul(k).saturating_add(c);
    (n / GIGA, (n % GIGA) * GIGA + d)
}

// ----- CPUID ---------------------------------------------------------------

/// `CPUID.1:EDX[4]` TSC.
pub const LEAF1_EDX_TSC: u32 = 1 << 4;
/// `CPUID.1:ECX[31]`: running under a hypervisor.
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// `CPUID.8000_0007H:EDX[8]` InvariantTSC.
pub const LEAF_8000_0007_EDX_INVARIANT_TSC: u32 = 1 << 8;

/// The hypervisor leaves as a fake answers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HypervisorLeaves {
    signature: [u8; 12],
    max_leaf: u32,
    tsc_khz: u32,
    apic_khz: u32,
}

/// A CPUID that answers as built (see the [module docs](self)).
///
/// `FakeCpuid::new()` is a GenuineIntel family 6 part with a TSC, highest
/// basic leaf 0xD, highest extended leaf 0x8000_0008, no frequency leaves,
/// not invariant, not virtualised. Leaves 0x15 and 0x16 raise the highest
/// basic leaf to reach them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeCpuid {
    vendor: [u8; 12],
    signature: u32,
    has_tsc: bool,
    max_basic: Option<u32>,
    leaf_15: Option<(u32, u32, u32)>,
    leaf_16: Option<(u16, u16, u16)>,
    invariant: bool,
    hypervisor_bit: bool,
    hypervisor: Option<HypervisorLeaves>,
}

impl Default for FakeCpuid {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeCpuid {
    /// A GenuineIntel part with a TSC and nothing else said about it.
    pub fn new() -> Self {
        FakeCpuid {
            vendor: *b"GenuineIntel",
            // Family 6, model 0x55 (Skylake-SP), stepping 4.
            signature: 0x0005_0654,
            has_tsc: true,
            max_basic: None,
            leaf_15: None,
            leaf_16: None,
            invariant: false,
            hypervisor_bit: false,
            hypervisor: None,
        }
    }

    /// What QEMU's default `qemu64` model shows under TCG, as far as the TSC
    /// goes: vendor AuthenticAMD, family 15 model 107, highest basic leaf
    /// 0xD (no 0x15/0x16), no invariant TSC, no hypervisor timing leaf.
    pub fn qemu_tcg() -> Self {
        FakeCpuid::new()
            .vendor(*b"AuthenticAMD")
            .signature(0x0006_0FB1)
    }

    /// What KVM with `-cpu host,+invtsc` shows: an Intel host, invariant
    /// TSC, hypervisor "KVMKVMKVM" with leaf 0x4000_0010 stating the TSC in
    /// kHz (and the 1 GHz APIC bus KVM emulates), no 0x15/0x16 values.
    pub fn kvm_host_invtsc(tsc_khz: u32) -> Self {
        FakeCpuid::new()
            .invariant_tsc(true)
            .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, tsc_khz)
    }

    /// The 12-byte vendor string of leaf 0 (EBX, EDX, ECX order).
    pub fn vendor(mut self, vendor: [u8; 12]) -> Self {
        self.vendor = vendor;
        self
    }
    /// `CPUID.1:EAX` (stepping, model, family, extended model and family).
    pub fn signature(mut self, eax: u32) -> Self {
        self.signature = eax;
        self
    }
    /// Sets the leaf-1 signature for a display `family` (≤ 0xF + 0xFF) and
    /// `model`, stepping 1.
    pub fn family_model(self, family: u16, model: u8) -> Self {
        let (base_family, ext_family) = if family >= 0xF {
            (0xF, (family - 0xF) as u32 & 0xFF)
        } else {
            (family as u32, 0)
        };
        let eax = (ext_family << 20)
            | (((model >> 4) as u32) << 16)
            | (base_family << 8)
            | (((model & 0xF) as u32) << 4)
            | 1;
        self.signature(eax)
    }
    /// Whether `CPUID.1:EDX[4]` (TSC) is set.
    pub fn tsc_bit(mut self, yes: bool) -> Self {
        self.has_tsc = yes;
        self
    }
    /// Forces the highest basic leaf (leaf 0 EAX): leaves up to it that were
    /// not configured read as zeros, as many hypervisors report them.
    pub fn max_basic_leaf(mut self, leaf: u32) -> Self {
        self.max_basic = Some(leaf);
        self
    }
    /// Leaf 0x15: EAX denominator, EBX numerator, ECX crystal Hz. All zeros
    /// removes the leaf.
    pub fn leaf_15(mut self, denominator: u32, numerator: u32, crystal_hz: u32) -> Self {
        let regs = (denominator, numerator, crystal_hz);
        self.leaf_15 = if regs == (0, 0, 0) { None } else { Some(regs) };
        self
    }
    /// Leaf 0x16: base, max and bus frequency in MHz.
    pub fn leaf_16(mut self, base_mhz: u16, max_mhz: u16, bus_mhz: u16) -> Self {
        self.leaf_16 = Some((base_mhz, max_mhz, bus_mhz));
        self
    }
    /// `CPUID.8000_0007H:EDX[8]` invariant TSC.
    pub fn invariant_tsc(mut self, yes: bool) -> Self {
        self.invariant = yes;
        self
    }
    /// A hypervisor with `signature`, highest hypervisor leaf `max_leaf`, and
    /// `tsc_khz` in leaf 0x4000_0010 EAX (answered only if `max_leaf`
    /// reaches it). Sets `CPUID.1:ECX[31]`.
    pub fn hypervisor(mut self, signature: [u8; 12], max_leaf: u32, tsc_khz: u32) -> Self {
        self.hypervisor_bit = true;
        self.hypervisor = Some(HypervisorLeaves {
            signature,
            max_leaf,
            tsc_khz,
            apic_khz: 1_000_000,
        });
        self
    }
    /// Sets or clears `CPUID.1:ECX[31]` alone (the hypervisor leaves stay).
    pub fn hypervisor_bit(mut self, yes: bool) -> Self {
        self.hypervisor_bit = yes;
        self
    }

    /// A `CpuId` reading this fake.
    pub fn cpuid(&self) -> CpuId<FakeCpuid> {
        CpuId::with_cpuid_reader(*self)
    }

    fn max_basic(&self) -> u32 {
        self.max_basic.unwrap_or(if self.leaf_16.is_some() {
            0x16
        } else if self.leaf_15.is_some() {
            0x15
        } else {
            0xD
        })
    }
}

fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuIdResult {
    CpuIdResult { eax, ebx, ecx, edx }
}

fn le(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

impl CpuIdReader for FakeCpuid {
    fn cpuid2(&self, leaf: u32, _subleaf: u32) -> CpuIdResult {
        let zero = regs(0, 0, 0, 0);
        let max_basic = self.max_basic();
        match leaf {
            0 => regs(
                max_basic,
                le(&self.vendor[0..4]),
                le(&self.vendor[8..12]),
                le(&self.vendor[4..8]),
            ),
            1 => regs(
                self.signature,
                0,
                if self.hypervisor_bit {
                    LEAF1_ECX_HYPERVISOR
                } else {
                    0
                },
                if self.has_tsc { LEAF1_EDX_TSC } else { 0 },
            ),
            0x15 if leaf <= max_basic => {
                let (den, num, hz) = self.leaf_15.unwrap_or_default();
                regs(den, num, hz, 0)
            }
            0x16 if leaf <= max_basic => {
                let (base, max, bus) = self.leaf_16.unwrap_or_default();
                regs(base as u32, max as u32, bus as u32, 0)
            }
            0x4000_0000 => match self.hypervisor {
                Some(h) => regs(
                    h.max_leaf,
                    le(&h.signature[0..4]),
                    le(&h.signature[4..8]),
                    le(&h.signature[8..12]),
                ),
                None => zero,
            },
            0x4000_0010 => match self.hypervisor {
                Some(h) if h.max_leaf >= 0x4000_0010 => regs(h.tsc_khz, h.apic_khz, 0, 0),
                _ => zero,
            },
            0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
            0x8000_0007 => regs(
                0,
                0,
                0,
                if self.invariant {
                    LEAF_8000_0007_EDX_INVARIANT_TSC
                } else {
                    0
                },
            ),
            _ => zero,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A settable true time.
    #[derive(Default)]
    struct Time(AtomicU64);
    impl TimeBase for Time {
        fn now(&self) -> Ktime {
            Ktime::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }
    impl Time {
        fn set(&self, t: Ktime) {
            self.0.store(t.as_nanos(), Ordering::SeqCst);
        }
    }

    fn model(cfg: TscModelConfig) -> (Arc<Time>, TscModel) {
        let time = Arc::new(Time::default());
        let m = TscModel::new(time.clone(), cfg);
        (time, m)
    }

    #[test]
    fn counts_at_its_frequency_exactly() {
        let (t, m) = model(TscModelConfig::new(Hertz::new(2_394_123_457)));
        t.set(Ktime::from_secs(1));
        assert_eq!(m.rdtsc(), 2_394_123_457);
        t.set(Ktime::from_nanos(1_500_000_001));
        // ⌊1.500000001 s · 2394123457 Hz⌋, exactly.
        assert_eq!(
            m.rdtsc(),
            (1_500_000_001u128 * 2_394_123_457 / 1_000_000_000) as u64
        );
        assert_eq!(m.reads(), 2);
        assert_eq!(m.true_frequency(), Hertz::new(2_394_123_457));
    }

    #[test]
    fn initial_value_counts_on_and_wraps_at_64_bits() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)).initial(u64::MAX - 9));
        assert_eq!(m.value(), u64::MAX - 9);
        t.set(Ktime::from_nanos(15));
        assert_eq!(m.value(), 5);
    }

    #[test]
    fn drift_is_continuous() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)));
        t.set(Ktime::from_millis(100));
        let before = m.value();
        m.set_drift_ppb(2_000_000); // 2000 ppm fast
        assert_eq!(m.value(), before, "no step at the change");
        t.set(Ktime::from_millis(1_100));
        // 100 ms at 1 GHz, then 1 s at 1.002 GHz.
        assert_eq!(m.value(), 100_000_000 + 1_002_000_000);
        assert_eq!(m.true_frequency(), Hertz::new(1_002_000_000));
        m.set_drift_ppb(0);
        t.set(Ktime::from_millis(2_100));
        assert_eq!(m.value(), 100_000_000 + 1_002_000_000 + 1_000_000_000);
    }

    #[test]
    fn fractional_drift_carries_across_segments_exactly() {
        // 3 Hz off a 1 Hz-resolution rate: 1 GHz + 1 ppb = 1 cycle/s extra.
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)));
        m.set_drift_ppb(1);
        for k in 1..=4 {
            t.set(Ktime::from_nanos(k * 250_000_000));
            m.set_drift_ppb(1); // new segment each quarter second
        }
        assert_eq!(m.value(), 1_000_000_001);
    }

    #[test]
    fn stops_in_deep_idle_when_not_invariant() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)).invariant(false));
        t.set(Ktime::from_millis(10));
        m.set_deep_idle(true);
        t.set(Ktime::from_millis(30));
        assert_eq!(m.value(), 10_000_000, "halted in C3");
        assert_eq!(m.true_frequency(), Hertz::new(0));
        m.set_deep_idle(false);
        t.set(Ktime::from_millis(31));
        assert_eq!(m.value(), 11_000_000, "resumes from where it stopped");
    }

    #[test]
    fn invariant_tsc_runs_through_deep_idle() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)));
        m.set_deep_idle(true);
        t.set(Ktime::from_millis(30));
        assert_eq!(m.value(), 30_000_000);
    }

    #[test]
    fn stuck_tsc_holds_its_value_and_resumes() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)));
        t.set(Ktime::from_millis(1));
        m.set_stuck(true);
        t.set(Ktime::from_millis(5));
        assert_eq!(m.value(), 1_000_000);
        m.set_stuck(false);
        t.set(Ktime::from_millis(6));
        assert_eq!(m.value(), 2_000_000);
    }

    #[test]
    fn tsc_write_jumps_the_value_and_counting_goes_on() {
        let (t, m) = model(TscModelConfig::new(Hertz::from_mhz(1_000)));
        t.set(Ktime::from_millis(10));
        m.write(1_000); // a BIOS winding it back after an SMI
        assert_eq!(m.value(), 1_000);
        t.set(Ktime::from_millis(11));
        assert_eq!(m.value(), 1_001_000);
    }

    #[test]
    fn fake_cpuid_answers_the_configured_leaves() {
        let f = FakeCpuid::new()
            .leaf_15(2, 120, 25_000_000)
            .invariant_tsc(true)
            .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, 1_500_000);
        assert_eq!(f.cpuid2(0, 0).eax, 0x15);
        let c = f.cpuid();
        assert_eq!(c.get_vendor_info().unwrap().as_str(), "GenuineIntel");
        let l = c.get_tsc_info().unwrap();
        assert_eq!(
            (l.denominator(), l.numerator(), l.nominal_frequency()),
            (2, 120, 25_000_000)
        );
        assert_eq!(c.get_processor_frequency_info().map(|_| ()), None);
        assert!(c
            .get_advanced_power_mgmt_info()
            .unwrap()
            .has_invariant_tsc());
        let h = c.get_hypervisor_info().unwrap();
        assert_eq!(h.identify(), raw_cpuid::Hypervisor::KVM);
        assert_eq!(h.tsc_frequency(), Some(1_500_000));
    }

    #[test]
    fn family_model_round_trips_through_raw_cpuid() {
        for (family, model) in [(6u16, 0x5Fu8), (6, 0x0E), (0xF, 0x6B), (0x19, 0x21)] {
            let c = FakeCpuid::new().family_model(family, model).cpuid();
            let fi = c.get_feature_info().unwrap();
            assert_eq!((fi.family_id() as u16, fi.model_id()), (family, model));
        }
    }
}
