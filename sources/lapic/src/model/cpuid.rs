//! A CPUID for the modelled CPU, as `raw-cpuid` reads it.

use raw_cpuid::{CpuIdReader, CpuIdResult};

use super::LapicModelConfig;

/// Answers CPUID leaves consistently with a [`LapicModelConfig`]:
///
/// | leaf | contents |
/// |------|----------|
/// | 0 | max leaf 0x16, "GenuineIntel" |
/// | 1 | family 6; EDX: TSC, MSR, APIC; ECX: x2APIC, TSC-deadline, hypervisor per config |
/// | 6 | `EAX[2]` ARAT per config |
/// | 0x15 | with `crystal_leaf`: crystal = bus, TSC/crystal ratio reduced; else zeros |
/// | 0x4000_0000 | with `hypervisor`: "TCGTCGTCGTCG", max leaf 0x4000_0010 with `timing_leaf` |
/// | 0x4000_0010 | with `timing_leaf`: EAX TSC kHz, EBX bus kHz |
/// | anything else | zeros |
#[derive(Clone, Copy, Debug)]
pub struct ModelCpuid {
    config: LapicModelConfig,
}

impl ModelCpuid {
    /// The CPUID of a CPU configured as `config`.
    pub const fn new(config: LapicModelConfig) -> Self {
        ModelCpuid { config }
    }
}

const fn r(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuIdResult {
    CpuIdResult { eax, ebx, ecx, edx }
}

const fn bit(on: bool, n: u32) -> u32 {
    if on {
        1 << n
    } else {
        0
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl CpuIdReader for ModelCpuid {
    fn cpuid2(&self, eax: u32, _ecx: u32) -> CpuIdResult {
        let c = &self.config;
        match eax {
            0 => r(0x16, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            1 => r(
                0x0005_06E3,
                (c.cpu as u32 & 0xFF) << 24,
                bit(c.x2apic, 21) | bit(c.tsc_deadline, 24) | bit(c.hypervisor, 31),
                (1 << 4) | (1 << 5) | (1 << 9),
            ),
            6 => r(bit(c.arat, 2), 0, 0, 0),
            0x15 if c.crystal_leaf && c.bus.get() <= u32::MAX as u64 => {
                let (bus, tsc) = (c.bus.get(), c.tsc.get());
                let g = gcd(bus, tsc).max(1);
                let (den, num) = (bus / g, tsc / g);
                if den > u32::MAX as u64 || num > u32::MAX as u64 {
                    r(0, 0, bus as u32, 0)
                } else {
                    r(den as u32, num as u32, bus as u32, 0)
                }
            }
            0x4000_0000 if c.hypervisor => r(
                if c.timing_leaf {
                    0x4000_0010
                } else {
                    0x4000_0001
                },
                0x5447_4354,
                0x4354_4743,
                0x4743_5447,
            ),
            0x4000_0010 if c.hypervisor && c.timing_leaf => r(
                (c.tsc.get() / 1_000) as u32,
                (c.bus.get() / 1_000) as u32,
                0,
                0,
            ),
            0x8000_0000 => r(0x8000_0000, 0, 0, 0),
            _ => r(0, 0, 0, 0),
        }
    }
}
