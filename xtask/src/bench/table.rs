//! [`Table`]: a markdown table with a title, aligned columns and notes
//! under it (why a figure is missing).

use std::fmt::Write as _;

use super::lines::{Found, NONE};

/// A markdown table with a title and notes under it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// The heading.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Leading columns that are labels (left-aligned); the rest are figures.
    pub labels: usize,
    /// Trailing columns that are labels too.
    pub trailing_labels: usize,
    /// The rows, each as long as `header`.
    pub rows: Vec<Vec<String>>,
    /// Notes printed under the table (missing figures and why).
    pub notes: Vec<String>,
}

impl Table {
    pub(crate) fn new(title: &str, header: &[&str], labels: usize) -> Self {
        Table {
            title: title.to_string(),
            header: header.iter().map(|s| s.to_string()).collect(),
            labels,
            ..Table::default()
        }
    }

    /// Adds a note once.
    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// `key` of the line `found`, or [`NONE`] and a note.
    pub(super) fn cell(&mut self, found: &Found<'_>, key: &str) -> String {
        self.cell_any(found, &[key])
    }

    /// The first of `keys` the line `found` has (the guest renames a key
    /// now and then), or [`NONE`] and a note.
    pub(super) fn cell_any(&mut self, found: &Found<'_>, keys: &[&str]) -> String {
        match found {
            Ok(l) => match keys.iter().find_map(|k| l.get(k)) {
                Some(v) => v.to_string(),
                None => {
                    self.note(format!(
                        "the `{}` line has no `{}`",
                        l.group,
                        keys.join("` or `")
                    ));
                    NONE.to_string()
                }
            },
            Err(why) => {
                self.note(why.clone());
                NONE.to_string()
            }
        }
    }

    /// The table as aligned markdown: title, header, rows, notes.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(self.header.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
                .max(3)
        };
        let widths: Vec<usize> = (0..cols).map(width).collect();
        let is_label = |i: usize| i < self.labels || i + self.trailing_labels >= cols;
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or(NONE);
                let pad = w.saturating_sub(c.chars().count());
                if is_label(i) {
                    let _ = write!(s, " {c}{} |", " ".repeat(pad));
                } else {
                    let _ = write!(s, " {}{c} |", " ".repeat(pad));
                }
            }
            s
        };
        let mut out = format!("### {}\n\n{}\n|", self.title, line(&self.header));
        for (i, w) in widths.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if is_label(i) {
                let _ = write!(out, " {dashes} |");
            } else {
                let _ = write!(out, " {}: |", &dashes[1..]);
            }
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}
