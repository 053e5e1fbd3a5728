//! What CPUID says about the local APIC timer.
//!
//! | fact | leaf | Linux |
//! |------|------|-------|
//! | APIC present | `01H:EDX[9]` | `X86_FEATURE_APIC` |
//! | x2APIC | `01H:ECX[21]` | `X86_FEATURE_X2APIC` |
//! | TSC-deadline timer | `01H:ECX[24]` | `X86_FEATURE_TSC_DEADLINE_TIMER` |
//! | running under a hypervisor | `01H:ECX[31]` | `X86_FEATURE_HYPERVISOR` |
//! | timer runs in deep C-states (ARAT) | `06H:EAX[2]`; AMD family > 0x11 | `X86_FEATURE_ARAT` (arch/x86/kernel/cpu/amd.c sets it for family > 0x11) |
//! | core crystal = APIC timer input | 15H:ECX, or 16H:EAX·15H:EAX/EBX | `native_calibrate_tsc()` sets `lapic_timer_period` from it |
//! | hypervisor's APIC bus rate | 4000_0010H:EBX (kHz) | VMware's `vmware_platform_setup()` |
//!
//! Parsing goes through `raw-cpuid`, so tests feed fake leaves with
//! `CpuId::with_cpuid_reader` (the model provides one:
//! `LapicModel::cpuid`).

use clocksource::Hertz;
use raw_cpuid::{CpuId, CpuIdReader};

/// The local APIC timer facts CPUID states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `CPUID.01H:EDX[9]`: there is a local APIC.
    pub apic: bool,
    /// `CPUID.01H:ECX[21]`: x2APIC mode is available.
    pub x2apic: bool,
    /// `CPUID.01H:ECX[24]`: the timer has TSC-deadline mode.
    pub tsc_deadline: bool,
    /// `CPUID.01H:ECX[31]`: running under a hypervisor.
    pub hypervisor: bool,
    /// `CPUID.06H:EAX[2]` (AMD: family > 0x11): the APIC timer always runs,
    /// also in deep C-states, so it needs no broadcast device.
    pub arat: bool,
    /// The core crystal clock from CPUID leaf 0x15 (ECX; or, where ECX is
    /// 0, leaf 0x16's base MHz times 15H EAX/EBX, as Linux derives it). On
    /// recent Intel parts it feeds the APIC timer.
    pub crystal: Option<Hertz>,
    /// CPUID.4000_0010H:EBX: the APIC bus rate a hypervisor states.
    pub hypervisor_bus: Option<Hertz>,
}

impl Capabilities {
    /// Reads the facts from `cpuid`.
    pub fn from_cpuid<R: CpuIdReader>(cpuid: &CpuId<R>) -> Self {
        let f = cpuid.get_feature_info();
        let amd_arat = cpuid
            .get_vendor_info()
            .is_some_and(|v| v.as_str() == "AuthenticAMD")
            && f.as_ref().is_some_and(|f| f.family_id() > 0x11);
        let arat = cpuid.get_thermal_power_info().is_some_and(|t| t.has_arat()) || amd_arat;
        let crystal = cpuid.get_tsc_info().and_then(|t| {
            if t.nominal_frequency() != 0 {
                return Some(Hertz::new(t.nominal_frequency() as u64));
            }
            // Linux: crystal_khz = base_mhz · 1000 · denominator / numerator.
            let base_mhz = cpuid
                .get_processor_frequency_info()
                .map_or(0, |p| p.processor_base_frequency() as u64);
            if base_mhz == 0 || t.numerator() == 0 || t.denominator() == 0 {
                return None;
            }
            Some(Hertz::new(
                base_mhz * 1_000_000 * t.denominator() as u64 / t.numerator() as u64,
            ))
        });
        let hypervisor_bus = cpuid
            .get_hypervisor_info()
            .and_then(|h| h.apic_frequency())
            .filter(|khz| *khz != 0)
            .map(|khz| Hertz::from_khz(khz as u64));
        Capabilities {
            apic: f.as_ref().is_some_and(|f| f.has_apic()),
            x2apic: f.as_ref().is_some_and(|f| f.has_x2apic()),
            tsc_deadline: f.as_ref().is_some_and(|f| f.has_tsc_deadline()),
            hypervisor: f.as_ref().is_some_and(|f| f.has_hypervisor()),
            arat,
            crystal,
            hypervisor_bus,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raw_cpuid::CpuIdResult;

    fn leaf(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuIdResult {
        CpuIdResult { eax, ebx, ecx, edx }
    }

    /// A Skylake-like part: 24 MHz crystal stated in 0x15 ECX... or not.
    fn intel(crystal_in_ecx: bool) -> impl Fn(u32, u32) -> CpuIdResult + Clone {
        move |eax, _| match eax {
            // "GenuineIntel"
            0 => leaf(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            // family 6; ECX: x2APIC, TSC-deadline; EDX: APIC.
            1 => leaf(0x0005_06E3, 0, (1 << 21) | (1 << 24), 1 << 9),
            6 => leaf(1 << 2, 0, 0, 0),
            // TSC = crystal · 300 / 2 (3.6 GHz on a 24 MHz crystal).
            0x15 => leaf(2, 300, if crystal_in_ecx { 24_000_000 } else { 0 }, 0),
            0x16 => leaf(3600, 4000, 100, 0),
            _ => leaf(0, 0, 0, 0),
        }
    }

    #[test]
    fn intel_crystal_from_leaf_15_or_derived_from_16() {
        let c = Capabilities::from_cpuid(&CpuId::with_cpuid_reader(intel(true)));
        assert!(c.apic && c.x2apic && c.tsc_deadline && c.arat && !c.hypervisor);
        assert_eq!(c.crystal, Some(Hertz::new(24_000_000)));
        assert_eq!(c.hypervisor_bus, None);
        let c = Capabilities::from_cpuid(&CpuId::with_cpuid_reader(intel(false)));
        // 3600 MHz · 2 / 300 = 24 MHz.
        assert_eq!(c.crystal, Some(Hertz::new(24_000_000)));
    }

    #[test]
    fn hypervisor_timing_leaf_gives_the_apic_bus() {
        let cpuid = CpuId::with_cpuid_reader(|eax, _| match eax {
            0 => leaf(0x6, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            1 => leaf(0x0006_0FB1, 0, 1 << 31, 1 << 9),
            // "KVMKVMKVM", max leaf 0x4000_0010.
            0x4000_0000 => leaf(0x4000_0010, 0x4b4d_564b, 0x564b_4d56, 0x4d),
            0x4000_0010 => leaf(2_400_000, 1_000_000, 0, 0),
            _ => leaf(0, 0, 0, 0),
        });
        let c = Capabilities::from_cpuid(&cpuid);
        assert!(c.hypervisor && !c.arat && !c.tsc_deadline);
        assert_eq!(c.hypervisor_bus, Some(Hertz::from_mhz(1_000)));
    }

    #[test]
    fn amd_family_above_0x11_has_arat() {
        let cpuid = CpuId::with_cpuid_reader(|eax, _| match eax {
            // "AuthenticAMD"
            0 => leaf(0xD, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
            // family 0xF + ext 0x8 = 0x17 (Zen).
            1 => leaf(0x0080_0F12, 0, 0, 1 << 9),
            _ => leaf(0, 0, 0, 0),
        });
        let c = Capabilities::from_cpuid(&cpuid);
        assert!(c.arat);
        assert_eq!(c.crystal, None);
    }
}
