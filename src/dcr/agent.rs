//! The `agent.toml` blocks that send a stream's rows with `dcrship run`: `[outputs.NAME]` with
//! the stream and its `[outputs.NAME.columns]`, and the `[inputs.NAME]` that reads the sample's
//! files the way the sample was read (format, parser, time field, field edits).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use super::template::{Plan, Spec};
use crate::duration::format_duration;
use crate::transform::row::json_string;

/// How the agent reads the input, from the flags the sample was read with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentInput {
    /// Absolute paths of the sample files; empty: stdin.
    pub paths: Vec<String>,
    /// The agent's `format`; `None` when the agent cannot read the sample's format (CSV, a
    /// JSON array), which `dcrship send` reads.
    pub format: Option<&'static str>,
    /// What the sample's format is called, for the note when the agent cannot read it.
    pub sample_format: &'static str,
    pub pattern: Option<String>,
    pub on_mismatch: Option<String>,
    pub multiline_start: Option<String>,
    pub multiline_preset: Option<String>,
    pub time_field: Option<String>,
    pub time_format: Option<String>,
    pub timezone: Option<String>,
    pub fields: Vec<(String, String)>,
    pub rename: Vec<(String, String)>,
    pub drop: Vec<String>,
}

/// A TOML basic string: JSON's escapes are a subset of TOML's.
fn q(s: &str) -> String {
    json_string(s)
}

/// The blocks, as text for `agent.toml`. `name` names the output and the input;
/// `max_time_span` is `--max-time-span` (Auxiliary tables need one of at most 30 minutes);
/// `target` is the ingestion endpoint and the DCR's immutable id once they exist (else
/// placeholders to fill in).
pub fn blocks(
    spec: &Spec,
    name: &str,
    input: &AgentInput,
    max_time_span: Option<Duration>,
    target: Option<(&str, &str)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# For agent.toml (dcrship run), made by `dcrship dcr` for table {}.",
        spec.table
    );
    match target {
        Some((endpoint, dcr)) => {
            let _ = writeln!(s, "[outputs.{name}]");
            let _ = writeln!(s, "endpoint = {}", q(endpoint));
            let _ = writeln!(s, "dcr = {}", q(dcr));
        }
        None => {
            let _ = writeln!(
                s,
                "# endpoint and dcr: the deployment's outputs logsIngestionEndpoint and \
                 immutableId, or\n\
                 #   az monitor data-collection rule show --resource-group RG --name {} \\\n\
                 #     --query \"{{dcr: immutableId, endpoint: endpoints.logsIngestion}}\"",
                spec.dcr_name
            );
            let _ = writeln!(s, "[outputs.{name}]");
            let _ = writeln!(
                s,
                "endpoint = \"https://REPLACE-WITH-LOGS-INGESTION-ENDPOINT.ingest.monitor.azure.com\""
            );
            let _ = writeln!(
                s,
                "dcr = \"dcr-00000000000000000000000000000000\"   # the immutableId"
            );
        }
    }
    let _ = writeln!(s, "stream = {}", q(&spec.stream));
    let auxiliary = Duration::from_secs(30 * 60);
    match max_time_span {
        Some(d) if spec.plan != Plan::Auxiliary || d <= auxiliary => {
            let _ = writeln!(s, "max_time_span = {}", q(&format_duration(d)));
        }
        _ if spec.plan == Plan::Auxiliary => {
            let _ = writeln!(
                s,
                "max_time_span = \"30m\"   # Auxiliary tables refuse requests spanning more"
            );
        }
        _ => {}
    }
    let _ = writeln!(s, "\n[outputs.{name}.columns]");
    for (col, ty) in &spec.columns {
        let _ = writeln!(s, "{col} = {}", q(ty.name()));
    }

    let _ = writeln!(s);
    let Some(format) = input.format else {
        let _ = writeln!(
            s,
            "# The agent tails line formats; {} files are sent with `dcrship send --config \
             agent.toml\n# --output {name} FILE` (it reads the output above).",
            input.sample_format
        );
        return s;
    };
    let _ = writeln!(s, "[inputs.{name}]");
    if input.paths.is_empty() {
        let _ = writeln!(s, "type = \"stdin\"");
    } else {
        let _ = writeln!(s, "type = \"file\"");
        let paths: Vec<String> = input.paths.iter().map(|p| q(p)).collect();
        let _ = writeln!(s, "paths = [{}]", paths.join(", "));
        let _ = writeln!(
            s,
            "# start_at = \"beginning\"   # also send what the files hold now (default: new lines)"
        );
    }
    let _ = writeln!(s, "format = {}", q(format));
    let opt = [
        ("pattern", input.pattern.as_deref()),
        ("on_mismatch", input.on_mismatch.as_deref()),
        ("time_field", input.time_field.as_deref()),
        ("time_format", input.time_format.as_deref()),
        ("timezone", input.timezone.as_deref()),
    ];
    for (key, value) in opt {
        if let Some(v) = value {
            let _ = writeln!(s, "{key} = {}", q(v));
        }
    }
    if !input.drop.is_empty() {
        let drop: Vec<String> = input.drop.iter().map(|d| q(d)).collect();
        let _ = writeln!(s, "drop = [{}]", drop.join(", "));
    }
    let _ = writeln!(s, "output = {}", q(name));
    if input.multiline_start.is_some() || input.multiline_preset.is_some() {
        let _ = writeln!(s, "\n[inputs.{name}.multiline]");
        if let Some(start) = &input.multiline_start {
            let _ = writeln!(s, "start = {}", q(start));
        }
        if let Some(preset) = &input.multiline_preset {
            let _ = writeln!(s, "preset = {}", q(preset));
        }
    }
    for (table, pairs) in [("rename", &input.rename), ("fields", &input.fields)] {
        if pairs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n[inputs.{name}.{table}]");
        // One value per key, the last given winning, as the flags do.
        let map: BTreeMap<&str, &str> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for (k, v) in map {
            let _ = writeln!(s, "{} = {}", q(k), q(v));
        }
    }
    s
}

/// The output's name from the table's: `MyApp_CL` → `myapp`.
pub fn default_name(table: &str) -> String {
    table
        .strip_suffix(super::names::TABLE_SUFFIX)
        .unwrap_or(table)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::dcr::template::tests::spec;
    use crate::transform::columns::ColumnType;

    /// What the file says, once it has loaded (compiled) cleanly.
    fn load(text: &str) -> crate::config::FileConfig {
        parse_str(text, "agent.toml", &|_| None)
            .unwrap_or_else(|e| panic!("the blocks do not load: {e}\n{text}"))
            .settings
    }

    #[test]
    fn the_blocks_are_a_configuration_the_agent_loads() {
        let mut sp = spec();
        sp.plan = Plan::Auxiliary;
        let input = AgentInput {
            paths: vec![
                "/var/log/app/a \"1\".log".into(),
                "/var/log/app/b.log".into(),
            ],
            format: Some("regex"),
            sample_format: "regex",
            pattern: Some(r#"^(?P<Level>\w+) "(?P<Msg>.*)"$"#.into()),
            on_mismatch: Some("dead-letter".into()),
            multiline_start: Some(r"^\d{4}-".into()),
            time_field: Some("ts".into()),
            time_format: Some("%d/%b/%Y:%H:%M:%S %z".into()),
            timezone: Some("Europe/Berlin".into()),
            fields: vec![("Env".into(), "prod".into())],
            rename: vec![("Msg".into(), "Message".into())],
            drop: vec!["secret".into()],
            ..AgentInput::default()
        };
        let text = blocks(&sp, "myapp", &input, Some(Duration::from_secs(3600)), None);
        let cfg = load(&text);
        let (_, out) = cfg.output(Some("myapp")).expect("output");
        assert_eq!(out.stream, "Custom-MyApp_CL");
        assert_eq!(
            out.max_time_span,
            Some(std::time::Duration::from_secs(1800))
        );
        let declared: Vec<(String, ColumnType)> = out.declared_columns().into_iter().collect();
        let mut want = sp.columns.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(declared, want);
        let i = &cfg.inputs["myapp"];
        assert_eq!(i.paths, input.paths);
        assert_eq!(i.pattern, input.pattern);
        assert_eq!(i.time_format, input.time_format);
        assert_eq!(i.rename.get("Msg").map(String::as_str), Some("Message"));
        assert_eq!(i.drop, vec!["secret".to_string()]);
        assert_eq!(i.output, "myapp");
        assert_eq!(
            i.multiline.as_ref().and_then(|m| m.start.clone()),
            input.multiline_start
        );
    }

    #[test]
    fn stdin_and_formats_the_agent_cannot_tail() {
        let sp = spec();
        let stdin = AgentInput {
            format: Some("json"),
            sample_format: "ndjson",
            ..AgentInput::default()
        };
        let cfg = load(&blocks(
            &sp,
            "myapp",
            &stdin,
            None,
            Some((
                "https://x.ingest.monitor.azure.com",
                "dcr-0123456789abcdef0123456789abcdef",
            )),
        ));
        assert!(cfg.inputs.contains_key("myapp"));
        assert_eq!(
            cfg.outputs["myapp"].dcr,
            "dcr-0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            cfg.outputs["myapp"].endpoint,
            "https://x.ingest.monitor.azure.com"
        );
        assert!(cfg.outputs["myapp"].max_time_span.is_none());
        let csv = AgentInput {
            paths: vec!["/data/a.csv".into()],
            format: None,
            sample_format: "csv",
            ..AgentInput::default()
        };
        let text = blocks(&sp, "myapp", &csv, None, None);
        let spanned = load(&blocks(
            &sp,
            "myapp",
            &csv,
            Some(Duration::from_secs(300)),
            None,
        ));
        assert_eq!(
            spanned.outputs["myapp"].max_time_span,
            Some(Duration::from_secs(300))
        );
        assert!(text.contains("csv files are sent with `dcrship send --config"));
        let cfg = load(&text);
        assert!(cfg.inputs.is_empty());
        assert_eq!(default_name("MyApp_CL"), "myapp");
    }
}
