//! # tsc — the time-stamp counter as a clock source
//!
//! The TSC is a 64-bit counter every x86_64 CPU increments, read with
//! `rdtsc` in a few tens of cycles: the best clock source there is when its
//! rate is known and constant. It has no interrupt, so it is a clock source
//! only (no clock-event device, no `oneshot` feature). This crate follows
//! Linux `arch/x86/kernel/tsc.c` (frequency, rating, watchdog exemption) and
//! the Intel SDM §18.17 "Time-Stamp Counter".
//!
//! ```text
//!   CPUID ──► TscCpuid (0x1, 0x15, 0x16, 0x4000_0000/10, 0x8000_0007)
//!               │ frequency(): 0x15 crystal·num/den ─► 0x4000_0010 kHz ─► 0x16 MHz
//!               │                 (known)                (known)           (nominal)
//!               ▼ none stated                        stated, reference given
//!     calibrate_tsc(reference)                       check_liveness(reference)
//!     10 ms; > 500 ppm or failed → 50 ms                TSC must move in 1 ms
//!               └──────────────┬──────────────────────────┘
//!                              ▼  1 MHz ≤ f ≤ 100 GHz, else TscError
//!     TscClockSource  "tsc", 64-bit, rating 300
//!        invariant (0x8000_0007 EDX[8]) or tsc=reliable → CONTINUOUS | VALID_FOR_HRES
//!        otherwise                          → VALID_FOR_HRES | MUST_VERIFY (watchdog)
//!        tsc=unstable                       → UNSTABLE, rating 0
//! ```
//!
//! - [`cpuid`]: the CPUID facts and the frequency they imply
//!   ([`frequency_from_cpuid`] is the pure function other crates use, e.g.
//!   the LAPIC's TSC-deadline mode).
//! - [`calibration`]: measuring the TSC against a reference (PIT channel 2,
//!   HPET — whatever the caller passes; this crate depends on neither).
//! - [`source`]: [`TscClockSource`], its rating and flags, [`TscError`].
//! - [`sync`]: [`WarpCheck`], the cross-CPU warp check of SMP bring-up
//!   (Linux `tsc_sync.c`): a warp means the TSC is to be marked unstable.
//! - `model` (feature `model`): a TSC model and a CPUID fake for tests.
//!
//! # When the TSC is trusted (Linux's rules, and the subset here)
//!
//! Linux registers `tsc` with `CONTINUOUS | VALID_FOR_HRES | MUST_VERIFY |
//! VERIFY_PERCPU` and clears `MUST_VERIFY` (no watchdog) when
//!
//! - `tsc=reliable` or `tsc=nowatchdog` is on the command line, or
//!   `X86_FEATURE_TSC_RELIABLE` is set (VMware, Hyper-V, Goldmont SoCs), or
//! - `check_system_tsc_reliable()` finds `CONSTANT_TSC` **and**
//!   `NONSTOP_TSC` **and** `TSC_ADJUST` (`CPUID.7.0:EBX[1]`) on at most four
//!   packages. `CONSTANT_TSC` and `NONSTOP_TSC` are both set from
//!   `CPUID.8000_0007H:EDX[8]` (invariant TSC); `CONSTANT_TSC` also from the
//!   family/model of older parts.
//!
//! and marks it unstable on `tsc=unstable`, a failed SMP sync test, cpufreq
//! changes without `CONSTANT_TSC`, AMD C1E without `NONSTOP_TSC`, or the
//! watchdog.
//!
//! Here: invariant TSC ⇒ trusted (no watchdog); otherwise watched. We do not
//! require `TSC_ADJUST` or count packages; the cross-CPU sync test is
//! [`WarpCheck`], which SMP bring-up runs and whose warp the embedder turns
//! into marking the TSC unstable. We do not infer
//! `CONSTANT_TSC` from family/model (a constant-rate TSC that halts in C3
//! still needs the watchdog). [`Stability`] carries `tsc=reliable` and
//! `tsc=unstable`.
//!
//! `no_std`, no allocation, no `unsafe` (the `rdtsc` is behind
//! [`hw::TscRead`]); the model needs `std`.
#![no_std]
#![forbid(unsafe_code)]
#[cfg(feature = "model")]
extern crate std;

pub mod calibration;
pub mod cpuid;
#[cfg(feature = "model")]
pub mod model;
pub mod source;
pub mod sync;

pub use calibration::calibrate_tsc;
pub use cpuid::{
    frequency_from_cpuid, Confidence, CrystalOrigin, FrequencySource, Leaf15, TscCpuid,
    TscFrequency, Vendor, MAX_FREQUENCY, MIN_FREQUENCY,
};
pub use source::{rating_and_flags, Stability, TscClockSource, TscError, TSC_NAME, TSC_RATING};
pub use sync::{WarpCheck, WarpResult};
