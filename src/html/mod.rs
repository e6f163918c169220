//! HTML building shared by the dashboard (`src/dashboard/`) and the report files
//! (`gavat simulate --html`, `gavat experiment run|compare --html`): escaping, the page
//! layout with the bundled stylesheet and script, and the SVG charts.
//!
//! Everything here is a pure function from data to a `String`: no I/O, no clock, the same
//! input gives the same bytes (a report of one seed is byte-identical run after run).
//!
//! # Layout
//! - [`escape`]: text and attribute values made safe to put into HTML.
//! - [`page`]: the document around a body — self-contained for a report file, or linking the
//!   dashboard's `/assets/` — and the bundled [`page::STYLESHEET`] and [`page::SCRIPT`].
//! - [`charts`]: inline SVG charts — a time series, a forest plot of intervals, bars.

pub mod charts;
pub mod page;

/// `text` with the five characters HTML gives a meaning (`& < > " '`) written as entities:
/// safe between tags and inside a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    /// Markup and quotes in data come out as text, never as tags or attribute ends.
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<b onclick="x('y')">&</b>"#),
            "&lt;b onclick=&quot;x(&#39;y&#39;)&quot;&gt;&amp;&lt;/b&gt;"
        );
        assert_eq!(escape("HOT_LEAD · 5%"), "HOT_LEAD · 5%");
    }
}
