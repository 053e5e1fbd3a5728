//! # The per-CPU high-resolution timer queue
//!
//! A fixed-capacity queue of one-shot timers, each due at an exact
//! nanosecond [`Ktime`], in the role of Linux's per-CPU `hrtimer_clock_base`
//! (`kernel/time/hrtimer.c`), which keeps its timers in a red-black tree. The
//! tick layer adds and cancels timers, programs the clock event device for
//! [`TimerQueue::next_expiry`], and on the interrupt runs
//!
//! ```text
//! while let Some(t) = queue.pop_expired(now) { run(t) }
//! ```
//!
//! which returns the due timers in expiry order, ties in insertion order.
//!
//! ## Storage: caller-owned, never allocates
//!
//! The crate is `no_std` without `alloc`, and the expiry path runs in interrupt
//! context, so the queue owns no memory of its own: it is built over a
//! caller-owned slice of [`TimerSlot`]s (`S: AsRef<[TimerSlot]> +
//! AsMut<[TimerSlot]>`: a `static` array in a kernel, a `Vec` on the host),
//! and that slice's length is the capacity (at most 2³² − 1). The slots are
//! linked into intrusive lists by `u32` index. [`TimerQueue::add`] on a full
//! queue returns [`QueueFull`]; nothing else can fail, and no operation
//! allocates. [`TimerSlot::EMPTY`] is a `const`, so a kernel can write
//! `TimerQueue::new([TimerSlot::EMPTY; 512])` in a `static` initialiser.
//!
//! ## How it works: a timing wheel used as a radix heap
//!
//! An expiry is 64 bits of nanoseconds, read as eleven base-64 digits
//! `d10 … d1 d0` (six bits each; `d10` has four). The queue keeps a clock,
//! [`base`](TimerQueue::base), that is never later than any queued expiry.
//! A timer lives at **level L**, the highest digit in which its expiry
//! differs from `base`, in **slot `d_L`** of its expiry (level 0 when they are
//! equal). Each level has a 64-bit occupancy bitmap:
//!
//! ```text
//!  base    = …  07 │ 12 │ 3F │ 05        (digits d3 d2 d1 d0, hex)
//!  expiry  = …  07 │ 14 │ 02 │ 11   ──►  highest differing digit is d2:
//!                                        level 2, slot 0x14
//!  level 3  ....................x........   a slot spans 2^18 ns (262 µs)
//!  level 2  ..................x.x...x.....   a slot spans 2^12 ns (4 µs)
//!  level 1  .....................xx.....x.   a slot spans 2^6 ns
//!  level 0  .....x.x.x....................   a slot is one expiry:
//!           ▲ one bitmap bit per slot         (base & !63) | slot
//! ```
//!
//! Every timer at level L is earlier than every timer at a level above L, and
//! within a level the slots are in expiry order, so the earliest timer is in
//! the lowest set bit of the lowest non-empty level: two `trailing_zeros`.
//!
//! - **add** appends to the tail of a FIFO list of its slot: O(1).
//! - **cancel** unlinks from a doubly-linked list (the slot is recomputed from
//!   the expiry and `base`): O(1). A [`TimerId`] carries a generation count, so
//!   an id whose timer already fired or was cancelled is recognised as stale.
//! - **pop_expired(now)** looks at the earliest non-empty slot. At level 0 its
//!   expiry is exact: compare with `now`, pop the list head. At level L > 0,
//!   if the slot's first instant is `<= now`, move `base` there and *cascade*
//!   the slot: re-file each of its timers relative to the new `base`, which
//!   puts it at a level below L, and look again. A timer therefore moves at
//!   most ten times in its life, about three times for a 200 ms horizon, and
//!   a pop is amortised O(levels). A slot holding a single timer is not
//!   cascaded: that timer is the earliest, and is compared and popped
//!   directly. After a pop, `base` moves up to the popped expiry.
//! - **pop_expired_with(now, then)** pops the same way but keeps the slot
//!   until `then` has decided: a new expiry re-links it under the same
//!   [`TimerId`] (a periodic timer re-armed from its callback keeps the
//!   handle its owner cancels it by), `None` frees it.
//!
//! **Lanes.** A cascade walks linked lists, and with a large queue each step
//! is a cache miss that the next step depends on. So each (level, slot) is
//! four lists ("lanes") rather than one, a timer's lane is a hash of its expiry,
//! and a cascade walks the lanes in lock-step, overlapping their misses
//! (this halved the time per timer at a million timers). Equal expiries share
//! a lane, which is all FIFO order needs.
//!
//! ## Why it is exact
//!
//! This is not a coarse wheel that rounds expiries to a tick: level-0 slots
//! hold a single expiry value, and a timer is only returned after its exact
//! expiry is compared with `now`. So a timer fires at its expiry or later,
//! **never early**, and timers come out in expiry order. `base` only moves to
//! the first instant of the earliest slot or to the earliest expiry, and only
//! when that is `<= now`, so it stays at or before every queued expiry and
//! never passes the latest `now`. Lists are FIFO and a cascade keeps each
//! lane's order, so equal expiries come out in the order they were added (or
//! re-armed).
//!
//! A timer added (or re-armed) with an expiry before `base` is already overdue
//! (`base <= now`): it is queued as if it expired at `base`, so it fires in the
//! next [`pop_expired`](TimerQueue::pop_expired) run, after the timers already
//! queued at `base` and before every timer not yet due, and is returned with
//! `expires == base`. [`Ktime::MAX`] ("never") is stored like any other expiry:
//! it only comes out of `pop_expired(Ktime::MAX)`.
//!
//! ## Costs
//!
//! A tick with nothing due costs one comparison (the queue keeps a lower bound
//! of its expiries). [`next_expiry`](TimerQueue::next_expiry) is cached and
//! kept exact across adds; after the earliest timer is popped or cancelled the
//! next call recomputes it, scanning the earliest non-empty slot if that is
//! above level 0. [`clear`](TimerQueue::clear) is O(len). A slot is 32 bytes
//! (expiry, data, two links, generation), aligned so two share a cache line.
//! The queue itself is about 23 KiB of list heads and tails: build it in a
//! `static` ([`TimerQueue::new`] is `const`), not on a small kernel stack.

use core::cell::Cell;
use core::fmt;

use clocksource::Ktime;

/// Bits in one digit of the expiry, and so log2 of the slots per level.
const DIGIT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << DIGIT_BITS;
/// Levels needed to cover 64-bit expiries with 6-bit digits.
const LEVELS: usize = 64_usize.div_ceil(DIGIT_BITS as usize);
/// Lists per (level, slot): a cascade walks this many lists at once (see
/// "Lanes" in the module docs; 4 measured best, 8 no better at 10⁶ timers
/// and slower at 10⁴).
const LANES: usize = 4;
/// The "no slot" link.
const NIL: u32 = u32::MAX;

/// One timer's storage: its expiry, the caller's data, its list links and a
/// generation count.
///
/// The queue's capacity is the number of slots the caller provides; create them
/// with [`TimerSlot::EMPTY`] or [`TimerSlot::new`]. The contents are private to
/// the queue.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
pub struct TimerSlot {
    expires: u64,
    data: u64,
    next: u32,
    prev: u32,
    /// Odd while the slot holds a queued timer, even while it is free; bumped
    /// on each change, so a [`TimerId`] names one use of the slot.
    generation: u32,
}

impl TimerSlot {
    /// An unused slot, for array initialisers: `[TimerSlot::EMPTY; 256]`.
    pub const EMPTY: TimerSlot = TimerSlot {
        expires: 0,
        data: 0,
        next: NIL,
        prev: NIL,
        generation: 0,
    };

    /// An unused slot (the same as [`TimerSlot::EMPTY`]).
    pub const fn new() -> Self {
        Self::EMPTY
    }
}

impl Default for TimerSlot {
    fn default() -> Self {
        Self::EMPTY
    }
}

/// The handle of a queued timer, returned by [`TimerQueue::add`].
///
/// It stays valid while the timer is queued (including across
/// [`TimerQueue::rearm`] and a re-arm from
/// [`TimerQueue::pop_expired_with`]) and becomes stale once the timer fires or is
/// cancelled, even if its slot is reused: the id carries the slot's generation.
/// (A slot's generation repeats after 2³¹ reuses; an id kept that long could
/// name a later timer.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

impl TimerId {
    /// The index of the timer's slot in the queue's storage.
    pub const fn index(self) -> u32 {
        self.index
    }
}

/// A timer as queued: returned by [`TimerQueue::pop_expired`],
/// [`TimerQueue::cancel`] and [`TimerQueue::get`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Timer {
    /// Its handle (stale once the timer has been returned by `pop_expired` or
    /// `cancel`).
    pub id: TimerId,
    /// When it is due; raised to the queue's `base` if it was added earlier
    /// than that (see the module docs).
    pub expires: Ktime,
    /// The caller's data, as given to [`TimerQueue::add`].
    pub data: u64,
}

/// [`TimerQueue::add`] found every slot of the storage in use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct QueueFull;

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timer queue is full")
    }
}

/// [`TimerQueue::rearm`] was given the id of a timer that is not queued (it
/// fired or was cancelled).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NotQueued;

impl fmt::Display for NotQueued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timer is not queued")
    }
}

/// The cached answer of [`TimerQueue::next_expiry`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Earliest {
    /// The queue is empty.
    Empty,
    /// The earliest queued expiry, in ns.
    At(u64),
    /// Not known: the earliest timer was removed since the last look.
    Unknown,
}

/// Where a timer with expiry `key` lives while the clock is at `base`
/// (`key >= base`): (level, slot).
#[inline]
fn position(key: u64, base: u64) -> (usize, usize) {
    // `| 1` makes "equal" land on level 0 without a branch.
    let highest_differing_bit = 63 - ((key ^ base) | 1).leading_zeros();
    let level = highest_differing_bit / DIGIT_BITS;
    let slot = (key >> (level * DIGIT_BITS)) as usize & (SLOTS - 1);
    (level as usize, slot)
}

/// The lane of a timer with expiry `key`: Fibonacci hashing, so that
/// expiries that are multiples of a round number still spread over the lanes.
#[inline]
fn lane_of(key: u64) -> usize {
    const { assert!(LANES.is_power_of_two() && LANES > 1 && LANES <= 8) };
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - LANES.trailing_zeros())) as usize
}

/// The first instant of `slot` at `level` while the clock is at `base`: the
/// digits of `base` above `level`, then the slot's digit, then zeros.
#[inline]
fn slot_start(base: u64, level: usize, slot: usize) -> u64 {
    let shift = level as u32 * DIGIT_BITS;
    let above = u64::MAX.checked_shl(shift + DIGIT_BITS).unwrap_or(0);
    (base & above) | ((slot as u64) << shift)
}

/// The levels, their slot lists and occupancy bitmaps, and the clock.
///
/// Each (level, slot) is [`LANES`] FIFO lists; a timer's lane is a hash of
/// its expiry, so equal expiries always share a list.
///
/// INVARIANT: every queued timer with expiry `k` is in lane `lane_of(k)` of
/// `position(k, base)`, and `base <= k`. A lane's head and tail are
/// meaningful only while its bit in `lanes` is set; a slot's bit in `bitmap`
/// is set iff one of its lanes is.
struct Wheel {
    base: u64,
    /// Bit L set iff `bitmap[L] != 0`.
    levels: u32,
    bitmap: [u64; LEVELS],
    lanes: [[u8; SLOTS]; LEVELS],
    head: [[[u32; LANES]; SLOTS]; LEVELS],
    tail: [[[u32; LANES]; SLOTS]; LEVELS],
}

impl Wheel {
    const fn new() -> Self {
        Wheel {
            base: 0,
            levels: 0,
            bitmap: [0; LEVELS],
            lanes: [[0; SLOTS]; LEVELS],
            head: [[[NIL; LANES]; SLOTS]; LEVELS],
            tail: [[[NIL; LANES]; SLOTS]; LEVELS],
        }
    }

    /// The earliest non-empty (level, slot).
    #[inline]
    fn first(&self) -> Option<(usize, usize)> {
        if self.levels == 0 {
            return None;
        }
        let level = self.levels.trailing_zeros() as usize;
        Some((level, self.bitmap[level].trailing_zeros() as usize))
    }

    /// The timer of (`level`, `slot`) if it holds exactly one.
    #[inline]
    fn single(&self, level: usize, slot: usize) -> Option<u32> {
        let lanes = self.lanes[level][slot];
        if !lanes.is_power_of_two() {
            return None;
        }
        let lane = lanes.trailing_zeros() as usize;
        let head = self.head[level][slot][lane];
        (head == self.tail[level][slot][lane]).then_some(head)
    }

    /// Appends `idx` (whose expiry is set) to the tail of its lane.
    #[inline]
    fn link(&mut self, slots: &mut [TimerSlot], idx: u32) {
        let key = slots[idx as usize].expires;
        let (level, slot) = position(key, self.base);
        let lane = lane_of(key);
        let lanes = &mut self.lanes[level][slot];
        if *lanes & (1 << lane) == 0 {
            if *lanes == 0 {
                self.bitmap[level] |= 1u64 << slot;
                self.levels |= 1 << level;
            }
            *lanes |= 1 << lane;
            self.head[level][slot][lane] = idx;
            slots[idx as usize].prev = NIL;
        } else {
            let tail = self.tail[level][slot][lane];
            slots[tail as usize].next = idx;
            slots[idx as usize].prev = tail;
        }
        slots[idx as usize].next = NIL;
        self.tail[level][slot][lane] = idx;
    }

    /// Removes `idx` from its lane.
    #[inline]
    fn unlink(&mut self, slots: &mut [TimerSlot], idx: u32) {
        let TimerSlot {
            expires,
            next,
            prev,
            ..
        } = slots[idx as usize];
        let (level, slot) = position(expires, self.base);
        let lane = lane_of(expires);
        if prev == NIL {
            self.head[level][slot][lane] = next;
        } else {
            slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail[level][slot][lane] = prev;
        } else {
            slots[next as usize].prev = prev;
        }
        if prev == NIL && next == NIL {
            self.lanes[level][slot] &= !(1 << lane);
            if self.lanes[level][slot] == 0 {
                self.mark_empty(level, slot);
            }
        }
    }

    #[inline]
    fn mark_empty(&mut self, level: usize, slot: usize) {
        self.bitmap[level] &= !(1u64 << slot);
        if self.bitmap[level] == 0 {
            self.levels &= !(1 << level);
        }
    }

    /// Moves the clock to the first instant of (`level` > 0, `slot`), which
    /// must be the earliest non-empty slot, and re-files its timers at lower
    /// levels, each lane in order.
    ///
    /// The lanes are walked in lock-step: the next timer of each lane is
    /// known before the current ones are read, so their cache misses overlap
    /// instead of queueing behind one another.
    fn cascade(&mut self, slots: &mut [TimerSlot], level: usize, slot: usize) {
        self.base = slot_start(self.base, level, slot);
        let mut cursors = [NIL; LANES];
        let mut live = 0;
        let mut lanes = core::mem::take(&mut self.lanes[level][slot]);
        while lanes != 0 {
            cursors[live] = self.head[level][slot][lanes.trailing_zeros() as usize];
            live += 1;
            lanes &= lanes - 1;
        }
        self.mark_empty(level, slot);
        while live > 0 {
            let mut i = 0;
            while i < live {
                let idx = cursors[i];
                cursors[i] = slots[idx as usize].next;
                self.link(slots, idx);
                if cursors[i] == NIL {
                    live -= 1;
                    cursors[i] = cursors[live];
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Every timer of (`level`, `slot`), lane by lane, in list order.
    fn timers<'a>(
        &'a self,
        slots: &'a [TimerSlot],
        level: usize,
        slot: usize,
    ) -> impl Iterator<Item = u32> + 'a {
        let lanes = self.lanes[level][slot];
        (0..LANES)
            .filter(move |lane| lanes & (1 << lane) != 0)
            .flat_map(move |lane| {
                let head = self.head[level][slot][lane];
                core::iter::successors(Some(head), move |&idx| {
                    let next = slots[idx as usize].next;
                    (next != NIL).then_some(next)
                })
            })
    }
}

/// The free slots: a free list, then the never-used tail `fresh..`.
///
/// When the queue empties, the free list is dropped and allocation restarts
/// at slot 0, so a refilled queue again uses its storage front to back.
struct Pool {
    len: u32,
    free: u32,
    fresh: u32,
}

impl Pool {
    const fn new() -> Self {
        Pool {
            len: 0,
            free: NIL,
            fresh: 0,
        }
    }

    /// Takes a free slot and marks it queued (odd generation).
    #[inline]
    fn alloc(&mut self, slots: &mut [TimerSlot]) -> Option<u32> {
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = slots[idx as usize].next;
            idx
        } else if (self.fresh as usize) < capacity_of(slots) {
            self.fresh += 1;
            self.fresh - 1
        } else {
            return None;
        };
        let s = &mut slots[idx as usize];
        s.generation = s.generation.wrapping_add(1) | 1;
        self.len += 1;
        Some(idx)
    }

    /// Returns a slot (already unlinked from the wheel) to the pool.
    #[inline]
    fn release(&mut self, slots: &mut [TimerSlot], idx: u32) {
        let s = &mut slots[idx as usize];
        s.generation = s.generation.wrapping_add(1);
        s.next = self.free;
        self.free = idx;
        self.len -= 1;
        if self.len == 0 {
            self.free = NIL;
            self.fresh = 0;
        }
    }
}

/// Slot indices are `u32` and `u32::MAX` is the "no slot" link.
#[inline]
fn capacity_of(slots: &[TimerSlot]) -> usize {
    slots.len().min(u32::MAX as usize)
}

/// A fixed-capacity queue of one-shot timers with exact nanosecond expiries.
///
/// See the [module docs](self) for the mechanism. Every operation is
/// panic-free on any input: stale ids are reported, a full queue is reported,
/// any expiry is accepted.
///
/// The queue is `Send` but not `Sync` (it caches [`next_expiry`] in a `Cell`):
/// each CPU owns its queue, or shares it behind a lock such as `spin::Mutex`.
///
/// [`next_expiry`]: TimerQueue::next_expiry
pub struct TimerQueue<S> {
    storage: S,
    wheel: Wheel,
    pool: Pool,
    earliest: Cell<Earliest>,
    /// No queued timer expires before this (a lower bound, kept so that a
    /// tick with nothing due costs one comparison).
    floor: u64,
}

impl<S> TimerQueue<S>
where
    S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>,
{
    /// An empty queue over `storage`, whose length is the capacity (slots past
    /// 2³² − 1 are not used). The storage's previous contents are ignored;
    /// `storage` must give the same slice on every `as_ref`/`as_mut` (arrays,
    /// `Vec`s and `&mut` slices do).
    pub const fn new(storage: S) -> Self {
        TimerQueue {
            storage,
            wheel: Wheel::new(),
            pool: Pool::new(),
            earliest: Cell::new(Earliest::Empty),
            floor: u64::MAX,
        }
    }

    /// Queues a timer due at `expires` carrying `data`, in O(1).
    ///
    /// An expiry before [`base`](Self::base) is raised to `base` (it is already
    /// due). Fails only when every slot is in use.
    pub fn add(&mut self, expires: Ktime, data: u64) -> Result<TimerId, QueueFull> {
        let slots = self.storage.as_mut();
        let index = self.pool.alloc(slots).ok_or(QueueFull)?;
        let key = expires.as_nanos().max(self.wheel.base);
        let s = &mut slots[index as usize];
        s.expires = key;
        s.data = data;
        let generation = s.generation;
        self.wheel.link(slots, index);
        self.note_added(key);
        Ok(TimerId { index, generation })
    }

    /// Removes a queued timer in O(1) and returns it; `None` if `id` is stale
    /// (its timer fired or was cancelled).
    pub fn cancel(&mut self, id: TimerId) -> Option<Timer> {
        let index = self.lookup(id)?;
        let slots = self.storage.as_mut();
        self.wheel.unlink(slots, index);
        let timer = timer_at(slots, index);
        self.pool.release(slots, index);
        self.note_removed(timer.expires.as_nanos());
        Some(timer)
    }

    /// Moves a queued timer to `expires` in O(1); `id` stays valid.
    ///
    /// Among equal expiries the timer now counts as the most recently added. An
    /// expiry before [`base`](Self::base) is raised to `base`.
    pub fn rearm(&mut self, id: TimerId, expires: Ktime) -> Result<(), NotQueued> {
        let index = self.lookup(id).ok_or(NotQueued)?;
        let slots = self.storage.as_mut();
        self.wheel.unlink(slots, index);
        let old = slots[index as usize].expires;
        let key = expires.as_nanos().max(self.wheel.base);
        slots[index as usize].expires = key;
        self.wheel.link(slots, index);
        self.note_removed(old);
        self.note_added(key);
        Ok(())
    }

    /// Removes and returns the earliest timer due at or before `now`, if any.
    ///
    /// Repeated calls return the due timers in expiry order, equal expiries in
    /// the order they were added. A timer is never returned before its expiry.
    /// Amortised O(levels): each timer is moved down a level at most ten times
    /// in its life.
    #[inline]
    pub fn pop_expired(&mut self, now: Ktime) -> Option<Timer> {
        let now = now.as_nanos();
        if now < self.floor {
            return None;
        }
        self.pop_due(now)
    }

    /// Like [`pop_expired`](Self::pop_expired), but `then` sees the timer
    /// before its slot is freed and may return a new expiry: the timer is
    /// then queued again under the **same id** (as [`rearm`](Self::rearm)
    /// would), so a handle the owner holds stays valid across a periodic
    /// re-arm from the timer's own callback. With `None` from `then` the
    /// timer is gone, as after `pop_expired`.
    ///
    /// Returns the timer as it was popped (its id is valid again only if
    /// `then` re-armed it). The re-arm cannot fail: it reuses the slot.
    pub fn pop_expired_with(
        &mut self,
        now: Ktime,
        then: impl FnOnce(Timer) -> Option<Ktime>,
    ) -> Option<Timer> {
        let now = now.as_nanos();
        if now < self.floor {
            return None;
        }
        // Unlinked but still allocated (odd generation) until `then` has
        // decided: re-linked, or released.
        let index = self.unlink_due(now)?;
        let slots = self.storage.as_mut();
        let timer = timer_at(slots, index);
        match then(timer) {
            Some(expires) => {
                let key = expires.as_nanos().max(self.wheel.base);
                slots[index as usize].expires = key;
                self.wheel.link(slots, index);
                self.note_added(key);
            }
            None => self.pool.release(slots, index),
        }
        Some(timer)
    }

    /// [`pop_expired`](Self::pop_expired) past the quick "nothing can be due"
    /// check.
    fn pop_due(&mut self, now: u64) -> Option<Timer> {
        let index = self.unlink_due(now)?;
        let slots = self.storage.as_mut();
        let timer = timer_at(slots, index);
        self.pool.release(slots, index);
        Some(timer)
    }

    /// Finds the earliest timer due at or before `now`, unlinks it from the
    /// wheel (its slot stays allocated: the caller releases or re-links it),
    /// moves `base` up to its expiry and updates the cached earliest expiry
    /// as if it were gone. Returns its index.
    fn unlink_due(&mut self, now: u64) -> Option<u32> {
        let slots = self.storage.as_mut();
        let (index, level, slot) = loop {
            let (level, slot) = self.wheel.first()?;
            let (index, key) = if level == 0 {
                let key = (self.wheel.base & !(SLOTS as u64 - 1)) | slot as u64;
                (self.wheel.head[0][slot][lane_of(key)], key)
            } else {
                let start = slot_start(self.wheel.base, level, slot);
                if start > now {
                    self.floor = start;
                    return None;
                }
                let Some(index) = self.wheel.single(level, slot) else {
                    self.wheel.cascade(slots, level, slot);
                    continue;
                };
                // A lone timer in the earliest slot is the earliest timer:
                // no need to cascade it first.
                (index, slots[index as usize].expires)
            };
            if key > now {
                self.floor = key;
                self.earliest.set(Earliest::At(key));
                return None;
            }
            break (index, level, slot);
        };
        self.wheel.unlink(slots, index);
        // Every other timer expires at or after this one, so the clock can
        // move up to it (it is <= now) without moving any of them.
        let key = slots[index as usize].expires;
        self.wheel.base = key;
        self.earliest.set(if self.pool.len == 1 {
            Earliest::Empty
        } else if level == 0 && self.wheel.bitmap[0] & (1 << slot) != 0 {
            Earliest::At(key)
        } else {
            Earliest::Unknown
        });
        Some(index)
    }

    /// The earliest queued expiry, exactly; `None` when the queue is empty.
    ///
    /// O(1) while cached. The cache survives adds and re-arms; after the
    /// earliest timer is popped or cancelled, the next call scans the earliest
    /// non-empty slot once (one timer if it is at level 0).
    pub fn next_expiry(&self) -> Option<Ktime> {
        let key = match self.earliest.get() {
            Earliest::Empty => return None,
            Earliest::At(key) => key,
            Earliest::Unknown => {
                let found = self.scan_earliest();
                self.earliest
                    .set(found.map_or(Earliest::Empty, Earliest::At));
                found?
            }
        };
        Some(Ktime::from_nanos(key))
    }

    /// The queued timer `id`, or `None` if `id` is stale.
    pub fn get(&self, id: TimerId) -> Option<Timer> {
        let index = self.lookup(id)?;
        Some(timer_at(self.storage.as_ref(), index))
    }

    /// Whether `id` names a queued timer.
    pub fn contains(&self, id: TimerId) -> bool {
        self.lookup(id).is_some()
    }

    /// The number of queued timers.
    pub fn len(&self) -> usize {
        self.pool.len as usize
    }

    /// Whether no timer is queued.
    pub fn is_empty(&self) -> bool {
        self.pool.len == 0
    }

    /// The number of timers the storage can hold.
    pub fn capacity(&self) -> usize {
        capacity_of(self.storage.as_ref())
    }

    /// The queue's clock: at or before every queued expiry, and never later
    /// than the latest `now` given to [`pop_expired`](Self::pop_expired). A
    /// timer added or re-armed with an earlier expiry is queued at `base`.
    pub fn base(&self) -> Ktime {
        Ktime::from_nanos(self.wheel.base)
    }

    /// Drops every queued timer (their ids become stale), in O(len); the
    /// storage is kept for reuse and [`base`](Self::base) is unchanged.
    pub fn clear(&mut self) {
        let slots = self.storage.as_mut();
        for level in 0..LEVELS {
            let mut bits = self.wheel.bitmap[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                let mut lanes = core::mem::take(&mut self.wheel.lanes[level][slot]);
                while lanes != 0 {
                    let mut index = self.wheel.head[level][slot][lanes.trailing_zeros() as usize];
                    lanes &= lanes - 1;
                    while index != NIL {
                        let s = &mut slots[index as usize];
                        s.generation = s.generation.wrapping_add(1);
                        index = s.next;
                    }
                }
                bits &= bits - 1;
            }
        }
        self.wheel.bitmap = [0; LEVELS];
        self.wheel.levels = 0;
        self.pool = Pool::new();
        self.earliest.set(Earliest::Empty);
    }

    /// The slot `id` names, if it still holds that timer.
    fn lookup(&self, id: TimerId) -> Option<u32> {
        // `id.generation` is odd (queued), so equality means "still queued".
        let s = self.storage.as_ref().get(id.index as usize)?;
        (s.generation == id.generation).then_some(id.index)
    }

    /// The earliest expiry, found from the wheel.
    fn scan_earliest(&self) -> Option<u64> {
        let (level, slot) = self.wheel.first()?;
        if level == 0 {
            return Some((self.wheel.base & !(SLOTS as u64 - 1)) | slot as u64);
        }
        let slots = self.storage.as_ref();
        self.wheel
            .timers(slots, level, slot)
            .map(|index| slots[index as usize].expires)
            .min()
    }

    fn note_added(&mut self, key: u64) {
        self.floor = self.floor.min(key);
        match self.earliest.get() {
            Earliest::Empty => self.earliest.set(Earliest::At(key)),
            Earliest::At(earliest) if key < earliest => self.earliest.set(Earliest::At(key)),
            _ => {}
        }
    }

    fn note_removed(&self, key: u64) {
        if self.pool.len == 0 {
            self.earliest.set(Earliest::Empty);
        } else if self.earliest.get() == Earliest::At(key) {
            self.earliest.set(Earliest::Unknown);
        }
    }
}

fn timer_at(slots: &[TimerSlot], index: u32) -> Timer {
    let s = &slots[index as usize];
    Timer {
        id: TimerId {
            index,
            generation: s.generation,
        },
        expires: Ktime::from_nanos(s.expires),
        data: s.data,
    }
}

impl<S: AsRef<[TimerSlot]> + AsMut<[TimerSlot]>> fmt::Debug for TimerQueue<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("base", &self.base())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};
    use std::collections::{BTreeMap, HashMap};
    use std::vec;
    use std::vec::Vec;

    type HostQueue = TimerQueue<Vec<TimerSlot>>;

    fn queue(capacity: usize) -> HostQueue {
        TimerQueue::new(vec![TimerSlot::EMPTY; capacity])
    }

    fn ns(n: u64) -> Ktime {
        Ktime::from_nanos(n)
    }

    /// Pops everything due at `now`, returning the timers' data in pop order.
    fn drain(q: &mut HostQueue, now: Ktime) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(t) = q.pop_expired(now) {
            out.push(t.data);
        }
        out
    }

    #[test]
    fn pop_returns_timers_in_expiry_order_with_fifo_ties() {
        let mut q = queue(16);
        // Expiries on levels 0 to 6, with ties, added out of order.
        let adds = [
            (5_000_000, 1),
            (70, 2),
            (5_000_000, 3),
            (0, 4),
            (70, 5),
            (4_096, 6),
            (1 << 40, 7),
            (4_096, 8),
            (0, 9),
        ];
        for (expires, data) in adds {
            q.add(ns(expires), data).unwrap();
        }
        assert_eq!(drain(&mut q, ns(1 << 40)), [4, 9, 2, 5, 6, 8, 1, 3, 7]);
        assert!(q.is_empty());
    }

    #[test]
    fn timer_never_fires_before_its_exact_expiry() {
        let mut q = queue(4);
        q.add(ns(1_000_000), 1).unwrap();
        q.add(ns(1_000_003), 9).unwrap();
        // This run cascades both timers from level 3 down to level 0 but
        // must return only the first.
        assert_eq!(drain(&mut q, ns(1_000_002)), [1]);
        assert_eq!(q.next_expiry(), Some(ns(1_000_003)));
        let t = q.pop_expired(ns(1_000_003)).unwrap();
        assert_eq!((t.expires, t.data), (ns(1_000_003), 9));
        assert!(q.is_empty());
    }

    #[test]
    fn stale_id_cancel_returns_none() {
        let mut q = queue(2);
        let keep = q.add(ns(1_000), 0).unwrap();
        let a = q.add(ns(10), 1).unwrap();
        assert_eq!(q.cancel(a).map(|t| t.data), Some(1));
        assert_eq!(q.cancel(a), None, "cancelled twice");
        let b = q.add(ns(20), 2).unwrap();
        assert_eq!(b.index(), a.index(), "slot reused");
        assert_eq!(
            q.cancel(a),
            None,
            "old id must not cancel the slot's new timer"
        );
        assert!(q.contains(b) && !q.contains(a));
        assert_eq!(q.pop_expired(ns(20)).map(|t| t.id), Some(b));
        assert_eq!(q.cancel(b), None, "already fired");
        assert_eq!(q.rearm(b, ns(30)), Err(NotQueued));
        assert_eq!(q.get(keep).map(|t| t.data), Some(0));
    }

    #[test]
    fn add_before_base_fires_next_run() {
        let mut q = queue(8);
        q.add(ns(1 << 20), 1).unwrap();
        q.add(ns(5 << 20), 2).unwrap();
        assert_eq!(drain(&mut q, ns(3 << 20)), [1]);
        let base = q.base();
        assert_eq!(base, ns(1 << 20));
        q.add(ns(2 << 20), 5).unwrap();
        q.add(base, 4).unwrap();
        let late = q.add(ns(500), 3).unwrap();
        assert_eq!(q.get(late).map(|t| t.expires), Some(base), "queued at base");
        assert_eq!(q.next_expiry(), Some(base));
        // After the timer already at base, before everything not yet due.
        assert_eq!(drain(&mut q, ns(3 << 20)), [4, 3, 5]);
        assert_eq!(q.next_expiry(), Some(ns(5 << 20)));
    }

    #[test]
    fn full_queue_is_reported() {
        let mut q = queue(2);
        let a = q.add(ns(1), 1).unwrap();
        q.add(ns(2), 2).unwrap();
        assert_eq!(q.add(ns(3), 3), Err(QueueFull));
        assert_eq!(q.len(), 2);
        assert_eq!(q.capacity(), 2);
        q.cancel(a).unwrap();
        assert!(q.add(ns(3), 3).is_ok());
        assert_eq!(queue(0).add(ns(1), 1), Err(QueueFull));
    }

    #[test]
    fn rearm_moves_timer() {
        let mut q = queue(4);
        let a = q.add(ns(100), 1).unwrap();
        q.add(ns(200), 2).unwrap();
        q.rearm(a, ns(300)).unwrap();
        assert_eq!(q.next_expiry(), Some(ns(200)));
        assert_eq!(drain(&mut q, ns(250)), [2]);
        assert!(q.contains(a));
        q.rearm(a, ns(260)).unwrap();
        let fired = q.pop_expired(ns(1_000)).unwrap();
        assert_eq!((fired.id, fired.expires), (a, ns(260)));
        assert_eq!(q.rearm(a, ns(1)), Err(NotQueued));
    }

    #[test]
    fn timer_rearmed_from_pop_expired_with_keeps_its_id() {
        let mut q = queue(4);
        let a = q.add(ns(100), 1).unwrap();
        let b = q.add(ns(150), 2).unwrap();
        let popped = q.pop_expired_with(ns(120), |_| Some(ns(200)));
        assert_eq!(popped.map(|t| (t.id, t.expires)), Some((a, ns(100))));
        assert_eq!(q.get(a).map(|t| (t.expires, t.data)), Some((ns(200), 1)));
        assert_eq!(q.next_expiry(), Some(ns(150)));
        // Dropped: the id goes stale and the slot is free again.
        let popped = q.pop_expired_with(ns(160), |_| None);
        assert_eq!(popped.map(|t| t.id), Some(b));
        assert!(!q.contains(b));
        assert_eq!(q.len(), 1);
        assert_eq!(q.cancel(a).map(|t| t.expires), Some(ns(200)));
        assert!(q.is_empty());
        assert_eq!(q.pop_expired_with(ns(1_000), |_| Some(ns(0))), None);
    }

    #[test]
    fn rearmed_timer_is_last_among_equal_expiries() {
        let mut q = queue(4);
        let x = q.add(ns(50), 1).unwrap();
        q.add(ns(50), 2).unwrap();
        q.rearm(x, ns(50)).unwrap();
        assert_eq!(drain(&mut q, ns(50)), [2, 1]);
    }

    #[test]
    fn next_expiry_stays_exact_when_the_earliest_is_cancelled() {
        let mut q = queue(8);
        // Same high slot (level 5): finding the new minimum needs a scan.
        let t = 1 << 30;
        let a = q.add(ns(t), 1).unwrap();
        let b = q.add(ns(t + 7), 2).unwrap();
        let c = q.add(ns(t + 3), 3).unwrap();
        assert_eq!(q.next_expiry(), Some(ns(t)));
        q.cancel(a).unwrap();
        assert_eq!(q.next_expiry(), Some(ns(t + 3)));
        q.add(ns(t + 1), 4).unwrap();
        assert_eq!(q.next_expiry(), Some(ns(t + 1)));
        q.cancel(c).unwrap();
        assert_eq!(q.next_expiry(), Some(ns(t + 1)));
        assert_eq!(drain(&mut q, ns(t + 1)), [4]);
        assert_eq!(q.next_expiry(), Some(ns(t + 7)));
        q.cancel(b).unwrap();
        assert_eq!(q.next_expiry(), None);
    }

    #[test]
    fn never_expiry_is_stored_and_fires_only_at_ktime_max() {
        let mut q = queue(2);
        let never = q.add(Ktime::MAX, 1).unwrap();
        assert_eq!(q.next_expiry(), Some(Ktime::MAX));
        assert_eq!(q.pop_expired(ns(u64::MAX - 1)), None);
        let t = q.pop_expired(Ktime::MAX).unwrap();
        assert_eq!((t.id, t.expires), (never, Ktime::MAX));
    }

    #[test]
    fn clear_drops_all_timers_and_invalidates_their_ids() {
        let mut q = queue(4);
        let ids: Vec<_> = (0..4).map(|i| q.add(ns(i << 20), i).unwrap()).collect();
        q.clear();
        assert!(q.is_empty());
        assert_eq!(q.next_expiry(), None);
        for &id in &ids {
            assert!(!q.contains(id));
            assert_eq!(q.cancel(id), None);
        }
        let fresh = q.add(ns(5), 9).unwrap();
        assert_eq!(fresh.index(), 0);
        assert_ne!(fresh, ids[0]);
        assert_eq!(drain(&mut q, Ktime::MAX), [9]);
    }

    #[test]
    fn kernel_static_queue_is_built_at_compile_time() {
        static QUEUE: spin::Mutex<TimerQueue<[TimerSlot; 4]>> =
            spin::Mutex::new(TimerQueue::new([TimerSlot::EMPTY; 4]));
        let mut q = QUEUE.lock();
        assert_eq!(q.capacity(), 4);
        let id = q.add(ns(7), 7).unwrap();
        assert_eq!(q.pop_expired(ns(7)).map(|t| t.id), Some(id));
    }

    #[test]
    fn ten_thousand_random_timers_fire_once_in_order_never_early() {
        const N: usize = 10_000;
        const HORIZON: u64 = 200_000_000;
        let mut rng = sim::rng::XorShift64::new(0x9E37_79B9_7F4A_7C15);
        let mut q = queue(N);
        let expiry: Vec<u64> = (0..N).map(|_| rng.next_u64() % HORIZON).collect();
        for (i, &e) in expiry.iter().enumerate() {
            q.add(ns(e), i as u64).unwrap();
        }
        let mut fired = vec![false; N];
        let (mut now, mut last, mut count) = (0, 0, 0);
        while now < HORIZON {
            now += rng.next_u64() % 1_000_000;
            while let Some(t) = q.pop_expired(ns(now)) {
                let i = t.data as usize;
                assert!(!fired[i], "timer {i} fired twice");
                fired[i] = true;
                assert_eq!(t.expires, ns(expiry[i]));
                assert!(t.expires <= ns(now), "fired early");
                assert!(t.expires >= ns(last), "out of order");
                last = t.expires.as_nanos();
                count += 1;
            }
            assert!(q.next_expiry().is_none_or(|next| next > ns(now)));
        }
        assert_eq!(count, N);
        assert!(q.is_empty());
    }

    /// When a model-test timer is due, relative to the test's `now`.
    #[derive(Clone, Copy, Debug)]
    enum When {
        /// `now + d`: lands on levels 0 to 2.
        Soon(u16),
        /// `now + (x >> shift)`: any level.
        Later(u64, u8),
        /// `now - d`: may be before the queue's base.
        Before(u32),
        /// The expiry an earlier timer asked for: makes ties.
        SameAs(u16),
        /// A multiple of 64^(1 + k % 4) after `now`: the first instant of a
        /// slot at level 1 to 4.
        Aligned(u8, u8),
        /// `Ktime::MAX`.
        Never,
    }

    impl When {
        fn resolve(self, now: u64, issued: &[(TimerId, u64)]) -> u64 {
            match self {
                When::Soon(d) => now.saturating_add(d.into()),
                When::Later(x, shift) => now.saturating_add(x >> (shift % 64)),
                When::Before(d) => now.saturating_sub(d.into()),
                When::SameAs(i) => pick(issued, i).map_or(now, |&(_, e)| e),
                When::Aligned(x, k) => {
                    let grain = 1u64 << (6 * (1 + u32::from(k % 4)));
                    (now / grain + 1 + u64::from(x % 4)).saturating_mul(grain)
                }
                When::Never => u64::MAX,
            }
        }
    }

    impl Arbitrary for When {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 16 {
                0..=4 => When::Soon(u16::arbitrary(g)),
                5..=9 => When::Later(u64::arbitrary(g), u8::arbitrary(g)),
                10 => When::Before(u32::arbitrary(g)),
                11..=12 => When::SameAs(u16::arbitrary(g)),
                13..=14 => When::Aligned(u8::arbitrary(g), u8::arbitrary(g)),
                _ => When::Never,
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Add(When, u64),
        Cancel(u16),
        Rearm(u16, When),
        /// `now += x >> shift`, then pop everything due.
        Advance(u64, u8),
        /// `now` to the earliest expiry plus `d` (if that is later), then pop
        /// everything due: hits expiries exactly and just before.
        AdvanceToEarliest(i8),
        /// `now += x >> shift`, then pop everything due with
        /// `pop_expired_with`, re-arming timers with odd data `1 + d` ns
        /// after `now` (a periodic timer's callback).
        AdvanceRearming(u64, u8, u16),
        NextExpiry,
        Clear,
    }

    impl Arbitrary for Op {
        fn arbitrary(g: &mut Gen) -> Self {
            match u8::arbitrary(g) % 64 {
                0..=23 => Op::Add(When::arbitrary(g), u64::arbitrary(g)),
                24..=31 => Op::Cancel(u16::arbitrary(g)),
                32..=39 => Op::Rearm(u16::arbitrary(g), When::arbitrary(g)),
                40..=49 => Op::Advance(u64::arbitrary(g), 20 + u8::arbitrary(g) % 44),
                50..=53 => Op::AdvanceToEarliest(i8::arbitrary(g) % 3),
                54..=57 => Op::AdvanceRearming(
                    u64::arbitrary(g),
                    20 + u8::arbitrary(g) % 44,
                    u16::arbitrary(g),
                ),
                58..=62 => Op::NextExpiry,
                _ => Op::Clear,
            }
        }
    }

    fn pick<T>(items: &[T], i: u16) -> Option<&T> {
        (!items.is_empty()).then(|| &items[usize::from(i) % items.len()])
    }

    /// The reference: timers ordered by (expiry, order of add or re-arm).
    #[derive(Default)]
    struct Model {
        queued: BTreeMap<(u64, u64), TimerId>,
        by_id: HashMap<TimerId, (u64, u64, u64)>,
        seq: u64,
    }

    impl Model {
        fn insert(&mut self, id: TimerId, key: u64, data: u64) {
            self.seq += 1;
            self.queued.insert((key, self.seq), id);
            self.by_id.insert(id, (key, self.seq, data));
        }

        fn remove(&mut self, id: TimerId) -> Option<Timer> {
            let (key, seq, data) = self.by_id.remove(&id)?;
            self.queued.remove(&(key, seq));
            Some(Timer {
                id,
                expires: ns(key),
                data,
            })
        }

        fn pop_due(&mut self, now: u64) -> Option<Timer> {
            let (&(key, _), &id) = self.queued.first_key_value()?;
            (key <= now).then(|| self.remove(id).unwrap())
        }

        fn earliest(&self) -> Option<Ktime> {
            self.queued.keys().next().map(|&(key, _)| ns(key))
        }
    }

    fn queue_matches_model(capacity: u8, ops: Vec<Op>) -> bool {
        let capacity = usize::from(capacity % 48) + 1;
        let mut q = queue(capacity);
        let mut model = Model::default();
        // Every id ever issued, with the expiry it asked for.
        let mut issued: Vec<(TimerId, u64)> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Add(when, data) => {
                    let expires = when.resolve(now, &issued);
                    let key = expires.max(q.base().as_nanos());
                    let got = q.add(ns(expires), data);
                    if model.by_id.len() == capacity {
                        assert_eq!(got, Err(QueueFull));
                    } else {
                        let id = got.unwrap();
                        assert!(!model.by_id.contains_key(&id), "live id reissued");
                        model.insert(id, key, data);
                        issued.push((id, expires));
                    }
                }
                Op::Cancel(i) => {
                    if let Some(&(id, _)) = pick(&issued, i) {
                        assert_eq!(q.cancel(id), model.remove(id));
                    }
                }
                Op::Rearm(i, when) => {
                    if let Some(&(id, _)) = pick(&issued, i) {
                        let expires = when.resolve(now, &issued);
                        let key = expires.max(q.base().as_nanos());
                        let got = q.rearm(id, ns(expires));
                        match model.remove(id) {
                            Some(t) => {
                                assert_eq!(got, Ok(()));
                                model.insert(id, key, t.data);
                            }
                            None => assert_eq!(got, Err(NotQueued)),
                        }
                    }
                }
                Op::Advance(..) | Op::AdvanceToEarliest(_) => {
                    now = match op {
                        Op::Advance(x, shift) => now.saturating_add(x >> shift),
                        Op::AdvanceToEarliest(d) => model.earliest().map_or(now, |e| {
                            now.max(e.as_nanos().saturating_add_signed(d.into()))
                        }),
                        _ => unreachable!(),
                    };
                    loop {
                        let got = q.pop_expired(ns(now));
                        assert_eq!(got, model.pop_due(now));
                        if got.is_none() {
                            break;
                        }
                    }
                }
                Op::AdvanceRearming(x, shift, d) => {
                    now = now.saturating_add(x >> shift);
                    let again = now.saturating_add(1 + u64::from(d));
                    // Never at or before `now` (saturated): that would loop.
                    let keeps = |t: &Timer| t.data % 2 == 1 && again > now;
                    let rearm = |t: Timer| keeps(&t).then_some(ns(again));
                    while let Some(got) = q.pop_expired_with(ns(now), rearm) {
                        assert_eq!(Some(got), model.pop_due(now));
                        if keeps(&got) {
                            model.insert(got.id, again, got.data);
                            assert!(q.contains(got.id), "re-armed under its id");
                        } else {
                            assert!(!q.contains(got.id));
                        }
                        assert_eq!(q.next_expiry(), model.earliest());
                    }
                    assert_eq!(model.pop_due(now), None);
                }
                Op::NextExpiry => assert_eq!(q.next_expiry(), model.earliest()),
                Op::Clear => {
                    q.clear();
                    model = Model {
                        seq: model.seq,
                        ..Model::default()
                    };
                }
            }
            assert_eq!(q.len(), model.by_id.len());
            assert!(q.base() <= ns(now), "base passed now");
            assert!(model.earliest().is_none_or(|e| q.base() <= e));
            if let Some(&(id, _)) = issued.last() {
                assert_eq!(q.contains(id), model.by_id.contains_key(&id));
            }
        }
        assert_eq!(q.next_expiry(), model.earliest());
        true
    }

    #[test]
    fn queue_matches_btreemap_model() {
        QuickCheck::new()
            .tests(8_000)
            .rng(Gen::new(150))
            .quickcheck(queue_matches_model as fn(u8, Vec<Op>) -> bool);
    }
}
