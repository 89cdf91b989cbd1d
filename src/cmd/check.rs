//! `dcrship check`: validate a configuration file (every error with its line and key); with
//! `--live`, prove each output usable: a token from the configured identity, then a POST of `[]`
//! to the stream, with the answer turned into what to fix.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::check_token_audience;
use super::CmdError;
use crate::auth::{self, TokenCache};
use crate::batch::Gzip;
use crate::cli::CheckArgs;
use std::collections::BTreeMap;

use crate::config::{self, Config, FileConfig, InputConfig, InputKind, OutputConfig, Overlay};
use crate::exit::ExitCode;
use crate::http::{parse_secure_url, HttpClients};
use crate::ingest::classify::{classify, error_code, service_reason, Action, Answer};
use crate::ingest::diagnosis;
use crate::ingest::{HttpTransport, Transport};
use crate::input::Format;
use crate::stats::counted;
use crate::transform::fields::FieldOps;

/// Validates the file and returns a description of what it configures.
pub fn validate(args: &CheckArgs) -> Result<(Config, String), CmdError> {
    let cfg = config::load(&args.config, &Overlay::default())
        .map_err(|e| CmdError::usage(e.to_string()))?;
    let set = &cfg.settings;
    let line = format!(
        "{}: configuration is valid ({}: {}; {}: {})",
        args.config.display(),
        counted(set.outputs.len() as u64, "output", "outputs"),
        set.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
        counted(set.inputs.len() as u64, "input", "inputs"),
        set.inputs.keys().cloned().collect::<Vec<_>>().join(", "),
    );
    Ok((cfg, line))
}

/// What feeds one column from one input.
struct Feed {
    input: String,
    what: String,
}

/// The columns an input's records are known to carry, with what fills each (before `drop`,
/// `rename` and `fields`). `None`: the fields depend on the data (json, logfmt, syslog).
fn known_sources(input: &InputConfig) -> Option<Vec<(String, String)>> {
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    if input.kind == InputKind::Journald {
        return (input.format != Format::Raw)
            .then(|| pairs(&crate::input::journald::rows::SYSLOG_SOURCES));
    }
    match input.format {
        Format::Text => {
            let mut v = pairs(&[("RawData", "the line"), ("Computer", "the host name")]);
            if input.kind == InputKind::File {
                v.push(("FilePath".into(), "the file's path".into()));
            }
            Some(v)
        }
        Format::Regex => {
            let pattern = input.pattern.as_deref()?;
            let re = regex::Regex::new(pattern).ok()?;
            Some(
                re.capture_names()
                    .flatten()
                    .map(|n| (n.to_string(), format!("regex group {n}")))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// `check`'s report of one output's columns: the declared type of each, which input fields
/// feed it (as far as the configuration tells), which declared columns nothing feeds, and
/// which known fields the stream does not declare (they are removed from rows). Pure.
pub fn mapping(cfg: &FileConfig, output: &str) -> Vec<String> {
    let Some(out) = cfg.outputs.get(output) else {
        return Vec::new();
    };
    let declared = out.declared_columns();
    let inputs: Vec<(&String, &InputConfig)> = cfg
        .inputs
        .iter()
        .filter(|(_, i)| i.output == output)
        .collect();
    let mut lines = Vec::new();
    if declared.is_empty() {
        lines.push(format!(
            "output {output}: no columns declared ([outputs.{output}.columns] or schema_file): \
             rows are sent as read, and Azure drops fields the stream does not declare"
        ));
        return lines;
    }
    let from = match (&out.schema_file, out.columns.is_empty()) {
        (Some(f), true) => format!("schema_file {}", f.display()),
        (Some(f), false) => format!("schema_file {} and [outputs.{output}.columns]", f.display()),
        (None, _) => format!("[outputs.{output}.columns]"),
    };
    lines.push(format!(
        "output {output} (stream {}): {} columns from {from}",
        out.stream,
        declared.len()
    ));
    let mut feeds: BTreeMap<String, Vec<Feed>> = BTreeMap::new();
    let mut removed: Vec<String> = Vec::new();
    for (name, input) in &inputs {
        let ops = FieldOps::new(&input.fields, &input.rename, &input.drop);
        let mut feed = |column: &str, what: String| {
            feeds.entry(column.to_string()).or_default().push(Feed {
                input: name.to_string(),
                what,
            })
        };
        let structured = input.format != Format::Text || input.kind == InputKind::Journald;
        let time_field = input.time_field.as_deref().unwrap_or("TimeGenerated");
        let known = known_sources(input);
        let has_time = match &known {
            Some(sources) => structured && sources.iter().any(|(s, _)| s == time_field),
            None => structured,
        };
        let time = if has_time {
            format!(
                "field {time_field} ({}), else the time read",
                input.time_format.as_deref().unwrap_or("RFC 3339 or epoch")
            )
        } else {
            "the time read".to_string()
        };
        feed("TimeGenerated", time);
        match known {
            Some(sources) => {
                for (source, what) in sources {
                    if structured && source == time_field {
                        continue;
                    }
                    match ops.target(&source) {
                        None => {}
                        Some(col) if declared.contains_key(col) => feed(col, what),
                        Some(col) => removed.push(format!("inputs.{name}: {col} ({what})")),
                    }
                }
            }
            None => {
                let kind = format!("{:?}", input.format).to_lowercase();
                for col in declared.keys() {
                    if col == "TimeGenerated" {
                        continue;
                    }
                    let source = ops.rename_source(col).unwrap_or(col.as_str()).to_string();
                    let fixed = ops.set_names().any(|n| n == col);
                    if !fixed && ops.target(&source) == Some(col.as_str()) {
                        feed(
                            col,
                            format!("{kind} field {source}, if the records have it"),
                        );
                    }
                }
            }
        }
        for set in ops.set_names() {
            if declared.contains_key(set) {
                feed(set, format!("fixed value {}", input.fields[set]));
            } else {
                removed.push(format!("inputs.{name}: {set} (fixed value)"));
            }
        }
        if structured {
            for (col, what) in [
                ("Computer", "the host name"),
                ("FilePath", "the file's path"),
            ] {
                let file = input.kind == InputKind::File || col == "Computer";
                if declared.contains_key(col) && file {
                    feed(col, format!("{what}, when the record has no {col}"));
                }
            }
        }
    }
    let width = declared.keys().map(String::len).max().unwrap_or(0);
    // TimeGenerated first, as in every row.
    let order = declared
        .iter()
        .filter(|(c, _)| *c == "TimeGenerated")
        .chain(declared.iter().filter(|(c, _)| *c != "TimeGenerated"));
    for (col, ty) in order {
        let what = match feeds.get(col) {
            Some(f) => f
                .iter()
                .map(|f| format!("inputs.{}: {}", f.input, f.what))
                .collect::<Vec<_>>()
                .join("; "),
            None if inputs.is_empty() => "no input feeds this output".to_string(),
            None => "NOTHING feeds it: rows leave it empty".to_string(),
        };
        lines.push(format!("  {col:<width$}  {:<8}  <- {what}", ty.name()));
    }
    for r in removed {
        lines.push(format!("  not a column, removed from rows: {r}"));
    }
    lines
}

/// What `check --live` found for one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: ExitCode,
    pub message: String,
}

/// Runs `check`: prints as it goes, returns the exit code.
pub async fn run(args: &CheckArgs) -> ExitCode {
    let (cfg, line) = match validate(args) {
        Ok(v) => v,
        Err(e) => {
            crate::console::err(&format!("dcrship: error: {e}"));
            return e.code;
        }
    };
    crate::console::out(&line);
    for name in cfg.settings.outputs.keys() {
        for l in mapping(&cfg.settings, name) {
            crate::console::out(&l);
        }
    }
    // What would stop `run` here, as this user.
    let mut host_ok = true;
    for f in super::preflight::preflight(&cfg) {
        match f {
            super::preflight::Finding::Warning(m) => crate::console::out(&format!("warning: {m}")),
            super::preflight::Finding::Error(m) => {
                host_ok = false;
                crate::console::err(&format!("dcrship: error: {m}"));
            }
        }
    }
    if !host_ok {
        return ExitCode::Usage;
    }
    if !args.live {
        return ExitCode::Ok;
    }
    if cfg.settings.outputs.is_empty() {
        crate::console::out("no outputs to check");
        return ExitCode::Ok;
    }
    let http = match HttpClients::new(Duration::from_secs(30)) {
        Ok(h) => h,
        Err(e) => {
            crate::console::err(&format!("dcrship: error: {e}"));
            return ExitCode::Internal;
        }
    };
    let tokens = match auth::build(&cfg.auth, &http).await {
        Ok(t) => t,
        Err(e) => return no_token(&e),
    };
    if let Err(e) = tokens.token().await {
        return no_token(&e);
    }
    crate::console::out(&format!(
        "identity: {} (principal object id {})",
        tokens.source_name(),
        tokens
            .principal_id()
            .as_deref()
            .unwrap_or("unknown: the token has no oid claim")
    ));
    let mut worst = ExitCode::Ok;
    for (name, out) in &cfg.settings.outputs {
        let v = probe(&http, &tokens, out).await;
        let mark = if v.code == ExitCode::Ok {
            "ok"
        } else {
            "FAILED"
        };
        crate::console::out(&format!("output {name}: {mark}: {}", v.message));
        worst = worst.max(v.code);
    }
    worst
}

fn no_token(e: &auth::AuthError) -> ExitCode {
    crate::console::err(&format!("dcrship: error: no access token: {e}"));
    match e {
        auth::AuthError::Config(_) => ExitCode::Usage,
        _ => ExitCode::NoToken,
    }
}

/// How long the `POST []` of `check --live` may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// POSTs `[]` to one output's stream and explains the answer.
async fn probe(http: &HttpClients, tokens: &Arc<TokenCache>, out: &OutputConfig) -> Verdict {
    let endpoint = match parse_secure_url("endpoint", &out.endpoint) {
        Ok(u) => u,
        Err(e) => return verdict(ExitCode::Usage, e.to_string()),
    };
    let transport = HttpTransport::new(http.remote.clone(), &endpoint, &out.dcr, &out.stream);
    let token = match tokens.token().await {
        Ok(t) => t,
        Err(e) => return verdict(ExitCode::NoToken, format!("no access token: {e}")),
    };
    if let Err(m) = check_token_audience(&token, &endpoint) {
        return verdict(ExitCode::NoToken, m);
    }
    let body = Bytes::from(Gzip::new(3).compress(b"[]"));
    let id = uuid::Uuid::new_v4().to_string();
    match transport.post(token.expose(), body, &id, PROBE_TIMEOUT).await {
        Ok(answer) => diagnose(&answer, out, tokens.principal_id().as_deref()),
        Err(e) => verdict(
            ExitCode::Transient,
            format!("{} did not answer: {e}; check the URL, DNS, the firewall and any proxy (HTTPS_PROXY)", transport.url()),
        ),
    }
}

fn verdict(code: ExitCode, message: impl Into<String>) -> Verdict {
    Verdict {
        code,
        message: message.into(),
    }
}

/// Turns the answer to `POST []` into a verdict a person can act on. Pure.
pub fn diagnose(a: &Answer, out: &OutputConfig, principal: Option<&str>) -> Verdict {
    let principal = principal.unwrap_or("<unknown>");
    let reason = service_reason(a);
    let host = reqwest::Url::parse(&out.endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| out.endpoint.clone());
    let ids = a
        .request_id
        .as_deref()
        .map(|id| format!(" (x-ms-request-id: {id})"))
        .unwrap_or_default();
    match (a.status, classify(a, jiff::Timestamp::now())) {
        (_, Action::Accepted) => verdict(
            ExitCode::Ok,
            format!("stream {} of DCR {} accepts data (HTTP {})", out.stream, out.dcr, a.status),
        ),
        (401, _) => verdict(
            ExitCode::NoToken,
            format!("{reason}{ids}: the service refused the token; the audience must match the endpoint's cloud (set [auth] cloud = \"usgov\" or \"china\" for sovereign clouds, or fix [auth] audience)"),
        ),
        (403, _) => verdict(
            ExitCode::Permission,
            format!(
                "{reason}{ids}: {}",
                diagnosis::forbidden_fix(&diagnosis::forbidden(&reason), &out.dcr, &host, principal)
            ),
        ),
        (404, _) => verdict(
            ExitCode::Permission,
            format!("{reason}{ids}: {}", diagnosis::not_found_fix(&out.dcr, &host)),
        ),
        // An empty array has no rows to blame: any 400 is about the request.
        (400, _) => verdict(
            ExitCode::Permission,
            format!(
                "{reason}{ids}: {}",
                diagnosis::request_fix(
                    &error_code(a).unwrap_or_default(),
                    &out.dcr,
                    &out.stream,
                    &host
                )
            ),
        ),
        (_, Action::Throttled { .. }) | (_, Action::Transient { .. }) => verdict(
            ExitCode::Transient,
            format!("{reason}{ids}: the service is throttling or failing right now; try again later"),
        ),
        _ => verdict(ExitCode::Usage, format!("{reason}{ids}: unexpected answer; check the endpoint URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out() -> OutputConfig {
        OutputConfig::new(
            "https://dce.example",
            "dcr-0123456789abcdef0123456789abcdef",
            "Custom-A_CL",
        )
    }

    #[test]
    fn the_mapping_says_what_feeds_each_column_and_what_is_removed() {
        let text = String::from(
            "[outputs.app]\nendpoint = \"https://dce.example\"\n\
             dcr = \"dcr-0123456789abcdef0123456789abcdef\"\nstream = \"Custom-A_CL\"\n\
             [outputs.app.columns]\nTimeGenerated = \"datetime\"\nRawData = \"string\"\n\
             Status = \"int\"\nMessage = \"string\"\nNever = \"long\"\n\
             [inputs.lines]\ntype = \"file\"\npaths = [\"/var/log/a.log\"]\n\
             [inputs.web]\ntype = \"stdin\"\nformat = \"regex\"\n\
             pattern = '^(?P<Code>\\d+) (?P<msg>.*) (?P<Skip>\\S+)$'\ndrop = [\"Skip\"]\n\
             [inputs.web.rename]\nCode = \"Status\"\nmsg = \"Message\"\n",
        );
        let cfg = config::parse_str(&text, "t.toml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
            .settings;
        let lines = mapping(&cfg, "app");
        let want = [
            "output app (stream Custom-A_CL): 5 columns from [outputs.app.columns]",
            "  TimeGenerated  datetime  <- inputs.lines: the time read; inputs.web: the time read",
            "  Message        string    <- inputs.web: regex group msg",
            "  Never          long      <- NOTHING feeds it: rows leave it empty",
            "  RawData        string    <- inputs.lines: the line",
            "  Status         int       <- inputs.web: regex group Code",
            "  not a column, removed from rows: inputs.lines: Computer (the host name)",
            "  not a column, removed from rows: inputs.lines: FilePath (the file's path)",
        ];
        assert_eq!(lines, want);
        let mut cfg = cfg;
        cfg.outputs.get_mut("app").expect("app").columns.clear();
        assert!(mapping(&cfg, "app")[0].contains("no columns declared"));
    }

    #[test]
    fn each_answer_gets_its_diagnosis() {
        let cases = [
            (204, ExitCode::Ok, "accepts data"),
            (401, ExitCode::NoToken, "cloud"),
            (403, ExitCode::Permission, "Monitoring Metrics Publisher"),
            (404, ExitCode::Permission, "DCR immutable id"),
            (400, ExitCode::Permission, "the stream name (Custom-A_CL)"),
            (429, ExitCode::Transient, "throttling"),
            (500, ExitCode::Transient, "failing"),
            (302, ExitCode::Usage, "unexpected"),
        ];
        for (status, code, words) in cases {
            let a = Answer {
                status,
                ..Answer::default()
            };
            let v = diagnose(&a, &out(), Some("oid-1"));
            assert_eq!(v.code, code, "{status}");
            assert!(v.message.contains(words), "{status}: {}", v.message);
        }
        let v = diagnose(
            &Answer {
                status: 403,
                ..Answer::default()
            },
            &out(),
            Some("oid-1"),
        );
        assert!(v.message.contains("oid-1") && v.message.contains("up to an hour"));
    }

    #[test]
    fn a_stream_the_dcr_does_not_declare_is_named_with_what_to_check() {
        let a = Answer {
            status: 400,
            error_code: Some("InvalidStream".into()),
            request_id: Some("req-9".into()),
            body: r#"{"error":{"code":"InvalidStream","message":"The stream Custom-A_CL was not configured in the data collection rule with immutable Id dcr-0123456789abcdef0123456789abcdef."}}"#.into(),
            ..Answer::default()
        };
        let v = diagnose(&a, &out(), Some("oid-1"));
        assert_eq!(v.code, ExitCode::Permission);
        for words in [
            "stream Custom-A_CL is not declared in DCR dcr-0123456789abcdef0123456789abcdef",
            "streamDeclarations",
            "dataFlows",
            "x-ms-request-id: req-9",
        ] {
            assert!(v.message.contains(words), "{words}: {}", v.message);
        }
    }

    #[test]
    fn a_403_says_whether_the_role_is_missing_or_the_dcr_is_not_bound() {
        let body = |rbac: &str, binding: &str| {
            format!(
                r#"{{"error":{{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data for the data collection rule with immutable Id 'dcr-0123456789abcdef0123456789abcdef' PipelineAccessResult: AccessGranted: False, IsRbacPresent: {rbac}, IsDcrDceBindingValid: {binding}, DcrArmId: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app, Message: x"}}}}"#
            )
        };
        let role = Answer {
            status: 403,
            body: body("False", ""),
            ..Answer::default()
        };
        let v = diagnose(&role, &out(), Some("oid-1"));
        assert!(
            v.message.contains("--assignee-object-id oid-1")
                && v.message
                    .contains("--scope /subscriptions/s/resourceGroups/rg"),
            "{}",
            v.message
        );
        let unbound = Answer {
            status: 403,
            body: body("True", "False"),
            ..Answer::default()
        };
        let v = diagnose(&unbound, &out(), Some("oid-1"));
        assert!(
            v.message
                .contains("not associated with the endpoint dce.example"),
            "{}",
            v.message
        );
        assert_eq!(v.code, ExitCode::Permission);
    }
}
