//! The test rig: everything only the in-guest tests and benchmarks need —
//! the suite (`suite`), the boot table (`table`), result lines
//! ([`result`]), the arithmetic of expectations ([`expect`]), the NO_HZ
//! window analysis ([`idle`]) and the documented figures tests compare with
//! ([`documented`]). A kernel embedding dynticks copies none of it.

pub mod documented;
pub mod expect;
pub mod idle;
pub mod result;

#[cfg(target_os = "none")]
pub mod suite;
#[cfg(target_os = "none")]
pub mod table;
