//! `format = "regex"`: the named groups of a pattern become the row's columns.
//!
//! Unnamed groups are ignored; an optional named group that did not take part in the match is
//! left out of the row (rather than sent as `""`, which a typed column would refuse). Values are
//! strings: typing them to the stream's declared columns happens later.

use ::regex::{CaptureLocations, Regex};
use serde_json::{Map, Value};

/// The longest DCR column name Azure accepts.
pub const MAX_COLUMN_NAME: usize = 45;

/// A column name Azure accepts: a letter first, then letters, digits and `_`, at most 45.
pub fn valid_column_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_COLUMN_NAME
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A compiled pattern and the columns its named groups fill.
#[derive(Debug, Clone)]
pub struct RegexParser {
    regex: Regex,
    /// (group index, column name) of each named group, in pattern order.
    columns: Vec<(usize, String)>,
}

impl RegexParser {
    /// Compiles `pattern`; the error is one line a configuration message can carry.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let regex = compile(pattern)?;
        let columns: Vec<(usize, String)> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, name)| name.map(|n| (i, n.to_string())))
            .collect();
        if columns.is_empty() {
            return Err(
                "the pattern has no named group, so it would make no columns; name \
                        each part, like '^(?P<Level>\\w+) (?P<Message>.*)$'"
                    .into(),
            );
        }
        if let Some((_, bad)) = columns.iter().find(|(_, n)| !valid_column_name(n)) {
            return Err(format!(
                "group name {bad:?} is not a valid column name: start with a letter, then \
                 letters, digits or _, at most {MAX_COLUMN_NAME} characters"
            ));
        }
        Ok(RegexParser { regex, columns })
    }

    /// Scratch space for [`RegexParser::parse`], kept by the caller so a line costs no
    /// allocation for it.
    pub fn scratch(&self) -> CaptureLocations {
        self.regex.capture_locations()
    }

    /// The named groups of the first match in `text`, or `None` when the pattern does not match.
    pub fn parse(&self, text: &str, locs: &mut CaptureLocations) -> Option<Map<String, Value>> {
        self.regex.captures_read(locs, text)?;
        let mut map = Map::with_capacity(self.columns.len());
        for (i, name) in &self.columns {
            if let Some((start, end)) = locs.get(*i) {
                map.insert(name.clone(), Value::String(text[start..end].to_string()));
            }
        }
        Some(map)
    }
}

/// Compiles a regular expression, turning the crate's multi-line syntax error (with its caret
/// diagram) into one line.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| match e {
        ::regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("syntax error");
            format!("invalid regular expression: {reason}")
        }
        ::regex::Error::CompiledTooBig(limit) => {
            format!("the regular expression is too large (over {limit} bytes compiled)")
        }
        other => format!("invalid regular expression: {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// nginx's (and Apache's) "combined" log format.
    const COMBINED: &str = r#"^(?P<ClientIP>\S+) \S+ (?P<RemoteUser>\S+) \[(?P<RequestTime>[^\]]+)\] "(?P<Method>[A-Z]+) (?P<Path>\S+) (?P<Protocol>[^"]+)" (?P<Status>\d{3}) (?P<Bytes>\d+|-) "(?P<Referer>[^"]*)" "(?P<UserAgent>[^"]*)""#;

    fn parse(pattern: &str, text: &str) -> Option<Value> {
        let p = RegexParser::new(pattern).expect("pattern");
        let mut locs = p.scratch();
        p.parse(text, &mut locs).map(Value::Object)
    }

    #[test]
    fn named_groups_become_columns() {
        let cases: &[(&str, &str, Option<Value>)] = &[
            (
                COMBINED,
                r#"203.0.113.9 - alice [23/Nov/2025:10:00:01 +0000] "GET /a?b=1 HTTP/1.1" 200 512 "-" "curl/8.5""#,
                Some(json!({
                    "ClientIP": "203.0.113.9", "RemoteUser": "alice",
                    "RequestTime": "23/Nov/2025:10:00:01 +0000", "Method": "GET",
                    "Path": "/a?b=1", "Protocol": "HTTP/1.1", "Status": "200", "Bytes": "512",
                    "Referer": "-", "UserAgent": "curl/8.5"
                })),
            ),
            (COMBINED, "not an access log line", None),
            // unnamed groups are ignored; an optional group that did not match is left out
            (
                r"^(\d+) (?P<Level>[A-Z]+)(?: \[(?P<Thread>\w+)\])? (?P<Message>.*)$",
                "12 WARN disk low",
                Some(json!({"Level": "WARN", "Message": "disk low"})),
            ),
            // an empty match of a group that took part is kept as ""
            (
                r"^(?P<A>x*)-(?P<B>.*)$",
                "-rest",
                Some(json!({"A": "", "B": "rest"})),
            ),
            // (?s) lets . cross the newlines of a multiline event
            (
                r"(?s)^(?P<Head>[^\n]*)\n(?P<Rest>.*)$",
                "a\nb\nc",
                Some(json!({"Head": "a", "Rest": "b\nc"})),
            ),
            // unanchored: the first match anywhere
            (r"id=(?P<Id>\d+)", "x id=7 id=8", Some(json!({"Id": "7"}))),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(&parse(pattern, text), want, "{pattern} on {text:?}");
        }
    }

    #[test]
    fn patterns_are_checked_with_one_line_reasons() {
        let cases = [
            (r"^(\w+) (.*)$", "no named group"),
            (r"^(?P<1abc>\w+)$", "invalid"),
            (r"^(?P<bad-name>\w+)$", "invalid regular expression"),
            (r"^(?P<Has_Space_Not>x)(?P<é>y)$", "not a valid column name"),
            (r"^(?P<_x>\w+)$", "not a valid column name"),
            ("(?P<A>x", "unclosed group"),
            ("[z-a](?P<A>x)", "invalid regular expression"),
        ];
        for (pattern, want) in cases {
            let err = RegexParser::new(pattern).expect_err(pattern);
            assert!(err.contains(want), "{pattern}: {err}");
            assert!(!err.contains('\n'), "{pattern}: {err}");
        }
        let long = format!("(?P<{}>x)", "a".repeat(46));
        assert!(RegexParser::new(&long)
            .expect_err("too long")
            .contains("at most 45"));
        assert!(RegexParser::new(&format!("(?P<{}>x)", "a".repeat(45))).is_ok());
    }

    #[test]
    fn column_names_follow_azure_rules() {
        for ok in [
            "a",
            "Status",
            "x_1",
            "A23456789012345678901234567890123456789012345",
        ] {
            assert!(valid_column_name(ok), "{ok}");
        }
        for bad in ["", "_a", "1a", "a-b", "a b", "é", &"a".repeat(46)] {
            assert!(!valid_column_name(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panic(text in any::<String>()) {
            let p = RegexParser::new(COMBINED).expect("pattern");
            let mut locs = p.scratch();
            let _ = p.parse(&text, &mut locs);
            let q = RegexParser::new(r"(?s)(?P<All>.*)").expect("pattern");
            let mut locs = q.scratch();
            let got = q.parse(&text, &mut locs).expect("matches anything");
            prop_assert_eq!(got["All"].as_str(), Some(text.as_str()));
        }
    }
}
