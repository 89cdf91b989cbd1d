//! Checks across values, run after deserialization.

use std::collections::BTreeMap;
use std::path::Path;

#[allow(unused_imports)]
use super::*;
use crate::input::InputFormat;

// ---------------------------------------------------------------------------------------------
// Checks across values, run after deserialization.
// ---------------------------------------------------------------------------------------------

/// Checks what serde cannot: formats that need a parser, and values that refer to each other.
pub(super) struct Checker<'a> {
    pub(super) origin: &'a str,
    pub(super) map: &'a SourceMap<'a>,
}

impl Checker<'_> {
    fn fail(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: self.map.line_of(path),
            key: Some(path.join(".")),
            message: message.into(),
        }
    }

    pub(super) fn validate(&self, mut config: Config) -> Result<Config, ConfigError> {
        self.check_auth(&config.auth)?;
        for (name, output) in &config.outputs {
            self.check_output(name, output)?;
        }
        for (name, output) in config.outputs.iter_mut() {
            self.check_columns(name, output)?;
        }
        self.check_inputs(&mut config.inputs, &config.outputs)?;
        Ok(config)
    }

    fn check_auth(&self, auth: &AuthSection) -> Result<(), ConfigError> {
        let ids = [
            ("client_id", &auth.client_id),
            ("object_id", &auth.object_id),
            ("resource_id", &auth.resource_id),
        ];
        let set: Vec<&str> = ids
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        if let [first, second, ..] = set.as_slice() {
            return Err(self.fail(
                &["auth", second],
                format!(
                    "{first} and {second} are both set; set at most one of client_id, object_id \
                     and resource_id (each names a user-assigned identity)"
                ),
            ));
        }
        if let Some(host) = &auth.authority_host {
            crate::http::parse_secure_url("authority_host", host)
                .map_err(|e| self.fail(&["auth", "authority_host"], e.to_string()))?;
        }
        Ok(())
    }

    fn check_output(&self, name: &str, output: &OutputConfig) -> Result<(), ConfigError> {
        crate::http::parse_secure_url("endpoint", &output.endpoint).map_err(|e| {
            let hint = match e {
                crate::http::HttpSetupError::PlainHttp { .. } => String::new(),
                _ => format!("; expected {ENDPOINT_HINT}"),
            };
            self.fail(&["outputs", name, "endpoint"], format!("{e}{hint}"))
        })?;
        validate_dcr_id(&output.dcr).map_err(|m| self.fail(&["outputs", name, "dcr"], m))?;
        validate_stream(&output.stream).map_err(|m| self.fail(&["outputs", name, "stream"], m))?;
        Ok(())
    }

    /// Column names follow Azure's rules; `schema_file` is read now, so a missing stream is a
    /// configuration error, not a run-time surprise.
    fn check_columns(&self, name: &str, output: &mut OutputConfig) -> Result<(), ConfigError> {
        for column in output.columns.keys() {
            crate::transform::columns::validate_column_name(column)
                .map_err(|m| self.fail(&["outputs", name, "columns", column], m))?;
        }
        if let Some(file) = &output.schema_file {
            // A relative path is taken from the config file's directory, not the service's cwd.
            let path = match Path::new(self.origin).parent() {
                Some(dir) if file.is_relative() => dir.join(file),
                _ => file.clone(),
            };
            output.schema_columns =
                crate::transform::schema::load_stream_columns(&path, &output.stream)
                    .map_err(|e| self.fail(&["outputs", name, "schema_file"], e.to_string()))?;
        }
        Ok(())
    }

    /// `time_format` and `timezone` can be read; names that become columns are valid ones.
    fn check_shaping(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        let key = if input.timezone.is_some() && input.time_format.is_none() {
            "timezone"
        } else {
            "time_format"
        };
        crate::transform::time::TimeParser::new(
            input.time_format.as_deref(),
            input.timezone.as_deref(),
        )
        .map_err(|m| {
            let key = if m.contains("time zone") {
                "timezone"
            } else {
                key
            };
            self.fail(&["inputs", name, key], m)
        })?;
        for field in input.fields.keys() {
            crate::transform::columns::validate_column_name(field)
                .map_err(|m| self.fail(&["inputs", name, "fields", field], m))?;
        }
        for (from, to) in &input.rename {
            crate::transform::columns::validate_column_name(to)
                .map_err(|m| self.fail(&["inputs", name, "rename", from], m))?;
        }
        Ok(())
    }

    fn check_inputs(
        &self,
        inputs: &mut BTreeMap<String, InputConfig>,
        outputs: &BTreeMap<String, OutputConfig>,
    ) -> Result<(), ConfigError> {
        let mut stdin_reader: Option<&str> = None;
        for (name, input) in inputs.iter_mut() {
            self.check_source(name, input)?;
            self.check_format(name, input)?;
            self.check_shaping(name, input)?;
            input.output = self.resolve_output(name, &input.output, outputs)?;
            if let (Some(m), Some(out)) = (&input.multiline, outputs.get(&input.output)) {
                if m.max_bytes > out.max_request_bytes {
                    return Err(self.fail(
                        &["inputs", name, "multiline", "max_bytes"],
                        format!(
                            "{} is more than outputs.{}.max_request_bytes ({}): an event must \
                             fit in one request",
                            m.max_bytes, input.output, out.max_request_bytes
                        ),
                    ));
                }
            }
            if input.kind == InputKind::Stdin {
                if let Some(first) = stdin_reader {
                    return Err(self.fail(
                        &["inputs", name, "type"],
                        format!("only one input can read stdin, and inputs.{first} already does"),
                    ));
                }
                stdin_reader = Some(name);
            }
        }
        Ok(())
    }

    fn check_source(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        let paths_key = ["inputs", name, "paths"];
        match input.kind {
            InputKind::File if input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "a file input needs at least one path glob, \
                 like paths = [\"/var/log/myapp/*.log\"]",
            )),
            InputKind::File => match input.paths.iter().find(|p| !Path::new(p).is_absolute()) {
                Some(relative) => Err(self.fail(
                    &paths_key,
                    format!(
                        "{relative:?} is not an absolute path; write it in full, like \
                         \"/var/log/myapp/*.log\""
                    ),
                )),
                None => Ok(()),
            },
            InputKind::Stdin if !input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "paths is only read with type = \"file\"; a stdin input reads standard input",
            )),
            InputKind::Stdin if !input.exclude.is_empty() => Err(self.fail(
                &["inputs", name, "exclude"],
                "exclude is only read with type = \"file\"",
            )),
            InputKind::Stdin => Ok(()),
        }
    }

    fn check_format(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        self.check_parsing(name, input)?;
        match (input.format, &input.pattern) {
            (InputFormat::Regex, None) => Err(self.fail(
                &["inputs", name, "pattern"],
                "format = \"regex\" needs a pattern with named groups, like \
                 pattern = '^(?P<Level>\\w+) (?P<Message>.*)$'",
            )),
            (_, Some(_)) if input.format != InputFormat::Regex => Err(self.fail(
                &["inputs", name, "pattern"],
                "pattern is only read with format = \"regex\"",
            )),
            _ => Ok(()),
        }
    }

    /// `on_mismatch` and `[multiline]` fit the format; the pattern and `start` compile.
    fn check_parsing(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        use crate::input::parse::OnMismatch;
        let parsed = matches!(
            input.format,
            InputFormat::Regex | InputFormat::Logfmt | InputFormat::Syslog
        );
        if input.on_mismatch != OnMismatch::Raw && !parsed {
            return Err(self.fail(
                &["inputs", name, "on_mismatch"],
                "on_mismatch is only read with format = \"regex\", \"logfmt\" or \"syslog\"",
            ));
        }
        if input.multiline.is_some() && input.format == InputFormat::Json {
            return Err(self.fail(
                &["inputs", name, "multiline"],
                "multiline joins text lines; a JSON line is a whole record already",
            ));
        }
        if input.format == InputFormat::Regex && input.pattern.is_none() {
            // Said by the caller, with an example.
            return Ok(());
        }
        match crate::config::text_rules(input) {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut key = vec!["inputs", name];
                key.extend_from_slice(e.key());
                Err(self.fail(&key, e.to_string()))
            }
        }
    }

    /// The output an input feeds: the one it names, or the only one there is.
    fn resolve_output(
        &self,
        input: &str,
        wanted: &str,
        outputs: &BTreeMap<String, OutputConfig>,
    ) -> Result<String, ConfigError> {
        let key = ["inputs", input, "output"];
        if !wanted.is_empty() {
            return match outputs.contains_key(wanted) {
                true => Ok(wanted.to_string()),
                false if outputs.is_empty() => Err(self.fail(
                    &key,
                    format!("no output named {wanted:?}: add an [outputs.{wanted}] table"),
                )),
                false => Err(self.fail(
                    &key,
                    format!(
                        "no output named {wanted:?}{}",
                        name_choices(wanted, outputs.keys())
                    ),
                )),
            };
        }
        let mut names = outputs.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => Ok(only.clone()),
            (None, _) => Err(self.fail(
                &["inputs", input],
                "there is no output to send to: add an [outputs.NAME] table",
            )),
            _ => Err(self.fail(
                &key,
                format!(
                    "not set, and there are several outputs; write output = \"NAME\" with \
                     one of: {}",
                    join_names(outputs.keys())
                ),
            )),
        }
    }
}

/// Checks a DCR immutable id (`dcr-` and 32 hex digits); the message says where to find it.
pub fn validate_dcr_id(id: &str) -> Result<(), String> {
    let well_formed = id
        .strip_prefix("dcr-")
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if well_formed {
        return Ok(());
    }
    let what = if id.starts_with("/subscriptions/") {
        " (that is the DCR's resource id)"
    } else {
        ""
    };
    Err(format!(
        "expected dcr- followed by 32 hex digits, found {id:?}{what}; hint: use the DCR \
         *immutable id*, shown on the DCR's overview page"
    ))
}

/// Checks a stream name: the API only knows `Custom-…` and `Microsoft-…` streams.
pub fn validate_stream(stream: &str) -> Result<(), String> {
    let named = ["Custom-", "Microsoft-"]
        .iter()
        .any(|prefix| stream.len() > prefix.len() && stream.starts_with(prefix));
    if named {
        return Ok(());
    }
    let hint = if stream.ends_with("_CL") && !stream.contains('-') {
        format!("did you mean \"Custom-{stream}\"? (the stream, not the table)")
    } else {
        "use a stream declared in the DCR's streamDeclarations, like Custom-MyApp_CL".to_string()
    };
    Err(format!(
        "expected a stream name starting with Custom- or Microsoft-, found {stream:?}; {hint}"
    ))
}
