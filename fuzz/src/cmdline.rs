//! The guest's command-line parser, `guest::arch::cmdline::parse`.
//!
//! Inputs are lines of words — valid options, valid options mutated (a
//! byte changed, a character inserted or dropped, cut short, non-ASCII
//! appended), unknown words, random strings — joined by every kind of
//! ASCII whitespace, and sometimes padded to around the guest's 2048-byte
//! command-line limit (`boot::CMDLINE_MAX`) and cut there, as the guest
//! cuts a longer line.
//!
//! Invariants (the module docs of `guest::arch::cmdline`: "nothing here can
//! fail", "the last one wins", "an ignored word is a warning"):
//! - `parse` never panics;
//! - every word is accounted for: parsed alone, a word either sets an
//!   option and warns nothing, or warns once and sets nothing;
//! - the line is the words in order: its warnings are the rejected words
//!   (the same slices of the line, the same problems), the first
//!   [`MAX_WARNINGS`] kept and all counted, and its options are the
//!   accepted words applied left to right, later ones winning;
//! - the options printed (`Display`), when any is set, parse back to the
//!   same options with no warning.
//!
//! (The quickcheck property in `guest/src/arch/cmdline.rs` checks only the
//! warning counts, on unstructured strings.)

use guest::arch::cmdline::{parse, Options, Parsed, Problem, MAX_WARNINGS};

use crate::{Gen, Target};

/// The command-line target.
pub struct Cmdline;

/// The guest's command-line limit (`guest::arch::boot::CMDLINE_MAX`, which is
/// bare-metal only).
const CMDLINE_MAX: usize = 2048;

const VALID: &[&str] = &[
    "clocksource=tsc",
    "clocksource=hpet",
    "clocksource=pit",
    "clocksource=acpi_pm",
    "clockevent=lapic-deadline",
    "clockevent=hpet",
    "clockevent=pit",
    "nohz=on",
    "nohz=off",
    "highres=on",
    "highres=off",
    "hpet=disable",
    "lapic=notimer",
    "hz=100",
    "hz=250",
    "hz=1000",
    "test=periodic",
    "test=periodic,oneshot,nohz",
    "test=bench-lateness",
    "timer_advance=auto",
    "timer_advance=off",
    "timer_advance=0",
    "timer_advance=1500",
    "timer_advance=18446744073709551615",
    "tsc=reliable",
];

const OTHER: &[&str] = &[
    "quiet",
    "console=ttyS0",
    "root=/dev/vda",
    "nohz",
    "hz=",
    "=",
    "==",
    "hz==100",
    "timer_advance=18446744073709551616",
    "timer_advance=+1",
    "test=a,,b",
    "test=,",
];

const SEPARATORS: &[&str] = &[" ", "  ", "\t", "\n", "\r\n", "\x0c", " \t "];

/// Characters a mutation inserts: option syntax, digits, and non-ASCII
/// (including Unicode whitespace, which does not separate words).
const CHARS: &[char] = &[
    '=', ',', '.', '-', '_', '+', '0', '9', 'a', 'Z', '$', '\0', 'é', '\u{85}', '\u{a0}',
    '\u{3000}', '\u{feff}', '😀',
];

fn mutate(g: &mut Gen, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    for _ in 0..g.range(1, 3) {
        let at = g.below(chars.len() as u64 + 1) as usize;
        match g.below(5) {
            0 if at < chars.len() => chars[at] = *g.pick(CHARS),
            1 => chars.insert(at, *g.pick(CHARS)),
            2 if at < chars.len() => {
                chars.remove(at);
            }
            3 => chars.truncate(at),
            _ => {
                let c = char::from(b' ' + g.below(95) as u8);
                chars.insert(at, c)
            }
        }
    }
    chars.into_iter().collect()
}

fn word(g: &mut Gen) -> String {
    match g.below(10) {
        0..=3 => g.pick(VALID).to_string(),
        4..=6 => {
            let w = g.pick(VALID).to_string();
            mutate(g, &w)
        }
        7 => g.pick(OTHER).to_string(),
        8 => {
            // A long value: names have no length limit.
            let key = *g.pick(&["clocksource=", "test=", "timer_advance="]);
            let fill = *g.pick(&["a", "9", "a,", "é"]);
            format!("{key}{}", fill.repeat(g.range(1, 3000) as usize))
        }
        _ => (0..g.range(1, 12))
            .map(|_| *g.pick(CHARS))
            .collect::<String>(),
    }
}

/// `s` cut to at most `len` bytes, at a character boundary.
fn cut(s: &mut String, len: usize) {
    let mut at = len.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
}

impl Target for Cmdline {
    const NAME: &'static str = "cmdline";
    type Input = String;

    fn generate(g: &mut Gen) -> String {
        let mut line = String::new();
        if g.chance(1, 4) {
            line.push_str(g.pick::<&str>(SEPARATORS));
        }
        let words = match g.below(4) {
            0 => g.below(3),
            1 | 2 => g.range(1, 12),
            _ => g.range(MAX_WARNINGS as u64, 3 * MAX_WARNINGS as u64),
        };
        for i in 0..words {
            if i > 0 {
                line.push_str(g.pick::<&str>(SEPARATORS));
            }
            line.push_str(&word(g));
        }
        if g.chance(1, 5) {
            // Around the guest's limit, cut as the guest cuts.
            while line.len() < CMDLINE_MAX + 64 {
                line.push(' ');
                line.push_str(g.pick::<&str>(VALID));
            }
            let len = CMDLINE_MAX + g.below(17) as usize - 8;
            cut(&mut line, len);
        }
        line
    }

    fn check(line: &String) -> u64 {
        let p = parse(line);
        let mut expected = Options::default();
        let mut rejected = Vec::new();
        for w in line.split_ascii_whitespace() {
            let alone = parse(w);
            match alone.warnings.total() {
                0 => {
                    assert_ne!(
                        alone.options,
                        Options::default(),
                        "`{w}` was accepted and set nothing"
                    );
                    apply(&mut expected, &alone.options);
                }
                1 => {
                    assert_eq!(
                        alone.options,
                        Options::default(),
                        "`{w}` warned and still set an option"
                    );
                    let warning = *alone.warnings.iter().next().expect("one kept");
                    assert!(std::ptr::eq(warning.word, w), "the warning is not the word");
                    rejected.push((w, warning.problem));
                }
                n => panic!("one word `{w}` gave {n} warnings"),
            }
        }
        assert_eq!(
            p.options, expected,
            "the line is not its words applied in order"
        );
        assert_eq!(p.warnings.total(), rejected.len());
        assert_eq!(
            p.warnings.dropped(),
            rejected.len().saturating_sub(MAX_WARNINGS)
        );
        let kept: Vec<_> = p.warnings.iter().collect();
        assert_eq!(kept.len(), rejected.len().min(MAX_WARNINGS));
        for (k, (w, problem)) in kept.iter().zip(&rejected) {
            assert!(
                std::ptr::eq(k.word, *w),
                "warning `{}` is not the slice of the line `{w}`",
                k.word
            );
            assert_eq!(k.problem, *problem);
            assert!(!k.to_string().is_empty());
        }
        // `(defaults)` is what Display prints when nothing is set.
        if p.options != Options::default() {
            let printed = p.options.to_string();
            let again = parse(&printed);
            assert!(
                again.warnings.is_empty(),
                "the printed options `{printed}` do not parse cleanly"
            );
            assert_eq!(again.options, p.options, "`{printed}` does not round-trip");
        }
        for t in p.options.tests() {
            assert!(!t.is_empty(), "an empty test name");
        }
        summary(&p, line.len())
    }
}

/// Applies the options one accepted word set to `acc` (later wins).
fn apply<'a>(acc: &mut Options<'a>, o: &Options<'a>) {
    acc.clocksource = o.clocksource.or(acc.clocksource);
    acc.clockevent = o.clockevent.or(acc.clockevent);
    acc.nohz = o.nohz.or(acc.nohz);
    acc.highres = o.highres.or(acc.highres);
    acc.hpet_disabled |= o.hpet_disabled;
    acc.lapic_notimer |= o.lapic_notimer;
    acc.hz = o.hz.or(acc.hz);
    acc.test = o.test.or(acc.test);
    acc.timer_advance = o.timer_advance.or(acc.timer_advance);
    acc.tsc_reliable |= o.tsc_reliable;
}

/// Which options were set, which problems were seen, how many warnings
/// (up to one past the kept ones), and whether the line was near the limit.
fn summary(p: &Parsed<'_>, len: usize) -> u64 {
    let o = &p.options;
    let set = [
        o.clocksource.is_some(),
        o.clockevent.is_some(),
        o.nohz.is_some(),
        o.highres.is_some(),
        o.hpet_disabled,
        o.lapic_notimer,
        o.hz.is_some(),
        o.test.is_some(),
        o.timer_advance.is_some(),
        o.tsc_reliable,
    ];
    let mut s = set
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, b)| acc | (*b as u64) << i);
    for w in p.warnings.iter() {
        s |= match w.problem {
            Problem::Unknown => 1 << 10,
            Problem::MissingValue => 1 << 11,
            Problem::BadValue { .. } => 1 << 12,
        };
    }
    s |= (p.warnings.total().min(MAX_WARNINGS + 1) as u64) << 13;
    s | ((len >= CMDLINE_MAX - 8) as u64) << 17
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_cmdline_short_pass() {
        crate::short_pass::<Cmdline>(4_000);
    }

    #[test]
    fn later_words_win_as_the_line_does() {
        // The fold the line is checked against: `hz=100 hz=1000` is 1000.
        Cmdline::check(&"hz=250 nohz=on bogus".to_string());
        let mut o = Options::default();
        apply(&mut o, &parse("hz=100").options);
        apply(&mut o, &parse("hz=1000").options);
        assert_eq!(o, parse("hz=100 hz=1000").options);
    }
}
