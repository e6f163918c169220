//! Small pieces of markup the report bodies share: tables, a list of facts, a section, and
//! numbers written the way the tables show them. Every function escapes the text it is
//! given, except where a parameter says it takes markup.

use std::fmt::Write as _;

use super::escape;

/// A table cell: text (escaped when written) and whether it holds a number (right-aligned).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// What the cell says.
    pub text: String,
    /// Right-aligned, tabular figures.
    pub numeric: bool,
}

impl Cell {
    /// A text cell.
    pub fn text(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), numeric: false }
    }

    /// A number cell.
    pub fn num(text: impl Into<String>) -> Cell {
        Cell { text: text.into(), numeric: true }
    }
}

/// A table with a header row; a row whose first cell is `TOTAL` is set in bold.
pub fn table(headers: &[(&str, bool)], rows: &[Vec<Cell>]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for (h, numeric) in headers {
        let class = if *numeric { " class=\"num\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        let bold = row.first().is_some_and(|c| c.text == "TOTAL");
        out.push_str("<tr>");
        for cell in row {
            let class = if cell.numeric { " class=\"num\"" } else { "" };
            let text = escape(&cell.text);
            if bold {
                let _ = write!(out, "<td{class}><strong>{text}</strong></td>");
            } else {
                let _ = write!(out, "<td{class}>{text}</td>");
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A two-column table of named facts (the run's header).
pub fn facts(items: &[(&str, String)]) -> String {
    let mut out = String::from("<table class=\"facts\">\n<tbody>\n");
    for (name, value) in items {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", escape(name), escape(value));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A card with a heading; `body` is markup.
pub fn section(heading: &str, body: &str) -> String {
    format!("<section class=\"card\">\n<h2>{}</h2>\n{body}</section>\n", escape(heading))
}

/// A paragraph of muted text.
pub fn note(text: &str) -> String {
    format!("<p class=\"note\">{}</p>\n", escape(text))
}

/// A share as a percentage with `decimals` places: 0.0512 → `5.12%`.
pub fn percent(share: f64, decimals: usize) -> String {
    if share.is_finite() { format!("{:.decimals$}%", 100.0 * share) } else { "undefined".to_string() }
}

/// A count with thin groups of three digits: 1234567 → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells are escaped, numbers right-aligned, the total row bold; counts get commas.
    #[test]
    fn tables_escape_and_align() {
        let html = table(
            &[("segment", false), ("sent", true)],
            &[vec![Cell::text("<b>"), Cell::num(count(1_234_567))], vec![Cell::text("TOTAL"), Cell::num("9")]],
        );
        assert!(html.contains("<td>&lt;b&gt;</td><td class=\"num\">1,234,567</td>"), "{html}");
        assert!(html.contains("<td><strong>TOTAL</strong></td>"), "{html}");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_000), "1,000");
        assert_eq!(percent(0.0512, 2), "5.12%");
        assert_eq!(percent(f64::NAN, 2), "undefined");
    }
}
