//! The locks the tick system's parts sit behind, chosen by the embedder.
//!
//! [`TickSystem`](crate::TickSystem) is cut along the lines of the crate
//! docs' table ("State, and who touches it"): each CPU's state, the
//! broadcast state, the device pool and the timekeeping each sit in a
//! lock of their own, of the family `L:` [`Locks`]. The core does not pick
//! the lock: a kernel gives a spinlock it takes with interrupts off (on
//! the CPU taking it, so its own interrupt cannot re-enter it; Linux's
//! `raw_spin_lock_irqsave`), a host test `std::sync::Mutex`, a `loom`
//! model loom's mutex. The default, [`Single`], is a `RefCell`: one CPU,
//! or an embedder that serialises every call itself.
//!
//! # The order they are taken in
//!
//! ```text
//!   CPU c's state  ──►  broadcast  ──►  device pool  ──►  timekeeping
//! ```
//!
//! A path holding one may take those to its right, never one to its left,
//! and never two CPUs' states at once: a CPU's interrupt holds its own
//! state and reaches the broadcast state (deep idle) and the timekeeping
//! (the duty, the watchdog); a timer queued for another CPU holds that
//! CPU's state alone. What a path would otherwise need from every CPU —
//! which CPUs run one-shot, which last held the duty — is kept as masks
//! beside the timekeeping, written by each CPU for itself.
//!
//! Timer callbacks ([`TimerFn`](crate::TimerFn)) run with their CPU's state
//! held: a callback that calls back into the tick system for its own CPU
//! deadlocks a spinlock, and under [`Single`] panics (the `RefCell` is
//! already borrowed). A callback records or wakes; what it asks for next it
//! returns ([`Rearm`](crate::Rearm)).

use core::cell::{RefCell, RefMut};
use core::ops::{Deref, DerefMut};

/// A lock over a `T`: [`Locks::Of`].
pub trait Lock<T> {
    /// What [`Lock::lock`] returns: the `T`, held until it is dropped.
    type Guard<'g>: DerefMut<Target = T>
    where
        Self: 'g;
    /// A lock holding `value`.
    fn new(value: T) -> Self;
    /// Takes the lock (spins or blocks until it is free).
    fn lock(&self) -> Self::Guard<'_>;
    /// The value, through exclusive access: no locking.
    fn get_mut(&mut self) -> &mut T;
}

/// A family of locks: `Of<T>` is its lock over a `T`.
pub trait Locks {
    /// The lock over a `T`.
    type Of<T>: Lock<T>;
}

/// No locking: a `RefCell` per part, for one CPU or for an embedder that
/// serialises every call itself (a kernel's one lock, the simulator). Not
/// `Sync`. A re-entry — a part taken again while held, which a real lock
/// would deadlock on — panics.
#[derive(Debug)]
pub struct Single;

impl<T> Lock<T> for RefCell<T> {
    type Guard<'g>
        = RefMut<'g, T>
    where
        T: 'g;
    fn new(value: T) -> Self {
        RefCell::new(value)
    }
    fn lock(&self) -> RefMut<'_, T> {
        self.borrow_mut()
    }
    fn get_mut(&mut self) -> &mut T {
        RefCell::get_mut(self)
    }
}

impl Locks for Single {
    type Of<T> = RefCell<T>;
}

/// A part of a held lock's value: derefs to what `get` picks out of the
/// guard's target, and holds the lock until dropped (the reporting
/// accessors' return, e.g. [`TickSystem::clocksources`](crate::TickSystem::clocksources)).
pub(crate) struct Held<G: Deref, U: ?Sized> {
    guard: G,
    get: fn(&G::Target) -> &U,
}

impl<G: Deref, U: ?Sized> Held<G, U> {
    pub(crate) fn new(guard: G, get: fn(&G::Target) -> &U) -> Self {
        Held { guard, get }
    }
}

impl<G: Deref, U: ?Sized> Deref for Held<G, U> {
    type Target = U;
    fn deref(&self) -> &U {
        (self.get)(&self.guard)
    }
}
/// `std::sync::Mutex` as a lock family, for the host's thread tests (a
/// poisoned lock is taken anyway: the panicking test has failed already).
#[cfg(test)]
pub(crate) struct StdLocks;

#[cfg(test)]
impl<T> Lock<T> for std::sync::Mutex<T> {
    type Guard<'g>
        = std::sync::MutexGuard<'g, T>
    where
        T: 'g;
    fn new(value: T) -> Self {
        std::sync::Mutex::new(value)
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        std::sync::Mutex::lock(self).unwrap_or_else(|e| e.into_inner())
    }
    fn get_mut(&mut self) -> &mut T {
        std::sync::Mutex::get_mut(self).unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
impl Locks for StdLocks {
    type Of<T> = std::sync::Mutex<T>;
}

/// loom's mutex as a lock family: the model-checked tests ([`crate::loom_tests`]).
#[cfg(all(loom, test))]
pub(crate) struct LoomLocks;

#[cfg(all(loom, test))]
impl<T> Lock<T> for loom::sync::Mutex<T> {
    type Guard<'g>
        = loom::sync::MutexGuard<'g, T>
    where
        T: 'g;
    fn new(value: T) -> Self {
        loom::sync::Mutex::new(value)
    }
    fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        loom::sync::Mutex::lock(self).unwrap_or_else(|e| e.into_inner())
    }
    fn get_mut(&mut self) -> &mut T {
        loom::sync::Mutex::get_mut(self).unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(all(loom, test))]
impl Locks for LoomLocks {
    type Of<T> = loom::sync::Mutex<T>;
}
