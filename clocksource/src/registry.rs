//! Registered clock sources and the choice among them (Linux
//! `clocksource_register_*`, `clocksource_select()`, `clocksource=`).
//!
//! ```text
//!   register(cs) ──► Entry { params (once), runtime flags, effective rating }
//!                          │               ▲
//!                          │               └── mark_unstable(): +UNSTABLE,
//!                          │                   −VALID_FOR_HRES, rating 0
//!   select(require_hres) ──┤
//!     1. the override (clocksource=NAME) if registered, stable, and
//!        VALID_FOR_HRES when required; otherwise logged and ignored
//!     2. else the highest effective rating among stable sources with a
//!        rating above 0 (VALID_FOR_HRES when required); ties → registered first
//!                          │
//!   reselect(tk) ──────────┴──► Timekeeper::change_clocksource if it changed
//! ```
//!
//! Fixed capacity `N`, no allocation. A [`SourceId`] carries a generation,
//! so an id kept after its source was unregistered never names the source
//! that later reuses the slot.

use core::fmt;

use crate::mult_shift::ConversionError;
use crate::source::{ClockParams, ClockSource, ClockSourceFlags};
use crate::time::{Hertz, Nanos};
use crate::timekeeper::Timekeeper;
use crate::watchdog::{Verdict, WatchdogReport};

/// The longest override name [`Registry::set_override`] stores, in bytes.
pub const OVERRIDE_NAME_MAX: usize = 32;

/// Names one registration in a [`Registry`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    slot: u16,
    generation: u16,
}

impl SourceId {
    /// The slot in the registry, below its capacity `N` (for per-source
    /// tables kept beside the registry, like the watchdog's baselines).
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
}

/// Why a source was not registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// All `N` slots are taken.
    Full,
    /// A source of the same name is registered already.
    DuplicateName,
    /// No conversion factor exists for the source's frequency.
    BadFrequency(ConversionError),
}

/// Why a source was not unregistered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnregisterError {
    /// The id names no registered source.
    UnknownSource,
    /// The source is the current one: use [`Registry::unregister_switching`],
    /// which moves the timekeeper off it first.
    InUse,
    /// The source is the current one and no other source can replace it
    /// (Linux answers `-EBUSY`).
    NoFallback,
}

/// Why an override name was not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrideError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`OVERRIDE_NAME_MAX`] bytes.
    TooLong {
        /// The length given.
        len: usize,
    },
}

/// Why [`Registry::reselect`] could not put the timekeeper on a good source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReselectError {
    /// No source qualifies and the current one (if any) is unstable: the
    /// timekeeper stays where it is.
    NoStableSource,
}

/// The id names no registered source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownSource;

/// One registered source and its runtime state.
pub struct Entry<'a> {
    id: SourceId,
    source: &'a dyn ClockSource,
    params: ClockParams,
    flags: ClockSourceFlags,
    rating: u16,
    seq: u64,
}

impl<'a> Entry<'a> {
    /// This entry's id.
    pub fn id(&self) -> SourceId {
        self.id
    }
    /// The source.
    pub fn source(&self) -> &'a dyn ClockSource {
        self.source
    }
    /// The source's name.
    pub fn name(&self) -> &'static str {
        self.source.name()
    }
    /// Parameters derived at registration.
    pub fn params(&self) -> &ClockParams {
        &self.params
    }
    /// Runtime flags: what the source declared, with `UNSTABLE` set and
    /// `VALID_FOR_HRES` cleared once it is found unstable.
    pub fn flags(&self) -> ClockSourceFlags {
        self.flags
    }
    /// Effective rating: the declared one, 0 once unstable.
    pub fn rating(&self) -> u16 {
        self.rating
    }
    /// The source's frequency.
    pub fn frequency(&self) -> Hertz {
        self.source.frequency()
    }
    /// Max deferment for this source.
    pub fn max_idle(&self) -> Nanos {
        self.params.max_idle
    }
    /// Whether it has been found (or declared) unstable.
    pub fn is_unstable(&self) -> bool {
        self.flags.contains(ClockSourceFlags::UNSTABLE)
    }
    fn qualifies(&self, require_hres: bool) -> bool {
        !self.is_unstable()
            && (!require_hres || self.flags.contains(ClockSourceFlags::VALID_FOR_HRES))
    }
}

/// The header matching an [`Entry`]'s `Display` row.
pub const TABLE_HEADER: &str = "name             rating        frequency          max_idle  flags";

/// One table row: name, rating, frequency, max_idle, flags.
impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<16} {:>6} {:>16} {:>17}  {:?}",
            self.name(),
            self.rating,
            self.frequency(),
            self.params.max_idle,
            self.flags
        )
    }
}

impl fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("name", &self.name())
            .field("rating", &self.rating)
            .field("flags", &self.flags)
            .field("params", &self.params)
            .finish()
    }
}

/// Up to `N` registered clock sources, the user's override and the current
/// choice.
pub struct Registry<'a, const N: usize> {
    slots: [Option<Entry<'a>>; N],
    generations: [u16; N],
    next_seq: u64,
    override_name: [u8; OVERRIDE_NAME_MAX],
    override_len: usize,
    current: Option<SourceId>,
}

impl<'a, const N: usize> Default for Registry<'a, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, const N: usize> Registry<'a, N> {
    const CAPACITY_FITS: () = assert!(N <= u16::MAX as usize, "registry capacity above 65535");

    /// An empty registry without an override.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_FITS;
        Registry {
            slots: [const { None }; N],
            generations: [0; N],
            next_seq: 0,
            override_name: [0; OVERRIDE_NAME_MAX],
            override_len: 0,
            current: None,
        }
    }

    /// Registers `cs`, deriving its parameters once.
    ///
    /// # Errors
    ///
    /// [`RegisterError::Full`], [`RegisterError::DuplicateName`], or
    /// [`RegisterError::BadFrequency`] if its rate cannot be converted.
    pub fn register(&mut self, cs: &'a dyn ClockSource) -> Result<SourceId, RegisterError> {
        if self.find(cs.name()).is_some() {
            return Err(RegisterError::DuplicateName);
        }
        let params = ClockParams::for_source(cs).map_err(RegisterError::BadFrequency)?;
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(RegisterError::Full)?;
        let id = SourceId {
            slot: slot as u16,
            generation: self.generations[slot],
        };
        let flags = cs.flags();
        let rating = if flags.contains(ClockSourceFlags::UNSTABLE) {
            0
        } else {
            cs.rating()
        };
        self.slots[slot] = Some(Entry {
            id,
            source: cs,
            params,
            flags,
            rating,
            seq: self.next_seq,
        });
        self.next_seq += 1;
        log::info!(
            "clocksource: registered {}: rating {}, {}, max_idle {}",
            cs.name(),
            rating,
            cs.frequency(),
            params.max_idle
        );
        Ok(id)
    }

    /// Removes a source that is not the current one, and returns it.
    ///
    /// # Errors
    ///
    /// [`UnregisterError::UnknownSource`], or [`UnregisterError::InUse`] for
    /// the current source (see [`unregister_switching`](Self::unregister_switching)).
    pub fn unregister(&mut self, id: SourceId) -> Result<&'a dyn ClockSource, UnregisterError> {
        if self.get(id).is_none() {
            return Err(UnregisterError::UnknownSource);
        }
        if self.current == Some(id) {
            return Err(UnregisterError::InUse);
        }
        self.remove(id).ok_or(UnregisterError::UnknownSource)
    }

    /// Removes a source; if it is the current one, first moves `tk` to the
    /// best other source (selected as by [`select`](Self::select)).
    ///
    /// # Errors
    ///
    /// [`UnregisterError::UnknownSource`], or [`UnregisterError::NoFallback`]
    /// if it is current and nothing else qualifies (it then stays registered
    /// and current).
    pub fn unregister_switching(
        &mut self,
        id: SourceId,
        tk: &mut Timekeeper<'a>,
        require_hres: bool,
    ) -> Result<&'a dyn ClockSource, UnregisterError> {
        if self.get(id).is_none() {
            return Err(UnregisterError::UnknownSource);
        }
        if self.current == Some(id) {
            let to = self
                .select_excluding(require_hres, Some(id))
                .ok_or(UnregisterError::NoFallback)?;
            self.switch(tk, to);
        }
        self.remove(id).ok_or(UnregisterError::UnknownSource)
    }

    fn remove(&mut self, id: SourceId) -> Option<&'a dyn ClockSource> {
        self.get(id)?;
        let slot = id.slot();
        let cs = self.slots[slot].take()?.source;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        log::info!("clocksource: unregistered {}", cs.name());
        Some(cs)
    }

    /// The entry `id` names, if it is still registered.
    pub fn get(&self, id: SourceId) -> Option<&Entry<'a>> {
        self.slots.get(id.slot())?.as_ref().filter(|e| e.id == id)
    }

    /// The registered source called `name`.
    pub fn find(&self, name: &str) -> Option<SourceId> {
        self.iter().find(|e| e.name() == name).map(|e| e.id)
    }

    /// The registered entries, in slot order (for a table: see
    /// [`TABLE_HEADER`] and `Entry`'s `Display`).
    pub fn iter(&self) -> impl Iterator<Item = &Entry<'a>> + '_ {
        self.slots.iter().flatten()
    }

    /// How many sources are registered.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no source is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names the source to prefer over ratings (Linux `clocksource=`). It
    /// may register later; it is honoured once present (see
    /// [`select`](Self::select)).
    ///
    /// # Errors
    ///
    /// [`OverrideError::Empty`] or [`OverrideError::TooLong`] (above
    /// [`OVERRIDE_NAME_MAX`] bytes); the previous override is then kept.
    pub fn set_override(&mut self, name: &str) -> Result<(), OverrideError> {
        let b = name.as_bytes();
        if b.is_empty() {
            return Err(OverrideError::Empty);
        }
        if b.len() > OVERRIDE_NAME_MAX {
            return Err(OverrideError::TooLong { len: b.len() });
        }
        self.override_name[..b.len()].copy_from_slice(b);
        self.override_len = b.len();
        Ok(())
    }

    /// Drops the override: selection goes by rating again.
    pub fn clear_override(&mut self) {
        self.override_len = 0;
    }

    /// The override name, if one is set.
    pub fn override_name(&self) -> Option<&str> {
        if self.override_len == 0 {
            return None;
        }
        core::str::from_utf8(&self.override_name[..self.override_len]).ok()
    }

    /// The source the timekeeper should run on.
    ///
    /// 1. The override, if registered, not unstable and — when
    ///    `require_hres` (high-res / NO_HZ mode) — `VALID_FOR_HRES`.
    ///    Otherwise the reason is logged and selection falls back to 2.
    ///    An unstable override stays set but is never used; one that is only
    ///    not HRES-valid is used once it is (or once HRES is not required).
    /// 2. The highest effective rating among sources that are not unstable,
    ///    rated above 0 (0 is never chosen automatically) and, when
    ///    `require_hres`, `VALID_FOR_HRES`. Ties go to the one registered
    ///    first.
    ///
    /// `None` if no source qualifies.
    pub fn select(&self, require_hres: bool) -> Option<SourceId> {
        self.select_excluding(require_hres, None)
    }

    fn select_excluding(&self, require_hres: bool, exclude: Option<SourceId>) -> Option<SourceId> {
        if let Some(name) = self.override_name() {
            match self
                .iter()
                .find(|e| e.name() == name && Some(e.id) != exclude)
            {
                Some(e) if e.is_unstable() => {
                    log::warn!("clocksource: override {name} is unstable, not using it");
                }
                Some(e) if !e.qualifies(require_hres) => {
                    log::info!(
                        "clocksource: override {name} is not currently HRT compatible - deferring"
                    );
                }
                Some(e) => return Some(e.id),
                None => log::debug!("clocksource: override {name} is not registered (yet)"),
            }
        }
        self.iter()
            .filter(|e| Some(e.id) != exclude && e.rating > 0 && e.qualifies(require_hres))
            .max_by(|a, b| a.rating.cmp(&b.rating).then(b.seq.cmp(&a.seq)))
            .map(|e| e.id)
    }

    /// Marks a source unstable: sets `UNSTABLE`, clears `VALID_FOR_HRES`,
    /// drops its effective rating to 0 (as Linux's watchdog kthread does),
    /// and logs it. Returns whether it was newly marked. The caller then
    /// calls [`reselect`](Self::reselect).
    ///
    /// # Errors
    ///
    /// [`UnknownSource`] if `id` is not registered.
    pub fn mark_unstable(&mut self, id: SourceId) -> Result<bool, UnknownSource> {
        let current = self.current;
        let e = self.entry_mut(id).ok_or(UnknownSource)?;
        if e.is_unstable() {
            return Ok(false);
        }
        e.flags.insert(ClockSourceFlags::UNSTABLE);
        e.flags.remove(ClockSourceFlags::VALID_FOR_HRES);
        e.rating = 0;
        log::warn!(
            "clocksource: marking {} unstable{}",
            e.name(),
            if current == Some(id) {
                " (current clocksource)"
            } else {
                ""
            }
        );
        Ok(true)
    }

    fn entry_mut(&mut self, id: SourceId) -> Option<&mut Entry<'a>> {
        self.slots
            .get_mut(id.slot())?
            .as_mut()
            .filter(|e| e.id == id)
    }

    /// The source the timekeeper runs on, as last recorded.
    pub fn current(&self) -> Option<SourceId> {
        self.current
    }

    /// Records that the timekeeper now runs on `id` (for callers that
    /// switch it themselves; [`reselect`](Self::reselect) does both).
    ///
    /// # Errors
    ///
    /// [`UnknownSource`] if `id` is not registered; nothing is recorded.
    pub fn set_current(&mut self, id: SourceId) -> Result<(), UnknownSource> {
        self.get(id).ok_or(UnknownSource)?;
        self.current = Some(id);
        Ok(())
    }

    /// Selects (see [`select`](Self::select)) and, if the choice differs from
    /// the current source, moves `tk` onto it with
    /// [`Timekeeper::change_clocksource`] (monotonic never goes backwards)
    /// and records it as current. Returns the source switched to, or `None`
    /// if nothing changed.
    ///
    /// # Errors
    ///
    /// [`ReselectError::NoStableSource`] if nothing qualifies and there is no
    /// current source or it is unstable; `tk` is left as it is.
    pub fn reselect(
        &mut self,
        tk: &mut Timekeeper<'a>,
        require_hres: bool,
    ) -> Result<Option<SourceId>, ReselectError> {
        match self.select(require_hres) {
            Some(to) if Some(to) == self.current => Ok(None),
            Some(to) => {
                self.switch(tk, to);
                Ok(Some(to))
            }
            None => match self.current.and_then(|c| self.get(c)) {
                Some(e) if !e.is_unstable() => Ok(None),
                _ => {
                    log::warn!("clocksource: no stable clocksource to switch to");
                    Err(ReselectError::NoStableSource)
                }
            },
        }
    }

    /// [`reselect`](Self::reselect) after a watchdog check. If `report`
    /// found the current source unstable, the clocks carry the error it ran
    /// up since its last good check (the judged interval's skew); once they
    /// run on another source, that error is taken out
    /// ([`Timekeeper::correct`] with [`Skew::clock_error`]): time after the
    /// switch is the time the reference counted since that check, never
    /// stepping back. (Linux only switches, keeping the error.) The result
    /// is `reselect`'s; with no source to switch to nothing is corrected.
    ///
    /// The correction assumes the clocks ran on that source over the whole
    /// judged interval: a caller that switches sources otherwise should
    /// [`Watchdog::reset`](crate::Watchdog::reset) the baselines.
    ///
    /// # Errors
    ///
    /// As [`reselect`](Self::reselect).
    ///
    /// [`Skew::clock_error`]: crate::watchdog::Skew::clock_error
    pub fn reselect_after_check(
        &mut self,
        tk: &mut Timekeeper<'a>,
        require_hres: bool,
        report: &WatchdogReport<N>,
    ) -> Result<Option<SourceId>, ReselectError> {
        let error = self
            .current
            .and_then(|c| report.verdict(c))
            .and_then(|v| match v {
                Verdict::Unstable(s) => Some(s.clock_error()),
                _ => None,
            });
        let switched = self.reselect(tk, require_hres)?;
        if let (Some(_), Some(e)) = (switched, error) {
            tk.correct(e);
        }
        Ok(switched)
    }

    fn switch(&mut self, tk: &mut Timekeeper<'a>, to: SourceId) {
        let Some(e) = self.get(to) else { return };
        let (source, params) = (e.source, e.params);
        log::info!(
            "clocksource: switched from {} to {}",
            tk.clocksource().name(),
            source.name()
        );
        tk.change_clocksource_with_params(source, params);
        self.current = Some(to);
    }
}

impl<const N: usize> fmt::Debug for Registry<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entries<'r, 'a, const N: usize>(&'r Registry<'a, N>);
        impl<const N: usize> fmt::Debug for Entries<'_, '_, N> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.0.iter()).finish()
            }
        }
        f.debug_struct("Registry")
            .field("entries", &Entries(self))
            .field("override", &self.override_name())
            .field("current", &self.current)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Ktime, NSEC_PER_SEC};
    use crate::timekeeper::fake::{FakeClock, World};
    use std::format;
    use std::string::ToString;

    const HRES: ClockSourceFlags =
        ClockSourceFlags::CONTINUOUS.union(ClockSourceFlags::VALID_FOR_HRES);

    #[test]
    fn selects_the_highest_rating_and_ties_go_to_the_first_registered() {
        let w = World::new();
        let pit = FakeClock::new(&w, "pit", 1_193_182).bits(16).rating(110);
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32).rating(250);
        let hpet2 = FakeClock::new(&w, "hpet2", 14_318_180).bits(32).rating(250);
        let tsc = FakeClock::new(&w, "tsc", 3_000_000_000).rating(300);
        let mut reg: Registry<'_, 8> = Registry::new();
        let p = reg.register(&pit).unwrap();
        assert_eq!(reg.select(false), Some(p));
        let h = reg.register(&hpet).unwrap();
        reg.register(&hpet2).unwrap();
        assert_eq!(reg.select(false), Some(h), "tie → registered first");
        let t = reg.register(&tsc).unwrap();
        assert_eq!(reg.select(false), Some(t));
        assert_eq!(reg.len(), 4);
    }

    #[test]
    fn rating_zero_and_unstable_are_never_auto_selected() {
        let w = World::new();
        let jiffies = FakeClock::new(&w, "jiffies", 1_000).bits(32).rating(0);
        let bad = FakeClock::new(&w, "bad", 3_000_000_000)
            .rating(400)
            .flags(ClockSourceFlags::CONTINUOUS | ClockSourceFlags::UNSTABLE);
        let mut reg: Registry<'_, 4> = Registry::new();
        let j = reg.register(&jiffies).unwrap();
        let b = reg.register(&bad).unwrap();
        assert_eq!(
            reg.get(b).unwrap().rating(),
            0,
            "declared unstable → rating 0"
        );
        assert_eq!(reg.select(false), None);
        reg.set_override("jiffies").unwrap();
        assert_eq!(reg.select(false), Some(j), "rating 0 only by override");
    }

    #[test]
    fn hres_requirement_skips_sources_not_valid_for_hres() {
        let w = World::new();
        let acpi = FakeClock::new(&w, "acpi_pm", 3_579_545)
            .bits(24)
            .rating(200)
            .flags(ClockSourceFlags::CONTINUOUS);
        let pit = FakeClock::new(&w, "pit", 1_193_182).bits(16).rating(110);
        let mut reg: Registry<'_, 4> = Registry::new();
        let a = reg.register(&acpi).unwrap();
        let p = reg.register(&pit).unwrap();
        assert_eq!(reg.select(false), Some(a));
        assert_eq!(reg.select(true), Some(p));
    }

    #[test]
    fn override_is_honoured_over_rating() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32).rating(250);
        let tsc = FakeClock::new(&w, "tsc", 3_000_000_000).rating(300);
        let mut reg: Registry<'_, 4> = Registry::new();
        let h = reg.register(&hpet).unwrap();
        let t = reg.register(&tsc).unwrap();
        reg.set_override("hpet").unwrap();
        assert_eq!(reg.override_name(), Some("hpet"));
        assert_eq!(reg.select(true), Some(h));
        reg.clear_override();
        assert_eq!(reg.select(true), Some(t));
    }

    #[test]
    fn unstable_override_is_refused() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32).rating(250);
        let tsc = FakeClock::new(&w, "tsc", 3_000_000_000).rating(300);
        let mut reg: Registry<'_, 4> = Registry::new();
        let h = reg.register(&hpet).unwrap();
        let t = reg.register(&tsc).unwrap();
        reg.set_override("tsc").unwrap();
        assert_eq!(reg.select(false), Some(t));
        assert_eq!(reg.mark_unstable(t), Ok(true));
        assert_eq!(reg.mark_unstable(t), Ok(false), "only newly marked once");
        assert_eq!(reg.select(false), Some(h));
        let e = reg.get(t).unwrap();
        assert!(e.flags().contains(ClockSourceFlags::UNSTABLE));
        assert!(!e.flags().contains(ClockSourceFlags::VALID_FOR_HRES));
    }

    #[test]
    fn override_not_hres_valid_is_deferred_while_hres_is_required() {
        let w = World::new();
        let acpi = FakeClock::new(&w, "acpi_pm", 3_579_545)
            .bits(24)
            .rating(200)
            .flags(ClockSourceFlags::CONTINUOUS);
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32).rating(250);
        let mut reg: Registry<'_, 4> = Registry::new();
        let a = reg.register(&acpi).unwrap();
        let h = reg.register(&hpet).unwrap();
        reg.set_override("acpi_pm").unwrap();
        assert_eq!(reg.select(true), Some(h));
        assert_eq!(reg.select(false), Some(a));
    }

    #[test]
    fn override_absent_then_registered_later_is_honoured() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180).bits(32).rating(250);
        let pit = FakeClock::new(&w, "pit", 1_193_182).bits(16).rating(110);
        let mut reg: Registry<'_, 4> = Registry::new();
        reg.set_override("pit").unwrap();
        let h = reg.register(&hpet).unwrap();
        assert_eq!(reg.select(true), Some(h));
        let p = reg.register(&pit).unwrap();
        assert_eq!(reg.select(true), Some(p));
    }

    #[test]
    fn override_name_must_fit_the_buffer() {
        let mut reg: Registry<'_, 1> = Registry::new();
        reg.set_override("tsc").unwrap();
        let long = "x".repeat(OVERRIDE_NAME_MAX + 1);
        assert_eq!(
            reg.set_override(&long),
            Err(OverrideError::TooLong { len: 33 })
        );
        assert_eq!(reg.set_override(""), Err(OverrideError::Empty));
        assert_eq!(reg.override_name(), Some("tsc"), "kept on error");
        let max = "y".repeat(OVERRIDE_NAME_MAX);
        reg.set_override(&max).unwrap();
        assert_eq!(reg.override_name(), Some(max.as_str()));
    }

    #[test]
    fn full_registry_refuses_and_duplicate_name_refuses() {
        let w = World::new();
        let a = FakeClock::new(&w, "a", 1_000_000);
        let a2 = FakeClock::new(&w, "a", 2_000_000);
        let b = FakeClock::new(&w, "b", 1_000_000);
        let c = FakeClock::new(&w, "c", 1_000_000);
        let mut reg: Registry<'_, 2> = Registry::new();
        reg.register(&a).unwrap();
        assert_eq!(reg.register(&a2).err(), Some(RegisterError::DuplicateName));
        reg.register(&b).unwrap();
        assert_eq!(reg.register(&c).err(), Some(RegisterError::Full));
    }

    #[test]
    fn zero_frequency_is_refused() {
        let w = World::new();
        let dead = FakeClock::new(&w, "dead", 0);
        let mut reg: Registry<'_, 2> = Registry::new();
        assert_eq!(
            reg.register(&dead).err(),
            Some(RegisterError::BadFrequency(ConversionError::ZeroRate))
        );
        assert!(reg.is_empty());
    }

    #[test]
    fn stale_id_does_not_name_the_slot_reuser() {
        let w = World::new();
        let a = FakeClock::new(&w, "a", 1_000_000);
        let b = FakeClock::new(&w, "b", 1_000_000);
        let mut reg: Registry<'_, 1> = Registry::new();
        let ia = reg.register(&a).unwrap();
        assert_eq!(reg.unregister(ia).unwrap().name(), "a");
        let ib = reg.register(&b).unwrap();
        assert_eq!(ia.slot(), ib.slot());
        assert!(reg.get(ia).is_none());
        assert_eq!(
            reg.unregister(ia).err(),
            Some(UnregisterError::UnknownSource)
        );
        assert_eq!(reg.find("b"), Some(ib));
    }

    #[test]
    fn unregister_of_the_current_source_reselects() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180)
            .bits(32)
            .rating(250)
            .offset(77);
        let tsc = FakeClock::new(&w, "tsc", 3_000_000_000)
            .rating(300)
            .offset(1 << 50);
        let mut reg: Registry<'_, 4> = Registry::new();
        let h = reg.register(&hpet).unwrap();
        let t = reg.register(&tsc).unwrap();
        let mut tk = Timekeeper::new(&hpet).unwrap();
        assert_eq!(reg.reselect(&mut tk, true), Ok(Some(t)));
        assert_eq!(reg.current(), Some(t));
        assert_eq!(tk.clocksource().name(), "tsc");
        assert_eq!(reg.reselect(&mut tk, true), Ok(None), "unchanged");
        w.set(2 * NSEC_PER_SEC);
        let before = tk.monotonic();
        assert_eq!(reg.unregister(t).err(), Some(UnregisterError::InUse));
        assert_eq!(
            reg.unregister_switching(t, &mut tk, true).unwrap().name(),
            "tsc"
        );
        assert_eq!(reg.current(), Some(h));
        assert_eq!(tk.clocksource().name(), "hpet");
        assert!(tk.monotonic() >= before);
        w.set(3 * NSEC_PER_SEC);
        assert!(tk.monotonic() >= Ktime::from_millis(2_999));
        // The last source cannot go: nothing to fall back to.
        assert_eq!(
            reg.unregister_switching(h, &mut tk, true).err(),
            Some(UnregisterError::NoFallback)
        );
        assert_eq!(reg.current(), Some(h));
    }

    #[test]
    fn reselect_without_any_stable_source_is_an_error() {
        let w = World::new();
        let tsc = FakeClock::new(&w, "tsc", 3_000_000_000).rating(300);
        let mut reg: Registry<'_, 2> = Registry::new();
        let t = reg.register(&tsc).unwrap();
        let mut tk = Timekeeper::new(&tsc).unwrap();
        reg.set_current(t).unwrap();
        reg.mark_unstable(t).unwrap();
        assert_eq!(
            reg.reselect(&mut tk, false),
            Err(ReselectError::NoStableSource)
        );
        assert_eq!(tk.clocksource().name(), "tsc");
    }

    #[test]
    fn table_rows_show_name_rating_frequency_max_idle_flags() {
        let w = World::new();
        let hpet = FakeClock::new(&w, "hpet", 14_318_180)
            .bits(32)
            .rating(250)
            .flags(HRES);
        let mut reg: Registry<'_, 2> = Registry::new();
        reg.register(&hpet).unwrap();
        let row = reg.iter().next().unwrap().to_string();
        assert!(row.starts_with("hpet "), "{row}");
        for part in ["250", "14318180Hz", "CONTINUOUS | VALID_FOR_HRES"] {
            assert!(row.contains(part), "{row} lacks {part}");
        }
        assert!(format!("{reg:?}").contains("hpet"));
        assert!(TABLE_HEADER.starts_with("name"));
    }
}
