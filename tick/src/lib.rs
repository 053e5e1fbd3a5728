//! # tick — the periodic tick, high-resolution timers, NO_HZ idle, broadcast
//!
//! The top layer of dynticks, in the shape of Linux's
//! `kernel/time/tick-*.c` and `hrtimer.c`. This far:
//!
//! - [`queue`]: the per-CPU timer queue (a hierarchical wheel used as an
//!   exact radix heap; caller-owned storage, no allocation).
#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod queue;

pub use queue::{NotQueued, QueueFull, Timer, TimerId, TimerQueue, TimerSlot};
