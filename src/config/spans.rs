//! From spans to lines and keys, and messages a person can act on.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// From spans to lines and keys.
// ---------------------------------------------------------------------------------------------

/// The parsed document with its spans: where each key and value sits in the text.
pub(super) struct SourceMap<'a> {
    pub(super) text: &'a str,
    pub(super) root: DeTable<'a>,
}

impl SourceMap<'_> {
    /// Turns a deserialization error into a one-line message with line and key.
    pub(super) fn error(&self, origin: &str, err: &toml::de::Error) -> ConfigError {
        let humane = humanize(err.message());
        let mut key = err
            .span()
            .map(|span| self.key_path_at(span.start))
            .unwrap_or_default();
        key.extend(humane.missing_key);
        ConfigError::Invalid {
            origin: origin.to_string(),
            line: err.span().map(|span| line_at(self.text, span.start)),
            key: Some(render_path(&key)).filter(|k| !k.is_empty()),
            message: humane.message,
        }
    }

    /// 1-based line of byte offset `pos`.
    pub(super) fn line_at(&self, pos: usize) -> usize {
        line_at(self.text, pos)
    }

    /// The key an error at byte `pos` is about: the deepest key whose name covers `pos` (an
    /// unknown key), else the deepest whose value does (a bad value, or a table missing a key).
    fn key_path_at(&self, pos: usize) -> Vec<String> {
        let mut found = Found::default();
        find_key_at(&self.root, pos, &mut Vec::new(), &mut found);
        if found.by_name.is_empty() {
            found.by_value
        } else {
            found.by_name
        }
    }

    /// The line of the deepest existing key along `path` (the table header when the key itself
    /// is absent because it was left at its default).
    pub(super) fn line_of(&self, path: &[&str]) -> Option<usize> {
        let mut table = &self.root;
        let mut found = None;
        for part in path {
            let Some((key, value)) = table.get_key_value(*part) else {
                break;
            };
            found = Some(key.span().start);
            match value.get_ref() {
                DeValue::Table(inner) => table = inner,
                _ => break,
            }
        }
        found.map(|pos| line_at(self.text, pos))
    }
}

pub(super) fn covers(span: &std::ops::Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// The deepest key paths found so far whose name, or whose value, covers a position.
#[derive(Default)]
pub(super) struct Found {
    by_name: Vec<String>,
    by_value: Vec<String>,
}

impl Found {
    fn offer(best: &mut Vec<String>, path: &[String]) {
        if path.len() > best.len() {
            *best = path.to_vec();
        }
    }
}

pub(super) fn find_key_at(
    table: &DeTable<'_>,
    pos: usize,
    path: &mut Vec<String>,
    found: &mut Found,
) {
    for (key, value) in table {
        path.push(key.get_ref().to_string());
        if covers(&key.span(), pos) {
            Found::offer(&mut found.by_name, path);
        }
        find_in_value(value, pos, path, found);
        path.pop();
    }
}

pub(super) fn find_in_value(
    value: &Spanned<DeValue<'_>>,
    pos: usize,
    path: &mut Vec<String>,
    found: &mut Found,
) {
    if covers(&value.span(), pos) {
        Found::offer(&mut found.by_value, path);
    }
    match value.get_ref() {
        DeValue::Table(table) => find_key_at(table, pos, path, found),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                find_in_value(item, pos, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `outputs.app.concurrency`, `inputs.applog.paths[1]`.
pub(super) fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && !part.starts_with('[') {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

/// 1-based line of byte offset `pos`.
pub(super) fn line_at(text: &str, pos: usize) -> usize {
    let end = pos.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

pub(super) fn syntax_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let span = err.span();
    // The parser says "duplicate key" without saying which; the span is that key.
    let culprit = span
        .clone()
        .and_then(|span| text.get(span))
        .filter(|s| err.message() == "duplicate key" && !s.contains('\n'))
        .map(|s| format!(" `{}`", s.trim()))
        .unwrap_or_default();
    ConfigError::Invalid {
        origin: origin.to_string(),
        line: span.map(|span| line_at(text, span.start)),
        key: None,
        message: format!("invalid TOML: {}{culprit}", one_line(err.message())),
    }
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A serde message rewritten for a person, and the key it says is missing, if any.
pub(super) struct Humane {
    message: String,
    missing_key: Option<String>,
}

/// Rewrites serde's "unknown field", "unknown variant" and "missing field" messages with a
/// did-you-mean and a hint; other messages pass through.
pub(super) fn humanize(message: &str) -> Humane {
    let message = one_line(message);
    let ticked: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
    let rewritten = match (ticked.split_first(), message.split('`').next()) {
        (Some((word, known)), Some("unknown field ")) => {
            format!("unknown key `{word}`{}", suggest(word, known, "`"))
        }
        (Some((word, known)), Some("unknown variant ")) => {
            format!("unknown value \"{word}\"{}", suggest(word, known, "\""))
        }
        (Some((word, _)), Some("missing field ")) => {
            return Humane {
                message: format!("missing required key `{word}`{}", missing_hint(word)),
                missing_key: Some((*word).to_string()),
            };
        }
        _ => message,
    };
    Humane {
        message: rewritten,
        missing_key: None,
    }
}

/// `; did you mean `x`?` when one known word is close, else the list of known words.
pub(super) fn suggest(word: &str, known: &[&str], quote: &str) -> String {
    if let Some(best) = closest(word, known.iter().copied()) {
        return format!("; did you mean {quote}{best}{quote}?");
    }
    match known {
        [] => "; nothing is expected here".to_string(),
        _ => format!("; expected one of: {}", known.join(", ")),
    }
}

/// What an `endpoint` is, for messages about a missing or malformed one.
pub(super) const ENDPOINT_HINT: &str =
    "the logs ingestion URL of the data collection endpoint, like \
     https://my-dce-ab12.eastus-1.ingest.monitor.azure.com";

pub(super) fn missing_hint(key: &str) -> String {
    let hint = match key {
        "endpoint" => ENDPOINT_HINT,
        "dcr" => "the DCR *immutable id*, shown on the DCR's overview page",
        "stream" => "the stream declared in the DCR, like Custom-MyApp_CL",
        "type" => "\"file\" or \"stdin\"",
        _ => return String::new(),
    };
    format!(" ({hint})")
}

/// The known word nearest to `word`, if near enough to be a typo. `-` and `_` count as equal
/// and case is ignored, so `max-request-bytes` finds `max_request_bytes`.
pub(super) fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let normalize = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word = normalize(word);
    known
        .into_iter()
        .map(|k| (strsim::levenshtein(&word, &normalize(k)), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

pub(super) fn join_names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; did you mean "app"?` or `; the outputs are: a, b` for a name that matched nothing.
pub(super) fn name_choices<'a>(
    name: &str,
    names: impl IntoIterator<Item = &'a String> + Clone,
) -> String {
    match closest(name, names.clone().into_iter().map(String::as_str)) {
        Some(best) => format!("; did you mean {best:?}?"),
        None => format!("; the outputs are: {}", join_names(names)),
    }
}
