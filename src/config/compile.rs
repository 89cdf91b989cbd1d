//! The configuration compiled: every value checked, and turned into the settings the stages
//! take (a [`Plan`] for the pipeline, an [`AuthConfig`] for the token source). Every mistake is
//! collected — not only the first — each with its line and key, or the flag that set it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::auth::{AuthConfig, AuthMethod};
use crate::input::file::TailerConfig;
use crate::input::parse::OnMismatch;
use crate::input::Format;
use crate::pipeline::plan::{ContainerPlan, InputPlan, JournalPlan, OutputPlan, Plan, Source};
use crate::secret::Secret;

use super::overlay::Attribution;
use super::spans::{join_names, name_choices, SourceMap, ENDPOINT_HINT};
use super::{
    shaping_for, text_rules, AuthSection, Config, ConfigError, ConfigErrors, FileConfig,
    InputConfig, InputKind, OutputConfig, MIN_HEARTBEAT_INTERVAL, MIN_PROBE_INTERVAL,
};
use crate::azure::{validate_dcr_id, validate_stream};
use crate::duration::format_duration;

/// Checks what serde cannot — formats that need a parser, values that refer to each other —
/// and builds the stages' settings from the values that pass.
pub(super) struct Checker<'a> {
    pub(super) origin: &'a str,
    pub(super) map: &'a SourceMap<'a>,
    pub(super) flags: &'a Attribution,
    /// Relative paths in the file (`schema_file`) are taken from here, not the cwd.
    pub(super) base_dir: Option<&'a Path>,
    /// Tables read without some of their keys (`outputs.app`): reported already, not checked.
    pub(super) damaged: &'a [String],
    pub(super) errors: RefCell<Vec<ConfigError>>,
}

impl Checker<'_> {
    /// An error about `path`: named by its flag when a flag set it, else by line and key.
    fn fail(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        if let Some(flag) = self.flags.flag_for(path) {
            return ConfigError::Flag {
                flag: flag.to_string(),
                message: message.into(),
            };
        }
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            line: self.map.line_of(path),
            key: Some(path.join(".")),
            message: message.into(),
        }
    }

    /// Keeps an error and goes on checking.
    fn report(&self, e: ConfigError) {
        self.errors.borrow_mut().push(e);
    }

    /// `Ok` values pass through; an error is kept and `None` returned.
    fn keep<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.report(e)).ok()
    }

    /// True when the table was read without some of its keys (see `read.rs`).
    fn damaged(&self, kind: &str, name: &str) -> bool {
        self.damaged.iter().any(|d| d == &format!("{kind}.{name}"))
    }

    /// True when the flags made input `name` (its messages then speak of flags).
    fn made_by_flags(&self, input: &str) -> bool {
        self.flags.flag_for(&["inputs", input]).is_some()
    }

    /// Checks everything and builds the stages' settings; `Err` holds every error found.
    pub(super) fn compile(&self, mut file: FileConfig) -> Result<Config, ConfigErrors> {
        self.keep(self.check_auth(&file.auth));
        let auth = auth_config(&file.auth);
        let mut outputs = BTreeMap::new();
        let names: Vec<String> = file.outputs.keys().cloned().collect();
        for name in names {
            let Some(output) = file.outputs.get_mut(&name) else {
                continue;
            };
            if self.damaged("outputs", &name) {
                continue;
            }
            // The endpoint first: a full ingestion URL names the stream the columns are of.
            let plan = self.keep(self.output_plan(&name, output, &auth));
            let columns = self.keep(self.check_columns(&name, output));
            if let (Some(()), Some(plan)) = (columns, plan) {
                outputs.insert(name, plan);
            }
        }
        let inputs = self.check_inputs(&mut file.inputs, &file.outputs);
        let errors = self.errors.take();
        if !errors.is_empty() {
            return Err(ConfigErrors::new(errors));
        }
        let spool = crate::spool::Options {
            max_bytes: file.spool.max_bytes,
            fsync_interval: file.spool.fsync_interval,
            when_full: file.spool.when_full,
            ..crate::spool::Options::default()
        };
        Ok(Config {
            auth,
            plan: Plan {
                outputs,
                inputs,
                spool,
            },
            settings: file,
        })
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

    /// Endpoint, DCR id and stream are well formed (and fit the cloud); the output's settings.
    fn output_plan(
        &self,
        name: &str,
        output: &mut OutputConfig,
        auth: &AuthConfig,
    ) -> Result<OutputPlan, ConfigError> {
        let made_by_flags = self.flags.flag_outputs.iter().any(|o| o == name);
        if !output.endpoint.trim().is_empty() {
            self.take_endpoint_apart(name, output)?;
        }
        if made_by_flags {
            self.check_flag_target(output)?;
        }
        let endpoint = if output.endpoint.trim().is_empty() && made_by_flags {
            None
        } else {
            let url = crate::http::parse_secure_url("endpoint", &output.endpoint).map_err(|e| {
                let hint = match e {
                    crate::http::HttpSetupError::PlainHttp { .. } => String::new(),
                    _ => format!("; expected {ENDPOINT_HINT}"),
                };
                self.fail(&["outputs", name, "endpoint"], format!("{e}{hint}"))
            })?;
            if let Some(m) = cloud_mismatch(auth, &url) {
                return Err(self.fail(&["outputs", name, "endpoint"], m));
            }
            Some(url)
        };
        // A dry run from flags may leave the target out; what is given is still checked.
        if !(made_by_flags && output.dcr.is_empty()) {
            validate_dcr_id(&output.dcr).map_err(|m| self.fail(&["outputs", name, "dcr"], m))?;
        }
        if !(made_by_flags && output.stream.is_empty()) {
            validate_stream(&output.stream)
                .map_err(|m| self.fail(&["outputs", name, "stream"], m))?;
        }
        let probe_interval = match output.probe_interval {
            d if d.is_zero() => None,
            d if d < MIN_PROBE_INTERVAL => {
                return Err(self.fail(
                    &["outputs", name, "probe_interval"],
                    format!(
                        "{} is too often: at least {} (each probe is a request the DCR's limits count), or \"0s\" for no probes",
                        format_duration(d),
                        format_duration(MIN_PROBE_INTERVAL)
                    ),
                ))
            }
            d => Some(d),
        };
        if let Some(d) = output.heartbeat_interval {
            if d < MIN_HEARTBEAT_INTERVAL {
                return Err(self.fail(
                    &["outputs", name, "heartbeat_interval"],
                    format!(
                        "{} is too often: at least {}",
                        format_duration(d),
                        format_duration(MIN_HEARTBEAT_INTERVAL)
                    ),
                ));
            }
        }
        Ok(OutputPlan {
            probe_interval,
            heartbeat_interval: output.heartbeat_interval,
            endpoint,
            dcr: output.dcr.clone(),
            stream: output.stream.clone(),
            concurrency: output.concurrency,
            max_request_bytes: output.max_request_bytes,
            batch_timeout: output.batch_timeout,
            compression_level: output.compression_level,
            max_time_span: output.max_time_span,
            permission_grace: output.permission_grace,
            retry_timeout: output.retry_timeout,
            request_timeout: output.request_timeout,
            limits: output.limits(),
        })
    }

    /// A full ingestion URL given as the endpoint: its DCR and stream fill in (or must agree
    /// with) `dcr` and `stream`, and the endpoint becomes its root.
    fn take_endpoint_apart(
        &self,
        name: &str,
        output: &mut OutputConfig,
    ) -> Result<(), ConfigError> {
        let parts = super::endpoint::split(&output.endpoint)
            .map_err(|m| self.fail(&["outputs", name, "endpoint"], m))?;
        for (key, given, found) in [
            ("dcr", &mut output.dcr, parts.dcr),
            ("stream", &mut output.stream, parts.stream),
        ] {
            let Some(found) = found else { continue };
            if given.is_empty() {
                *given = found;
            } else if *given != found {
                return Err(self.fail(
                    &["outputs", name, "endpoint"],
                    format!(
                        "the URL names {key} {found:?}, but {key} is {given:?}; give the \
                         endpoint as {} and the {key} on its own",
                        parts.root
                    ),
                ));
            }
        }
        output.endpoint = parts.root;
        Ok(())
    }

    /// An output made from flags alone needs its three target flags (but in a dry run).
    fn check_flag_target(&self, output: &OutputConfig) -> Result<(), ConfigError> {
        if self.flags.target_optional {
            return Ok(());
        }
        let missing: Vec<&str> = [
            (
                "--endpoint (DCRSHIP_ENDPOINT)",
                output.endpoint.trim().is_empty(),
            ),
            ("--dcr (DCRSHIP_DCR)", output.dcr.trim().is_empty()),
            ("--stream (DCRSHIP_STREAM)", output.stream.trim().is_empty()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Usage(format!(
            "missing {}: say where to send{}",
            missing.join(", "),
            self.flags.missing_target_hint
        )))
    }

    /// Column names follow Azure's rules; `schema_file` is read now, so a missing stream is a
    /// configuration error, not a run-time surprise.
    fn check_columns(&self, name: &str, output: &mut OutputConfig) -> Result<(), ConfigError> {
        for column in output.columns.keys() {
            crate::transform::columns::validate_column_name(column)
                .map_err(|m| self.fail(&["outputs", name, "columns", column], m))?;
        }
        if let Some(file) = &output.schema_file {
            let key = ["outputs", name, "schema_file"];
            if output.stream.is_empty() {
                return Err(self.fail(
                    &key,
                    "a schema needs the stream (--stream): the schema file may declare several",
                ));
            }
            // A relative path in the file is taken from the file's directory, not the cwd; a
            // flag's from the cwd, as the shell wrote it.
            let path = match self.base_dir {
                Some(dir) if file.is_relative() && self.flags.flag_for(&key).is_none() => {
                    dir.join(file)
                }
                _ => file.clone(),
            };
            output.schema_columns =
                crate::transform::schema::load_stream_columns(&path, &output.stream)
                    .map_err(|e| self.fail(&key, e.to_string()))?;
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

    /// Every input checked; the plans of those without a mistake.
    fn check_inputs(
        &self,
        inputs: &mut BTreeMap<String, InputConfig>,
        outputs: &BTreeMap<String, OutputConfig>,
    ) -> BTreeMap<String, InputPlan> {
        let mut plans = BTreeMap::new();
        let mut stdin_reader: Option<String> = None;
        for (name, input) in inputs.iter_mut() {
            if self.damaged("inputs", name) {
                continue;
            }
            let journald = self.keep(super::check_journald(input).map_err(|(key, m)| {
                let mut path = vec!["inputs", name.as_str()];
                path.extend(key.iter().map(String::as_str));
                self.fail(&path, m)
            }));
            if journald.is_none() {
                continue;
            }
            let source = self.keep(self.check_source(name, input));
            let format = self.keep(self.check_format(name, input));
            let shaping = self.keep(self.check_shaping(name, input));
            self.keep(self.check_container(name, input));
            let Some(output) = self.keep(self.resolve_output(name, &input.output, outputs)) else {
                continue;
            };
            input.output = output;
            let out = outputs.get(&input.output);
            if let (Some(m), Some(out)) = (&input.multiline, out) {
                if m.max_bytes > out.max_request_bytes {
                    self.report(self.fail(
                        &["inputs", name, "multiline", "max_bytes"],
                        format!(
                            "{} is more than outputs.{}.max_request_bytes ({}): an event must \
                             fit in one request",
                            m.max_bytes, input.output, out.max_request_bytes
                        ),
                    ));
                }
            }
            let reads_stdin = match input.kind {
                InputKind::Stdin => true,
                InputKind::Once => input.paths.iter().any(|p| p == "-"),
                InputKind::File | InputKind::Journald => false,
            };
            if reads_stdin {
                match &stdin_reader {
                    Some(first) => self.report(self.fail(
                        &["inputs", name, "type"],
                        format!("only one input can read stdin, and inputs.{first} already does"),
                    )),
                    None => stdin_reader = Some(name.clone()),
                }
            }
            let (Some(mut source), Some(format), Some(())) = (source, format, shaping) else {
                continue;
            };
            if let (Source::Journal(j), Some(out)) = (&mut source, out) {
                j.options.max_entry_bytes =
                    crate::input::journald::options::max_entry_bytes(out.max_request_bytes);
                // The unit column goes out unless the stream declares columns without it.
                let declared = out.declared_columns();
                let unit = crate::input::journald::rows::UNIT_COLUMN;
                let unit = input.rename.get(unit).map_or(unit, String::as_str);
                j.unit_column = declared.is_empty() || declared.contains_key(unit);
            }
            if let (Source::Files(tail), Some(out)) = (&mut source, out) {
                // A JSON row may be as long as a request; a text row is cut at the field
                // limit anyway, which is the tailer's default.
                // A runtime's line (escaped JSON, or a line the runtime did not split) may be
                // longer too.
                if matches!(format, Format::Ndjson | Format::Auto) || input.container.is_some() {
                    tail.max_line_bytes = out.max_request_bytes;
                }
            }
            let rules = match text_rules(input) {
                Ok(rules) => rules.map(Arc::new),
                // Reported by check_format.
                Err(_) => continue,
            };
            let Ok(shaping) = shaping_for(name, input, out) else {
                continue;
            };
            plans.insert(
                name.clone(),
                InputPlan {
                    source,
                    format,
                    rules,
                    shaping,
                    output: input.output.clone(),
                    container: input.container.as_ref().map(|c| ContainerPlan {
                        runtime: c.runtime,
                        json_fields: c.json_fields,
                    }),
                },
            );
        }
        plans
    }

    fn check_container(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        use crate::input::container::JsonFields;
        match &input.container {
            Some(_) if input.kind != InputKind::File => Err(self.fail(
                &["inputs", name, "container"],
                "container is only read with type = \"file\": the runtime's log files",
            )),
            Some(c)
                if c.json_fields != JsonFields::Columns
                    && !matches!(input.format, Format::Json | Format::Ndjson) =>
            {
                Err(self.fail(
                    &["inputs", name, "container", "json_fields"],
                    "json_fields is only read with format = \"json\"",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Where the input reads; file globs are compiled now, so a bad one is named here.
    fn check_source(&self, name: &str, input: &InputConfig) -> Result<Source, ConfigError> {
        let paths_key = ["inputs", name, "paths"];
        match input.kind {
            InputKind::File if input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "a file input needs at least one path glob, \
                 like paths = [\"/var/log/myapp/*.log\"]",
            )),
            InputKind::File => {
                if let Some(relative) = input.paths.iter().find(|p| !Path::new(p).is_absolute()) {
                    let example = if self.made_by_flags(name) {
                        "--path '/var/log/myapp/*.log'"
                    } else {
                        "\"/var/log/myapp/*.log\""
                    };
                    return Err(self.fail(
                        &paths_key,
                        format!(
                            "{relative:?} is not an absolute path; write it in full, like \
                             {example} (files are found from / on every rescan)"
                        ),
                    ));
                }
                let tail =
                    TailerConfig::new(input.paths.clone(), input.exclude.clone(), input.start_at);
                tail.check_globs()
                    .map_err(|(key, e)| self.fail(&["inputs", name, key], e.to_string()))?;
                Ok(Source::Files(tail))
            }
            InputKind::Stdin if !input.paths.is_empty() => Err(self.fail(
                &paths_key,
                "paths is only read with type = \"file\"; a stdin input reads standard input",
            )),
            InputKind::Stdin if !input.exclude.is_empty() => Err(self.fail(
                &["inputs", name, "exclude"],
                "exclude is only read with type = \"file\"",
            )),
            InputKind::Stdin => Ok(Source::Stdin),
            InputKind::Once => check_files(&input.paths).map(Source::Once),
            // Its keys are checked by check_journald; the output's cap is set once it is known.
            InputKind::Journald => Ok(Source::Journal(JournalPlan {
                options: super::journal_options(input, crate::azure::DEFAULT_MAX_REQUEST_BYTES),
                unit_column: true,
            })),
        }
    }

    /// The format, with its parser settings checked; `json` in a file or stdin input is one
    /// object per line.
    fn check_format(&self, name: &str, input: &InputConfig) -> Result<Format, ConfigError> {
        self.check_parsing(name, input)?;
        let flags = self.made_by_flags(name);
        match (input.format, &input.pattern) {
            (Format::Regex, None) if flags => Err(self.fail(
                &["inputs", name, "pattern"],
                "--format regex needs --pattern with named groups, like \
                 --pattern '^(?P<Level>\\w+) (?P<Message>.*)$'",
            )),
            (Format::Regex, None) => Err(self.fail(
                &["inputs", name, "pattern"],
                "format = \"regex\" needs a pattern with named groups, like \
                 pattern = '^(?P<Level>\\w+) (?P<Message>.*)$'",
            )),
            (_, Some(_)) if input.format != Format::Regex => Err(self.fail(
                &["inputs", name, "pattern"],
                if flags {
                    "--pattern is only read with --format regex"
                } else {
                    "pattern is only read with format = \"regex\""
                },
            )),
            (Format::Json, _) if input.kind != InputKind::Once => Ok(Format::Ndjson),
            (f, _) => Ok(f),
        }
    }

    /// `on_mismatch` and `[multiline]` fit the format; the pattern and `start` compile.
    fn check_parsing(&self, name: &str, input: &InputConfig) -> Result<(), ConfigError> {
        let flags = self.made_by_flags(name);
        let parsed = matches!(
            input.format,
            Format::Regex | Format::Logfmt | Format::Syslog
        );
        if input.on_mismatch != OnMismatch::Raw && !parsed {
            return Err(self.fail(
                &["inputs", name, "on_mismatch"],
                if flags {
                    "--on-mismatch is only read with --format regex, logfmt or syslog"
                } else {
                    "on_mismatch is only read with format = \"regex\", \"logfmt\" or \"syslog\""
                },
            ));
        }
        let structured = matches!(input.format, Format::Json | Format::Ndjson | Format::Csv);
        if input.multiline.is_some() && structured {
            return Err(self.fail(
                &["inputs", name, "multiline"],
                if flags {
                    "multiline joins text lines: use it with --format text, regex, logfmt or \
                     syslog"
                } else {
                    "multiline joins text lines; a JSON line is a whole record already"
                },
            ));
        }
        if input.format == Format::Regex && input.pattern.is_none() {
            // Said by the caller, with an example.
            return Ok(());
        }
        match text_rules(input) {
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

/// `send`'s files, each checked before anything is sent, so a typo fails fast instead of after
/// an upload; `-` is stdin, at most once.
fn check_files(paths: &[String]) -> Result<Vec<std::path::PathBuf>, ConfigError> {
    let mut out = Vec::with_capacity(paths.len());
    let mut stdin_seen = false;
    for p in paths {
        let path = std::path::PathBuf::from(p);
        if p == "-" {
            if stdin_seen {
                return Err(ConfigError::Usage("stdin (-) is named twice".into()));
            }
            stdin_seen = true;
            out.push(path);
            continue;
        }
        let cannot = |e: std::io::Error| {
            ConfigError::Usage(format!(
                "cannot read {p}: {}",
                crate::pipeline::inputs::io_reason(&e)
            ))
        };
        let meta = std::fs::metadata(&path).map_err(cannot)?;
        if meta.is_dir() {
            return Err(ConfigError::Usage(format!(
                "{p} is a directory: name the files (a shell glob such as {p}/*.log works)"
            )));
        }
        std::fs::File::open(&path).map_err(cannot)?;
        out.push(path);
    }
    Ok(out)
}

/// `[auth]` with the standard Azure environment's fallbacks filled in.
pub fn auth_config(a: &AuthSection) -> AuthConfig {
    AuthConfig {
        method: a.method,
        client_id: a.client_id.clone(),
        object_id: a.object_id.clone(),
        resource_id: a.resource_id.clone(),
        tenant_id: a.tenant_id.clone(),
        client_secret: a
            .client_secret
            .clone()
            .or_else(|| std::env::var("AZURE_CLIENT_SECRET").ok().map(Secret::new))
            .filter(|s| !s.is_empty()),
        cloud: a.cloud.unwrap_or_default(),
        authority_host: a.authority_host.clone(),
        audience: a.audience.clone(),
        certificate_path: a.certificate_path.clone(),
        certificate_password: a.certificate_password.clone(),
        service_connection_id: a.service_connection_id.clone(),
        arc_key_dir: Some(a.arc_key_dir.clone()),
        fetch_timeout: None,
    }
}

/// The cloud (or `[auth] audience`) against the endpoint's host: a token for another cloud is
/// refused there, so say so before fetching one. A `static` token's audience is not ours to
/// set; the command looks at the token itself once it has one.
fn cloud_mismatch(auth: &AuthConfig, endpoint: &reqwest::Url) -> Option<String> {
    if auth.method == AuthMethod::Static {
        return None;
    }
    let host = endpoint.host_str()?;
    crate::ingest::diagnosis::cloud_mismatch(host, auth.cloud, auth.audience.as_deref())
}
