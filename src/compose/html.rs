//! The Bot API's HTML subset (`parse_mode = HTML`), checked strictly: which tags, which
//! attributes, balanced nesting, only the entities the Bot API knows, no stray `<`, `>` or
//! `&`. A checked text also yields what Telegram shows — the text "after entity parsing",
//! whose length the Bot API limits to 4096 — and the links it carries, for the guardrails.
//!
//! Telegram itself accepts a little more (`span class="tg-spoiler"`, `tg-emoji`); gavat's
//! templates and LLM replies may use only the tags listed in [`ALLOWED_TAGS`].

/// The most a message's text may be after entity parsing, as the Bot API counts it (UTF-16
/// code units: an emoji outside the basic plane counts twice).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The tags a template or an LLM reply may use.
pub const ALLOWED_TAGS: [&str; 14] =
    ["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "blockquote"];

/// Why a text is not valid Bot API HTML. Positions are byte offsets into the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HtmlError {
    /// A tag outside [`ALLOWED_TAGS`].
    #[error("tag <{tag}> is not one the Bot API accepts (allowed: {})", ALLOWED_TAGS.join(", "))]
    UnknownTag {
        /// The tag's name.
        tag: String,
    },
    /// An attribute the tag may not carry, or one without a quoted value.
    #[error("<{tag}> cannot carry the attribute {attribute:?}")]
    BadAttribute {
        /// The tag.
        tag: String,
        /// The attribute as written.
        attribute: String,
    },
    /// `<a>` without an `href`.
    #[error("<a> needs an href")]
    MissingHref,
    /// A closing tag that closes nothing open, or not the innermost open tag.
    #[error("</{tag}> does not close the innermost open tag{}", open.as_ref().map(|o| format!(" <{o}>")).unwrap_or_default())]
    Misnested {
        /// The closing tag.
        tag: String,
        /// The innermost open tag, if any.
        open: Option<String>,
    },
    /// A tag opened and never closed.
    #[error("<{tag}> is never closed")]
    Unclosed {
        /// The tag.
        tag: String,
    },
    /// A `<` that starts no tag, a `>` outside one, or a tag that never ends.
    #[error("a bare {0:?} at byte {1}: write &lt; or &gt;")]
    StrayBracket(char, usize),
    /// An `&` that starts no entity the Bot API knows.
    #[error("a bare & or unknown entity at byte {0}: write &amp; (named entities: &lt; &gt; &amp; &quot;)")]
    BadEntity(usize),
}

/// What a checked text shows and links to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// The text as Telegram shows it: tags removed, entities decoded.
    pub visible: String,
    /// Every `href`, entities decoded, in order.
    pub hrefs: Vec<String>,
}

impl Checked {
    /// The visible length as the Bot API counts it (UTF-16 code units).
    pub fn len(&self) -> usize {
        utf16_len(&self.visible)
    }

    /// Whether nothing is visible.
    pub fn is_empty(&self) -> bool {
        self.visible.is_empty()
    }
}

/// The length of `text` in UTF-16 code units, as the Bot API counts message length.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Checks `html` against the subset; on success, what it shows and links to.
pub fn check(html: &str) -> Result<Checked, HtmlError> {
    let mut out = Checked::default();
    let mut open: Vec<String> = Vec::new();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < html.len() {
        match bytes[i] {
            b'<' => {
                let end = html[i..].find('>').map(|e| i + e).ok_or(HtmlError::StrayBracket('<', i))?;
                let inner = &html[i + 1..end];
                if inner.contains('<') {
                    return Err(HtmlError::StrayBracket('<', i));
                }
                tag(inner, i, &mut open, &mut out)?;
                i = end + 1;
            }
            b'>' => return Err(HtmlError::StrayBracket('>', i)),
            b'&' => {
                let (decoded, len) = entity(&html[i..]).ok_or(HtmlError::BadEntity(i))?;
                out.visible.push(decoded);
                i += len;
            }
            _ => {
                let next = html[i..].find(['<', '>', '&']).map_or(html.len(), |n| i + n);
                out.visible.push_str(&html[i..next]);
                i = next;
            }
        }
    }
    match open.pop() {
        Some(tag) => Err(HtmlError::Unclosed { tag }),
        None => Ok(out),
    }
}

/// One tag's inside (`b`, `/b`, `a href="…"`).
fn tag(inner: &str, at: usize, open: &mut Vec<String>, out: &mut Checked) -> Result<(), HtmlError> {
    if let Some(name) = inner.strip_prefix('/') {
        let name = name.trim().to_ascii_lowercase();
        return match open.last() {
            Some(top) if *top == name => {
                open.pop();
                Ok(())
            }
            top => Err(HtmlError::Misnested { tag: name, open: top.cloned() }),
        };
    }
    let name_end = inner.find(|c: char| c.is_whitespace()).unwrap_or(inner.len());
    let name = inner[..name_end].to_ascii_lowercase();
    if name.is_empty() {
        return Err(HtmlError::StrayBracket('<', at));
    }
    if !ALLOWED_TAGS.contains(&name.as_str()) {
        return Err(HtmlError::UnknownTag { tag: name });
    }
    let mut href = None;
    for (attribute, value) in attributes(&inner[name_end..])
        .ok_or_else(|| HtmlError::BadAttribute { tag: name.clone(), attribute: inner[name_end..].trim().to_string() })?
    {
        let allowed = matches!(
            (name.as_str(), attribute.as_str(), value.is_some()),
            ("a", "href", true)
                | ("code", "class", true)
                | ("pre", "class", true)
                | ("blockquote", "expandable", false)
        );
        if !allowed {
            return Err(HtmlError::BadAttribute { tag: name, attribute });
        }
        if attribute == "href" {
            let raw = value.unwrap_or_default();
            let decoded = check(&raw).map_err(|_| HtmlError::BadAttribute { tag: name.clone(), attribute })?;
            href = Some(decoded.visible);
        }
    }
    if name == "a" {
        out.hrefs.push(href.ok_or(HtmlError::MissingHref)?);
    }
    open.push(name);
    Ok(())
}

/// `name="value"`, `name='value'` or a bare `name`, separated by spaces; `None` if
/// anything else is there.
fn attributes(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut found = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let name_end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return None;
        }
        rest = rest[name_end..].trim_start();
        if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'')?;
            let close = after[1..].find(quote)? + 1;
            found.push((name, Some(after[1..close].to_string())));
            rest = after[close + 1..].trim_start();
        } else {
            found.push((name, None));
        }
    }
    Some(found)
}

/// The entity at the start of `text` (which starts with `&`): the character and the
/// entity's length in bytes.
fn entity(text: &str) -> Option<(char, usize)> {
    let end = text.find(';')?;
    if end > 12 {
        return None;
    }
    let body = &text[1..end];
    let c = match body {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        _ => {
            let number = body.strip_prefix('#')?;
            let code = match number.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => number.parse().ok()?,
            };
            char::from_u32(code).filter(|c| *c != '\0')?
        }
    };
    Some((c, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allowed tags, attributes and entities pass; what Telegram shows is the decoded text.
    #[test]
    fn the_subset_passes_and_shows_its_text() {
        let c = check(
            "<b>Hi</b> &amp; <a href=\"https://ex.com/?a=1&amp;b=2\">go</a> <tg-spoiler>x</tg-spoiler> \
             <blockquote expandable>q</blockquote> <pre><code class=\"language-rust\">&lt;T&gt;</code></pre> &#128512;&#x41;",
        )
        .unwrap();
        assert_eq!(c.visible, "Hi & go x q <T> 😀A");
        assert_eq!(c.hrefs, vec!["https://ex.com/?a=1&b=2".to_string()]);
        assert_eq!(c.len(), utf16_len("Hi & go x q <T> ") + 3);
    }

    /// Everything outside the subset is refused with its reason.
    #[test]
    fn everything_else_is_refused() {
        type Is = fn(&HtmlError) -> bool;
        let cases: [(&str, Is); 11] = [
            ("<script>x</script>", |e| matches!(e, HtmlError::UnknownTag { .. })),
            ("<b>x</i>", |e| matches!(e, HtmlError::Misnested { .. })),
            ("<b><i>x</b></i>", |e| matches!(e, HtmlError::Misnested { .. })),
            ("<b>x", |e| matches!(e, HtmlError::Unclosed { .. })),
            ("a < b", |e| matches!(e, HtmlError::StrayBracket('<', _))),
            ("a > b", |e| matches!(e, HtmlError::StrayBracket('>', _))),
            ("Tom & Jerry", |e| matches!(e, HtmlError::BadEntity(_))),
            ("&nbsp;", |e| matches!(e, HtmlError::BadEntity(_))),
            ("<a>x</a>", |e| *e == HtmlError::MissingHref),
            ("<b onclick=\"x\">y</b>", |e| matches!(e, HtmlError::BadAttribute { .. })),
            ("<a href=x>y</a>", |e| matches!(e, HtmlError::BadAttribute { .. })),
        ];
        for (text, is) in cases {
            let err = check(text).unwrap_err();
            assert!(is(&err), "{text}: {err}");
        }
    }
}
