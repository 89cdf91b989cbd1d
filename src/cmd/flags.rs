//! Command-line flags as an [`Overlay`] on the configuration: one route for `send` and `run`
//! (file and/or flags → overlay → checked, compiled [`Config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cli::{DcrSampleArgs, OutputArgs, ParseArgs, RunArgs, SendArgs, ShapeArgs};
use crate::config::{
    self, Config, ConfigErrors, FlagInput, InputConfig, InputKind, OutputFlags, Overlay,
};
use crate::input::file::StartAt;
use crate::input::Format;
use crate::pipeline::plan::InputPlan;

use super::CmdError;

/// The output made from flags alone, in `run` (its spool is `state_dir/spool/default`).
pub const RUN_OUTPUT: &str = "default";
/// The output made from flags alone, in `send`.
pub const SEND_OUTPUT: &str = "send";
/// The input of `send`'s files.
pub const SEND_INPUT: &str = "send";

/// `send`'s configuration: the output of `-c FILE` (the only one, or `--output NAME`) with the
/// flags over it, and one input reading the files (or stdin) once.
pub fn send_config(args: &SendArgs) -> Result<Config, CmdError> {
    let mut overlay = output_overlay(&args.out, SEND_OUTPUT);
    overlay.out.schema = args.shape.schema.clone();
    overlay.out.max_time_span = args.shape.max_time_span;
    overlay.flag_inputs_only = true;
    overlay.target_optional = args.dry_run;
    overlay.missing_target_hint = " (or use --dry-run to try without Azure)";
    let paths: Vec<String> = if args.files.is_empty() {
        vec!["-".to_string()]
    } else {
        args.files.iter().map(|p| p.display().to_string()).collect()
    };
    overlay.inputs.push(flag_input(
        SEND_INPUT,
        InputKind::Once,
        paths,
        Vec::new(),
        args.format,
        StartAt::Beginning,
        args.time_field.clone(),
        &args.parse,
        &args.shape,
    ));
    load(args.out.config.as_ref(), &overlay)
}

/// `run`'s configuration: the file (`--config`, else the default path) with the flags over it;
/// `--path` / `--stdin` add inputs. With `--path` / `--stdin` and no `--config`, flags alone.
pub fn run_config(args: &RunArgs) -> Result<Config, CmdError> {
    let mut overlay = output_overlay(&args.out, RUN_OUTPUT);
    overlay.out.schema = args.shape.schema.clone();
    overlay.out.max_time_span = args.shape.max_time_span;
    overlay.out.probe_interval = args.probe_interval;
    overlay.out.heartbeat_interval = args.heartbeat_interval;
    overlay.state_dir = args.state_dir.clone();
    overlay.http_listen = args.http_listen.clone();
    overlay.shutdown_timeout = args.shutdown_timeout;
    overlay.missing_target_hint = "";
    if args.container.is_some() && args.paths.is_empty() {
        return Err(CmdError::usage(
            "--container reads a runtime's log files: give them with --path",
        ));
    }
    if !args.paths.is_empty() {
        let mut files = flag_input(
            "files",
            InputKind::File,
            args.paths.clone(),
            args.exclude.clone(),
            args.format,
            args.start_at,
            args.time_field.clone(),
            &args.parse,
            &args.shape,
        );
        files.input.container = args.container.map(|runtime| config::ContainerConfig {
            runtime,
            ..config::ContainerConfig::default()
        });
        files.flags.push(("container", "--container"));
        overlay.inputs.push(files);
    }
    if args.stdin {
        overlay.inputs.push(flag_input(
            "stdin",
            InputKind::Stdin,
            Vec::new(),
            Vec::new(),
            args.format,
            args.start_at,
            args.time_field.clone(),
            &args.parse,
            &args.shape,
        ));
    }
    if args.journald.enabled {
        overlay.inputs.push(journald_input(args));
    }
    let flags_only = args.out.config.is_none()
        && (!args.paths.is_empty() || args.stdin || args.journald.enabled);
    if flags_only {
        return config::from_flags(&overlay).map_err(usage);
    }
    let path = args
        .out
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONFIG_PATH));
    if args.out.config.is_none() && !path.exists() {
        return Err(CmdError::usage(format!(
            "nothing to read: give --path GLOB, --stdin or --journald to run from flags, or --config FILE \
             (there is no {})",
            path.display()
        )));
    }
    let cfg = config::load(&path, &overlay).map_err(|e| {
        let hint = match e.first() {
            Some(config::ConfigError::Read { .. }) => {
                "\n(give --config FILE, or run from flags: --endpoint URL --dcr ID --stream NAME \
                 --path GLOB or --stdin)"
            }
            _ => "",
        };
        CmdError::usage(format!("{e}{hint}"))
    })?;
    if cfg.plan.inputs.is_empty() {
        return Err(CmdError::usage(format!(
            "{} has no [inputs.NAME]: nothing to read (add one, or give --path GLOB or --stdin)",
            path.display()
        )));
    }
    Ok(cfg)
}

/// The input `dcr infer|template` samples, built as `send` builds its own (format, parser,
/// multiline, time, field edits, and the columns of `--schema` for `stream`), so a sample is
/// read exactly as it will be sent.
pub fn sample_input(a: &DcrSampleArgs, stream: &str) -> Result<InputPlan, CmdError> {
    let mut overlay = output_overlay(&OutputArgs::default(), SEND_OUTPUT);
    overlay.out.stream = Some(stream.to_string()).filter(|s| !s.is_empty());
    overlay.out.schema = a.shape.schema.clone();
    overlay.flag_inputs_only = true;
    overlay.target_optional = true;
    let paths: Vec<String> = if a.files.is_empty() {
        vec!["-".to_string()]
    } else {
        a.files.iter().map(|p| p.display().to_string()).collect()
    };
    overlay.inputs.push(flag_input(
        SEND_INPUT,
        InputKind::Once,
        paths,
        Vec::new(),
        a.format,
        StartAt::Beginning,
        a.time_field.clone(),
        &a.parse,
        &a.shape,
    ));
    let mut cfg = config::from_flags(&overlay).map_err(usage)?;
    cfg.plan
        .inputs
        .remove(SEND_INPUT)
        .ok_or_else(|| CmdError::new(crate::exit::ExitCode::Internal, "no sample input"))
}

/// The identity the auth flags (and the standard environment) describe, with no output.
pub fn auth_only(
    auth: Option<crate::auth::AuthMethod>,
    client_id: Option<String>,
    tenant_id: Option<String>,
    cloud: Option<crate::auth::Cloud>,
) -> Result<crate::auth::AuthConfig, CmdError> {
    let overlay = Overlay {
        auth,
        client_id,
        tenant_id,
        cloud,
        ..Overlay::default()
    };
    Ok(config::from_flags(&overlay).map_err(usage)?.auth)
}

fn load(file: Option<&PathBuf>, overlay: &Overlay) -> Result<Config, CmdError> {
    match file {
        Some(path) => config::load(path, overlay),
        None => config::from_flags(overlay),
    }
    .map_err(usage)
}

fn usage(e: ConfigErrors) -> CmdError {
    CmdError::usage(e.to_string())
}

/// The output and auth flags shared by `send` and `run`.
fn output_overlay(o: &OutputArgs, new_output: &'static str) -> Overlay {
    Overlay {
        auth: o.auth,
        client_id: o.client_id.clone(),
        tenant_id: o.tenant_id.clone(),
        cloud: o.cloud,
        output: o.output.clone(),
        new_output,
        out: OutputFlags {
            endpoint: o.endpoint.clone(),
            dcr: o.dcr.clone(),
            stream: o.stream.clone(),
            concurrency: o.concurrency.map(|n| n as usize),
            max_request_bytes: o.max_request_bytes.map(|n| n as usize),
            batch_timeout: o.batch_timeout,
            permission_grace: o.permission_grace,
            retry_timeout: o.retry_timeout,
            request_timeout: o.request_timeout,
            compression_level: o.compression_level,
            max_requests_per_minute: o.max_requests_per_minute,
            max_bytes_per_minute: o.max_bytes_per_minute,
            schema: None,
            max_time_span: None,
            probe_interval: None,
            heartbeat_interval: None,
        },
        ..Overlay::default()
    }
}

/// `--journald` and its flags: the journal from a saved cursor, as the Syslog table's columns
/// (`--format raw`: every field); `--start-at beginning` reads the whole journal at first.
fn journald_input(args: &RunArgs) -> FlagInput {
    let j = &args.journald;
    let mut matches: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (field, value) in &j.matches {
        matches
            .entry(field.clone())
            .or_default()
            .push(value.clone());
    }
    let format = match args.format {
        Format::Raw => Format::Raw,
        _ => Format::Syslog,
    };
    let mut f = flag_input(
        "journald",
        InputKind::Journald,
        Vec::new(),
        Vec::new(),
        format,
        StartAt::End,
        args.time_field.clone(),
        &ParseArgs::default(),
        &args.shape,
    );
    f.input.units = j.units.clone();
    f.input.exclude_units = j.exclude_units.clone();
    f.input.priority = j.priority;
    f.input.matches = matches;
    f.input.since_now = Some(args.start_at == StartAt::End);
    f.input.journal_directory = j.directory.clone();
    f.flags.extend([
        ("units", "--journald-unit"),
        ("exclude_units", "--journald-exclude-unit"),
        ("priority", "--journald-priority"),
        ("match", "--journald-match"),
        ("since_now", "--start-at"),
        ("journal_directory", "--journald-directory"),
    ]);
    f.flags[0] = ("type", "--journald");
    f
}

/// An input from the parse and shaping flags, with the flag behind each key.
#[allow(clippy::too_many_arguments)]
fn flag_input(
    name: &str,
    kind: InputKind,
    paths: Vec<String>,
    exclude: Vec<String>,
    format: Format,
    start_at: StartAt,
    time_field: Option<String>,
    parse: &ParseArgs,
    shape: &ShapeArgs,
) -> FlagInput {
    let input = InputConfig {
        kind,
        paths,
        exclude,
        format,
        pattern: parse.pattern.clone(),
        on_mismatch: parse.on_mismatch.unwrap_or_default(),
        multiline: parse.multiline(),
        container: None,
        start_at,
        output: String::new(),
        time_field,
        time_format: shape.time_format.clone(),
        timezone: shape.timezone.clone(),
        fields: shape
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect::<BTreeMap<_, _>>(),
        rename: shape.rename.iter().cloned().collect(),
        drop: shape.drop.clone(),
        units: Vec::new(),
        exclude_units: Vec::new(),
        priority: None,
        matches: BTreeMap::new(),
        since_now: None,
        journal_directory: None,
    };
    let multiline_flag = if parse.multiline_start.is_some() {
        "--multiline-start"
    } else {
        "--multiline-preset"
    };
    FlagInput {
        name: name.to_string(),
        input,
        flags: vec![
            (
                "type",
                match kind {
                    InputKind::Stdin => "--stdin",
                    InputKind::File => "--path",
                    InputKind::Journald => "--journald",
                    InputKind::Once => "FILE",
                },
            ),
            ("paths", "--path"),
            ("exclude", "--exclude"),
            ("format", "--format"),
            ("pattern", "--pattern"),
            ("on_mismatch", "--on-mismatch"),
            ("multiline", multiline_flag),
            ("multiline.start", "--multiline-start"),
            ("multiline.timeout", "--multiline-timeout"),
            ("multiline.max_lines", "--multiline-max-lines"),
            ("multiline.max_bytes", "--multiline-max-bytes"),
            ("time_field", "--time-field"),
            ("time_format", "--time-format"),
            ("timezone", "--timezone"),
            ("fields", "--field"),
            ("rename", "--rename"),
            ("drop", "--drop"),
        ],
    }
}
