//! Which device serves which CPU: per-CPU selection, replacement and the
//! broadcast candidate.
//!
//! The rules are Linux's `tick_check_replacement()` (kernel/time/tick-common.c):
//!
//! 1. The new device must be able to interrupt the CPU. A device local to
//!    exactly this CPU is always eligible; a shared one loses to a current
//!    local device.
//! 2. A one-shot-capable device beats a periodic-only one, and a
//!    periodic-only device never replaces anything while one-shot mode is
//!    active on the CPU (that would silently end NO_HZ/high-res).
//! 3. Then the higher rating wins; at equal rating a CPU-local device beats
//!    a shared one.
//! 4. A CPU-local dummy (its CPU ticks by broadcast) takes a CPU that has no
//!    device, or one that is not per-CPU hardware; only per-CPU hardware
//!    replaces a dummy.
//!
//! A broadcast device (Linux `tick_check_broadcast_device()`) must not be
//! per-CPU, must not stop in deep idle itself, must not be a dummy, must be
//! one-shot-capable if broadcast runs in one-shot mode, and must be better
//! rated than the current one.

use crate::cpumask::{CpuId, CpuMask};
use crate::device::{ClockEventDevice, DeviceInfo, Features};

/// Whether `new` should replace `current` as the tick device of `cpu`.
pub fn prefer_for_cpu(
    current: Option<&DeviceInfo>,
    new: &DeviceInfo,
    cpu: CpuId,
    oneshot_active: bool,
) -> bool {
    let new_cpus = new.cpus;
    if !new_cpus.contains(cpu) {
        return false;
    }
    let new_local = new_cpus.is_only(cpu);
    let cur_local = current.is_some_and(|c| c.cpus.is_only(cpu));
    let percpu = |i: &DeviceInfo| i.features.contains(Features::PERCPU);
    let dummy = |i: &DeviceInfo| i.features.contains(Features::DUMMY);
    if dummy(new) {
        // A placeholder whose CPU takes its tick from the broadcast device
        // (Linux's LAPIC clockevent under `lapic=notimer`): it stands in
        // for nothing, or for a device that is not per-CPU hardware (an
        // HPET or PIT on IRQ0, even routed to this CPU alone), which it
        // frees for broadcast — in Linux the dummy LAPIC outrates the
        // legacy HPET on CPU 0. Never for a per-CPU device that works.
        return new_local && current.is_none_or(|c| !percpu(c) && !dummy(c));
    }
    if let Some(c) = current.filter(|c| dummy(c)) {
        // Only per-CPU hardware ends a dummy's broadcast tick; a shared
        // device stays the broadcast device it became.
        let _ = c;
        return percpu(new);
    }
    if !new_local && cur_local {
        return false;
    }
    if !new.features.contains(Features::ONESHOT) {
        if current.is_some_and(|c| c.features.contains(Features::ONESHOT)) || oneshot_active {
            return false;
        }
    } else if current.is_some_and(|c| !c.features.contains(Features::ONESHOT)) {
        return true;
    }
    match current {
        None => true,
        Some(c) => new.rating > c.rating || (new.rating == c.rating && new_local && !cur_local),
    }
}

/// Whether `new` may serve as the broadcast device instead of `current`.
pub fn prefer_for_broadcast(
    current: Option<&DeviceInfo>,
    new: &DeviceInfo,
    need_oneshot: bool,
) -> bool {
    let f = new.features;
    if f.intersects(Features::PERCPU | Features::C3STOP | Features::DUMMY) {
        return false;
    }
    if need_oneshot && !f.contains(Features::ONESHOT) {
        return false;
    }
    if !f.intersects(Features::ONESHOT | Features::PERIODIC) {
        return false;
    }
    current.is_none_or(|c| new.rating > c.rating)
}

/// Who uses a registered device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Nobody: available.
    Free,
    /// The tick device of this CPU.
    Cpu(CpuId),
    /// The broadcast device.
    Broadcast,
}

impl Owner {
    /// The CPU whose tick device it is, if it is one.
    pub fn cpu(self) -> Option<CpuId> {
        match self {
            Owner::Cpu(c) => Some(c),
            _ => None,
        }
    }
}

/// Index of a device in a [`DevicePool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub usize);

/// Why a device could not be registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The pool's fixed capacity is used up.
    Full,
    /// A device with that name is already registered.
    DuplicateName,
    /// The device declares an empty CPU set.
    NoCpus,
}

/// One registered device: the driver, what it is (read once, at
/// registration), and who uses it.
#[derive(Clone, Copy)]
struct Entry<'a> {
    dev: &'a dyn ClockEventDevice,
    info: DeviceInfo,
    owner: Owner,
}

/// The registered event devices and who uses each. Fixed capacity `N`, no
/// allocation.
pub struct DevicePool<'a, const N: usize> {
    devs: [Option<Entry<'a>>; N],
}

impl<const N: usize> Default for DevicePool<'_, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize> DevicePool<'a, N> {
    /// An empty pool.
    pub const fn new() -> Self {
        DevicePool { devs: [None; N] }
    }

    /// Adds a device, free for selection.
    pub fn register(&mut self, dev: &'a dyn ClockEventDevice) -> Result<DeviceId, PoolError> {
        self.register_with(dev, dev.info())
    }

    /// Adds a device whose [`DeviceInfo`] the caller has already read (so
    /// that registration reads it once).
    pub fn register_with(
        &mut self,
        dev: &'a dyn ClockEventDevice,
        info: DeviceInfo,
    ) -> Result<DeviceId, PoolError> {
        if info.cpus.is_empty() {
            return Err(PoolError::NoCpus);
        }
        if self.entries().any(|(_, e)| e.info.name == info.name) {
            return Err(PoolError::DuplicateName);
        }
        let slot = self
            .devs
            .iter()
            .position(Option::is_none)
            .ok_or(PoolError::Full)?;
        self.devs[slot] = Some(Entry {
            dev,
            info,
            owner: Owner::Free,
        });
        Ok(DeviceId(slot))
    }

    /// The device with id `id`.
    pub fn get(&self, id: DeviceId) -> Option<&'a dyn ClockEventDevice> {
        self.entry(id).map(|e| e.dev)
    }

    /// What device `id` is, as read when it was registered.
    pub fn info(&self, id: DeviceId) -> Option<&DeviceInfo> {
        self.entry(id).map(|e| &e.info)
    }

    /// Who uses `id`.
    pub fn owner(&self, id: DeviceId) -> Option<Owner> {
        self.entry(id).map(|e| e.owner)
    }

    /// Records who uses `id`.
    pub fn set_owner(&mut self, id: DeviceId, owner: Owner) {
        if let Some(Some(e)) = self.devs.get_mut(id.0) {
            e.owner = owner;
        }
    }

    fn entry(&self, id: DeviceId) -> Option<&Entry<'a>> {
        self.devs.get(id.0).and_then(Option::as_ref)
    }

    fn entries(&self) -> impl Iterator<Item = (DeviceId, &Entry<'a>)> + '_ {
        self.devs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|e| (DeviceId(i), e)))
    }

    /// The device named `name`.
    pub fn find(&self, name: &str) -> Option<DeviceId> {
        self.entries()
            .find(|(_, e)| e.info.name == name)
            .map(|(id, _)| id)
    }

    /// Every registered device with its owner.
    pub fn iter(&self) -> impl Iterator<Item = (DeviceId, &'a dyn ClockEventDevice, Owner)> + '_ {
        self.entries().map(|(id, e)| (id, e.dev, e.owner))
    }

    /// Every registered device's [`DeviceInfo`] with its owner.
    pub fn infos(&self) -> impl Iterator<Item = (DeviceId, &DeviceInfo, Owner)> + '_ {
        self.entries().map(|(id, e)| (id, &e.info, e.owner))
    }

    /// The best free device for `cpu` that should replace `current` (by
    /// [`prefer_for_cpu`]), if any. `only` restricts the choice to one
    /// device (a user override by name).
    pub fn best_for_cpu(
        &self,
        cpu: CpuId,
        current: Option<DeviceId>,
        oneshot_active: bool,
        only: Option<DeviceId>,
    ) -> Option<DeviceId> {
        let mut best = current;
        for (id, info, owner) in self.infos() {
            if owner != Owner::Free || only.is_some_and(|o| o != id) {
                continue;
            }
            let cur = best.and_then(|b| self.info(b));
            if prefer_for_cpu(cur, info, cpu, oneshot_active) {
                best = Some(id);
            }
        }
        best.filter(|b| Some(*b) != current)
    }

    /// The best free device to become the broadcast device instead of
    /// `current`, if any.
    pub fn best_for_broadcast(
        &self,
        current: Option<DeviceId>,
        need_oneshot: bool,
    ) -> Option<DeviceId> {
        let mut best = current;
        for (id, info, owner) in self.infos() {
            if owner != Owner::Free {
                continue;
            }
            let cur = best.and_then(|b| self.info(b));
            if prefer_for_broadcast(cur, info, need_oneshot) {
                best = Some(id);
            }
        }
        best.filter(|b| Some(*b) != current)
    }

    /// The CPUs some registered device can serve.
    pub fn coverage(&self) -> CpuMask {
        let mut m = CpuMask::EMPTY;
        for (_, info, _) in self.infos() {
            for c in info.cpus.iter() {
                m.insert(c);
            }
        }
        m
    }
}
