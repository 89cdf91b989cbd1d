//! File values compiled into the stages' own settings: parser rules, row shaping.

use crate::input::multiline::MultilineRules;
use crate::input::parse::{ParseSetupError, Parser, RegexParser, SyslogParser, TextRules};
use crate::input::Format;

use crate::input::file::StartAt;
use crate::input::journald::options::{max_entry_bytes, unit_name};
use crate::input::journald::{JournalOptions, RowShape};
use crate::input::parse::OnMismatch;

use super::{InputConfig, InputKind, OutputConfig};

/// The rules of a configured input; `None` for formats without a parser and without
/// multiline, which keep their direct path. Multiline joins text lines: `auto` means text then.
pub fn text_rules(input: &InputConfig) -> Result<Option<TextRules>, ParseSetupError> {
    let parser = match input.format {
        Format::Regex => {
            let pattern = input.pattern.as_deref().unwrap_or_default();
            Parser::Regex(RegexParser::new(pattern).map_err(ParseSetupError::Pattern)?)
        }
        Format::Logfmt => Parser::Logfmt,
        Format::Syslog => Parser::Syslog(SyslogParser::default()),
        Format::Text | Format::Auto if input.multiline.is_some() => Parser::Text,
        _ => return Ok(None),
    };
    let multiline = match &input.multiline {
        Some(m) => Some(
            MultilineRules::new(
                m.start.as_deref(),
                m.preset,
                m.timeout,
                m.max_lines,
                m.max_bytes,
            )
            .map_err(|e| match (&m.start, m.preset) {
                (Some(_), None) => ParseSetupError::MultilineStart(e),
                _ => ParseSetupError::Multiline(e),
            })?,
        ),
        None => None,
    };
    Ok(Some(TextRules::new(parser, input.on_mismatch, multiline)))
}

/// The shaping an input of the configuration asks for, with its output's declared columns.
/// `Err` is a message for a configuration error (the config check catches these first).
pub fn shaping_for(
    name: &str,
    input: &InputConfig,
    output: Option<&OutputConfig>,
) -> Result<crate::transform::Shaping, String> {
    Ok(crate::transform::Shaping {
        label: name.to_string(),
        time_field: input.time_field.clone(),
        time: crate::transform::time::TimeParser::new(
            input.time_format.as_deref(),
            input.timezone.as_deref(),
        )?,
        ops: crate::transform::fields::FieldOps::new(&input.fields, &input.rename, &input.drop),
        columns: output
            .map(OutputConfig::declared_columns)
            .unwrap_or_default(),
    })
}

/// A journald input's reading options; `max_request_bytes` is its output's request cap.
pub fn journal_options(input: &InputConfig, max_request_bytes: usize) -> JournalOptions {
    JournalOptions {
        journalctl: std::path::PathBuf::from("journalctl"),
        directory: input.journal_directory.clone(),
        units: input.units.iter().map(|u| unit_name(u)).collect(),
        exclude_units: input.exclude_units.iter().map(|u| unit_name(u)).collect(),
        priority: input.priority,
        matches: input.matches.clone(),
        since_now: input.since_now.unwrap_or(true),
        shape: match input.format {
            Format::Raw => RowShape::Raw,
            _ => RowShape::Syslog,
        },
        max_entry_bytes: max_entry_bytes(max_request_bytes),
    }
}

/// A configuration mistake: the key (under `inputs.NAME`) and what to do.
pub(super) type Mistake = (Vec<String>, String);

fn mistake(key: &[&str], msg: impl Into<String>) -> Mistake {
    (key.iter().map(|k| k.to_string()).collect(), msg.into())
}

/// Journald keys only on journald inputs, and on those only the keys and formats they read.
pub fn check_journald(input: &InputConfig) -> Result<(), Mistake> {
    let journald = input.kind == InputKind::Journald;
    if !journald {
        let set = [
            ("units", !input.units.is_empty()),
            ("exclude_units", !input.exclude_units.is_empty()),
            ("priority", input.priority.is_some()),
            ("match", !input.matches.is_empty()),
            ("since_now", input.since_now.is_some()),
            ("journal_directory", input.journal_directory.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, s)| *s) {
            return Err(mistake(
                &[key],
                format!("{key} is only read with type = \"journald\""),
            ));
        }
        if input.format == Format::Raw {
            return Err(mistake(
                &["format"],
                "format = \"raw\" is for type = \"journald\" (every journal field a column); \
                 for JSON lines use format = \"json\"",
            ));
        }
        return Ok(());
    }
    let file_only = [
        ("paths", !input.paths.is_empty()),
        ("exclude", !input.exclude.is_empty()),
        ("pattern", input.pattern.is_some()),
        ("multiline", input.multiline.is_some()),
        ("on_mismatch", input.on_mismatch != OnMismatch::Raw),
    ];
    if let Some((key, _)) = file_only.iter().find(|(_, s)| *s) {
        return Err(mistake(
            &[key],
            format!("{key} is not read by a journald input (it reads journal entries, not lines)"),
        ));
    }
    if input.start_at != StartAt::End {
        return Err(mistake(
            &["start_at"],
            "a journald input says where it starts with since_now = false (the whole journal \
             on the first start) or true (the default: from now)",
        ));
    }
    if !matches!(input.format, Format::Text | Format::Syslog | Format::Raw) {
        return Err(mistake(
            &["format"],
            "a journald input writes the Syslog table's columns (format = \"syslog\", the \
             default) or every journal field (format = \"raw\")",
        ));
    }
    for (key, units) in [
        ("units", &input.units),
        ("exclude_units", &input.exclude_units),
    ] {
        if let Some(bad) = units.iter().find(|u| u.is_empty() || u.contains('/')) {
            return Err(mistake(
                &[key],
                format!("{bad:?} is not a unit name, like \"sshd.service\" or \"nginx\""),
            ));
        }
    }
    for (field, values) in &input.matches {
        crate::input::journald::options::check_field_name(field)
            .map_err(|m| mistake(&["match", field], m))?;
        if values.is_empty() {
            return Err(mistake(
                &["match", field],
                "give a value, or a list of values any of which matches",
            ));
        }
    }
    if let Some(dir) = &input.journal_directory {
        if !dir.is_absolute() {
            return Err(mistake(
                &["journal_directory"],
                format!(
                    "{:?} is not an absolute path; write it in full, like \"/var/log/journal\"",
                    dir.display().to_string()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MultilineConfig;
    use crate::input::multiline::Preset;

    #[test]
    fn settings_come_from_the_input_config() {
        let mut input: InputConfig =
            toml::from_str("type = \"stdin\"\nformat = \"text\"").expect("input");
        assert!(text_rules(&input).expect("ok").is_none(), "plain text");
        input.format = Format::Json;
        assert!(text_rules(&input).expect("ok").is_none(), "json");
        input.format = Format::Regex;
        input.pattern = Some("(x)".into());
        assert!(matches!(
            text_rules(&input),
            Err(e @ ParseSetupError::Pattern(_)) if e.key() == ["pattern"]
        ));
        input.format = Format::Text;
        input.pattern = None;
        input.multiline = Some(MultilineConfig::new(Some("(".into()), None));
        assert!(matches!(
            text_rules(&input),
            Err(e @ ParseSetupError::MultilineStart(_)) if e.key() == ["multiline", "start"]
        ));
        input.multiline = Some(MultilineConfig::new(None, Some(Preset::Python)));
        let r = text_rules(&input).expect("ok").expect("rules");
        assert!(matches!(r.parser, Parser::Text) && r.multiline.is_some());
    }

    /// A reload's stdin input goes on with the old decoder when the rules' `Debug` reads the
    /// same (pipeline::inputs' `decoder_settings`): the same settings compiled twice must, and
    /// a changed pattern, preset or timeout must not.
    #[test]
    fn rules_compiled_twice_read_the_same_and_changed_ones_do_not() {
        let config = |extra: &str| -> InputConfig {
            toml::from_str(&format!("type = \"stdin\"\n{extra}")).expect("input")
        };
        let debug = |input: &InputConfig| format!("{:?}", text_rules(input).expect("ok"));
        let variants = [
            "format = \"regex\"\npattern = '^(?P<a>\\S+) (?P<b>.*)$'",
            "format = \"regex\"\npattern = '^(?P<a>\\S+)  (?P<b>.*)$'",
            "format = \"syslog\"",
            "format = \"syslog\"\non_mismatch = \"dead-letter\"",
            "format = \"logfmt\"",
            "[multiline]\nstart = '^\\S'",
            "[multiline]\nstart = '^\\S'\ntimeout = \"5s\"",
            "[multiline]\npreset = \"java\"",
            "[multiline]\npreset = \"python\"",
        ];
        let seen: Vec<String> = variants.iter().map(|v| debug(&config(v))).collect();
        for (i, v) in variants.iter().enumerate() {
            assert_eq!(debug(&config(v)), seen[i], "compiled twice: {v}");
            for (j, other) in seen.iter().enumerate().filter(|(j, _)| *j != i) {
                assert_ne!(&seen[i], other, "{v} vs {}", variants[j]);
            }
        }
    }
}
