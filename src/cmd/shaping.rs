//! How the reading flags (`--format`, `--pattern`, `--multiline-*`, `--time-field`,
//! `--time-format`, `--timezone`, field edits, `--schema`) become a line parser and a row
//! shaping: one construction shared by `send` and `dcr infer|template`, so a sample is read
//! exactly as it will be sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::CmdError;
use crate::cli::{ParseArgs, ShapeArgs};
use crate::config::ColumnType;
use crate::input::multiline::MultilineRules;
use crate::input::parse::{Parser, RegexParser, SyslogParser, TextRules};
use crate::input::Format;
use crate::transform::columns::validate_column_name;
use crate::transform::fields::FieldOps;
use crate::transform::schema::load_stream_columns;
use crate::transform::time::TimeParser;
use crate::transform::Shaping;

/// The row shaping of the flags, with the columns of `--schema` (declared for `stream`), else
/// `configured` (a config file's). `label` names the input in log lines.
pub fn shaping(
    label: &str,
    time_field: Option<&str>,
    a: &ShapeArgs,
    stream: &str,
    configured: &BTreeMap<String, ColumnType>,
) -> Result<Shaping, CmdError> {
    let time = TimeParser::new(a.time_format.as_deref(), a.timezone.as_deref())
        .map_err(|e| CmdError::usage(format!("--time-format/--timezone: {e}")))?;
    if a.max_time_span.is_some_and(|d| d.is_zero()) {
        return Err(CmdError::usage(
            "--max-time-span: expected a duration above 0, like \"30m\"",
        ));
    }
    for (name, _) in &a.fields {
        validate_column_name(name).map_err(|e| CmdError::usage(format!("--field: {e}")))?;
    }
    for (_, to) in &a.rename {
        validate_column_name(to).map_err(|e| CmdError::usage(format!("--rename: {e}")))?;
    }
    let columns = match &a.schema {
        Some(path) => {
            if stream.is_empty() {
                return Err(CmdError::usage(
                    "--schema needs --stream: the schema file may declare several streams",
                ));
            }
            load_stream_columns(path, stream)
                .map_err(|e| CmdError::usage(format!("--schema: {e}")))?
        }
        None => configured.clone(),
    };
    let fields: BTreeMap<String, serde_json::Value> = a
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let rename: BTreeMap<String, String> = a.rename.iter().cloned().collect();
    Ok(Shaping {
        label: label.to_string(),
        time_field: time_field.map(str::to_string),
        time,
        ops: FieldOps::new(&fields, &rename, &a.drop),
        columns,
    })
}

/// The parser and multiline rules the flags ask for; `None` for plain formats. `cap` bounds a
/// multiline event (the request cap).
pub fn text_rules(
    format: Format,
    flags: &ParseArgs,
    cap: usize,
) -> Result<Option<Arc<TextRules>>, CmdError> {
    flags.check(format.name()).map_err(CmdError::usage)?;
    let multiline = flags.multiline();
    let parser = match format {
        Format::Regex => {
            let pattern = flags.pattern.as_deref().unwrap_or_default();
            let p = RegexParser::new(pattern)
                .map_err(|e| CmdError::usage(format!("--pattern: {e}")))?;
            Parser::Regex(p)
        }
        Format::Logfmt => Parser::Logfmt,
        Format::Syslog => Parser::Syslog(SyslogParser::default()),
        // Multiline joins text lines: `auto` means text then.
        Format::Auto | Format::Text if multiline.is_some() => Parser::Text,
        _ => return Ok(None),
    };
    let multiline = match multiline {
        Some(m) if m.max_bytes > cap => {
            return Err(CmdError::usage(format!(
                "--multiline-max-bytes {} is more than the request cap {cap}",
                m.max_bytes
            )))
        }
        Some(m) => Some(
            MultilineRules::new(
                m.start.as_deref(),
                m.preset,
                m.timeout,
                m.max_lines,
                m.max_bytes,
            )
            .map_err(|e| CmdError::usage(format!("--multiline-start: {e}")))?,
        ),
        None => None,
    };
    Ok(Some(Arc::new(TextRules::from_flags(
        parser,
        flags.on_mismatch.unwrap_or_default(),
        multiline,
    ))))
}
