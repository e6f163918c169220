//! One template: Bot API HTML with variables (`{first_name}`, `{bot_name}`, `{offer}`),
//! parsed once into pieces so that rendering is a single pass — a name that contains
//! `{first_name}` is text, never expanded again. `{{` and `}}` write a brace. Every value
//! is escaped ([`escape_html`]) and cut to a bounded length before it goes in, so a
//! template's longest possible rendering is known when it is loaded.

use unicode_segmentation::UnicodeSegmentation;

use crate::transport::telegram::escape_html;

use super::html::{self, HtmlError, MAX_MESSAGE_LEN};

/// The most graphemes of a name (a first name or a bot name) a message shows; Telegram's own
/// limit on a first name is 64 characters.
pub const MAX_NAME_GRAPHEMES: usize = 64;
/// The most UTF-16 units of a name a message shows (a name of 64 combining marks on one
/// letter is one grapheme, but not a short one).
pub const MAX_NAME_UTF16: usize = 128;
/// The most a name can add to a message's length: [`MAX_NAME_UTF16`], an ellipsis and two
/// bidirectional isolates.
pub const NAME_WORST_LEN: usize = MAX_NAME_UTF16 + 3;

/// A variable a template may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variable {
    /// The user's first name (in a group post: the language's `unknown_name`).
    FirstName,
    /// The bot's name as `gavat.toml` gives it.
    BotName,
    /// The offer text of `[messages] offer`.
    Offer,
}

impl Variable {
    /// Every variable.
    pub const ALL: [Variable; 3] = [Variable::FirstName, Variable::BotName, Variable::Offer];

    /// The name written between braces.
    pub fn as_str(self) -> &'static str {
        match self {
            Variable::FirstName => "first_name",
            Variable::BotName => "bot_name",
            Variable::Offer => "offer",
        }
    }
}

/// Why a template's text is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name that is not a [`Variable`].
    #[error("{{{0}}} is not a variable (use {{first_name}}, {{bot_name}} or {{offer}}; {{{{ and }}}} write a brace)")]
    UnknownVariable(String),
    /// A `{` never closed or a lone `}`.
    #[error("a lone brace at byte {0} (write {{{{ or }}}} for a brace)")]
    LoneBrace(usize),
    /// A variable inside a tag (an `href` with a user's name in it).
    #[error("{{{0}}} is inside a tag; variables go in the text only")]
    VariableInTag(&'static str),
    /// A variable where none is allowed (the opt-out line).
    #[error("may not use variables")]
    NoVariablesHere,
    /// The private-use character gavat uses internally for checking.
    #[error("contains U+E000, which gavat reserves")]
    Reserved,
    /// Not the Bot API's HTML subset.
    #[error("{0}")]
    Html(#[from] HtmlError),
    /// Nothing to show.
    #[error("is empty")]
    Empty,
    /// Its longest rendering would not fit one message.
    #[error(
        "could reach {worst} characters after entity parsing with the longest names and the opt-out line; the Bot API allows {MAX_MESSAGE_LEN}"
    )]
    TooLong {
        /// The longest rendering, UTF-16 units.
        worst: usize,
    },
}

/// One piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// HTML, written as is.
    Html(String),
    /// A value, escaped.
    Var(Variable),
}

/// A parsed, checked template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// What the template shows without its variables, UTF-16 units.
    static_len: usize,
}

/// Stands for a variable while the HTML is checked.
const PLACEHOLDER: char = '\u{E000}';

impl Template {
    /// Parses and checks `text`: variables known and outside tags, the HTML in the subset.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if text.contains(PLACEHOLDER) {
            return Err(TemplateError::Reserved);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let mut at = 0;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let brace = rest.as_bytes()[i];
            if after.as_bytes().first() == Some(&brace) {
                literal.push(char::from(brace));
                rest = &after[1..];
                at += i + 2;
                continue;
            }
            if brace == b'}' {
                return Err(TemplateError::LoneBrace(at + i));
            }
            let close = after.find('}').ok_or(TemplateError::LoneBrace(at + i))?;
            let name = &after[..close];
            let var = Variable::ALL
                .into_iter()
                .find(|v| v.as_str() == name)
                .ok_or_else(|| TemplateError::UnknownVariable(name.chars().take(40).collect()))?;
            if !literal.is_empty() {
                pieces.push(Piece::Html(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(var));
            rest = &after[close + 1..];
            at += i + 1 + close + 1;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Html(literal));
        }
        // The HTML with every variable as one placeholder character: checked as it will be
        // rendered, and every placeholder must land in the text, never inside a tag.
        let skeleton = |only: Option<Variable>| -> String {
            pieces
                .iter()
                .map(|p| match p {
                    Piece::Html(h) => h.clone(),
                    Piece::Var(v) if only.is_none_or(|o| o == *v) => PLACEHOLDER.to_string(),
                    Piece::Var(_) => String::new(),
                })
                .collect()
        };
        let checked = html::check(&skeleton(None))?;
        let vars = pieces.iter().filter(|p| matches!(p, Piece::Var(_))).count();
        let in_text = |c: &html::Checked| c.visible.chars().filter(|c| *c == PLACEHOLDER).count();
        if in_text(&checked) != vars {
            // Name the variable at fault: the one whose placeholders are not all in the text.
            let at_fault = Variable::ALL.into_iter().find(|v| {
                let uses = pieces.iter().filter(|p| **p == Piece::Var(*v)).count();
                html::check(&skeleton(Some(*v))).map_or(true, |c| in_text(&c) != uses)
            });
            return Err(TemplateError::VariableInTag(at_fault.map_or("?", Variable::as_str)));
        }
        let static_len = checked.len() - vars;
        if checked.visible.trim_matches(PLACEHOLDER).trim().is_empty() && vars == 0 {
            return Err(TemplateError::Empty);
        }
        Ok(Template { pieces, static_len })
    }

    /// Parses a text that may use no variables (the opt-out line).
    pub fn parse_fixed(text: &str) -> Result<Template, TemplateError> {
        let template = Template::parse(text)?;
        if template.variables().next().is_some() {
            return Err(TemplateError::NoVariablesHere);
        }
        Ok(template)
    }

    /// The variables used, in order, with repeats.
    pub fn variables(&self) -> impl Iterator<Item = Variable> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(*v),
            Piece::Html(_) => None,
        })
    }

    /// Whether `variable` is used.
    pub fn uses(&self, variable: Variable) -> bool {
        self.variables().any(|v| v == variable)
    }

    /// The longest this template can show once rendered, UTF-16 units, with an offer of
    /// `offer_len` units.
    pub fn worst_len(&self, offer_len: usize) -> usize {
        self.static_len
            + self
                .variables()
                .map(|v| match v {
                    Variable::FirstName | Variable::BotName => NAME_WORST_LEN,
                    Variable::Offer => offer_len,
                })
                .sum::<usize>()
    }

    /// What the template shows without its variables, UTF-16 units.
    pub fn static_len(&self) -> usize {
        self.static_len
    }

    /// The HTML with `values` in (each escaped here).
    pub fn render(&self, values: &Values) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Html(h) => out.push_str(h),
                Piece::Var(Variable::FirstName) => out.push_str(&escape_html(&values.first_name)),
                Piece::Var(Variable::BotName) => out.push_str(&escape_html(&values.bot_name)),
                Piece::Var(Variable::Offer) => out.push_str(&escape_html(&values.offer)),
            }
        }
        out
    }

    /// The template as written in a file (variables in braces, braces doubled): what the
    /// LLM is given to rewrite.
    pub fn source(&self) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Html(h) => h.replace('{', "{{").replace('}', "}}"),
                Piece::Var(v) => format!("{{{}}}", v.as_str()),
            })
            .collect()
    }
}

/// The values of one message, as plain text (escaped when rendered): names already made
/// safe to show by [`display_name`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Values {
    /// The user's first name (or the language's word for an unknown name).
    pub first_name: String,
    /// The bot's name.
    pub bot_name: String,
    /// The offer.
    pub offer: String,
}

/// A name as a message shows it, or `None` if nothing printable is left: control and
/// bidirectional-formatting characters removed, at most [`MAX_NAME_GRAPHEMES`] graphemes
/// and [`MAX_NAME_UTF16`] units (cut between graphemes, then "…"), and a right-to-left
/// name wrapped in first-strong isolates so that it cannot turn the sentence around it.
pub fn display_name(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return None;
    }
    let mut cut = String::new();
    let mut units = 0;
    let mut truncated = false;
    for (n, grapheme) in cleaned.graphemes(true).enumerate() {
        let len = html::utf16_len(grapheme);
        if n == MAX_NAME_GRAPHEMES || units + len > MAX_NAME_UTF16 {
            truncated = true;
            break;
        }
        cut.push_str(grapheme);
        units += len;
    }
    if cut.is_empty() {
        // One grapheme longer than the limit (a letter under hundreds of marks): its base.
        cut.extend(cleaned.chars().take(1));
    }
    if truncated {
        cut = format!("{}…", cut.trim_end());
    }
    if cut.chars().any(is_right_to_left) {
        cut = format!("\u{2068}{cut}\u{2069}");
    }
    Some(cut)
}

/// Explicit bidirectional formatting: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A letter of a right-to-left script (Hebrew, Arabic, Syriac, Thaana, N'Ko and their
/// presentation forms, and the historic RTL blocks).
fn is_right_to_left(c: char) -> bool {
    matches!(c, '\u{0590}'..='\u{08FF}' | '\u{FB1D}'..='\u{FDFF}' | '\u{FE70}'..='\u{FEFF}' | '\u{10800}'..='\u{10FFF}' | '\u{1E800}'..='\u{1EFFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(name: &str) -> Values {
        Values { first_name: name.into(), bot_name: "Bot".into(), offer: "20% off".into() }
    }

    /// Variables are replaced once and escaped; braces doubled are braces.
    #[test]
    fn renders_in_one_pass_with_escaping() {
        let t = Template::parse("<b>Hi {first_name}</b>, {{not a var}} from {bot_name}: {offer}").unwrap();
        assert_eq!(t.render(&values("{offer} <i>")), "<b>Hi {offer} &lt;i&gt;</b>, {not a var} from Bot: 20% off");
        assert_eq!(t.source(), "<b>Hi {first_name}</b>, {{not a var}} from {bot_name}: {offer}");
        assert_eq!(Template::parse(&t.source()).unwrap(), t);
        assert_eq!(t.static_len(), "Hi , {not a var} from : ".len());
    }

    /// Unknown variables, lone braces, variables in tags and bad HTML are refused.
    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(Template::parse("Hi {name}").unwrap_err(), TemplateError::UnknownVariable("name".into()));
        assert!(matches!(Template::parse("Hi {first_name").unwrap_err(), TemplateError::LoneBrace(3)));
        assert!(matches!(Template::parse("Hi }").unwrap_err(), TemplateError::LoneBrace(3)));
        assert_eq!(
            Template::parse("<a href=\"https://x.com/{first_name}\">x</a>").unwrap_err(),
            TemplateError::VariableInTag("first_name")
        );
        assert!(matches!(Template::parse("<b>x").unwrap_err(), TemplateError::Html(_)));
        assert!(matches!(Template::parse("   ").unwrap_err(), TemplateError::Empty));
        assert_eq!(Template::parse_fixed("Stop, {first_name}").unwrap_err(), TemplateError::NoVariablesHere);
        assert_eq!(
            Template::parse("{first_name}: <a href=\"https://x.com/?b={bot_name}\">x</a>").unwrap_err(),
            TemplateError::VariableInTag("bot_name")
        );
        assert_eq!(
            Template::parse("<code class=\"{offer}\">x</code>").unwrap_err(),
            TemplateError::VariableInTag("offer")
        );
    }

    /// Names lose control and bidi characters, are cut between graphemes, and RTL names are
    /// isolated.
    #[test]
    fn names_are_made_safe_to_show() {
        assert_eq!(display_name("  Ayşe\n"), Some("Ayşe".into()));
        assert_eq!(display_name("\u{202E}\u{0000}"), None);
        let long = "👩‍👩‍👧".repeat(40);
        let shown = display_name(&long).unwrap();
        assert!(shown.ends_with('…'));
        assert!(html::utf16_len(&shown) <= MAX_NAME_UTF16 + 1);
        assert!(shown.trim_end_matches('…').graphemes(true).all(|g| g == "👩‍👩‍👧"), "{shown}");
        assert_eq!(display_name("שרה"), Some("\u{2068}שרה\u{2069}".into()));
        let zalgo = format!("a{}", "\u{0301}".repeat(500));
        assert!(html::utf16_len(&display_name(&zalgo).unwrap()) <= NAME_WORST_LEN);
    }
}
