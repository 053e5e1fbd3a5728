//! What CPUID says about the TSC, and the TSC frequency it implies.
//!
//! # The leaves
//!
//! | leaf | register | meaning (Intel SDM Vol. 2A "CPUID"; §18.17 "Time-Stamp Counter") |
//! |------|----------|-------------------------------------------------------------|
//! | `0x1` | `EDX[4]` TSC | the TSC and `rdtsc` exist |
//! | `0x1` | `ECX[31]` | running under a hypervisor (the hypervisor leaves exist) |
//! | `0x15` | EAX | denominator of the TSC / core-crystal ratio |
//! | `0x15` | EBX | numerator of that ratio (0: not enumerated) |
//! | `0x15` | ECX | nominal core-crystal frequency in Hz (0: not enumerated) |
//! | `0x16` | `EAX[15:0]` | processor base frequency in MHz (nominal, not measured) |
//! | `0x4000_0000` | EAX | highest hypervisor leaf |
//! | `0x4000_0010` | EAX | TSC frequency in kHz (the "timing" leaf of VMware, KVM/QEMU, ACRN) |
//! | `0x8000_0007` | `EDX[8]` InvariantTSC | the TSC runs at a constant rate in every P-, C- and T-state |
//!
//! # The frequency, in Linux's priority order
//!
//! ```text
//!   0x15: num ≠ 0, den ≠ 0 ──► crystal stated?  ──► crystal · num / den        (known)
//!         (Intel only)            │ no: Denverton? ──► 25 MHz · num / den      (known)
//!                                 │ no: 0x16 base? ──► crystal := base·den/num (nominal)
//!                                 ▼ no
//!   0x4000_0010 EAX (only if 0x4000_0000 EAX ≥ 0x4000_0010) ──► kHz · 1000    (known)
//!                                 ▼ none
//!   0x16 EAX base MHz (Intel only) ──► MHz · 10⁶                               (nominal)
//!                                 ▼ none
//!   no CPUID frequency: the caller calibrates (see [`crate::calibration`])
//! ```
//!
//! Leaf 0x15 follows Linux `native_calibrate_tsc()` (arch/x86/kernel/tsc.c):
//! Intel only, the ratio must be enumerated, Denverton (family 6 model 0x5F,
//! `INTEL_ATOM_GOLDMONT_D`) gets its 25 MHz crystal hard-coded, and an
//! unstated crystal is derived from leaf 0x16 as `base_MHz · den / num` —
//! then the result is only as good as the nominal base frequency, and Linux
//! does not set `TSC_KNOWN_FREQ`. Linux computes in kHz (`crystal_khz =
//! ecx_hz / 1000`); we compute in Hz, so a crystal like 19.2 MHz or
//! 38.4 MHz loses nothing. Leaf 0x16 as a last resort follows Linux
//! `cpu_khz_from_cpuid()`, also Intel only.
//!
//! Linux reads the hypervisor timing leaf only from per-hypervisor platform
//! code (e.g. `acrn_get_tsc_khz()`); here any hypervisor that advertises it is
//! believed, ranked after the hardware-stated 0x15 and before the nominal
//! 0x16: the hypervisor states the rate it runs the guest's TSC at, while
//! 0x16 is the processor's specified base frequency, which the Intel SDM
//! (CPUID leaf 16H) says need not be the actual one.
//!
//! A value outside [`MIN_FREQUENCY`]`..=`[`MAX_FREQUENCY`] is skipped (and
//! logged): the next source is tried, as if the leaf stated nothing.

use core::fmt;

use clocksource::Hertz;
use raw_cpuid::{CpuId, CpuIdReader};

/// Lowest TSC frequency believed: 1 MHz (no x86 CPU with a TSC ran slower;
/// anything below is a misread leaf or a broken calibration).
pub const MIN_FREQUENCY: Hertz = Hertz::from_mhz(1);

/// Highest TSC frequency believed: 100 GHz.
pub const MAX_FREQUENCY: Hertz = Hertz::new(100_000_000_000);

/// The crystal Linux hard-codes for Denverton SoCs, which enumerate neither
/// the crystal in 0x15 ECX nor leaf 0x16.
pub const DENVERTON_CRYSTAL: Hertz = Hertz::from_mhz(25);

/// Denverton's display family and model (Linux `INTEL_ATOM_GOLDMONT_D`).
const DENVERTON_FAMILY_MODEL: (u8, u8) = (6, 0x5F);

/// `CPUID.0x15`: the "Time Stamp Counter and Nominal Core Crystal Clock
/// Information Leaf", raw (zeros kept: zero means "not enumerated").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf15 {
    /// EAX: denominator of the TSC / core-crystal ratio.
    pub denominator: u32,
    /// EBX: numerator of the TSC / core-crystal ratio.
    pub numerator: u32,
    /// ECX: nominal core-crystal frequency in Hz.
    pub crystal_hz: u32,
}

/// The CPU vendor, as far as the TSC rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    /// "GenuineIntel": leaves 0x15 and 0x16 are used.
    Intel,
    /// "AuthenticAMD".
    Amd,
    /// Anything else (leaves 0x15 and 0x16 are not used, as in Linux).
    Other,
}

/// Everything CPUID says about the TSC: raw facts, no policy.
///
/// Read once with [`TscCpuid::read`]; [`TscCpuid::frequency`] is then a pure
/// function of these fields (another crate — the LAPIC's TSC-deadline mode —
/// can call it on the same facts and get the same answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscCpuid {
    /// `CPUID.1:EDX[4]`: the TSC exists.
    pub has_tsc: bool,
    /// The vendor string of leaf 0.
    pub vendor: Vendor,
    /// Display family (`CPUID.1:EAX`, extended family folded in).
    pub family: u8,
    /// Display model (`CPUID.1:EAX`, extended model folded in).
    pub model: u8,
    /// Leaf 0x15, if the highest basic leaf reaches it.
    pub leaf_15: Option<Leaf15>,
    /// `CPUID.0x16:EAX[15:0]`, processor base frequency in MHz, if the
    /// highest basic leaf reaches it (raw; 0 = not enumerated).
    pub base_mhz: Option<u16>,
    /// `CPUID.0x4000_0010:EAX`, TSC kHz, if leaf 1 says "hypervisor" and
    /// `CPUID.0x4000_0000:EAX ≥ 0x4000_0010` (raw; 0 = not enumerated).
    pub hypervisor_tsc_khz: Option<u32>,
    /// `CPUID.0x8000_0007:EDX[8]`: invariant TSC.
    pub invariant: bool,
}

impl TscCpuid {
    /// Reads the TSC facts through `cpuid` (the native instruction on metal,
    /// a fake in tests: [`CpuId::with_cpuid_reader`]).
    pub fn read<R: CpuIdReader>(cpuid: &CpuId<R>) -> Self {
        let features = cpuid.get_feature_info();
        let vendor = match cpuid.get_vendor_info() {
            Some(v) if v.as_str() == "GenuineIntel" => Vendor::Intel,
            Some(v) if v.as_str() == "AuthenticAMD" => Vendor::Amd,
            _ => Vendor::Other,
        };
        TscCpuid {
            has_tsc: features.as_ref().is_some_and(|f| f.has_tsc()),
            vendor,
            family: features.as_ref().map_or(0, |f| f.family_id()),
            model: features.as_ref().map_or(0, |f| f.model_id()),
            leaf_15: cpuid.get_tsc_info().map(|l| Leaf15 {
                denominator: l.denominator(),
                numerator: l.numerator(),
                crystal_hz: l.nominal_frequency(),
            }),
            base_mhz: cpuid
                .get_processor_frequency_info()
                .map(|l| l.processor_base_frequency()),
            // raw-cpuid reads 0x4000_0000 only when CPUID.1:ECX[31] is set,
            // and 0x4000_0010 only when 0x4000_0000 EAX reaches it.
            hypervisor_tsc_khz: cpuid.get_hypervisor_info().and_then(|h| h.tsc_frequency()),
            invariant: cpuid
                .get_advanced_power_mgmt_info()
                .is_some_and(|a| a.has_invariant_tsc()),
        }
    }

    /// The TSC frequency CPUID implies, from the best source that states a
    /// plausible one (see the [module docs](self) for the order), or `None`
    /// if none does and the TSC must be calibrated.
    pub fn frequency(&self) -> Option<TscFrequency> {
        self.from_leaf_15()
            .or_else(|| self.from_hypervisor_leaf())
            .or_else(|| self.from_base_frequency())
    }

    /// Leaf 0x15 alone (Linux `native_calibrate_tsc()`).
    pub fn from_leaf_15(&self) -> Option<TscFrequency> {
        if self.vendor != Vendor::Intel {
            return None;
        }
        let l = self.leaf_15?;
        if l.numerator == 0 || l.denominator == 0 {
            return None;
        }
        let (crystal, origin) = if l.crystal_hz != 0 {
            (Hertz::new(l.crystal_hz as u64), CrystalOrigin::Stated)
        } else if (self.family, self.model) == DENVERTON_FAMILY_MODEL {
            (DENVERTON_CRYSTAL, CrystalOrigin::Denverton)
        } else {
            // crystal = base · den / num, multiplied before dividing.
            let base_mhz = self.base_mhz.filter(|m| *m != 0)?;
            let hz = base_mhz as u128 * 1_000_000 * l.denominator as u128 / l.numerator as u128;
            (
                Hertz::new(hz as u64),
                CrystalOrigin::FromBaseFrequency { base_mhz },
            )
        };
        let hz = crystal.get() as u128 * l.numerator as u128 / l.denominator as u128;
        let f = TscFrequency {
            hz: saturate(hz),
            source: FrequencySource::Cpuid15 {
                crystal,
                origin,
                numerator: l.numerator,
                denominator: l.denominator,
            },
        };
        plausible(f)
    }

    /// The hypervisor timing leaf alone.
    pub fn from_hypervisor_leaf(&self) -> Option<TscFrequency> {
        let khz = self.hypervisor_tsc_khz.filter(|k| *k != 0)?;
        plausible(TscFrequency {
            hz: Hertz::from_khz(khz as u64),
            source: FrequencySource::Hypervisor { khz },
        })
    }

    /// Leaf 0x16 alone (Linux `cpu_khz_from_cpuid()`): nominal.
    pub fn from_base_frequency(&self) -> Option<TscFrequency> {
        if self.vendor != Vendor::Intel {
            return None;
        }
        let mhz = self.base_mhz.filter(|m| *m != 0)?;
        plausible(TscFrequency {
            hz: Hertz::from_mhz(mhz as u64),
            source: FrequencySource::CpuidBase { mhz },
        })
    }
}

/// The TSC frequency CPUID implies (`TscCpuid::read(cpuid).frequency()`):
/// the pure function other crates use (the LAPIC's TSC-deadline mode needs
/// the TSC rate; the guest passes it on).
pub fn frequency_from_cpuid<R: CpuIdReader>(cpuid: &CpuId<R>) -> Option<TscFrequency> {
    TscCpuid::read(cpuid).frequency()
}

/// Where the core crystal of a leaf-0x15 frequency came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrystalOrigin {
    /// Stated in `CPUID.0x15:ECX`.
    Stated,
    /// Hard-coded 25 MHz for Denverton, as Linux does.
    Denverton,
    /// Derived from the nominal base frequency of leaf 0x16:
    /// `base_mhz · 10⁶ · den / num`.
    FromBaseFrequency {
        /// `CPUID.0x16:EAX[15:0]`.
        base_mhz: u16,
    },
}

/// How the TSC frequency was obtained; the guest prints it
/// ([`fmt::Display`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrequencySource {
    /// `CPUID.0x15`: crystal · numerator / denominator.
    Cpuid15 {
        /// The core-crystal frequency used.
        crystal: Hertz,
        /// Where the crystal came from.
        origin: CrystalOrigin,
        /// `CPUID.0x15:EBX`.
        numerator: u32,
        /// `CPUID.0x15:EAX`.
        denominator: u32,
    },
    /// `CPUID.0x4000_0010:EAX`, stated by the hypervisor in kHz.
    Hypervisor {
        /// The value of EAX.
        khz: u32,
    },
    /// `CPUID.0x16:EAX`, the processor's nominal base frequency in MHz.
    CpuidBase {
        /// The value of `EAX[15:0]`.
        mhz: u16,
    },
    /// Measured against a reference clock source.
    Calibrated {
        /// The reference's name.
        reference: &'static str,
        /// Upper bound of the measurement error, relative to the
        /// reference's nominal rate (its own crystal error comes on top).
        error_ppm: u32,
        /// The reference time the measurement spanned.
        window: clocksource::Nanos,
    },
    /// Given by the caller ([`TscClockSource::new`](crate::TscClockSource::new)).
    Given,
}

/// How far a [`FrequencySource`] can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confidence {
    /// Stated by the hardware or hypervisor as the TSC's rate (Linux
    /// `X86_FEATURE_TSC_KNOWN_FREQ`): as exact as the crystal.
    Known,
    /// A nominal (marketing) frequency: may be off by a few hundred to a
    /// few thousand ppm (projectacrn/acrn-hypervisor#7890: 0x16 said
    /// 2300 MHz, the TSC ran at 2304 MHz, 0.17 %). Low confidence.
    Nominal,
    /// Measured, within this bound.
    Measured {
        /// Upper bound of the error in ppm.
        error_ppm: u32,
    },
    /// The caller's word.
    Given,
}

impl FrequencySource {
    /// How far this source can be trusted.
    pub fn confidence(&self) -> Confidence {
        match self {
            FrequencySource::Cpuid15 {
                origin: CrystalOrigin::FromBaseFrequency { .. },
                ..
            }
            | FrequencySource::CpuidBase { .. } => Confidence::Nominal,
            FrequencySource::Cpuid15 { .. } | FrequencySource::Hypervisor { .. } => {
                Confidence::Known
            }
            FrequencySource::Calibrated { error_ppm, .. } => Confidence::Measured {
                error_ppm: *error_ppm,
            },
            FrequencySource::Given => Confidence::Given,
        }
    }
}

impl fmt::Display for FrequencySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrequencySource::Cpuid15 {
                crystal,
                origin,
                numerator,
                denominator,
            } => {
                write!(
                    f,
                    "CPUID 0x15: crystal {crystal} x {numerator}/{denominator}"
                )?;
                match origin {
                    CrystalOrigin::Stated => Ok(()),
                    CrystalOrigin::Denverton => f.write_str(" (Denverton crystal)"),
                    CrystalOrigin::FromBaseFrequency { base_mhz } => {
                        write!(f, " (crystal from 0x16 base {base_mhz} MHz, nominal)")
                    }
                }
            }
            FrequencySource::Hypervisor { khz } => {
                write!(f, "hypervisor CPUID 0x40000010: {khz} kHz")
            }
            FrequencySource::CpuidBase { mhz } => {
                write!(f, "CPUID 0x16 base {mhz} MHz (nominal, low confidence)")
            }
            FrequencySource::Calibrated {
                reference,
                error_ppm,
                window,
            } => write!(
                f,
                "calibrated against {reference} over {}.{:03} ms, error <= {error_ppm} ppm",
                window.as_nanos() / 1_000_000,
                window.as_nanos() / 1_000 % 1_000
            ),
            FrequencySource::Given => f.write_str("given"),
        }
    }
}

/// A TSC frequency and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscFrequency {
    /// The rate.
    pub hz: Hertz,
    /// Where it came from.
    pub source: FrequencySource,
}

/// Whether `hz` is a believable TSC rate.
pub fn in_range(hz: Hertz) -> bool {
    (MIN_FREQUENCY..=MAX_FREQUENCY).contains(&hz)
}

fn plausible(f: TscFrequency) -> Option<TscFrequency> {
    if in_range(f.hz) {
        Some(f)
    } else {
        log::warn!("tsc: ignoring {} from {}: out of range", f.hz, f.source);
        None
    }
}

fn saturate(hz: u128) -> Hertz {
    Hertz::new(hz.min(u64::MAX as u128) as u64)
}

#[cfg(all(test, feature = "model"))]
mod tests {
    use super::*;
    use crate::model::FakeCpuid;
    use quickcheck::QuickCheck;

    fn facts(fake: FakeCpuid) -> TscCpuid {
        TscCpuid::read(&fake.cpuid())
    }

    #[test]
    fn leaf_15_crystal_times_ratio_is_exact() {
        let f = facts(FakeCpuid::new().leaf_15(2, 120, 25_000_000));
        let tf = f.frequency().unwrap();
        assert_eq!(tf.hz, Hertz::new(1_500_000_000));
        assert_eq!(tf.source.confidence(), Confidence::Known);
        assert_eq!(
            tf.source,
            FrequencySource::Cpuid15 {
                crystal: Hertz::from_mhz(25),
                origin: CrystalOrigin::Stated,
                numerator: 120,
                denominator: 2,
            }
        );
    }

    #[test]
    fn leaf_15_keeps_sub_khz_crystal_precision() {
        // 24_000_500 Hz × 157/2 = 1_884_039_250 Hz. Linux's kHz arithmetic
        // (24_000 kHz × 157/2) would give 1_884_000 kHz, 21 ppm low.
        let f = facts(FakeCpuid::new().leaf_15(2, 157, 24_000_500));
        assert_eq!(f.frequency().unwrap().hz, Hertz::new(1_884_039_250));
    }

    #[test]
    fn unstated_crystal_is_derived_from_the_base_frequency_as_linux_does() {
        // Skylake-like: ratio 216/2, no crystal, base 2600 MHz →
        // crystal = 2600 MHz · 2 / 216 = 24_074_074 Hz (floor), TSC =
        // crystal · 216 / 2 = 2_599_999_992 Hz.
        let f = facts(FakeCpuid::new().leaf_15(2, 216, 0).leaf_16(2600, 3900, 100));
        let tf = f.frequency().unwrap();
        assert_eq!(tf.hz, Hertz::new(2_599_999_992));
        assert_eq!(tf.source.confidence(), Confidence::Nominal);
        assert!(matches!(
            tf.source,
            FrequencySource::Cpuid15 {
                crystal,
                origin: CrystalOrigin::FromBaseFrequency { base_mhz: 2600 },
                ..
            } if crystal == Hertz::new(24_074_074)
        ));
    }

    #[test]
    fn unstated_crystal_without_leaf_16_states_nothing() {
        let f = facts(FakeCpuid::new().leaf_15(2, 216, 0));
        assert_eq!(f.from_leaf_15(), None);
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn denverton_gets_its_25_mhz_crystal() {
        let f = facts(
            FakeCpuid::new()
                .family_model(6, 0x5F)
                .leaf_15(1, 88, 0)
                .max_basic_leaf(0x15),
        );
        assert_eq!((f.family, f.model), (6, 0x5F));
        let tf = f.frequency().unwrap();
        assert_eq!(tf.hz, Hertz::new(2_200_000_000));
        assert_eq!(tf.source.confidence(), Confidence::Known);
    }

    #[test]
    fn zero_ratio_in_leaf_15_is_not_used() {
        // Leaf present (max basic leaf reaches it) but all zeros, as many
        // hypervisors report it.
        let f = facts(FakeCpuid::new().max_basic_leaf(0x16));
        assert_eq!(
            f.leaf_15,
            Some(Leaf15 {
                denominator: 0,
                numerator: 0,
                crystal_hz: 0
            })
        );
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn leaves_15_and_16_are_ignored_on_non_intel_parts() {
        let f = facts(
            FakeCpuid::new()
                .vendor(*b"AuthenticAMD")
                .leaf_15(2, 120, 25_000_000)
                .leaf_16(1500, 1500, 100),
        );
        assert_eq!(f.vendor, Vendor::Amd);
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn hypervisor_leaf_is_used_only_if_the_max_hypervisor_leaf_reaches_it() {
        let f = facts(FakeCpuid::new().hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, 2_100_000));
        let tf = f.frequency().unwrap();
        assert_eq!(tf.hz, Hertz::new(2_100_000_000));
        assert_eq!(tf.source, FrequencySource::Hypervisor { khz: 2_100_000 });

        let f = facts(FakeCpuid::new().hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0001, 2_100_000));
        assert_eq!(f.hypervisor_tsc_khz, None);
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn hypervisor_leaf_needs_the_hypervisor_bit() {
        let f = facts(
            FakeCpuid::new()
                .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, 2_100_000)
                .hypervisor_bit(false),
        );
        assert_eq!(f.hypervisor_tsc_khz, None);
    }

    #[test]
    fn priority_is_leaf_15_then_hypervisor_then_leaf_16() {
        let all = FakeCpuid::new()
            .leaf_15(2, 120, 25_000_000)
            .leaf_16(1400, 1400, 100)
            .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, 1_450_000);
        assert_eq!(facts(all).frequency().unwrap().hz.get(), 1_500_000_000);
        let no_15 = all.leaf_15(0, 0, 0);
        assert_eq!(facts(no_15).frequency().unwrap().hz.get(), 1_450_000_000);
        let only_16 = no_15.hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0001, 0);
        let tf = facts(only_16).frequency().unwrap();
        assert_eq!(tf.hz.get(), 1_400_000_000);
        assert_eq!(tf.source.confidence(), Confidence::Nominal);
    }

    #[test]
    fn absurd_values_are_skipped_for_the_next_source() {
        // 1 kHz from the hypervisor: skipped, leaf 0x16 used.
        let f = facts(
            FakeCpuid::new()
                .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, 1)
                .leaf_16(3000, 3000, 100),
        );
        assert_eq!(f.frequency().unwrap().hz, Hertz::from_mhz(3000));
        // A ratio giving 4 PHz: skipped; nothing else: none.
        let f = facts(FakeCpuid::new().leaf_15(1, u32::MAX, u32::MAX));
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn qemu_tcg_states_no_frequency_and_no_invariance() {
        let f = facts(FakeCpuid::qemu_tcg());
        assert!(f.has_tsc);
        assert!(!f.invariant);
        assert_eq!(f.frequency(), None);
    }

    #[test]
    fn kvm_host_invtsc_states_invariance_and_the_hypervisor_frequency() {
        let f = facts(FakeCpuid::kvm_host_invtsc(2_995_200));
        assert!(f.invariant);
        assert_eq!(f.frequency().unwrap().hz, Hertz::new(2_995_200_000));
    }

    #[test]
    fn display_says_where_the_frequency_came_from() {
        let s = std::format!(
            "{}",
            FrequencySource::Calibrated {
                reference: "pit",
                error_ppm: 335,
                window: clocksource::Nanos::from_micros(10_012),
            }
        );
        assert_eq!(s, "calibrated against pit over 10.012 ms, error <= 335 ppm");
    }

    #[test]
    fn any_leaf_15_and_16_values_give_none_or_a_plausible_rate() {
        fn prop(den: u32, num: u32, crystal: u32, base: u16, khz: u32) -> bool {
            let f = facts(
                FakeCpuid::new()
                    .leaf_15(den, num, crystal)
                    .leaf_16(base, base, 100)
                    .hypervisor(*b"KVMKVMKVM\0\0\0", 0x4000_0010, khz),
            );
            f.frequency().is_none_or(|tf| in_range(tf.hz))
        }
        QuickCheck::new()
            .tests(2_000)
            .quickcheck(prop as fn(u32, u32, u32, u16, u32) -> bool);
    }
}
