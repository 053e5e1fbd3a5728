//! The kernel log ring: log records written where the console must not be
//! (in an interrupt handler, or with interrupts disabled), kept until
//! normal code prints them.
//!
//! A 100-byte line takes ~9 ms at 115200 baud on a real UART (10 bits a
//! byte); written from a handler that holds a tick lock with
//! interrupts off, that is 9 ms of every timer interrupt delayed. So such
//! records are copied here instead, and drained to the console later, with
//! interrupts enabled (`crate::arch::serial`).
//!
//! ```text
//!   buf: [u8; N], used as a circle from `start`, `len` bytes in use
//!   record: [len lo][len hi | CUT][text …]    2-byte header, then the text
//!
//!   push(text): room for 2 + len(text)?  yes ─► append, whole
//!                                        no ──► dropped += 1 (nothing written)
//!   pop(out):   the oldest record, whole, copied out; its bytes freed
//! ```
//!
//! Records are whole or absent: a record never overwrites an older one
//! (the oldest lines of a burst are usually the ones that explain it), and
//! one that does not fit is counted in [`Ring::dropped`]. A text longer than
//! [`RECORD_MAX`] is cut at a character boundary and marked (`CUT`; counted
//! in [`Ring::truncated`]). Pure and allocation-free: tested on the host.

/// The longest record text kept; a longer one is cut (at a character
/// boundary) and marked.
pub const RECORD_MAX: usize = 512;

/// The bytes of a record's header: its length, with [`CUT_FLAG`].
const HEADER: usize = 2;
/// Set in the header when the text was cut to [`RECORD_MAX`].
const CUT_FLAG: u16 = 0x8000;

/// A record taken out of the ring by [`Ring::pop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    text: [u8; RECORD_MAX],
    len: usize,
    cut: bool,
}

impl Record {
    /// An empty record (a buffer for [`Ring::pop`]).
    pub const fn new() -> Self {
        Record {
            text: [0; RECORD_MAX],
            len: 0,
            cut: false,
        }
    }

    /// The text (whole UTF-8 characters only: [`Ring::push`] cuts at a
    /// boundary).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.text[..self.len]).unwrap_or("")
    }

    /// Whether the text was cut to [`RECORD_MAX`].
    pub fn was_cut(&self) -> bool {
        self.cut
    }
}

impl Default for Record {
    fn default() -> Self {
        Self::new()
    }
}

/// A ring of whole log records in `N` bytes.
#[derive(Debug, Clone)]
pub struct Ring<const N: usize> {
    buf: [u8; N],
    start: usize,
    len: usize,
    records: usize,
    dropped: u64,
    truncated: u64,
}

impl<const N: usize> Ring<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Ring {
            buf: [0; N],
            start: 0,
            len: 0,
            records: 0,
            dropped: 0,
            truncated: 0,
        }
    }

    /// Appends `text` as one record; returns whether it was kept. A text
    /// longer than [`RECORD_MAX`] is cut first; a record that does not fit
    /// in the free space is dropped whole and counted.
    pub fn push(&mut self, text: &str) -> bool {
        let mut take = text.len().min(RECORD_MAX);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        let cut = take < text.len();
        if HEADER + take > N - self.len {
            self.dropped += 1;
            return false;
        }
        if cut {
            self.truncated += 1;
        }
        let header = take as u16 | if cut { CUT_FLAG } else { 0 };
        self.put(&header.to_le_bytes());
        self.put(&text.as_bytes()[..take]);
        self.records += 1;
        true
    }

    /// Moves the oldest record into `out`; `false` if the ring is empty.
    pub fn pop(&mut self, out: &mut Record) -> bool {
        if self.records == 0 {
            return false;
        }
        let mut h = [0u8; HEADER];
        self.take(&mut h);
        let header = u16::from_le_bytes(h);
        let len = usize::from(header & !CUT_FLAG);
        self.take(&mut out.text[..len]);
        out.len = len;
        out.cut = header & CUT_FLAG != 0;
        self.records -= 1;
        true
    }

    /// Records waiting.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Bytes in use (headers included).
    pub fn bytes_used(&self) -> usize {
        self.len
    }

    /// Records that did not fit, since the ring was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records cut to [`RECORD_MAX`], since the ring was made.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Appends `bytes` after the last record (the caller checked the room).
    fn put(&mut self, bytes: &[u8]) {
        let end = (self.start + self.len) % N;
        let first = bytes.len().min(N - end);
        self.buf[end..end + first].copy_from_slice(&bytes[..first]);
        self.buf[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        self.len += bytes.len();
    }

    /// Removes `out.len()` bytes from the front into `out`.
    fn take(&mut self, out: &mut [u8]) {
        let first = out.len().min(N - self.start);
        out[..first].copy_from_slice(&self.buf[self.start..self.start + first]);
        let rest = out.len() - first;
        out[first..].copy_from_slice(&self.buf[..rest]);
        self.start = (self.start + out.len()) % N;
        self.len -= out.len();
    }
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<const N: usize>(r: &mut Ring<N>) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut rec = Record::new();
        while r.pop(&mut rec) {
            out.push((rec.as_str().to_string(), rec.was_cut()));
        }
        out
    }

    #[test]
    fn records_come_out_whole_and_in_order() {
        let mut r: Ring<64> = Ring::new();
        assert!(r.push("first"));
        assert!(r.push(""));
        assert!(r.push("third line"));
        assert_eq!(r.records(), 3);
        assert_eq!(r.bytes_used(), 3 * HEADER + 5 + 10);
        assert_eq!(
            drain(&mut r),
            [
                ("first".into(), false),
                ("".into(), false),
                ("third line".into(), false)
            ]
        );
        assert_eq!((r.records(), r.bytes_used()), (0, 0));
        assert!(!r.pop(&mut Record::new()));
    }

    #[test]
    fn a_record_that_wraps_past_the_end_comes_out_intact() {
        // 16 bytes: "aaaaaaaaaa" takes 12, leaving 4; popping it frees the
        // front, and "wrapping!" (2 + 9 = 11 bytes) then starts at byte 12
        // and ends at byte 6 of the next turn.
        let mut r: Ring<16> = Ring::new();
        assert!(r.push("aaaaaaaaaa"));
        assert_eq!(drain(&mut r), [("aaaaaaaaaa".into(), false)]);
        assert!(r.push("wrapping!"));
        assert!(r.push("ok"));
        assert_eq!(r.bytes_used(), 11 + 4);
        assert_eq!(
            drain(&mut r),
            [("wrapping!".into(), false), ("ok".into(), false)]
        );
        // Many turns: the positions keep moving, the records stay whole.
        for i in 0..100 {
            let text = format!("record {i}");
            assert!(r.push(&text), "{i}");
            assert_eq!(drain(&mut r), [(text, false)]);
        }
    }

    #[test]
    fn a_record_that_does_not_fit_is_dropped_whole_and_counted() {
        let mut r: Ring<20> = Ring::new();
        assert!(r.push("0123456789")); // 12 of 20
        assert!(!r.push("0123456789")); // 12 more: no room
        assert!(r.push("012345")); // 8: exactly full
        assert!(!r.push("")); // even an empty one needs its header
        assert_eq!((r.records(), r.dropped()), (2, 2));
        // The older records are never overwritten.
        assert_eq!(
            drain(&mut r),
            [("0123456789".into(), false), ("012345".into(), false)]
        );
        assert!(r.push("room again"));
        assert_eq!(r.dropped(), 2);
    }

    #[test]
    fn a_long_text_is_cut_at_a_character_boundary_and_marked() {
        let mut r: Ring<2048> = Ring::new();
        // RECORD_MAX − 1 ASCII bytes, then a 3-byte character that would
        // end past RECORD_MAX: cut before it.
        let text = format!("{}€ and more", "x".repeat(RECORD_MAX - 1));
        assert!(r.push(&text));
        assert!(r.push(&"y".repeat(RECORD_MAX)));
        assert_eq!(r.truncated(), 1);
        let out = drain(&mut r);
        assert_eq!(out[0], ("x".repeat(RECORD_MAX - 1), true));
        assert_eq!(out[1], ("y".repeat(RECORD_MAX), false));
    }

    quickcheck::quickcheck! {
        fn every_record_is_popped_as_pushed_or_counted_as_dropped(texts: Vec<String>) -> bool {
            let mut r: Ring<256> = Ring::new();
            let mut waiting = std::collections::VecDeque::new();
            let mut popped = 0u64;
            let mut check = |r: &mut Ring<256>, waiting: &mut std::collections::VecDeque<String>| {
                drain(r).into_iter().all(|(got, cut)| {
                    popped += 1;
                    let want = waiting.pop_front().unwrap_or_default();
                    cut == (want.len() > RECORD_MAX) && want.starts_with(&got)
                        && (cut || got == want)
                })
            };
            for (i, t) in texts.iter().enumerate() {
                if r.push(t) {
                    waiting.push_back(t.clone());
                }
                // Drain every third push so the ring wraps.
                if i % 3 == 2 && !check(&mut r, &mut waiting) {
                    return false;
                }
            }
            check(&mut r, &mut waiting)
                && waiting.is_empty()
                && popped + r.dropped() == texts.len() as u64
        }
    }
}
