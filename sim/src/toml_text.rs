//! Finding things in a scenario's TOML text: the line, the field and the value as written
//! that an error names.
//!
//! A copy of the helpers in gavat's `src/config.rs` (the engine's config files use the
//! same ones): this crate may not depend on the engine, and the engine should not take its
//! config plumbing from the simulator. Keep the two in step.

/// What a TOML error points at, in the words of a config error.
#[derive(Debug, PartialEq)]
pub(crate) enum TomlFault {
    /// Not about one field: broken syntax, a duplicate `[HOT_LEAD]`, an unknown `[VIP]`.
    File {
        /// 1-based line.
        line: usize,
        /// E.g. `duplicate table [HOT_LEAD]`.
        message: String,
    },
    /// One field.
    Field {
        /// 1-based line of the value (of its table when the field is missing).
        line: usize,
        /// E.g. `HOT_LEAD.cooldown_hours`.
        field: String,
        /// What is wrong, starting with the value as written when there is one.
        message: String,
    },
}

/// Turns a TOML/serde error into a [`TomlFault`]: the line, the table or field, and the
/// value as written (`1e300`, not serde's 301 digits).
///
pub(crate) fn toml_fault(text: &str, error: &toml::de::Error) -> TomlFault {
    let message = one_line(error.message());
    let Some(span) = error.span() else {
        return TomlFault::File { line: 1, message };
    };
    let line = line_at(text, span.start);
    if let Some(table) = text.lines().nth(line - 1).and_then(header_name) {
        if message == "duplicate key" {
            return TomlFault::File { line, message: format!("duplicate table [{table}]") };
        }
        if let Some((_, expected)) = message.strip_prefix("unknown field ").and_then(|m| m.split_once(", ")) {
            return TomlFault::File { line, message: format!("unknown table [{table}]; {expected}") };
        }
        if let Some(missing) = missing_field(&message) {
            return TomlFault::Field { line, field: format!("{table}.{missing}"), message: "missing".into() };
        }
    }
    if message == "duplicate key" {
        // The document does not parse, so the table comes from the nearest header above.
        let key = text.get(span.clone()).unwrap_or("").trim();
        let table = text.lines().take(line).filter_map(header_name).last();
        let field = table.map_or_else(|| key.to_string(), |t| format!("{t}.{key}"));
        return TomlFault::Field { line, field, message: "is set twice".into() };
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return TomlFault::File { line, message };
    };
    let field = path_at(doc.get_ref(), span.start, "").unwrap_or_else(|| "(file)".to_string());
    let written = shorten(text.get(span).unwrap_or(""));
    let message = if let Some(missing) = missing_field(&message) {
        let field = if field == "(file)" { missing.to_string() } else { format!("{field}.{missing}") };
        return TomlFault::Field { line, field, message: "missing".into() };
    } else if let Some(rest) = message.strip_prefix("unknown field ") {
        let expected = rest.split_once(", ").map_or("", |(_, e)| e);
        format!("unknown field; {expected}")
    } else if message.starts_with("invalid type: ") || message.starts_with("invalid value: ") {
        let expected = message.rsplit_once(", expected ").map_or("something else", |(_, e)| e);
        format!("{written} is not {}", expected_in_words(expected))
    } else {
        message
    };
    TomlFault::Field { line, field, message }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// serde's names of types, as a user would say them.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "u8" => "a whole number 0–255".into(),
        "u16" => "a whole number 0–65535".into(),
        "u32" => "a whole number 0–4294967295".into(),
        "u64" => "a whole number 0–18446744073709551615".into(),
        "i32" | "i64" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        other => other.to_string(),
    }
}

/// The dotted path (`a.b[2].c`) of the deepest key or value whose text holds byte `offset`.
fn path_at(table: &toml::de::DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = if prefix.is_empty() { key.get_ref().to_string() } else { format!("{prefix}.{}", key.get_ref()) };
        value_path_at(value, offset, &name).or_else(|| key.span().contains(&offset).then_some(name))
    })
}

fn value_path_at(value: &toml::Spanned<toml::de::DeValue<'_>>, offset: usize, name: &str) -> Option<String> {
    let inner = match value.get_ref() {
        toml::de::DeValue::Table(t) => path_at(t, offset, name),
        toml::de::DeValue::Array(a) => {
            a.iter().enumerate().find_map(|(i, item)| value_path_at(item, offset, &format!("{name}[{i}]")))
        }
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then(|| name.to_string()))
}

/// The 1-based line holding byte `offset` of `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Longest value, in characters, that an error repeats.
const MAX_WRITTEN: usize = 40;

/// A value as written, cut to [`MAX_WRITTEN`] characters of its first line, so that a 5 MB
/// string does not become a 5 MB error.
pub(crate) fn shorten(written: &str) -> String {
    let first = written.lines().next().unwrap_or("");
    let cut: String = first.chars().take(MAX_WRITTEN).collect();
    if cut.len() < written.len() { format!("{cut}…") } else { cut }
}

/// Where the value at `path` (`HOT_LEAD.allowed_hours`, `a.b[2].c`) is written in `text`:
/// its 1-based line, and its text (shortened) unless it is a table. `None` if the text does
/// not parse or has no such value.
pub(crate) fn written_at(text: &str, path: &str) -> Option<(usize, Option<String>)> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, indices) = segment.split_once('[').unwrap_or((segment, ""));
        let (key_span, mut value) = table.iter().find(|(k, _)| k.get_ref() == key).map(|(k, v)| (k.span(), v))?;
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.trim_end_matches(']').parse().ok()?;
            value = value.get_ref().as_array()?.get(i)?;
        }
        found = Some((key_span, value));
        if segments.peek().is_some() {
            table = value.get_ref().as_table()?;
        }
    }
    let (key_span, value) = found?;
    Some(match value.get_ref() {
        toml::de::DeValue::Table(_) => (line_at(text, key_span.start), None),
        _ => (line_at(text, value.span().start), Some(shorten(&text[value.span()]))),
    })
}

/// The table a header line names (`[HOT_LEAD]`, `[types.hot_lead]`, `[[x]]`), if it is one.
fn header_name(line: &str) -> Option<String> {
    let line = line.split('#').next().unwrap_or("").trim();
    let name = line.strip_prefix('[')?.strip_suffix(']')?;
    Some(name.trim_start_matches('[').trim_end_matches(']').trim().to_string())
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
