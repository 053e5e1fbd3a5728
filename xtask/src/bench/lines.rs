//! `BENCH` lines: one parsed into its group and fields ([`BenchLine`]), and
//! the line a figure is read from found among many, or why it is missing
//! ([`find`]).

use guest::rig::result::BENCH;

/// A missing figure.
pub const NONE: &str = "—";

/// One `BENCH <group> key=value …` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// The group (`idle`, `lateness`, …).
    pub group: String,
    /// The fields in the order printed; quoted values unquoted.
    pub fields: Vec<(String, String)>,
}

impl BenchLine {
    /// Parses one line; `None` if it is not a `BENCH` line.
    ///
    /// A value is a word without spaces, or a double-quoted string in which
    /// `\"` and `\\` stand for `"` and `\` (as `timerbench.c` escapes them);
    /// an unterminated quote runs to the end of the line. Words without `=`
    /// after the group are ignored.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim_end_matches(['\r', '\n']).strip_prefix(BENCH)?;
        let rest = rest.strip_prefix(' ')?.trim_start();
        let group_end = rest.find(' ').unwrap_or(rest.len());
        let group = &rest[..group_end];
        if group.is_empty() || group.contains('=') {
            return None;
        }
        let mut fields = Vec::new();
        let mut chars = rest[group_end..].chars().peekable();
        loop {
            while chars.next_if_eq(&' ').is_some() {}
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(c) = chars.next_if(|c| *c != '=' && *c != ' ') {
                key.push(c);
            }
            if chars.next_if_eq(&'=').is_none() {
                continue; // a bare word: not a field
            }
            let mut value = String::new();
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ' ') {
                    value.push(c);
                }
            }
            fields.push((key, value));
        }
        Some(BenchLine {
            group: group.to_string(),
            fields,
        })
    }

    /// The value of `key` (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or [`NONE`].
    pub fn cell(&self, key: &str) -> String {
        self.get(key).unwrap_or(NONE).to_string()
    }

    /// Whether every `(key, value)` of `filter` is on the line.
    pub fn matches(&self, filter: &[(&str, &str)]) -> bool {
        filter.iter().all(|(k, v)| self.get(k) == Some(*v))
    }
}

/// A line looked for, or why it is not there (said in a note).
pub type Found<'a> = std::result::Result<&'a BenchLine, String>;

/// Every `BENCH` line of a transcript, in order.
pub fn bench_lines(text: &str) -> Vec<BenchLine> {
    text.lines().filter_map(BenchLine::parse).collect()
}

/// The first line of `group` that matches `filter`, or why there is none
/// (the group was skipped, with the reason; or no such line).
pub fn find<'a>(lines: &'a [BenchLine], group: &str, filter: &[(&str, &str)]) -> Found<'a> {
    let in_group = || lines.iter().filter(|l| l.group == group);
    if let Some(l) = in_group().find(|l| l.matches(filter) && l.get("skipped").is_none()) {
        return Ok(l);
    }
    if let Some(why) = in_group().find_map(|l| l.get("skipped")) {
        return Err(format!("`{group}` skipped: {why}"));
    }
    let what: Vec<String> = filter.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Err(format!(
        "no `{group}{}{}` line",
        if what.is_empty() { "" } else { " " },
        what.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tests::LINUX_DEFAULT;

    #[test]
    fn a_line_with_a_quoted_value_parses_into_group_and_fields() {
        let l = BenchLine::parse(
            "BENCH calibration source=lapic0 hz=250 skipped=\"lapic: the LAPIC timer is \
             the tick device (run with another clockevent)\" tail=1",
        )
        .unwrap();
        assert_eq!(l.group, "calibration");
        assert_eq!(l.get("source"), Some("lapic0"));
        assert_eq!(
            l.get("skipped"),
            Some("lapic: the LAPIC timer is the tick device (run with another clockevent)")
        );
        assert_eq!(l.get("tail"), Some("1"));
        assert_eq!(l.get("absent"), None);
        assert_eq!(l.cell("absent"), NONE);
    }

    #[test]
    fn escaped_quotes_bare_words_and_crlf_are_handled() {
        let l =
            BenchLine::parse("BENCH dmesg t=0.1 text=\"a \\\"b\\\" c\\\\\" word x=\r\n").unwrap();
        assert_eq!(l.get("text"), Some("a \"b\" c\\"));
        assert_eq!(l.get("x"), Some(""));
        assert_eq!(l.fields.len(), 3);
        let open = BenchLine::parse("BENCH g k=\"never closed").unwrap();
        assert_eq!(open.get("k"), Some("never closed"));
    }

    #[test]
    fn other_lines_are_not_bench_lines() {
        for s in [
            "RESULT test=x verdict=pass",
            "BENCHMARK x",
            "BENCH",
            "BENCH ",
            "BENCH k=v",
            "  BENCH idle per_s=1",
            "",
        ] {
            assert_eq!(BenchLine::parse(s), None, "{s:?}");
        }
        assert_eq!(bench_lines(LINUX_DEFAULT).len(), 8);
    }

    #[test]
    fn find_says_why_a_line_is_missing() {
        let lines = bench_lines(
            "BENCH calibration source=lapic0 skipped=\"the LAPIC timer is the tick device\"\n\
             BENCH lateness at=resume advance=off p50_us=1\n",
        );
        assert_eq!(
            find(&lines, "calibration", &[]),
            Err("`calibration` skipped: the LAPIC timer is the tick device".into())
        );
        assert!(find(&lines, "lateness", &[("at", "resume")]).is_ok());
        assert_eq!(
            find(&lines, "lateness", &[("at", "entry")]),
            Err("no `lateness at=entry` line".into())
        );
    }
}
