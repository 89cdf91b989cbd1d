//! Input formats, and how `auto` picks one: by file extension, else by the first bytes.

use std::path::Path;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// by extension (.ndjson .jsonl .json .csv .txt), else by the first non-blank byte
    #[default]
    Auto,
    /// one JSON object per line
    Ndjson,
    /// one array of objects, or objects one after another
    Json,
    /// comma-separated values with a header row
    Csv,
    /// one row per line: TimeGenerated, RawData, Computer, FilePath
    Text,
    /// the named groups of --pattern are the columns
    Regex,
    /// key=value pairs are the columns
    Logfmt,
    /// RFC 3164 / RFC 5424 lines → the columns of Azure's Syslog table
    Syslog,
    /// journald inputs: every journal field is a column
    Raw,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Text => "text",
            Format::Regex => "regex",
            Format::Logfmt => "logfmt",
            Format::Syslog => "syslog",
            Format::Raw => "raw",
        }
    }
}

/// The format an extension implies, if any. `.log` says nothing: many logs are JSON lines.
pub fn from_extension(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "ndjson" | "jsonl" => Some(Format::Ndjson),
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        "txt" => Some(Format::Text),
        _ => None,
    }
}

/// The format the first bytes suggest: `{` → NDJSON, `[` → JSON, anything else → text.
pub fn sniff(first: &[u8]) -> Format {
    let first = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first);
    match first.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Format::Ndjson,
        Some(b'[') => Format::Json,
        _ => Format::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_then_content() {
        let cases = [
            ("a.ndjson", Some(Format::Ndjson)),
            ("a.JSONL", Some(Format::Ndjson)),
            ("x/y.json", Some(Format::Json)),
            ("d.csv", Some(Format::Csv)),
            ("n.txt", Some(Format::Text)),
            ("app.log", None),
            ("noext", None),
        ];
        for (p, want) in cases {
            assert_eq!(from_extension(Path::new(p)), want, "{p}");
        }
        assert_eq!(sniff(b"  \n{\"a\":1}"), Format::Ndjson);
        assert_eq!(sniff(b"\xEF\xBB\xBF[{}]"), Format::Json);
        assert_eq!(sniff(b"Jan 1 host sshd"), Format::Text);
        assert_eq!(sniff(b""), Format::Text);
    }
}
