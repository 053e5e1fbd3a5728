//! # clockevents — programmable timer devices
//!
//! The middle layer of dynticks, in the shape of Linux's
//! `kernel/time/clockevents.c`: drivers implement [`ClockEventDevice`]; the
//! core wraps each registered one in an [`EventDevice`] that owns its state
//! machine, its ns↔cycles conversion and its min/max delta, and programs it
//! safely.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod cpumask;
pub mod device;

pub use cpumask::{CpuId, CpuMask, MAX_CPUS};
pub use device::{ClockEventDevice, DeviceError, DeviceInfo, Features, NextEvent, Programming};
pub mod event;
pub mod select;
pub mod state;

pub use event::{
    ConfigError, EventDevice, Expired, ProgramError, ProgramStats, Programmed, MIN_DELTA_FLOOR,
    MIN_DELTA_TRIES,
};
pub use select::{prefer_for_broadcast, prefer_for_cpu, DeviceId, DevicePool, Owner, PoolError};
pub use state::{DeviceState, StateError};

#[cfg(test)]
mod tests;
