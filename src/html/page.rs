//! The document around a page's body: [`document`] for a report file (the stylesheet
//! inlined, nothing fetched, no script: it opens from a mail attachment, offline) and
//! [`dashboard`] for a dashboard page (the bundled stylesheet and script served from
//! `/assets/`, the navigation, and the Server-Sent Events source the script listens to).

use std::fmt::Write as _;

use super::escape;

/// The one stylesheet of the dashboard and the reports.
pub const STYLESHEET: &str = include_str!("assets/gavat.css");

/// The dashboard's script: refreshes the live figures from the page's event stream.
pub const SCRIPT: &str = include_str!("assets/gavat.js");

/// A self-contained HTML document: `title`, the stylesheet inlined, and `body` (markup,
/// already escaped by its maker) inside `<main>`. Used for the report files.
pub fn document(title: &str, body: &str) -> String {
    let title = escape(title);
    let mut out = String::with_capacity(body.len() + STYLESHEET.len() + 512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"gavat {version}\">\n<title>{title}</title>\n\
         <style>\n{STYLESHEET}</style>\n</head>\n<body>\n\
         <header class=\"top\"><span class=\"brand\">gavat</span><span class=\"where\">{title}</span></header>\n\
         <main>\n{body}\n</main>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
    );
    out
}

/// The dashboard's pages, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`: what the engine is doing now.
    Overview,
    /// `/segments`: segment performance and members.
    Segments,
    /// `/experiments`: every experiment's arms and verdict.
    Experiments,
    /// `/strategies`: strategies in force and the learner's audit trail.
    Strategies,
}

impl Nav {
    /// Every page, in navigation order.
    pub const ALL: [Nav; 4] = [Nav::Overview, Nav::Segments, Nav::Experiments, Nav::Strategies];

    /// The page's path.
    pub fn path(self) -> &'static str {
        match self {
            Nav::Overview => "/",
            Nav::Segments => "/segments",
            Nav::Experiments => "/experiments",
            Nav::Strategies => "/strategies",
        }
    }

    /// The page's name in the navigation.
    pub fn label(self) -> &'static str {
        match self {
            Nav::Overview => "Overview",
            Nav::Segments => "Segments",
            Nav::Experiments => "Experiments",
            Nav::Strategies => "Strategies",
        }
    }
}

/// A dashboard page to render.
#[derive(Debug)]
pub struct DashboardPage<'a> {
    /// The page's title (shown in the tab and as its heading).
    pub title: &'a str,
    /// The navigation entry it belongs to.
    pub nav: Nav,
    /// What the dashboard shows (a store's name, `live`), in the header.
    pub source: &'a str,
    /// The page's markup (already escaped by its maker).
    pub body: &'a str,
    /// The event-stream URL the script listens to, if the page has live figures.
    pub live: Option<&'a str>,
}

/// A dashboard page: the bundled stylesheet and script from `/assets/`, the navigation with
/// the current page marked, and `body`.
pub fn dashboard(page: &DashboardPage<'_>) -> String {
    let title = escape(page.title);
    let mut nav = String::new();
    for item in Nav::ALL {
        let class = if item == page.nav { " class=\"active\"" } else { "" };
        let _ = write!(nav, "<a href=\"{}\"{class}>{}</a>", item.path(), item.label());
    }
    let live = page.live.map(|url| format!(" data-live=\"{}\"", escape(url))).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · gavat</title>\n<link rel=\"stylesheet\" href=\"/assets/gavat.css\">\n\
         <script src=\"/assets/gavat.js\" defer></script>\n</head>\n<body{live}>\n\
         <header class=\"top\"><span class=\"brand\">gavat</span><nav>{nav}</nav>\
         <span class=\"where\">{source} · <span id=\"live-status\"></span></span></header>\n\
         <main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        source = escape(page.source),
        body = page.body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report is one file: the stylesheet is inside it, and it neither fetches nor runs
    /// anything.
    #[test]
    fn a_document_is_self_contained() {
        let html = document("Report <1>", "<p>x</p>");
        assert!(html.contains("<style>") && html.contains("--accent"));
        assert!(html.contains("<title>Report &lt;1&gt;</title>"));
        assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("http"));
    }

    /// The current page is marked in the navigation, the live source is named, and the
    /// assets come from the dashboard itself.
    #[test]
    fn a_dashboard_page_links_its_own_assets() {
        let html = dashboard(&DashboardPage {
            title: "Segments",
            nav: Nav::Segments,
            source: "demo.db",
            body: "<p>y</p>",
            live: Some("/events/overview"),
        });
        assert!(html.contains("<a href=\"/segments\" class=\"active\">Segments</a>"));
        assert!(html.contains("<body data-live=\"/events/overview\">"));
        assert!(html.contains("href=\"/assets/gavat.css\"") && html.contains("src=\"/assets/gavat.js\""));
        assert!(!html.contains("http"));
    }
}
