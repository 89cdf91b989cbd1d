//! `dcrship dcr infer|template|create`: reads a sample through `send`'s own path — the
//! decoder, the parser and multiline rules, and the row encoder with the flags' shaping (one
//! construction, [`crate::config::shaping_for`]) — and hands the rows it builds to [`crate::dcr`]. Bounded: at most
//! `--sample` rows are looked at, read 256 KiB at a time, and a column's statistics are a few
//! counters and one short example per kind. `create` adds the identity (the flags of `send`)
//! and the runtime for [`crate::dcr::create`].

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use super::{host_name, CmdError};
use crate::azure::DEFAULT_MAX_REQUEST_BYTES;
use crate::cli::{
    DcrArgs, DcrCommand, DcrCreateArgs, DcrInferArgs, DcrResourceArgs, DcrSampleArgs,
    DcrTemplateArgs,
};
use crate::console;
use crate::dcr::agent::{self, AgentInput};
use crate::dcr::infer::{At, Inference, Sampler, Source};
use crate::dcr::issues::{blocking, issues, name_issues, ReadCounts, Severity};
use crate::dcr::names;
use crate::dcr::template::{self, Spec};
use crate::dcr::{az, report, Artifact};
use crate::deadletter::DeadLetter;
use crate::exit::ExitCode;
use crate::input::{format, Decoder, Format, Record};
use crate::pipeline::sink::RowSink;
use crate::rows::RowBuf;
use crate::transform::columns::ColumnType;
use crate::transform::row::json_string;
use crate::transform::schema::load_stream_columns;
use crate::transform::time::rfc3339_utc;
use crate::transform::RowEncoder;

/// Bytes read from an input at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Where `TimeGenerated`'s text starts in a row: every row starts `{"TimeGenerated":"`.
const TIME_AT: usize = "{\"TimeGenerated\":\"".len();

/// Runs `dcr infer` or `dcr template`; prints, and returns the exit code.
pub fn run(args: DcrArgs) -> ExitCode {
    let result = match args.command {
        DcrCommand::Infer(a) => infer(&a),
        DcrCommand::Template(a) => template(&a),
        DcrCommand::Create(a) => create(&a),
    };
    result.unwrap_or_else(|e| {
        console::err(&format!("dcrship: error: {e}"));
        e.code
    })
}

fn infer(a: &DcrInferArgs) -> Result<ExitCode, CmdError> {
    let stream = a.sample.stream.clone().unwrap_or_default();
    let sample = read_sample(&a.sample, &stream)?;
    let found = issues(&sample.inference, &sample.read, None);
    if a.json {
        let v = report::json(&sample.inference, &sample.read, &found, &sample.names);
        console::out(&v.to_string());
    } else {
        let text = report::text(&sample.inference, &sample.read, &found, &sample.names);
        console::out(text.trim_end());
    }
    Ok(ExitCode::Ok)
}

/// Everything the artifacts are made from, checked.
struct Prepared {
    spec: Spec,
    output_name: String,
    input: AgentInput,
    max_time_span: Option<std::time::Duration>,
}

impl Prepared {
    /// One artifact's text; `target` is the endpoint and DCR immutable id once they exist.
    fn artifact(&self, which: Artifact, target: Option<(&str, &str)>) -> String {
        match which {
            Artifact::Arm => pretty(&template::arm(&self.spec)),
            Artifact::Rule => pretty(&template::rule(&self.spec)),
            Artifact::Az => az::script(&self.spec),
            Artifact::Agent => agent::blocks(
                &self.spec,
                &self.output_name,
                &self.input,
                self.max_time_span,
                target,
            ),
        }
    }

    /// Writes every artifact into `dir`.
    fn write_all(&self, dir: &Path, target: Option<(&str, &str)>) -> Result<(), CmdError> {
        crate::private_fs::create_dir_all(dir).map_err(|e| {
            CmdError::usage(format!("--out-dir: cannot create {}: {e}", dir.display()))
        })?;
        for which in Artifact::ALL {
            let path = dir.join(which.file_name());
            crate::private_fs::write(&path, self.artifact(which, target).as_bytes())
                .map_err(|e| CmdError::usage(format!("cannot write {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

fn template(a: &DcrTemplateArgs) -> Result<ExitCode, CmdError> {
    let p = prepare(&a.sample, &a.resources)?;
    let Some(dir) = &a.out_dir else {
        console::out(p.artifact(a.print, None).trim_end());
        return Ok(ExitCode::Ok);
    };
    p.write_all(dir, None)?;
    let spec = &p.spec;
    console::err(&format!(
        "dcrship: wrote {} in {}: {} columns for table {}, stream {}\n\
         next: az deployment group create --resource-group RG --template-file {} \\\n\
         \x20     --parameters workspaceResourceId=WORKSPACE_ID principalId=OBJECT_ID\n\
         then fill in endpoint and dcr in {} from the deployment's outputs, or try it once:\n\
         \x20 dcrship send --endpoint URL --dcr DCR_ID --stream {} --schema {} FILE",
        Artifact::ALL.map(Artifact::file_name).join(", "),
        dir.display(),
        spec.columns.len(),
        spec.table,
        spec.stream,
        dir.join(Artifact::Arm.file_name()).display(),
        dir.join(Artifact::Agent.file_name()).display(),
        spec.stream,
        dir.join(Artifact::Arm.file_name()).display(),
    ));
    Ok(ExitCode::Ok)
}

fn create(a: &DcrCreateArgs) -> Result<ExitCode, CmdError> {
    if a.resources.workspace_resource_id.is_none() {
        return Err(CmdError::usage(
            "dcr create needs --workspace-resource-id: the workspace the table goes in",
        ));
    }
    if let Some(rg) = &a.resource_group {
        names::check_resource_group(rg).map_err(CmdError::usage)?;
    }
    let mut p = prepare(&a.sample, &a.resources)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    runtime.block_on(create_async(a, &mut p))
}

async fn create_async(a: &DcrCreateArgs, p: &mut Prepared) -> Result<ExitCode, CmdError> {
    use crate::dcr::arm::{self, Arm};
    use crate::dcr::create::{create, wait_until_ready, Place, Ready};

    let say = |m: &str| console::err(&format!("dcrship: {m}"));
    let auth = super::flags::auth_only(a.auth, a.client_id.clone(), a.tenant_id.clone(), a.cloud)?;
    let arm_url = a
        .arm_endpoint
        .clone()
        .unwrap_or_else(|| arm::endpoint(auth.cloud).to_string());
    let arm_url = crate::http::parse_secure_url("--arm-endpoint", &arm_url)
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let http = crate::http::HttpClients::new(std::time::Duration::from_secs(60))
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    let mut arm_auth = auth.clone();
    arm_auth.audience = Some(arm::endpoint(auth.cloud).to_string());
    let arm_tokens = crate::auth::build(&arm_auth, &http)
        .await
        .map_err(no_token)?;
    arm_tokens.token().await.map_err(no_token)?;
    let me = arm_tokens.principal_id();
    let principal = p.spec.principal_id.clone().or_else(|| me.clone());
    if principal.is_none() {
        say("no --principal-id, and the token does not say whose it is: no role is granted");
    }
    p.spec.principal_id = principal.clone();
    let place = Place::of_workspace(
        p.spec.workspace_resource_id.as_deref().unwrap_or_default(),
        a.resource_group.as_deref(),
    );
    let client = Arm::new(http.remote.clone(), arm_url, arm_tokens);
    let made = match create(&client, &mut p.spec, &place, principal.as_deref(), &say).await {
        Ok(m) => m,
        Err(e) => return Err(CmdError::new(e.exit_code(), e.to_string())),
    };
    let endpoint = crate::http::parse_secure_url("the DCR's ingestion endpoint", &made.endpoint)
        .map_err(|e| CmdError::new(ExitCode::Internal, e.to_string()))?;
    say(&format!(
        "made {}: DCR immutable id {}, endpoint {}, stream {}",
        made.dcr_id, made.immutable_id, made.endpoint, p.spec.stream
    ));
    let target = Some((made.endpoint.as_str(), made.immutable_id.as_str()));
    if let Some(dir) = &a.out_dir {
        p.write_all(dir, target)?;
    }
    console::out(p.artifact(Artifact::Agent, target).trim_end());

    // The role applies in minutes: wait for it when the sender is the identity running this.
    let sender_is_me = principal.is_some() && principal == me;
    if a.wait.is_zero() || !sender_is_me {
        say(&format!(
            "not waiting for the role{}: on the sender, `dcrship check --live --config agent.toml` \
             says when the stream accepts its rows",
            if sender_is_me { "" } else { " (granted to another identity)" }
        ));
        return Ok(ExitCode::Ok);
    }
    let monitor_tokens = crate::auth::build(&auth, &http).await.map_err(no_token)?;
    let transport = crate::ingest::HttpTransport::new(
        http.remote.clone(),
        &endpoint,
        &made.immutable_id,
        &p.spec.stream,
    );
    match wait_until_ready(&transport, &monitor_tokens, a.wait, &say).await {
        Ready::Accepted { after } => {
            say(&format!(
                "the stream accepts rows (after {})",
                crate::duration::format_duration(std::time::Duration::from_secs(after.as_secs()))
            ));
            Ok(ExitCode::Ok)
        }
        Ready::NotYet { status, body } => Err(CmdError::new(
            ExitCode::Permission,
            format!(
                "the stream still answers {status} after {}: {body}; a role grant can take up \
                 to an hour, `dcrship check --live` tells when it has applied",
                crate::duration::format_duration(a.wait)
            ),
        )),
        Ready::Refused { status, body } => Err(CmdError::usage(format!(
            "the new stream refused [] with HTTP {status}: {body}"
        ))),
        Ready::Unreachable(e) => Err(CmdError::new(
            ExitCode::Transient,
            format!("{} did not answer: {e}", transport.url()),
        )),
        Ready::NoToken(e) => Err(CmdError::new(
            ExitCode::NoToken,
            format!("no access token for the stream: {e}"),
        )),
    }
}

fn no_token(e: crate::auth::AuthError) -> CmdError {
    match e {
        crate::auth::AuthError::Config(m) => CmdError::usage(m),
        other => CmdError::new(ExitCode::NoToken, format!("no access token: {other}")),
    }
}

/// Checks the flags, reads the sample (or the exported DCR) and reports what it found; stops
/// when Azure would refuse the table.
fn prepare(sample_args: &DcrSampleArgs, r: &DcrResourceArgs) -> Result<Prepared, CmdError> {
    let a = sample_args;
    let usage = CmdError::usage;
    let table = names::table_name(&r.table).map_err(|e| usage(format!("--table: {e}")))?;
    let stream = match &a.stream {
        Some(s) => {
            names::check_stream(s).map_err(|e| usage(format!("--stream: {e}")))?;
            s.clone()
        }
        None => names::stream_for_table(&table),
    };
    let dcr_name = r
        .dcr_name
        .clone()
        .unwrap_or_else(|| names::default_dcr_name(&table));
    names::check_dcr_name(&dcr_name).map_err(|e| usage(format!("--dcr-name: {e}")))?;
    if let Some(id) = &r.workspace_resource_id {
        names::check_resource_id(
            "--workspace-resource-id",
            id,
            "Microsoft.OperationalInsights/workspaces",
        )
        .map_err(usage)?;
    }
    if let Some(id) = &r.dce {
        names::check_resource_id("--dce", id, "Microsoft.Insights/dataCollectionEndpoints")
            .map_err(usage)?;
    }
    if let Some(id) = &r.principal_id {
        names::check_guid("--principal-id", id).map_err(usage)?;
    }
    if let Some(l) = &r.location {
        names::check_location(l).map_err(usage)?;
    }
    let output_name = r
        .output_name
        .clone()
        .unwrap_or_else(|| agent::default_name(&table));
    names::check_output_name(&output_name).map_err(usage)?;
    if r.transform_kql.trim().is_empty() {
        return Err(CmdError::usage(
            "--transform: give a KQL query, like the default \"source\"",
        ));
    }

    // The columns: from the sample, else (no files, --schema) from the exported DCR.
    let from_schema = a.files.is_empty() && a.shape.schema.is_some();
    let (columns, found, sample) = if from_schema {
        let path = a.shape.schema.as_deref().unwrap_or(Path::new(""));
        let declared =
            load_stream_columns(path, &stream).map_err(|e| usage(format!("--schema: {e}")))?;
        let columns = schema_columns(declared);
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        let found = name_issues(&names, Some(r.plan));
        (columns, found, None)
    } else {
        let sample = read_sample(a, &stream)?;
        let found = issues(&sample.inference, &sample.read, Some(r.plan));
        (sample.inference.declared(), found, Some(sample))
    };
    for i in &found {
        let tag = match i.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let fix = i
            .fix
            .as_deref()
            .map(|f| format!("\n  fix: {f}"))
            .unwrap_or_default();
        console::err(&format!("dcrship: {tag}: {}{fix}", i.problem));
    }
    if blocking(&found) {
        return Err(CmdError::usage(
            "Azure would refuse this table: fix the errors above (the same flags go to send and \
             the agent), then run again",
        ));
    }

    let spec = Spec {
        table,
        stream,
        columns,
        plan: r.plan,
        dcr_name,
        workspace_resource_id: r.workspace_resource_id.clone(),
        location: r.location.clone(),
        dce_id: r.dce.clone(),
        principal_id: r.principal_id.clone(),
        principal_type: r.principal_type,
        transform_kql: r.transform_kql.clone(),
    };
    Ok(Prepared {
        spec,
        output_name,
        input: agent_input(a, sample.as_ref()),
        max_time_span: a.shape.max_time_span,
    })
}

fn pretty(v: &serde_json::Value) -> String {
    // Serializing a Value cannot fail.
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// An exported DCR's columns, `TimeGenerated` first (declared datetime if it was missing).
fn schema_columns(declared: BTreeMap<String, ColumnType>) -> Vec<(String, ColumnType)> {
    let mut columns = vec![("TimeGenerated".to_string(), ColumnType::Datetime)];
    columns.extend(declared.into_iter().filter(|(n, _)| n != "TimeGenerated"));
    columns
}

/// How the agent would read what the sample was read from.
fn agent_input(a: &DcrSampleArgs, sample: Option<&Sample>) -> AgentInput {
    let detected = sample.map_or(a.format, |s| s.format);
    let (format, sample_format) = match (a.format, detected) {
        (Format::Regex | Format::Logfmt | Format::Syslog, _) => {
            (Some(a.format.name()), a.format.name())
        }
        (_, Format::Ndjson) => (Some("json"), "ndjson"),
        (_, Format::Json) => (None, "JSON array"),
        (_, Format::Csv) => (None, "csv"),
        _ => (Some("text"), "text"),
    };
    AgentInput {
        paths: a
            .files
            .iter()
            .filter(|f| f.as_os_str() != "-")
            .map(|f| absolute(f))
            .collect(),
        format,
        sample_format,
        pattern: a.parse.pattern.clone(),
        on_mismatch: a.parse.on_mismatch.as_ref().and_then(value_name),
        multiline_start: a.parse.multiline_start.clone(),
        multiline_preset: a.parse.multiline_preset.as_ref().and_then(value_name),
        time_field: a.time_field.clone(),
        time_format: a.shape.time_format.clone(),
        timezone: a.shape.timezone.clone(),
        fields: a.shape.fields.clone(),
        rename: a.shape.rename.clone(),
        drop: a.shape.drop.clone(),
    }
}

/// A flag value as written on the command line (and in the config file).
fn value_name<T: clap::ValueEnum>(v: &T) -> Option<String> {
    v.to_possible_value().map(|p| p.get_name().to_string())
}

/// What was read.
struct Sample {
    inference: Inference,
    read: ReadCounts,
    /// The inputs' names, in order.
    names: Vec<String>,
    /// The first input's format, as read (`auto` resolved).
    format: Format,
}

/// Reads at most `--sample` rows of the inputs as `send` would build them.
fn read_sample(a: &DcrSampleArgs, stream: &str) -> Result<Sample, CmdError> {
    let cap = DEFAULT_MAX_REQUEST_BYTES;
    let plan = super::flags::sample_input(a, stream)?;
    let rules = plan.rules;
    let shape = plan.shaping;
    let mut sampler = Sampler::new(shape.time.clone(), a.time_field.clone());
    let encoder = RowEncoder::with_shaping(&host_name(), shape);
    let deadletter = DeadLetter::open(None).map_err(|e| CmdError::usage(e.to_string()))?;
    let inputs = resolve_inputs(&a.files)?;
    let names: Vec<String> = inputs.iter().map(|(n, _)| n.clone()).collect();
    let mut read = ReadCounts {
        parser: match a.format {
            Format::Regex => Some("the pattern"),
            Format::Logfmt => Some("logfmt"),
            Format::Syslog => Some("syslog"),
            _ => None,
        },
        ..ReadCounts::default()
    };
    let mut first_format = a.format;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut rows = RowBuf::with_capacity(READ_CHUNK * 2);
    let mut sources: Vec<Source> = Vec::new();
    'inputs: for (i, (name, path)) in inputs.iter().enumerate() {
        let mut reader: Box<dyn Read> = match path {
            Some(p) => Box::new(open_file(p)?),
            None => {
                if std::io::stdin().is_terminal() {
                    console::err("dcrship: reading rows from the terminal; end with Ctrl-D");
                }
                Box::new(std::io::stdin().lock())
            }
        };
        let format = match (a.format, path) {
            (Format::Auto, Some(p)) => format::from_extension(p).unwrap_or(Format::Auto),
            (f, _) => f,
        };
        let mut decoder = match &rules {
            Some(r) => Decoder::with_rules(r.clone(), cap),
            None => Decoder::new(format, cap),
        };
        let file_path_json = path.as_deref().map(|p| json_string(&absolute(p)));
        let time_read = rfc3339_utc(jiff::Timestamp::now());
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CmdError::usage(format!("reading {name} failed: {e}"))),
            };
            let counts = {
                let mut sink = RowSink {
                    encoder: &encoder,
                    deadletter: &deadletter,
                    name,
                    source: i as u32,
                    file_path_json: file_path_json.as_deref(),
                    time_read: &time_read,
                    out: &mut rows,
                    counts: Default::default(),
                };
                let mut emit = |rec: Record<'_>| {
                    let source = match &rec {
                        Record::Line { .. } => Source::Line,
                        Record::Json { .. } => Source::Json,
                        Record::Object { .. } | Record::Bad { .. } => Source::Text,
                    };
                    let before = sink.out.len();
                    sink.record(rec, 0);
                    if sink.out.len() > before {
                        sources.push(source);
                    }
                };
                if n == 0 {
                    decoder.finish(&mut emit);
                } else {
                    decoder.feed(&buf[..n], &mut emit);
                }
                sink.counts
            };
            read.records += counts.read;
            read.refused += counts.rejected;
            read.time_unparsable += counts.notes.time_unparsable;
            read.time_out_of_range += counts.notes.time_out_of_range;
            read.mismatched += decoder.take_parse_counts().mismatched;
            if i == 0 {
                first_format = decoder.format();
            }
            if a.format == Format::Auto && decoder.format() != Format::Auto {
                read.detected_format = Some(decoder.format().name());
            }
            for ((row, origin), source) in rows.rows().zip(&sources) {
                if sampler.rows() >= a.sample_rows {
                    read.cut_at_sample = true;
                    break;
                }
                // The encoder writes the time read where a record has no time of its own.
                if row.get(TIME_AT..TIME_AT + time_read.len()) == Some(time_read.as_bytes()) {
                    read.time_from_read += 1;
                }
                let at = At {
                    input: i as u32,
                    line: origin.line,
                };
                // Rows are JSON objects the encoder wrote: neither can fail.
                if let Ok(text) = std::str::from_utf8(row) {
                    let _ = sampler.add(text, *source, at);
                }
            }
            rows.clear();
            sources.clear();
            if read.cut_at_sample {
                break 'inputs;
            }
            if n == 0 {
                break;
            }
        }
    }
    Ok(Sample {
        inference: sampler.finish(),
        read,
        names,
        format: first_format,
    })
}

/// The inputs as given (none or `-` is stdin), each checked before anything is read.
fn resolve_inputs(files: &[PathBuf]) -> Result<Vec<(String, Option<PathBuf>)>, CmdError> {
    if files.is_empty() {
        return Ok(vec![("<stdin>".into(), None)]);
    }
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if f.as_os_str() == "-" {
            if out
                .iter()
                .any(|(_, p): &(String, Option<PathBuf>)| p.is_none())
            {
                return Err(CmdError::usage("stdin (-) is named twice"));
            }
            out.push(("<stdin>".into(), None));
            continue;
        }
        open_file(f)?;
        out.push((f.display().to_string(), Some(f.clone())));
    }
    Ok(out)
}

fn open_file(p: &Path) -> Result<std::fs::File, CmdError> {
    let cannot = |e: std::io::Error| CmdError::usage(format!("cannot read {}: {e}", p.display()));
    if std::fs::metadata(p).map_err(cannot)?.is_dir() {
        return Err(CmdError::usage(format!(
            "{} is a directory: name the files",
            p.display()
        )));
    }
    std::fs::File::open(p).map_err(cannot)
}

/// A file's absolute path (the `FilePath` column, and the agent's `paths`).
fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}
