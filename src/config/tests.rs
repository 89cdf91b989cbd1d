use super::*;
use crate::auth::{AuthMethod, Cloud};
use crate::azure::{validate_dcr_id, validate_stream};
use crate::input::file::StartAt;
use crate::input::Format;
use crate::secret::Secret;
use crate::transform::columns::ColumnType;

/// A complete output table, four lines, so extra keys land on line 5.
const APP: &str = "[outputs.app]\n\
    endpoint = \"https://my-dce-ab12.eastus-1.ingest.monitor.azure.com\"\n\
    dcr = \"dcr-0123456789abcdef0123456789abcdef\"\n\
    stream = \"Custom-MyApp_CL\"\n";

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<FileConfig, ConfigErrors> {
    parse_str(text, "agent.toml", &no_env).map(|c| c.settings)
}

fn app(extra: &str) -> String {
    format!("{APP}{extra}\n")
}

#[test]
fn the_example_file_is_valid_as_written() {
    let config = parse_str(include_str!("../../agent.toml.example"), "example", &no_env)
        .unwrap_or_else(|e| panic!("{e}"))
        .settings;
    let (name, output) = config.output(None).unwrap();
    assert_eq!(name, "app");
    assert_eq!(output.dcr, "dcr-00000000000000000000000000000000");
    assert_eq!(
        config.auth.client_id, None,
        "\"${{AZURE_CLIENT_ID:-}}\" is unset"
    );
    assert_eq!(config.auth.cloud, Some(Cloud::Public));
    assert_eq!(config.inputs["applog"].output, "app");
    assert_eq!(config.spool.max_bytes, 1 << 30);
}

#[test]
fn the_example_file_documents_every_key() {
    let example = include_str!("../../agent.toml.example");
    let keys = [
        "state_dir",
        "http_listen",
        "shutdown_timeout",
        "max_open_files",
        "method",
        "client_id",
        "object_id",
        "resource_id",
        "tenant_id",
        "client_secret",
        "certificate_path",
        "certificate_password",
        "service_connection_id",
        "cloud",
        "authority_host",
        "audience",
        "arc_key_dir",
        "endpoint",
        "dcr",
        "stream",
        "concurrency",
        "max_request_bytes",
        "batch_timeout",
        "permission_grace",
        "retry_timeout",
        "request_timeout",
        "compression_level",
        "max_requests_per_minute",
        "max_bytes_per_minute",
        "columns",
        "type",
        "paths",
        "exclude",
        "format",
        "pattern",
        "on_mismatch",
        "multiline",
        "container",
        "runtime",
        "json_fields",
        "start",
        "preset",
        "timeout",
        "max_lines",
        "start_at",
        "output",
        "max_bytes",
        "schema_file",
        "max_time_span",
        "time_field",
        "time_format",
        "timezone",
        "fields",
        "rename",
        "drop",
        "fsync_interval",
        "when_full",
        "units",
        "exclude_units",
        "priority",
        "match",
        "since_now",
        "journal_directory",
        "probe_interval",
        "heartbeat_interval",
    ];
    for key in keys {
        assert!(
            example.contains(&format!("{key} =")) || example.contains(&format!(".{key}]")),
            "{key}"
        );
    }
}

#[test]
fn shaping_keys_are_read_and_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let schema = r#"{"properties": {"streamDeclarations": {"Custom-MyApp_CL": {"columns": [
        {"name": "TimeGenerated", "type": "datetime"}, {"name": "Count", "type": "int"}]}}}}"#;
    std::fs::write(dir.path().join("dcr.json"), schema).expect("write");
    let text = app("schema_file = \"dcr.json\"\n\
         max_time_span = \"30m\"\n\
         [outputs.app.columns]\n\
         Count = \"long\"\n\
         Seen = \"dateTime\"\n\
         [inputs.x]\n\
         type = \"stdin\"\n\
         format = \"json\"\n\
         time_field = \"ts\"\n\
         time_format = \"%d/%b/%Y:%H:%M:%S %z\"\n\
         timezone = \"Europe/Berlin\"\n\
         drop = [\"pw\"]\n\
         [inputs.x.rename]\n\
         msg = \"Message\"\n\
         [inputs.x.fields]\n\
         Env = \"${ENV:-prod}\"\n\
         Shard = 3\n\
         Ratio = 0.5\n\
         On = true\n\
         Host = \"${HOSTNAME}\"\n");
    let origin = dir.path().join("agent.toml").display().to_string();
    let config = parse_str(&text, &origin, &no_env)
        .unwrap_or_else(|e| panic!("{e}"))
        .settings;
    let out = &config.outputs["app"];
    assert_eq!(out.max_time_span, Some(Duration::from_secs(1800)));
    assert_eq!(
        out.schema_columns.len(),
        2,
        "read relative to the config file"
    );
    let declared = out.declared_columns();
    assert_eq!(
        declared["Count"],
        ColumnType::Long,
        "[columns] wins over the file"
    );
    assert_eq!(declared["Seen"], ColumnType::Datetime);
    assert_eq!(declared["TimeGenerated"], ColumnType::Datetime);
    let x = &config.inputs["x"];
    assert_eq!(x.time_field.as_deref(), Some("ts"));
    assert_eq!(x.timezone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(x.drop, ["pw"]);
    assert_eq!(x.rename["msg"], "Message");
    assert_eq!(x.fields["Env"], serde_json::json!("prod"));
    assert_eq!(x.fields["Shard"], serde_json::json!(3));
    assert_eq!(x.fields["Ratio"], serde_json::json!(0.5));
    assert_eq!(x.fields["On"], serde_json::json!(true));
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    assert_eq!(
        x.fields["Host"],
        serde_json::json!(host),
        "HOSTNAME falls back to the host name"
    );

    let missing = app("schema_file = \"nope.json\"\n");
    let e = parse_str(&missing, &origin, &no_env)
        .expect_err("missing")
        .to_string();
    assert!(
        e.contains("line 5, key outputs.app.schema_file: cannot read schema file"),
        "{e}"
    );
    let other = app("schema_file = \"dcr.json\"\n").replace("Custom-MyApp_CL", "Custom-X_CL");
    let e = parse_str(&other, &origin, &no_env)
        .expect_err("stream")
        .to_string();
    assert!(
        e.contains("declares no stream \"Custom-X_CL\"; it declares: Custom-MyApp_CL"),
        "{e}"
    );
}

#[test]
fn shaping_mistakes_name_line_and_key() {
    for (extra, line, key, says) in [
        (
            "[outputs.app.columns]\nA = \"guid\"\n",
            6,
            "outputs.app.columns.A",
            "toguid",
        ),
        (
            "[outputs.app.columns]\n\"a b\" = \"string\"\n",
            6,
            "outputs.app.columns.a b",
            "only letters",
        ),
        (
            "max_time_span = \"0s\"\n",
            5,
            "outputs.app.max_time_span",
            "above 0",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\ntime_format = \"iso\"\n",
            7,
            "inputs.x.time_format",
            "unknown time format",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\ntimezone = \"Europe/Berln\"\n",
            7,
            "inputs.x.timezone",
            "unknown time zone",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\n[inputs.x.rename]\na = \"1a\"\n",
            8,
            "inputs.x.rename.a",
            "start with a letter",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\n[inputs.x.fields]\nA = [1]\n",
            8,
            "inputs.x.fields.A",
            "string, number or boolean",
        ),
    ] {
        let e = parse(&app(extra)).expect_err(extra);
        assert_eq!((e.line(), e.key()), (Some(line), Some(key)), "{extra}: {e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[test]
fn an_empty_file_is_all_defaults() {
    assert_eq!(parse("").unwrap(), FileConfig::default());
    assert_eq!(
        parse("\u{feff}# only a comment\n").unwrap(),
        FileConfig::default()
    );
}

#[test]
fn defaults_are_filled_in() {
    let config = parse(APP).unwrap();
    assert_eq!(config.agent.state_dir, Path::new("/var/lib/dcrship"));
    assert_eq!(
        config.agent.http_listen,
        Some("127.0.0.1:9465".parse().unwrap())
    );
    assert_eq!(config.agent.shutdown_timeout, Duration::from_secs(30));
    assert_eq!(config.auth.method, AuthMethod::Auto);
    assert_eq!(
        config.auth.arc_key_dir,
        Path::new("/var/opt/azcmagent/tokens")
    );
    let output = &config.outputs["app"];
    let expected = OutputConfig::new(
        "https://my-dce-ab12.eastus-1.ingest.monitor.azure.com",
        "dcr-0123456789abcdef0123456789abcdef",
        "Custom-MyApp_CL",
    );
    assert_eq!(output, &expected);
    assert_eq!(output.concurrency, 4);
    assert_eq!(output.max_request_bytes, 1_000_000);
    assert_eq!(output.batch_timeout, Duration::from_secs(1));
    assert_eq!(output.permission_grace, Duration::from_secs(3600));
    assert_eq!(output.retry_timeout, Duration::from_secs(600));
    assert_eq!(output.max_requests_per_minute, 12_000);
    assert_eq!(output.max_bytes_per_minute, 2_000_000_000);
    assert_eq!(output.compression_level, 3);
    assert_eq!(config.spool.max_bytes, 1 << 30);
}

#[test]
fn every_key_is_read() {
    let text = format!(
        "[agent]\n\
         state_dir = \"/srv/dcrship\"\n\
         http_listen = \"\"\n\
         shutdown_timeout = \"1m30s\"\n\
         max_open_files = 2000\n\
         [auth]\n\
         method = \"client-certificate\"\n\
         client_id = \"11111111-1111-1111-1111-111111111111\"\n\
         tenant_id = \"22222222-2222-2222-2222-222222222222\"\n\
         client_secret = \"s3cr3t\"\n\
         certificate_path = \"/etc/dcrship/c.pem\"\n\
         cloud = \"usgov\"\n\
         authority_host = \"https://login.microsoftonline.us\"\n\
         audience = \"https://monitor.azure.us\"\n\
         arc_key_dir = \"/tmp/arc\"\n\
         {}\
         concurrency = 64\n\
         max_request_bytes = \"1MiB\"\n\
         batch_timeout = \"250ms\"\n\
         permission_grace = \"2h\"\n\
         retry_timeout = \"0\"\n\
         compression_level = 9\n\
         max_requests_per_minute = 600\n\
         max_bytes_per_minute = \"500MiB\"\n\
         [outputs.app.columns]\n\
         TimeGenerated = \"datetime\"\n\
         Count = \"long\"\n\
         [inputs.stdin]\n\
         type = \"stdin\"\n\
         format = \"regex\"\n\
         pattern = '^(?P<Level>\\w+)'\n\
         [inputs.files]\n\
         type = \"file\"\n\
         paths = [\"/var/log/a/*.log\", \"/var/log/b.log\"]\n\
         exclude = [\"*.gz\"]\n\
         format = \"json\"\n\
         start_at = \"beginning\"\n\
         output = \"app\"\n\
         [spool]\n\
         max_bytes = 5000000\n",
        // The audience is usgov's, so the endpoint is in that cloud too (checked at load).
        APP.replace("ingest.monitor.azure.com", "ingest.monitor.azure.us")
    );
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.agent.state_dir, Path::new("/srv/dcrship"));
    assert_eq!(config.agent.http_listen, None);
    assert_eq!(config.agent.shutdown_timeout, Duration::from_secs(90));
    assert_eq!(config.agent.max_open_files, Some(2000));
    let auth = &config.auth;
    assert_eq!(auth.method, AuthMethod::ClientCertificate);
    assert_eq!(
        auth.client_secret.as_ref().map(Secret::expose),
        Some("s3cr3t")
    );
    assert_eq!(
        auth.certificate_path.as_deref(),
        Some(Path::new("/etc/dcrship/c.pem"))
    );
    assert_eq!(auth.cloud, Some(Cloud::UsGov));
    assert_eq!(auth.audience.as_deref(), Some("https://monitor.azure.us"));
    assert_eq!(auth.arc_key_dir, Path::new("/tmp/arc"));
    let output = &config.outputs["app"];
    assert_eq!(output.concurrency, 64);
    assert_eq!(output.max_request_bytes, 1_048_576);
    assert_eq!(output.batch_timeout, Duration::from_millis(250));
    assert_eq!(output.permission_grace, Duration::from_secs(7200));
    assert_eq!(output.retry_timeout, Duration::ZERO);
    assert_eq!(output.compression_level, 9);
    assert_eq!(output.max_requests_per_minute, 600);
    assert_eq!(output.max_bytes_per_minute, 500 << 20);
    assert_eq!(output.columns["Count"], ColumnType::Long);
    let stdin = &config.inputs["stdin"];
    assert_eq!(
        (stdin.kind, stdin.format),
        (InputKind::Stdin, Format::Regex)
    );
    assert_eq!(stdin.output, "app", "the only output is filled in");
    let files = &config.inputs["files"];
    assert_eq!(files.paths, ["/var/log/a/*.log", "/var/log/b.log"]);
    assert_eq!(files.exclude, ["*.gz"]);
    assert_eq!(
        (files.format, files.start_at),
        (Format::Json, StartAt::Beginning)
    );
    assert_eq!(config.spool.max_bytes, 5_000_000);
    assert!(!format!("{config:?}").contains("s3cr3t"));
}

/// A config that must be refused, with the line, key and words its message must carry.
struct Bad {
    line: usize,
    key: &'static str,
    says: &'static str,
    text: String,
}

fn bad(line: usize, key: &'static str, says: &'static str, text: impl Into<String>) -> Bad {
    let text = text.into();
    Bad {
        line,
        key,
        says,
        text,
    }
}

fn with_dcr(dcr: &str) -> String {
    APP.replace("dcr-0123456789abcdef0123456789abcdef", dcr)
}

fn with_stream(stream: &str) -> String {
    APP.replace("Custom-MyApp_CL", stream)
}

fn two_outputs() -> String {
    format!("{APP}[outputs.audit]\n{}", &APP["[outputs.app]\n".len()..])
}

fn bad_cases() -> Vec<Bad> {
    let no_endpoint = "[outputs.app]\n\
        dcr = \"dcr-0123456789abcdef0123456789abcdef\"\n\
        stream = \"Custom-A_CL\"\n";
    let file_input = "[inputs.log]\ntype = \"file\"";
    vec![
        // Unknown keys, with a suggestion when one is close.
        bad(
            5,
            "outputs.app.concurency",
            "did you mean `concurrency`?",
            app("concurency = 8"),
        ),
        bad(1, "output", "did you mean `outputs`?", "[output.app]\n"),
        bad(
            2,
            "agent.foo",
            "one of: state_dir, http_listen",
            "[agent]\nfoo = 1\n",
        ),
        // Durations and sizes.
        bad(
            5,
            "outputs.app.batch_timeout",
            "invalid duration \"soon\"",
            app("batch_timeout = \"soon\""),
        ),
        bad(
            5,
            "outputs.app.retry_timeout",
            "like \"500ms\"",
            app("retry_timeout = 10"),
        ),
        bad(
            5,
            "outputs.app.batch_timeout",
            "above 0",
            app("batch_timeout = \"0\""),
        ),
        bad(
            2,
            "spool.max_bytes",
            "invalid size \"lots\"",
            "[spool]\nmax_bytes = \"lots\"\n",
        ),
        bad(
            2,
            "spool.max_bytes",
            "at least 1MiB",
            "[spool]\nmax_bytes = \"1KiB\"\n",
        ),
        // Ranges and types.
        bad(
            5,
            "outputs.app.concurrency",
            "from 1 to 64, found 65",
            app("concurrency = 65"),
        ),
        bad(
            5,
            "outputs.app.concurrency",
            "from 1 to 64, found 0",
            app("concurrency = 0"),
        ),
        bad(
            5,
            "outputs.app.concurrency",
            "found \"x\"",
            app("concurrency = \"x\""),
        ),
        bad(
            5,
            "outputs.app.concurrency",
            "invalid type: boolean",
            app("concurrency = true"),
        ),
        bad(
            5,
            "outputs.app.max_request_bytes",
            "from 1024 to 1048576",
            app("max_request_bytes = 2000000"),
        ),
        bad(
            5,
            "outputs.app.compression_level",
            "from 0 to 9",
            app("compression_level = 10"),
        ),
        bad(
            5,
            "outputs.app.max_requests_per_minute",
            "from 1 to 1000000, found 0",
            app("max_requests_per_minute = 0"),
        ),
        bad(
            5,
            "outputs.app.max_bytes_per_minute",
            "from 1MiB (one full request a minute) to 1TiB",
            app("max_bytes_per_minute = \"1KiB\""),
        ),
        bad(
            5,
            "outputs.app.max_bytes_per_minute",
            "invalid size \"2 parsecs\"",
            app("max_bytes_per_minute = \"2 parsecs\""),
        ),
        bad(
            6,
            "outputs.app.columns.A",
            "one of: string, int",
            app("[outputs.app.columns]\nA = \"text\""),
        ),
        bad(
            2,
            "agent.http_listen",
            "127.0.0.1:9465",
            "[agent]\nhttp_listen = \"9465\"\n",
        ),
        // Outputs.
        bad(
            1,
            "outputs.app.endpoint",
            "missing required key `endpoint`",
            no_endpoint,
        ),
        bad(
            2,
            "outputs.app.endpoint",
            "plain http://",
            APP.replace("https://my-dce", "http://my-dce"),
        ),
        bad(
            2,
            "outputs.app.endpoint",
            "has no scheme; write https://my-dce.eastus-1",
            APP.replace("https://my-dce-ab12", "my-dce"),
        ),
        bad(
            2,
            "outputs.app.endpoint",
            "has a path (/api/logs); the endpoint is the root URL of the data collection endpoint: \
             drop the path",
            APP.replace(".azure.com", ".azure.com/api/logs"),
        ),
        bad(
            2,
            "outputs.app.endpoint",
            "the URL names stream \"Custom-Other_CL\", but stream is \"Custom-MyApp_CL\"",
            APP.replace(
                ".azure.com",
                ".azure.com/dataCollectionRules/dcr-0123456789abcdef0123456789abcdef/streams/Custom-Other_CL",
            ),
        ),
        bad(
            3,
            "outputs.app.dcr",
            "the DCR *immutable id*, shown on the DCR's overview page",
            with_dcr("my-dcr"),
        ),
        bad(3, "outputs.app.dcr", "32 hex digits", with_dcr("dcr-0123")),
        bad(
            4,
            "outputs.app.stream",
            "did you mean \"Custom-MyApp_CL\"?",
            with_stream("MyApp_CL"),
        ),
        // Inputs.
        bad(
            9,
            "inputs.log.output",
            "no output named \"ap\"; did you mean \"app\"?",
            app(&format!(
                "\n{file_input}\npaths = [\"/a.log\"]\noutput = \"ap\""
            )),
        ),
        bad(
            9,
            "inputs.log.output",
            "with one of: app, audit",
            format!("{}[inputs.log]\ntype = \"stdin\"", two_outputs()),
        ),
        bad(
            1,
            "inputs.log",
            "add an [outputs.NAME] table",
            "[inputs.log]\ntype = \"stdin\"\n",
        ),
        bad(
            5,
            "inputs.log.type",
            "missing required key `type`",
            app("[inputs.log]\npaths = [\"/a\"]"),
        ),
        bad(
            6,
            "inputs.log.type",
            "did you mean \"file\"?",
            app("[inputs.log]\ntype = \"files\""),
        ),
        bad(5, "inputs.log.paths", "at least one path", app(file_input)),
        bad(
            7,
            "inputs.log.paths",
            "not an absolute path",
            app(&format!("{file_input}\npaths = [\"logs/*.log\"]")),
        ),
        bad(
            7,
            "inputs.log.paths[1]",
            "expected a string",
            app(&format!("{file_input}\npaths = [\"/a\", 5]")),
        ),
        bad(
            8,
            "inputs.b.type",
            "only one input can read stdin",
            app("[inputs.a]\ntype = \"stdin\"\n[inputs.b]\ntype = \"stdin\""),
        ),
        bad(
            5,
            "inputs.a.pattern",
            "needs a pattern",
            app("[inputs.a]\ntype = \"stdin\"\nformat = \"regex\""),
        ),
        // Environment.
        bad(
            5,
            "outputs.app.retry_timeout",
            "RETRY is not set",
            app("retry_timeout = \"${RETRY}\""),
        ),
        bad(
            3,
            "auth.client_secret",
            "AZURE_CLIENT_SECRET is not set",
            "[auth]\n\nclient_secret = \"${AZURE_CLIENT_SECRET}\"\n",
        ),
        bad(
            4,
            "outputs.app.stream",
            "without a closing",
            with_stream("${STREAM"),
        ),
        // Auth.
        bad(
            3,
            "auth.resource_id",
            "client_id and resource_id are both set",
            "[auth]\nclient_id = \"a\"\nresource_id = \"/subscriptions/x\"\n",
        ),
        bad(
            2,
            "auth.method",
            "did you mean \"managed-identity\"?",
            "[auth]\nmethod = \"managed_identity\"\n",
        ),
        bad(
            2,
            "auth.cloud",
            "one of: public, usgov, china",
            "[auth]\ncloud = \"azure\"\n",
        ),
        bad(
            2,
            "auth.authority_host",
            "plain http://",
            "[auth]\nauthority_host = \"http://login.example.com\"\n",
        ),
    ]
}

#[test]
fn bad_configs_name_line_and_key() {
    for Bad {
        line,
        key,
        says,
        text,
    } in bad_cases()
    {
        let err = match parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert_eq!(err.line(), Some(line), "{shown}\n{text}");
        assert_eq!(err.key(), Some(key), "{shown}\n{text}");
        assert!(shown.contains(says), "{shown:?} lacks {says:?}");
        assert!(!shown.contains('\n'), "not one line: {shown:?}");
        let place = format!("agent.toml line {line}, key {key}: ");
        assert!(shown.starts_with(&place), "{shown}");
    }
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let cases = [
        (1, "invalid TOML", "[outputs.app\n".to_string()),
        (
            5,
            "duplicate key `dcr`",
            app("dcr = \"dcr-0123456789abcdef0123456789abcdef\""),
        ),
    ];
    for (line, says, text) in cases {
        let err = parse(&text).unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.line(), Some(line), "{shown}");
        assert!(
            shown.starts_with(&format!("agent.toml line {line}: ")),
            "{shown}"
        );
        assert!(shown.contains(says), "{shown}");
    }
}

#[test]
fn the_message_reads_like_the_contract() {
    let err = parse_str(
        &app("concurrency = \"x\""),
        "/etc/dcrship/agent.toml",
        &no_env,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/dcrship/agent.toml line 5, key outputs.app.concurrency: \
         expected an integer from 1 to 64, found \"x\""
    );
}

#[test]
fn expands_variables() {
    let env = |name: &str| match name {
        "A" => Some("alpha".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let cases = [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("x${A}y${A}", "xalphayalpha"),
        ("${A:-other}", "alpha"),
        ("${UNSET:-fallback}", "fallback"),
        ("${UNSET:-https://h:1/p?q=a-b}", "https://h:1/p?q=a-b"),
        ("${UNSET:-}", ""),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("$${A}", "${A}"),
        ("$$", "$"),
        ("$$$${A}", "$${A}"),
        ("$$${A}", "$alpha"),
        ("5$ and $x", "5$ and $x"),
        ("$", "$"),
    ];
    for (input, want) in cases {
        assert_eq!(expand_env(input, &env).as_deref(), Ok(want), "{input}");
    }
    let errors = [
        ("${UNSET}", ExpandError::Undefined("UNSET".into())),
        ("${A", ExpandError::Unclosed),
        ("${}", ExpandError::BadName(String::new())),
        ("${1A}", ExpandError::BadName("1A".into())),
        ("${A B}", ExpandError::BadName("A B".into())),
        ("${:-x}", ExpandError::BadName(":-x".into())),
    ];
    for (input, want) in errors {
        assert_eq!(expand_env(input, &env), Err(want), "{input}");
    }
}

#[test]
fn config_values_are_expanded_from_the_given_environment() {
    let text = "[auth]\n\
        method = \"${AUTH:-managed-identity}\"\n\
        client_secret = \"${SECRET}\"\n\
        tenant_id = \"${TENANT:-}\"\n\
        audience = \"api://$${NOT_A_VAR}\"\n\
        [outputs.app]\n\
        endpoint = \"${DCE}\"\n\
        dcr = \"${DCR:-dcr-0123456789abcdef0123456789abcdef}\"\n\
        stream = \"Custom-${APP}_CL\"\n\
        concurrency = \"${WORKERS:-8}\"\n\
        batch_timeout = \"${BATCH:-2s}\"\n\
        [spool]\n\
        max_bytes = \"${SPOOL:-2GiB}\"\n";
    let env = |name: &str| match name {
        "SECRET" => Some("hunter2".to_string()),
        "DCE" => Some("http://127.0.0.1:8080".to_string()),
        "APP" => Some("Web".to_string()),
        "WORKERS" => Some("16".to_string()),
        "NOT_A_VAR" => Some("expanded-by-mistake".to_string()),
        _ => None,
    };
    let config = parse_str(text, "agent.toml", &env)
        .unwrap_or_else(|e| panic!("{e}"))
        .settings;
    assert_eq!(config.auth.method, AuthMethod::ManagedIdentity);
    assert_eq!(config.auth.client_secret, Some(Secret::new("hunter2")));
    assert_eq!(config.auth.tenant_id, None);
    assert_eq!(config.auth.audience.as_deref(), Some("api://${NOT_A_VAR}"));
    let output = &config.outputs["app"];
    assert_eq!(output.endpoint, "http://127.0.0.1:8080");
    assert_eq!(output.stream, "Custom-Web_CL");
    assert_eq!(output.concurrency, 16);
    assert_eq!(output.batch_timeout, Duration::from_secs(2));
    assert_eq!(config.spool.max_bytes, 2 << 30);
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn an_undefined_variable_never_shows_a_secret() {
    let env = |name: &str| (name == "SECRET").then(|| "hunter2".to_string());
    let text = "[auth]\nclient_secret = \"${SECRET}${OTHER}\"\n";
    let err = parse_str(text, "agent.toml", &env).unwrap_err().to_string();
    assert!(err.contains("OTHER is not set"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn output_picks_by_name_or_the_only_one() {
    let one = parse(APP).unwrap();
    assert_eq!(one.output(None).unwrap().0, "app");
    assert_eq!(one.output(Some("app")).unwrap().0, "app");
    let err = one.output(Some("apps")).unwrap_err().to_string();
    assert!(err.contains("did you mean \"app\"?"), "{err}");
    let err = one.output(Some("zzzzzz")).unwrap_err().to_string();
    assert!(err.contains("the outputs are: app"), "{err}");

    let two = format!("{APP}[outputs.audit]\n{}", &APP["[outputs.app]\n".len()..]);
    let two = parse(&two).unwrap();
    assert_eq!(two.output(Some("audit")).unwrap().0, "audit");
    let err = two.output(None).unwrap_err().to_string();
    assert!(err.contains("several outputs (app, audit)"), "{err}");

    let err = FileConfig::default().output(None).unwrap_err().to_string();
    assert!(err.contains("no [outputs.NAME]"), "{err}");
}

#[test]
fn sizes() {
    let good = [
        ("1GiB", 1 << 30),
        ("512MiB", 512 << 20),
        ("100MB", 100_000_000),
        ("64 KiB", 64 << 10),
        ("10kb", 10_000),
        ("2TB", 2_000_000_000_000),
        ("1TiB", 1 << 40),
        ("1234", 1234),
        ("5B", 5),
    ];
    for (input, want) in good {
        assert_eq!(parse_byte_size(input), Ok(want), "{input}");
    }
    for bad in ["", "GiB", "1.5GiB", "1G", "-1", "1 PB", "99999999999TiB"] {
        assert!(parse_byte_size(bad).is_err(), "{bad}");
    }
}

#[test]
fn listen_addresses() {
    let v4 = |a: [u8; 4], port| Some(SocketAddr::from((a, port)));
    assert_eq!(parse_listen(""), Ok(None));
    assert_eq!(parse_listen("0.0.0.0:9465"), Ok(v4([0, 0, 0, 0], 9465)));
    assert_eq!(parse_listen("localhost:80"), Ok(v4([127, 0, 0, 1], 80)));
    assert_eq!(
        parse_listen("[::]:9465"),
        Ok(Some("[::]:9465".parse().unwrap()))
    );
    assert!(parse_listen(":9465").is_err());
}

#[test]
fn did_you_mean() {
    let known = ["concurrency", "max_request_bytes", "dcr", "stream"];
    assert_eq!(closest("concurency", known), Some("concurrency"));
    assert_eq!(
        closest("max-request-bytes", known),
        Some("max_request_bytes")
    );
    assert_eq!(closest("DCR", known), Some("dcr"));
    assert_eq!(closest("streams", known), Some("stream"));
    assert_eq!(closest("endpoint", known), None);
}

#[test]
fn ids_and_streams() {
    assert!(validate_dcr_id("dcr-0123456789ABCDEF0123456789abcdef").is_ok());
    let err = validate_dcr_id(
        "/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/z",
    )
    .unwrap_err();
    assert!(err.contains("resource id"), "{err}");
    assert!(validate_stream("Microsoft-Syslog").is_ok());
    assert!(validate_stream("Custom-").is_err());
    assert!(validate_stream("custom-x").is_err());
}

#[test]
fn load_reads_the_file_and_names_it_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, app("concurrency = 2")).unwrap();
    let none = Overlay::default();
    assert_eq!(
        load(&path, &none).unwrap().settings.outputs["app"].concurrency,
        2
    );

    std::fs::write(&path, app("concurrency = 100")).unwrap();
    let err = load(&path, &none).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{} line 5, key outputs.app.concurrency",
            path.display()
        )),
        "{err}"
    );

    let missing = dir.path().join("nope.toml");
    let err = load(&missing, &none).unwrap_err();
    assert!(matches!(err.first(), Some(ConfigError::Read { .. })));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn spool_fsync_interval_and_when_full() {
    let config = parse("").unwrap();
    assert_eq!(config.spool.fsync_interval, Duration::from_millis(200));
    assert_eq!(config.spool.when_full, crate::spool::WhenFull::Block);
    let config =
        parse("[spool]\nfsync_interval = \"50ms\"\nwhen_full = \"drop_oldest\"\n").unwrap();
    assert_eq!(config.spool.fsync_interval, Duration::from_millis(50));
    assert_eq!(config.spool.when_full, crate::spool::WhenFull::DropOldest);
    let err = parse("[spool]\nwhen_full = \"panic\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spool.when_full") && err.contains("drop_oldest"),
        "{err}"
    );
}

#[test]
fn the_environment_snapshot_ends_with_the_parse() {
    let env = |_: &str| Some("from-lookup".to_string());
    parse_str("[auth]\ntenant_id = \"${T}\"\n", "agent.toml", &env).unwrap();
    ENV_SNAPSHOT.with(|cell| assert!(cell.borrow().is_none()));
    // Also after a failed parse.
    parse_str("[auth]\ntenant_id = 5\n", "agent.toml", &env).unwrap_err();
    ENV_SNAPSHOT.with(|cell| assert!(cell.borrow().is_none()));
}

#[test]
fn journald_keys_are_read_and_checked_where_they_belong() {
    let ok = parse(&app(
        "[inputs.j]\ntype = \"journald\"\nunits = [\"ssh\"]\n\
         priority = \"warning\"\nsince_now = false\nformat = \"raw\"\n\
         journal_directory = \"/var/log/journal\"\n\
         [inputs.j.match]\n_TRANSPORT = \"kernel\"\nSYSLOG_IDENTIFIER = [\"a\", \"b\"]\n",
    ))
    .expect("valid");
    let j = &ok.inputs["j"];
    assert_eq!(j.priority, Some(crate::input::journald::Priority::Warning));
    assert_eq!(j.since_now, Some(false));
    assert_eq!(j.format, Format::Raw);
    assert_eq!(j.matches["_TRANSPORT"], ["kernel"]);
    assert_eq!(j.matches["SYSLOG_IDENTIFIER"], ["a", "b"]);
    for (extra, key, says) in [
        (
            "type = \"file\"\npaths = [\"/a\"]\nunits = [\"x\"]",
            "inputs.x.units",
            "only read with type = \"journald\"",
        ),
        (
            "type = \"stdin\"\nsince_now = true",
            "inputs.x.since_now",
            "journald",
        ),
        (
            "type = \"stdin\"\nformat = \"raw\"",
            "inputs.x.format",
            "journald",
        ),
        (
            "type = \"journald\"\npaths = [\"/a\"]",
            "inputs.x.paths",
            "journal entries",
        ),
        (
            "type = \"journald\"\nstart_at = \"beginning\"",
            "inputs.x.start_at",
            "since_now",
        ),
        (
            "type = \"journald\"\nformat = \"json\"",
            "inputs.x.format",
            "raw",
        ),
        (
            "type = \"journald\"\npriority = \"warn\"",
            "inputs.x.priority",
            "warning",
        ),
        (
            "type = \"journald\"\njournal_directory = \"journal\"",
            "inputs.x.journal_directory",
            "absolute",
        ),
        (
            "type = \"journald\"\nunits = [\"\"]",
            "inputs.x.units",
            "unit name",
        ),
        (
            "type = \"journald\"\n[inputs.x.match]\nmessage = \"x\"",
            "inputs.x.match.message",
            "upper-case",
        ),
        (
            "type = \"journald\"\n[inputs.x.match]\nA = []",
            "inputs.x.match.A",
            "give a value",
        ),
        (
            "type = \"journald\"\n[inputs.x.match]\nA = 1",
            "inputs.x.match.A",
            "a string or a list",
        ),
    ] {
        let text = app(&format!("[inputs.x]\n{extra}\n"));
        let e = parse(&text).expect_err(extra);
        assert_eq!(e.key(), Some(key), "{extra}: {e}");
        assert!(e.to_string().contains(says), "{extra}: {e}");
    }
}

#[test]
fn container_settings() {
    use crate::input::container::{JsonFields, Runtime};
    let c = parse(&app("[inputs.k]\ntype = \"file\"\npaths = [\"/var/log/containers/*.log\"]\n\
         format = \"json\"\n[inputs.k.container]\nruntime = \"cri\"\njson_fields = \"log-message\"\n\
         [inputs.d]\ntype = \"file\"\npaths = [\"/d/*.log\"]\n[inputs.d.container]\n"))
    .unwrap_or_else(|e| panic!("{e}"));
    let k = c.inputs["k"].container.clone().expect("container");
    assert_eq!(
        (k.runtime, k.json_fields),
        (Runtime::Cri, JsonFields::LogMessage)
    );
    assert_eq!(
        c.inputs["d"].container,
        Some(ContainerConfig::default()),
        "auto, columns"
    );
    let cases = [
        ("type = \"stdin\"\n[inputs.a.container]\nruntime = \"cri\"", 7, "inputs.a.container", "type = \"file\""),
        ("type = \"file\"\npaths = [\"/x\"]\n[inputs.a.container]\njson_fields = \"log-message\"", 9, "inputs.a.container.json_fields", "format = \"json\""),
        ("type = \"file\"\npaths = [\"/x\"]\n[inputs.a.container]\nruntime = \"podman\"", 9, "inputs.a.container.runtime", "cri"),
        ("type = \"file\"\npaths = [\"/x\"]\n[inputs.a.container]\nruntme = \"cri\"", 9, "inputs.a.container.runtme", "did you mean `runtime`"),
    ];
    for (input, line, key, says) in cases {
        let err = parse(&app(&format!("[inputs.a]\n{input}"))).expect_err(input);
        let shown = err.to_string();
        assert_eq!((err.line(), err.key()), (Some(line), Some(key)), "{shown}");
        assert!(shown.contains(says), "{shown}");
    }
}

#[test]
fn parser_and_multiline_settings() {
    let config = parse(&app(
        "[inputs.a]\ntype = \"stdin\"\nformat = \"logfmt\"\non_mismatch = \"dead-letter\"\n\
         [inputs.a.multiline]\npreset = \"python\"\n\
         [inputs.b]\ntype = \"stdin\"\nformat = \"syslog\"\n[inputs.b.multiline]\n\
         start = '^<'\ntimeout = \"250ms\"\nmax_lines = 20\nmax_bytes = \"64KiB\"\n",
    ));
    // only one stdin input is allowed: check the first, then the second on its own
    let err = config.expect_err("two stdin inputs").to_string();
    assert!(err.contains("only one input can read stdin"), "{err}");
    let a = parse(&app(
        "[inputs.a]\ntype = \"stdin\"\nformat = \"logfmt\"\non_mismatch = \"dead-letter\"\n\
         [inputs.a.multiline]\npreset = \"python\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let a = &a.inputs["a"];
    assert_eq!(a.on_mismatch, crate::input::parse::OnMismatch::DeadLetter);
    let m = a.multiline.as_ref().expect("multiline");
    assert_eq!(m.preset, Some(crate::input::multiline::Preset::Python));
    assert_eq!(
        (m.timeout, m.max_lines, m.max_bytes),
        (Duration::from_secs(1), 500, 256 * 1024),
        "defaults"
    );
    let b = parse(&app(
        "[inputs.b]\ntype = \"stdin\"\nformat = \"syslog\"\n[inputs.b.multiline]\n\
         start = '^<'\ntimeout = \"250ms\"\nmax_lines = 20\nmax_bytes = \"64KiB\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let m = b.inputs["b"].multiline.clone().expect("multiline");
    assert_eq!(m.start.as_deref(), Some("^<"));
    assert_eq!(
        (m.timeout, m.max_lines, m.max_bytes),
        (Duration::from_millis(250), 20, 65536)
    );
    assert_eq!(b.inputs["b"].format, Format::Syslog);

    // (line, key, words, input table) — APP is four lines, the input's format is on line 7
    let cases = [
        (
            8,
            "inputs.a.pattern",
            "no named group",
            "format = \"regex\"\npattern = '(x)'",
        ),
        (
            8,
            "inputs.a.pattern",
            "not a valid column name",
            "format = \"regex\"\npattern = '(?P<_a>x)'",
        ),
        (
            8,
            "inputs.a.pattern",
            "unclosed group",
            "format = \"regex\"\npattern = '(?P<A>x'",
        ),
        (
            8,
            "inputs.a.pattern",
            "only read with",
            "format = \"logfmt\"\npattern = '(?P<A>x)'",
        ),
        (
            8,
            "inputs.a.multiline",
            "JSON line",
            "format = \"json\"\n[inputs.a.multiline]\npreset = \"java\"",
        ),
        (
            8,
            "inputs.a.multiline",
            "not both",
            "format = \"text\"\n[inputs.a.multiline]\npreset = \"java\"\nstart = 'x'",
        ),
        (
            8,
            "inputs.a.multiline",
            "set start",
            "format = \"text\"\n[inputs.a.multiline]\ntimeout = \"1s\"",
        ),
        (
            9,
            "inputs.a.multiline.start",
            "invalid regular expression",
            "format = \"text\"\n[inputs.a.multiline]\nstart = '(x'",
        ),
        (
            9,
            "inputs.a.multiline.preset",
            "java",
            "format = \"text\"\n[inputs.a.multiline]\npreset = \"cobol\"",
        ),
        (
            9,
            "inputs.a.multiline.max_lines",
            "from 1 to 100000",
            "format = \"text\"\n[inputs.a.multiline]\nmax_lines = 0",
        ),
        (
            9,
            "inputs.a.multiline.max_bytes",
            "1024",
            "format = \"text\"\n[inputs.a.multiline]\nmax_bytes = 10",
        ),
        (
            9,
            "inputs.a.multiline.timeout",
            "above 0",
            "format = \"text\"\n[inputs.a.multiline]\ntimeout = \"0s\"",
        ),
    ];
    for (line, key, says, input) in cases {
        let text = app(&format!("[inputs.a]\ntype = \"stdin\"\n{input}"));
        let err = parse(&text).expect_err(input);
        let shown = err.to_string();
        assert_eq!((err.line(), err.key()), (Some(line), Some(key)), "{shown}");
        assert!(shown.contains(says), "{shown}");
    }
    let err = parse(&app(
        "[inputs.a]\ntype = \"stdin\"\non_mismatch = \"dead-letter\"",
    ))
    .expect_err("text");
    assert_eq!(err.key(), Some("inputs.a.on_mismatch"), "{err}");
    // max_bytes must fit the output's request cap
    let text = format!(
        "{APP}max_request_bytes = 100000\n[inputs.a]\ntype = \"stdin\"\n\
         [inputs.a.multiline]\npreset = \"java\"\nmax_bytes = 200000\n"
    );
    let err = parse(&text).expect_err("over the cap").to_string();
    assert!(
        err.contains("line 10, key inputs.a.multiline.max_bytes")
            && err.contains("max_request_bytes (100000)"),
        "{err}"
    );
}

/// The recipes at the end of agent.toml.example are valid once uncommented.
#[test]
fn the_example_recipes_are_valid() {
    let example = include_str!("../../agent.toml.example");
    let (_, recipes) = example.split_once("# Recipes:").expect("recipes section");
    let toml: String = recipes
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        // a schema file names a file the reader exports from Azure
        .filter(|l| !l.starts_with("schema_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = parse(&format!("{APP}{toml}")).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let names: Vec<&str> = config.inputs.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["access", "java", "journal", "jsonapp", "pods", "syslog"]
    );
    assert_eq!(config.inputs["journal"].kind, InputKind::Journald);
    assert_eq!(config.inputs["journal"].units, ["ssh", "cron"]);
    assert!(config.inputs["pods"].container.is_some());
    assert_eq!(config.inputs["access"].format, Format::Regex);
    assert!(config.inputs["java"].multiline.is_some());
    assert_eq!(config.inputs["syslog"].format, Format::Syslog);
    // and the access-log pattern is the one the e2e tests use on nginx lines
    let pattern = config.inputs["access"].pattern.clone().expect("pattern");
    let p = crate::input::parse::RegexParser::new(&pattern).expect("compiles");
    let line = r#"203.0.113.9 - alice [23/Nov/2025:10:00:01 +0000] "GET /a HTTP/1.1" 404 0 "https://x/" "Mozilla/5.0 (X11)""#;
    let row = p.parse(line, &mut p.scratch()).expect("matches");
    assert_eq!(row["Status"], "404");
    assert_eq!(row["UserAgent"], "Mozilla/5.0 (X11)");
}

#[test]
fn probe_and_heartbeat_intervals_are_checked() {
    let plan = |extra: &str| {
        let text = app(extra);
        parse_str(&text, "agent.toml", &no_env).map(|c| c.plan.outputs["app"].clone())
    };
    let out = plan("").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.probe_interval,
        Some(DEFAULT_PROBE_INTERVAL),
        "on by default"
    );
    assert_eq!(out.heartbeat_interval, None, "off by default");
    let out = plan("probe_interval = \"0s\"\nheartbeat_interval = \"5m\"")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.probe_interval, None, "0s turns probes off");
    assert_eq!(out.heartbeat_interval, Some(Duration::from_secs(300)));
    for (extra, key, says) in [
        ("probe_interval = \"5s\"", "probe_interval", "at least 10s"),
        (
            "heartbeat_interval = \"30s\"",
            "heartbeat_interval",
            "at least 1m",
        ),
        ("heartbeat_interval = \"0s\"", "heartbeat_interval", ""),
        ("probe_interval = 5", "probe_interval", "duration"),
    ] {
        let e = plan(extra).expect_err(extra).to_string();
        assert!(e.contains(key) && e.contains(says), "{extra}: {e}");
        assert!(e.contains("line 5"), "names line 5: {e}");
    }
}
