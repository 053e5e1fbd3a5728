//! The kernel command line (`qemu -append "..."`), parsed like Linux's.
//!
//! The line is split at ASCII whitespace into words; each word is
//! `key=value` (or a bare `key`, which no option accepts yet). Recognised
//! options:
//!
//! | option | values | meaning |
//! |---|---|---|
//! | `clocksource=` | a name | prefer this clocksource (the registry decides if it exists) |
//! | `clockevent=` | a name | prefer this clock-event device (on the CPUs it covers: `lapic` is CPU 0's `lapic0`, the APs keep their own) |
//! | `nohz=` | `on`, `off` | tickless idle |
//! | `highres=` | `on`, `off` | high-resolution timers |
//! | `hpet=` | `disable` | do not use the HPET at all |
//! | `lapic=` | `notimer` | do not use the local APIC timer (on more than one CPU: a dummy on each, every CPU ticks by broadcast) |
//! | `hz=` | `100`, `250`, `1000` | periodic tick rate |
//! | `test=` | names, comma-separated | the in-guest tests to run, in order |
//! | `timer_advance=` | `auto`, `off`, nanoseconds | early programming of the deadline |
//! | `tsc=` | `reliable` | trust the TSC without CPUID's invariant bit: no clocksource watchdog (Linux's `tsc=reliable`) |
//! | `idle=` | `deep` | idle as a C3 state would: the LAPIC timers are `C3STOP` and shut down in idle, the broadcast device wakes the CPUs |
//!
//! Nothing here can fail: an unknown option, a missing or bad value is
//! returned as a [`Warning`] and the option is ignored (the default stays).
//! When an option is given twice the last one wins, as in Linux. Parsing
//! borrows from the line and allocates nothing.

use core::fmt;

use clocksource::{Hertz, Nanos};

/// How many warnings [`parse`] keeps; the rest are only counted.
pub const MAX_WARNINGS: usize = 8;

/// The periodic tick rate (`hz=`), limited to the rates Linux offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickRate {
    /// 100 Hz: a tick every 10 ms.
    Hz100,
    /// 250 Hz: a tick every 4 ms.
    Hz250,
    /// 1000 Hz: a tick every 1 ms.
    Hz1000,
}

impl TickRate {
    /// The rate as a frequency.
    pub const fn hertz(self) -> Hertz {
        Hertz::new(self.per_second())
    }

    /// Ticks per second.
    pub const fn per_second(self) -> u64 {
        match self {
            TickRate::Hz100 => 100,
            TickRate::Hz250 => 250,
            TickRate::Hz1000 => 1000,
        }
    }
}

/// How early to program a timer before its deadline (`timer_advance=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAdvance {
    /// Measure the interrupt latency and adapt.
    Auto,
    /// Program at the deadline.
    Off,
    /// A fixed advance.
    Fixed(Nanos),
}

impl TimerAdvance {
    /// The tick layer's setting.
    pub fn to_tick(self) -> tick::TimerAdvance {
        match self {
            TimerAdvance::Off => tick::TimerAdvance::Off,
            TimerAdvance::Auto => tick::TimerAdvance::Auto,
            TimerAdvance::Fixed(ns) => tick::TimerAdvance::Fixed(ns),
        }
    }
}

/// How much of a command line cut after `kept` to keep, when `next` is the
/// byte that followed the cut: up to the end of its last whole word. A
/// word the cut went through is dropped (`hz=1000` cut after `hz=100`
/// would set another rate than the one asked for); if the cut fell on
/// whitespace, or `kept` ends with it, every word is whole.
pub fn whole_words(kept: &[u8], next: u8) -> usize {
    if next.is_ascii_whitespace() {
        return kept.len();
    }
    kept.iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |i| i + 1)
}

/// The options the command line set; `None` (or `false`) means "not given,
/// use the default".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options<'a> {
    /// `clocksource=<name>`.
    pub clocksource: Option<&'a str>,
    /// `clockevent=<name>`.
    pub clockevent: Option<&'a str>,
    /// `nohz=on|off`.
    pub nohz: Option<bool>,
    /// `highres=on|off`.
    pub highres: Option<bool>,
    /// `hpet=disable`.
    pub hpet_disabled: bool,
    /// `lapic=notimer`.
    pub lapic_notimer: bool,
    /// `hz=100|250|1000`.
    pub hz: Option<TickRate>,
    /// `test=<name>`.
    pub test: Option<&'a str>,
    /// `timer_advance=auto|off|<ns>`.
    pub timer_advance: Option<TimerAdvance>,
    /// `tsc=reliable`.
    pub tsc_reliable: bool,
    /// `idle=deep`: the idle loop behaves as a C3 state would — every
    /// CPU's LAPIC timer is declared `C3STOP` and shut down on entry, so
    /// only the broadcast device (HPET, else PIT) wakes the CPU.
    pub idle_deep: bool,
}

/// What was wrong with one word of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// No option has this key.
    Unknown,
    /// The option needs a value (`key=value`) and got none.
    MissingValue,
    /// The value is not one the option accepts; `expected` lists those.
    BadValue {
        /// The accepted values, for the message.
        expected: &'static str,
    },
}

/// One ignored word of the command line and why it was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warning<'a> {
    /// The word as it was written.
    pub word: &'a str,
    /// What was wrong with it.
    pub problem: Problem,
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem {
            Problem::Unknown => write!(f, "`{}`: unknown option, ignored", self.word),
            Problem::MissingValue => write!(f, "`{}`: missing value, ignored", self.word),
            Problem::BadValue { expected } => {
                write!(
                    f,
                    "`{}`: bad value (expected {expected}), ignored",
                    self.word
                )
            }
        }
    }
}

/// The warnings of one parse: the first [`MAX_WARNINGS`] kept, the rest
/// counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warnings<'a> {
    kept: [Option<Warning<'a>>; MAX_WARNINGS],
    total: usize,
}

impl<'a> Warnings<'a> {
    const fn new() -> Self {
        Warnings {
            kept: [None; MAX_WARNINGS],
            total: 0,
        }
    }

    fn push(&mut self, warning: Warning<'a>) {
        if let Some(slot) = self.kept.get_mut(self.total) {
            *slot = Some(warning);
        }
        self.total += 1;
    }

    /// The kept warnings, in command-line order.
    pub fn iter(&self) -> impl Iterator<Item = &Warning<'a>> {
        self.kept.iter().flatten()
    }

    /// All warnings, including those not kept.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How many warnings were counted but not kept.
    pub fn dropped(&self) -> usize {
        self.total.saturating_sub(MAX_WARNINGS)
    }

    /// No word was ignored.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// The result of [`parse`]: the options and what was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The recognised options.
    pub options: Options<'a>,
    /// The ignored words.
    pub warnings: Warnings<'a>,
}

/// Parses a command line. Never fails: see the module docs.
pub fn parse(line: &str) -> Parsed<'_> {
    let mut options = Options::default();
    let mut warnings = Warnings::new();
    for word in line.split_ascii_whitespace() {
        if let Err(problem) = apply(&mut options, word) {
            warnings.push(Warning { word, problem });
        }
    }
    Parsed { options, warnings }
}

/// Applies one word to `options`, or says why it cannot.
fn apply<'a>(options: &mut Options<'a>, word: &'a str) -> Result<(), Problem> {
    let (key, value) = match word.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (word, None),
    };
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Err(if KNOWN_KEYS.contains(&key) {
            Problem::MissingValue
        } else {
            Problem::Unknown
        });
    };
    match key {
        "clocksource" => options.clocksource = Some(name(value)?),
        "clockevent" => options.clockevent = Some(name(value)?),
        "test" => options.test = Some(test_list(value)?),
        "nohz" => options.nohz = Some(on_off(value)?),
        "highres" => options.highres = Some(on_off(value)?),
        "hpet" => options.hpet_disabled = exactly(value, "disable")?,
        "lapic" => options.lapic_notimer = exactly(value, "notimer")?,
        "hz" => options.hz = Some(tick_rate(value)?),
        "timer_advance" => options.timer_advance = Some(timer_advance(value)?),
        "tsc" => options.tsc_reliable = exactly(value, "reliable")?,
        "idle" => options.idle_deep = exactly(value, "deep")?,
        _ => return Err(Problem::Unknown),
    }
    Ok(())
}

/// The keys `apply` has an arm for (to tell a missing value from an unknown key).
const KNOWN_KEYS: [&str; 11] = [
    "clocksource",
    "clockevent",
    "test",
    "nohz",
    "highres",
    "hpet",
    "lapic",
    "hz",
    "timer_advance",
    "tsc",
    "idle",
];

/// A device or test name: ASCII letters, digits, `_`, `-` and `.`.
fn name(value: &str) -> Result<&str, Problem> {
    let ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(value)
    } else {
        Err(Problem::BadValue {
            expected: "a name of letters, digits, `_`, `-`, `.`",
        })
    }
}

/// `test=`: one or more names separated by commas, none empty.
fn test_list(value: &str) -> Result<&str, Problem> {
    if value.split(',').all(|n| !n.is_empty() && name(n).is_ok()) {
        Ok(value)
    } else {
        Err(Problem::BadValue {
            expected: "test names separated by `,`",
        })
    }
}

impl<'a> Options<'a> {
    /// The test names of `test=`, in order (none if not given).
    pub fn tests(&self) -> impl Iterator<Item = &'a str> {
        self.test.into_iter().flat_map(|t| t.split(','))
    }
}

fn on_off(value: &str) -> Result<bool, Problem> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(Problem::BadValue {
            expected: "`on` or `off`",
        }),
    }
}

fn exactly(value: &str, only: &'static str) -> Result<bool, Problem> {
    if value == only {
        Ok(true)
    } else {
        Err(Problem::BadValue { expected: only })
    }
}

fn tick_rate(value: &str) -> Result<TickRate, Problem> {
    match value {
        "100" => Ok(TickRate::Hz100),
        "250" => Ok(TickRate::Hz250),
        "1000" => Ok(TickRate::Hz1000),
        _ => Err(Problem::BadValue {
            expected: "100, 250 or 1000",
        }),
    }
}

fn timer_advance(value: &str) -> Result<TimerAdvance, Problem> {
    match value {
        "auto" => Ok(TimerAdvance::Auto),
        "off" => Ok(TimerAdvance::Off),
        // `u64::from_str` also takes a leading `+`; a plain decimal is wanted.
        ns if ns.bytes().all(|b| b.is_ascii_digit()) => ns
            .parse::<u64>()
            .map(|ns| TimerAdvance::Fixed(Nanos::from_nanos(ns)))
            .map_err(|_| Problem::BadValue {
                expected: "`auto`, `off` or nanoseconds below 2^64",
            }),
        _ => Err(Problem::BadValue {
            expected: "`auto`, `off` or nanoseconds",
        }),
    }
}

impl fmt::Display for Options<'_> {
    /// The options that were set, in command-line form (`hz=250 nohz=on`),
    /// or `(defaults)` when none was.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let mut sep = "";
        let mut item = |f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>| {
            let r = write!(f, "{sep}{args}");
            sep = " ";
            r
        };
        if let Some(v) = self.clocksource {
            item(f, format_args!("clocksource={v}"))?;
        }
        if let Some(v) = self.clockevent {
            item(f, format_args!("clockevent={v}"))?;
        }
        if let Some(v) = self.nohz {
            item(f, format_args!("nohz={}", on_off(v)))?;
        }
        if let Some(v) = self.highres {
            item(f, format_args!("highres={}", on_off(v)))?;
        }
        if self.hpet_disabled {
            item(f, format_args!("hpet=disable"))?;
        }
        if self.lapic_notimer {
            item(f, format_args!("lapic=notimer"))?;
        }
        if let Some(v) = self.hz {
            item(f, format_args!("hz={}", v.per_second()))?;
        }
        if let Some(v) = self.test {
            item(f, format_args!("test={v}"))?;
        }
        match self.timer_advance {
            Some(TimerAdvance::Auto) => item(f, format_args!("timer_advance=auto"))?,
            Some(TimerAdvance::Off) => item(f, format_args!("timer_advance=off"))?,
            Some(TimerAdvance::Fixed(ns)) => {
                item(f, format_args!("timer_advance={}", ns.as_nanos()))?
            }
            None => {}
        }
        if self.tsc_reliable {
            item(f, format_args!("tsc=reliable"))?;
        }
        if self.idle_deep {
            item(f, format_args!("idle=deep"))?;
        }
        if sep.is_empty() {
            f.write_str("(defaults)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings<'a>(p: &Parsed<'a>) -> Vec<Warning<'a>> {
        p.warnings.iter().copied().collect()
    }

    #[test]
    fn empty_line_gives_defaults_and_no_warnings() {
        for line in ["", "   ", "\t\n"] {
            let p = parse(line);
            assert_eq!(p.options, Options::default());
            assert!(p.warnings.is_empty());
            assert_eq!(p.options.to_string(), "(defaults)");
        }
    }

    #[test]
    fn every_option_is_recognised() {
        let p = parse(
            "clocksource=hpet clockevent=lapic-deadline nohz=on highres=off hpet=disable \
             lapic=notimer hz=250 test=oneshot_basic timer_advance=1500 tsc=reliable idle=deep",
        );
        assert!(p.warnings.is_empty(), "{:?}", warnings(&p));
        assert_eq!(
            p.options,
            Options {
                clocksource: Some("hpet"),
                clockevent: Some("lapic-deadline"),
                nohz: Some(true),
                highres: Some(false),
                hpet_disabled: true,
                lapic_notimer: true,
                hz: Some(TickRate::Hz250),
                test: Some("oneshot_basic"),
                timer_advance: Some(TimerAdvance::Fixed(Nanos::from_nanos(1500))),
                tsc_reliable: true,
                idle_deep: true,
            }
        );
    }

    #[test]
    fn display_round_trips_through_parse() {
        let line =
            "clocksource=tsc nohz=off hz=1000 test=x timer_advance=auto tsc=reliable idle=deep";
        let p = parse(line);
        assert_eq!(p.options.to_string(), line);
        assert_eq!(parse(&p.options.to_string()).options, p.options);
    }

    #[test]
    fn test_takes_a_comma_list() {
        let p = parse("test=periodic,nohz");
        assert!(p.warnings.is_empty());
        assert_eq!(p.options.tests().collect::<Vec<_>>(), ["periodic", "nohz"]);
        assert_eq!(parse("").options.tests().count(), 0);
        for bad in ["test=a,,b", "test=,a", "test=a,"] {
            assert_eq!(parse(bad).options.test, None, "{bad}");
        }
    }

    #[test]
    fn tick_rates_map_to_hertz() {
        assert_eq!(parse("hz=100").options.hz, Some(TickRate::Hz100));
        assert_eq!(parse("hz=1000").options.hz, Some(TickRate::Hz1000));
        assert_eq!(TickRate::Hz250.hertz(), Hertz::new(250));
    }

    #[test]
    fn unsupported_hz_is_reported_and_default_kept() {
        let p = parse("hz=300");
        assert_eq!(p.options.hz, None);
        assert_eq!(
            warnings(&p),
            [Warning {
                word: "hz=300",
                problem: Problem::BadValue {
                    expected: "100, 250 or 1000"
                }
            }]
        );
        assert_eq!(
            warnings(&p)[0].to_string(),
            "`hz=300`: bad value (expected 100, 250 or 1000), ignored"
        );
    }

    #[test]
    fn unknown_options_are_reported_and_the_rest_still_applies() {
        let p = parse("quiet nohz=on console=ttyS0");
        assert_eq!(p.options.nohz, Some(true));
        assert_eq!(
            warnings(&p),
            [
                Warning {
                    word: "quiet",
                    problem: Problem::Unknown
                },
                Warning {
                    word: "console=ttyS0",
                    problem: Problem::Unknown
                },
            ]
        );
    }

    #[test]
    fn known_key_without_value_is_missing_value() {
        for word in ["nohz", "hz=", "clocksource=", "test"] {
            let p = parse(word);
            assert_eq!(p.options, Options::default(), "{word}");
            assert_eq!(warnings(&p)[0].problem, Problem::MissingValue, "{word}");
        }
    }

    #[test]
    fn bad_values_are_reported() {
        for word in [
            "nohz=yes",
            "highres=1",
            "hpet=enable",
            "lapic=timer",
            "hz=-100",
            "timer_advance=+5",
            "timer_advance=5us",
            "timer_advance=99999999999999999999",
            "clocksource=hp$t",
            "test=a=b",
        ] {
            let p = parse(word);
            assert_eq!(p.options, Options::default(), "{word}");
            assert!(
                matches!(
                    warnings(&p)[..],
                    [Warning {
                        problem: Problem::BadValue { .. },
                        ..
                    }]
                ),
                "{word}: {:?}",
                warnings(&p)
            );
        }
    }

    #[test]
    fn timer_advance_forms() {
        let ta = |s: &str| parse(s).options.timer_advance;
        assert_eq!(ta("timer_advance=auto"), Some(TimerAdvance::Auto));
        assert_eq!(ta("timer_advance=off"), Some(TimerAdvance::Off));
        assert_eq!(
            ta("timer_advance=0"),
            Some(TimerAdvance::Fixed(Nanos::from_nanos(0)))
        );
        assert_eq!(
            ta("timer_advance=18446744073709551615"),
            Some(TimerAdvance::Fixed(Nanos::MAX))
        );
    }

    #[test]
    fn last_occurrence_wins() {
        let p = parse("hz=100 nohz=on hz=1000 nohz=off");
        assert_eq!(p.options.hz, Some(TickRate::Hz1000));
        assert_eq!(p.options.nohz, Some(false));
    }

    #[test]
    fn a_bad_repeat_keeps_the_earlier_good_value() {
        let p = parse("hz=250 hz=42");
        assert_eq!(p.options.hz, Some(TickRate::Hz250));
        assert_eq!(p.warnings.total(), 1);
    }

    #[test]
    fn any_whitespace_separates_words() {
        let p = parse("\t nohz=on\n\nhz=100   ");
        assert!(p.warnings.is_empty());
        assert_eq!(p.options.nohz, Some(true));
        assert_eq!(p.options.hz, Some(TickRate::Hz100));
    }

    #[test]
    fn warnings_beyond_capacity_are_counted_not_kept() {
        let line = (0..MAX_WARNINGS + 3)
            .map(|i| format!("bogus{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let p = parse(&line);
        assert_eq!(p.warnings.total(), MAX_WARNINGS + 3);
        assert_eq!(p.warnings.dropped(), 3);
        assert_eq!(p.warnings.iter().count(), MAX_WARNINGS);
        assert_eq!(p.warnings.iter().next().unwrap().word, "bogus0");
    }

    /// A line cut after its first `n` bytes, as the boot code copies it,
    /// with the partial last word dropped.
    fn cut(line: &str, n: usize) -> &str {
        let b = line.as_bytes();
        let keep = whole_words(&b[..n], b[n]);
        core::str::from_utf8(&b[..keep]).unwrap()
    }

    /// Regression: a line longer than the boot code keeps was cut in the
    /// middle of `hz=1000`, and the `hz=100` left applied.
    #[test]
    fn a_word_cut_by_the_length_limit_is_dropped_not_applied() {
        // 2041 bytes, a space, then `hz=1000` in bytes 2042..=2048.
        let line = format!("{} hz=1000 nohz=off", "x".repeat(2041));
        let kept = cut(&line, 2048);
        assert_eq!(parse(kept).options.hz, None, "{:?}", &kept[2035..]);
        assert_eq!(kept, format!("{} ", "x".repeat(2041)));
        // Cut on the space after the word: the word is whole and kept.
        assert_eq!(cut(&line, 2049), format!("{} hz=1000", "x".repeat(2041)));
        assert_eq!(parse(cut(&line, 2049)).options.hz, Some(TickRate::Hz1000));
        // Cut just after a space: nothing of the next word is kept anyway.
        assert_eq!(cut(&line, 2042), format!("{} ", "x".repeat(2041)));
        // One word longer than the limit: nothing is left.
        assert_eq!(cut(&"y".repeat(3000), 2048), "");
        assert_eq!(whole_words(b"a\tb", b'c'), 2);
    }

    quickcheck::quickcheck! {
        fn parse_never_panics_and_accounts_for_every_bad_word(line: String) -> bool {
            let p = parse(&line);
            let words = line.split_ascii_whitespace().count();
            p.warnings.total() <= words
                && p.warnings.iter().count() == p.warnings.total().min(MAX_WARNINGS)
        }
    }
}
