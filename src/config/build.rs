//! File values compiled into the stages' own settings: parser rules, row shaping.

use crate::input::multiline::MultilineRules;
use crate::input::parse::{ParseSetupError, Parser, RegexParser, SyslogParser, TextRules};
use crate::input::Format;

use super::{InputConfig, OutputConfig};

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
}
