//! Machine-readable lines on the serial console, shared by the guest (which
//! writes them) and `xtask` (which parses them into its table).
//!
//! ```text
//!   RESULT test=periodic source=hpet mode=periodic ticks=250 hz=250 verdict=pass
//!   CONFIG clocksource=tsc tick=lapic0 mode=high-res+NO_HZ hz=250 ...
//!   └kind┘ └── key=value fields, separated by one space ───────────────────┘
//! ```
//!
//! A value is a token without spaces or `"`, or a quoted string
//! (`reason="device has no one-shot mode"`) that contains no `"`. Every
//! `RESULT` line has a `test` and a `verdict` (`pass`, `fail` or `skip`).
//! A line is built in a [`TextBuf`] and printed in one write, so a log
//! message from an interrupt handler cannot land inside it.
//!
//! Nothing here allocates: the guest formats with [`Line`], the host walks a
//! line with [`fields`].

use core::fmt::{self, Write};

/// The prefix of a test result line.
pub const RESULT: &str = "RESULT";
/// The prefix of the line that states the configuration a boot reached.
pub const CONFIG: &str = "CONFIG";
/// The prefix of a benchmark figure (`BENCH <group> key=value …`, as
/// `bench/linux`'s program prints them).
pub const BENCH: &str = "BENCH";

/// What a test concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every assertion held.
    Pass,
    /// An assertion failed (the line says which figure).
    Fail,
    /// The test could not run in this configuration (the line says why).
    Skip,
}

impl Verdict {
    /// The word used on the line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
        }
    }

    /// The verdict written as `word`.
    pub fn from_word(word: &str) -> Option<Self> {
        match word {
            "pass" => Some(Verdict::Pass),
            "fail" => Some(Verdict::Fail),
            "skip" => Some(Verdict::Skip),
            _ => None,
        }
    }

    /// Pass if `ok`, else fail.
    pub const fn from_bool(ok: bool) -> Self {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fixed-capacity text buffer: `N` bytes, no allocation. Writing past
/// the end keeps what fits (cut at a character boundary) and records the
/// overflow.
#[derive(Clone)]
pub struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> TextBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        TextBuf {
            bytes: [0; N],
            len: 0,
            overflowed: false,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are ever copied in (`write_str`).
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }

    /// Whether something did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Forgets the contents.
    pub fn clear(&mut self) {
        self.len = 0;
        self.overflowed = false;
    }

    /// A buffer holding `args` formatted.
    pub fn format(args: fmt::Arguments<'_>) -> Self {
        let mut b = Self::new();
        // `write_str` never fails: overflow is recorded instead.
        let _ = b.write_fmt(args);
        b
    }
}

impl<const N: usize> Default for TextBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Write for TextBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        if take < s.len() {
            self.overflowed = true;
        }
        Ok(())
    }
}

impl<const N: usize> fmt::Display for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for TextBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// The longest line [`Line`] builds.
pub const LINE_MAX: usize = 768;

/// One `RESULT`/`CONFIG` line being built.
pub struct Line {
    buf: TextBuf<LINE_MAX>,
}

impl Line {
    /// A `RESULT test=<test>` line.
    pub fn result(test: &str) -> Self {
        let mut l = Line::start(RESULT);
        l.field("test", test);
        l
    }

    /// A `CONFIG` line.
    pub fn config() -> Self {
        Line::start(CONFIG)
    }

    /// A `BENCH <group>` line (no verdict: print [`Line::as_str`]).
    pub fn bench(group: &str) -> Self {
        let mut l = Line::start(BENCH);
        let _ = write!(l.buf, " {group}");
        l
    }

    fn start(kind: &str) -> Self {
        let mut buf = TextBuf::new();
        let _ = buf.write_str(kind);
        Line { buf }
    }

    /// Appends `key=value`; `value` must format without spaces or `"`
    /// (a token). Use [`Line::text`] for free text.
    pub fn field(&mut self, key: &str, value: impl fmt::Display) -> &mut Self {
        let _ = write!(self.buf, " {key}={value}");
        self
    }

    /// Appends `key="text"`; a `"` in `text` becomes `'`.
    pub fn text(&mut self, key: &str, text: impl fmt::Display) -> &mut Self {
        let t: TextBuf<256> = TextBuf::format(format_args!("{text}"));
        let _ = write!(self.buf, " {key}=\"");
        for c in t.as_str().chars() {
            let _ = self.buf.write_char(if c == '"' { '\'' } else { c });
        }
        let _ = self.buf.write_char('"');
        self
    }

    /// Appends `verdict=<v>` and returns the finished text.
    pub fn verdict(&mut self, v: Verdict) -> &str {
        self.field("verdict", v);
        self.buf.as_str()
    }

    /// The text so far (for `CONFIG` lines, which have no verdict).
    pub fn as_str(&self) -> &str {
        self.buf.as_str()
    }
}

/// Splits a serial line into its kind (`RESULT`/`CONFIG`) and its fields.
/// `None` if the line is neither (log output, the boot table, ...).
/// Leading text before the kind (e.g. a prompt) is not accepted: the guest
/// writes these lines whole.
pub fn fields(line: &str) -> Option<(&str, Fields<'_>)> {
    let line = line.trim_end_matches(['\r', '\n']);
    for kind in [RESULT, CONFIG] {
        if let Some(rest) = line.strip_prefix(kind) {
            if rest.is_empty() || rest.starts_with(' ') {
                return Some((kind, Fields { rest }));
            }
        }
    }
    None
}

/// The `key=value` fields of a line; see [`fields`].
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.rest = self.rest.trim_start_matches(' ');
            if self.rest.is_empty() {
                return None;
            }
            let (word_end, key, value);
            match self.rest.find('=') {
                Some(eq) if !self.rest[..eq].contains(' ') => {
                    key = &self.rest[..eq];
                    let after = &self.rest[eq + 1..];
                    if let Some(quoted) = after.strip_prefix('"') {
                        let close = quoted.find('"').unwrap_or(quoted.len());
                        value = &quoted[..close];
                        word_end = eq + 2 + (close + 1).min(quoted.len());
                    } else {
                        let end = after.find(' ').unwrap_or(after.len());
                        value = &after[..end];
                        word_end = eq + 1 + end;
                    }
                }
                _ => {
                    // A word without `=`: skip it.
                    let end = self.rest.find(' ').unwrap_or(self.rest.len());
                    self.rest = &self.rest[end..];
                    continue;
                }
            }
            self.rest = &self.rest[word_end.min(self.rest.len())..];
            return Some((key, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_line_round_trips() {
        let mut l = Line::result("periodic");
        l.field("source", "hpet")
            .field("ticks", 250)
            .text("reason", "one-shot \"not\" requested");
        let s = l.verdict(Verdict::Pass).to_string();
        assert_eq!(
            s,
            "RESULT test=periodic source=hpet ticks=250 reason=\"one-shot 'not' requested\" verdict=pass"
        );
        let (kind, f) = fields(&s).unwrap();
        assert_eq!(kind, RESULT);
        let v: Vec<_> = f.collect();
        assert_eq!(
            v,
            [
                ("test", "periodic"),
                ("source", "hpet"),
                ("ticks", "250"),
                ("reason", "one-shot 'not' requested"),
                ("verdict", "pass"),
            ]
        );
    }

    #[test]
    fn other_lines_are_not_fields() {
        assert!(fields("[INFO  guest] RESULT test=x").is_none());
        assert!(fields("RESULTS are in").is_none());
        assert!(fields("boot: ok").is_none());
        let (k, f) = fields("CONFIG\r\n").unwrap();
        assert_eq!(k, CONFIG);
        assert_eq!(f.count(), 0);
    }

    #[test]
    fn stray_words_and_an_unclosed_quote_do_not_panic() {
        let v: Vec<_> = fields("RESULT word a=1 b=\"open").unwrap().1.collect();
        assert_eq!(v, [("a", "1"), ("b", "open")]);
        let v: Vec<_> = fields("RESULT a= b=\"\" c").unwrap().1.collect();
        assert_eq!(v, [("a", ""), ("b", "")]);
    }

    #[test]
    fn text_buf_cuts_at_a_char_boundary_and_says_so() {
        let mut b: TextBuf<5> = TextBuf::new();
        write!(b, "abcµ").unwrap(); // µ is 2 bytes: 5 fit exactly
        assert_eq!(b.as_str(), "abcµ");
        assert!(!b.overflowed());
        write!(b, "x").unwrap();
        assert!(b.overflowed());
        let mut b: TextBuf<4> = TextBuf::new();
        write!(b, "abcµ").unwrap();
        assert_eq!(b.as_str(), "abc");
        assert!(b.overflowed());
    }

    #[test]
    fn verdict_words() {
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Skip] {
            assert_eq!(Verdict::from_word(v.as_str()), Some(v));
        }
        assert_eq!(Verdict::from_word("PASS"), None);
    }

    quickcheck::quickcheck! {
        fn any_line_parses_without_panicking(s: String) -> bool {
            let line = format!("RESULT {s}");
            fields(&line).map(|(_, f)| f.count()).is_some()
        }
    }
}
