//! Typed columns, time formats and field edits end to end: the real binary against a fake DCE
//! on 127.0.0.1, checking the rows as the service receives them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "test-token-columns";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn all_rows(fake: &Fake) -> Vec<Value> {
    fake.accepted().iter().flat_map(|r| r.rows()).collect()
}

/// `--schema` with an exported ARM template: string numbers become JSON numbers, booleans
/// booleans, datetimes RFC 3339 UTC, JSON in a dynamic column an object; what cannot be its
/// column's type is null; undeclared fields are removed (named once in the log); the summary
/// counts both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_a_schema_delivers_typed_rows() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(
            &json!({
                "Message": format!("m{i}"), "Status": "200", "Bytes": format!("{}", 5_000_000_000u64 + i),
                "Latency": "0.25", "Cached": "yes", "SeenAt": "2026-05-01T12:00:00+02:00",
                "Tags": "{\"team\":\"web\"}", "junk": i, "extra": "x",
            })
            .to_string(),
        );
        text.push('\n');
    }
    text.push_str(
        &json!({"Message": 42, "Status": "two hundred", "Bytes": 1.5, "Latency": "fast",
                "Cached": "perhaps", "SeenAt": "someday", "Tags": [1, 2]})
        .to_string(),
    );
    text.push('\n');
    let file = write_file(dir.path(), "rows.ndjson", &text);
    let mut c = send_to(&fake, TOKEN);
    c.args([
        "--schema",
        &fixture("dcr-arm-export.json"),
        "--summary",
        "json",
    ])
    .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 201);
    let first = rows.iter().find(|r| r["Message"] == "m7").expect("row m7");
    let mut want = json!({
        "Message": "m7", "Status": 200, "Bytes": 5_000_000_007u64, "Latency": 0.25,
        "Cached": true, "SeenAt": "2026-05-01T10:00:00.000000Z", "Tags": {"team": "web"},
        "Computer": first["Computer"].clone(),
    });
    want["TimeGenerated"] = first["TimeGenerated"].clone();
    assert_eq!(first, &want, "typed, undeclared removed, Computer filled");
    assert!(first["Computer"].as_str().is_some_and(|c| !c.is_empty()));
    let last = rows.iter().find(|r| r["Message"] == "42").expect("bad row");
    for col in ["Status", "Bytes", "Latency", "Cached", "SeenAt"] {
        assert_eq!(last[col], Value::Null, "{col}");
    }
    assert_eq!(last["Tags"], json!([1, 2]));

    let s = summary(&out);
    assert_eq!(s["rows_sent"], 201);
    assert_eq!(s["fields_undeclared"], 400, "junk and extra of 200 rows");
    assert_eq!(s["values_uncoercible"], 5);
    let log = stderr(&out);
    assert_eq!(
        log.matches("field \"junk\" is not a column").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("field \"extra\" is not a column").count(),
        1,
        "{log}"
    );
}

/// A stream the schema file does not declare is a usage error that lists the streams it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_without_the_stream_says_which_streams_it_has() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "rows.ndjson", "{\"a\":1}\n");
    let mut c = dcrship();
    c.args([
        "send",
        "--dry-run",
        "--no-progress",
        "--stream",
        "Custom-Nope_CL",
    ])
    .args(["--schema", &fixture("dcr-arm-export.json")])
    .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    let log = stderr(&out);
    assert!(
        log.contains("dcr-arm-export.json")
            && log.contains("Custom-Nope_CL")
            && log.contains("Custom-Other_CL, Custom-Test_CL"),
        "{log}"
    );
    assert!(fake.requests().is_empty());
}

/// nginx/Apache times: with their offset, and (another format) without one read in
/// Europe/Berlin across the spring DST change; the fake gets the exact RFC 3339 UTC times.
/// Those times are long past, so each row is counted as one Azure will replace, with one
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_formats_and_zones_give_exact_times() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        // (flags, input time, want)
        (
            vec!["--time-format", "%d/%b/%Y:%H:%M:%S %z"],
            "10/Oct/2000:13:55:36 -0700",
            "2000-10-10T20:55:36.000000Z",
        ),
        (
            vec![
                "--time-format",
                "%d/%b/%Y:%H:%M:%S",
                "--timezone",
                "Europe/Berlin",
            ],
            "29/Mar/2026:01:59:59",
            "2026-03-29T00:59:59.000000Z",
        ),
        (
            vec![
                "--time-format",
                "%d/%b/%Y:%H:%M:%S",
                "--timezone",
                "Europe/Berlin",
            ],
            "29/Mar/2026:03:00:00",
            "2026-03-29T01:00:00.000000Z",
        ),
        (
            vec!["--time-format", "epoch_ms"],
            "1700000000123",
            "2023-11-14T22:13:20.123000Z",
        ),
    ];
    for (i, (flags, time, want)) in cases.iter().enumerate() {
        let text = format!(
            "{}\n{}\n",
            json!({"id": i, "ts": time}),
            json!({"id": 100 + i, "ts": "not a time"})
        );
        let file = write_file(dir.path(), &format!("t{i}.ndjson"), &text);
        let mut c = send_to(&fake, TOKEN);
        c.args(["--time-field", "ts", "--summary", "json"])
            .args(flags)
            .arg(&file);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let rows = all_rows(&fake);
        let row = rows.iter().find(|r| r["id"] == i).expect("row");
        assert_eq!(row["TimeGenerated"], *want, "{flags:?} {time}");
        assert_eq!(row["ts"], *time, "the source field is kept");
        let s = summary(&out);
        assert_eq!(s["time_unparsable"], 1, "{flags:?}");
        assert_eq!(s["time_out_of_range"], 1, "{flags:?}");
        assert_eq!(
            stderr(&out).matches("more than 2 days old").count(),
            1,
            "{}",
            stderr(&out)
        );
    }
    let mut c = send_to(&fake, TOKEN);
    c.args(["--timezone", "Mars/Olympus", "-"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown time zone"),
        "{}",
        stderr(&out)
    );
}

/// `max_time_span`: rows an hour apart never share a request; without it they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_span_splits_requests() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let mut text = String::new();
    for (i, minute) in [0, 10, 20, 70, 80, 140].iter().enumerate() {
        text.push_str(&json!({"id": i, "TimeGenerated": base + minute * 60}).to_string());
        text.push('\n');
    }
    let file = write_file(dir.path(), "span.ndjson", &text);
    for (flags, want) in [(vec!["--max-time-span", "30m"], 3), (vec![], 1)] {
        let fake = Fake::start(|_| Reply::Status(204)).await;
        let mut c = send_to(&fake, TOKEN);
        c.args(&flags).arg(&file);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let reqs = fake.accepted();
        assert_eq!(reqs.len(), want, "{flags:?}");
        let mut ids: Vec<Vec<u64>> = reqs
            .iter()
            .map(|r| r.rows().iter().filter_map(|v| v["id"].as_u64()).collect())
            .collect();
        ids.sort(); // requests go out concurrently
        if want == 3 {
            assert_eq!(ids, vec![vec![0, 1, 2], vec![3, 4], vec![5]]);
        }
    }
}

/// A config file with typed columns and an input with `fields`, `rename` and `drop`, through
/// `dcrship run` (stdin): rows arrive shaped; `check` prints which fields feed which columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_shapes_rows_from_the_config_and_check_shows_the_mapping() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let config = format!(
        "[agent]\nstate_dir = {state:?}\nhttp_listen = \"\"\nshutdown_timeout = \"2s\"\n\
         [auth]\nmethod = \"static\"\n\
         [outputs.app]\nendpoint = {url:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\n\
         batch_timeout = \"200ms\"\nmax_time_span = \"30m\"\n\
         [outputs.app.columns]\nTimeGenerated = \"datetime\"\nMessage = \"string\"\n\
         Level = \"string\"\nCode = \"int\"\nEnv = \"string\"\nHost = \"string\"\n\
         Computer = \"string\"\nNothing = \"real\"\n\
         [inputs.events]\ntype = \"stdin\"\nformat = \"json\"\ntime_field = \"when\"\n\
         time_format = \"%Y-%m-%d %H:%M:%S\"\ntimezone = \"America/New_York\"\n\
         drop = [\"password\"]\n\
         [inputs.events.rename]\nmsg = \"Message\"\nlvl = \"Level\"\n\
         [inputs.events.fields]\nEnv = \"prod\"\nHost = \"${{HOSTNAME}}\"\n",
        state = state.path().display().to_string(),
        url = fake.url(),
    );
    let path = write_file(state.path(), "agent.toml", &config);

    let mut check = dcrship();
    check.args(["check", "--config"]).arg(&path);
    let out = run(check).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for words in [
        "output app (stream Custom-Test_CL): 8 columns from [outputs.app.columns]",
        "TimeGenerated  datetime  <- inputs.events: field when (%Y-%m-%d %H:%M:%S), else the time read",
        "Message        string    <- inputs.events: json field msg, if the records have it",
        "Env            string    <- inputs.events: fixed value \"prod\"",
        "Computer       string    <- inputs.events: json field Computer, if the records have it; inputs.events: the host name, when the record has no Computer",
    ] {
        assert!(report.contains(words), "{words}\n{report}");
    }
    assert!(
        report.contains("Nothing        real      <- inputs.events: json field Nothing"),
        "{report}"
    );

    let mut c = dcrship();
    c.args(["run", "--config"])
        .arg(&path)
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN)
        .stdin(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let lines = [
        json!({"when": "2026-07-04 12:00:00", "msg": "a", "lvl": "info", "Code": "7", "password": "p", "other": 1}),
        json!({"when": "2026-07-04 12:10:00", "msg": "b", "lvl": "warn", "Code": "x"}),
        json!({"when": "2026-07-04 13:30:00", "msg": "c", "Env": "dev", "Computer": "elsewhere"}),
    ];
    for l in &lines {
        stdin
            .write_all(format!("{l}\n").as_bytes())
            .await
            .expect("write");
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits when stdin ends")
        .expect("status");
    assert_eq!(status.code(), Some(0));

    let reqs = fake.accepted();
    for r in &reqs {
        let msgs: Vec<Value> = r.rows().iter().map(|v| v["Message"].clone()).collect();
        assert!(
            !(msgs.contains(&json!("a")) && msgs.contains(&json!("c"))),
            "13:30 is more than 30 minutes after 12:00: {msgs:?}"
        );
    }
    assert!(reqs.len() >= 2);
    let mut rows: Vec<Value> = reqs.iter().flat_map(|r| r.rows()).collect();
    rows.sort_by_key(|r| r["Message"].as_str().map(str::to_string));
    let host = rows[0]["Host"].clone();
    assert!(host.as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(
        rows,
        vec![
            json!({"TimeGenerated": "2026-07-04T16:00:00.000000Z", "Message": "a", "Level": "info",
                   "Code": 7, "Env": "prod", "Host": host, "Computer": host}),
            json!({"TimeGenerated": "2026-07-04T16:10:00.000000Z", "Message": "b", "Level": "warn",
                   "Code": null, "Env": "prod", "Host": host, "Computer": host}),
            json!({"TimeGenerated": "2026-07-04T17:30:00.000000Z", "Message": "c",
                   "Env": "prod", "Computer": "elsewhere", "Host": host}),
        ]
    );
}

/// Column names are checked when the configuration is loaded, with the line and key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_column_names_are_config_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    for (extra, key) in [
        (
            "[outputs.app.columns]\n\"my-col\" = \"string\"\n",
            "outputs.app.columns.my-col",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\n[inputs.x.fields]\n\"2fast\" = \"x\"\n",
            "inputs.x.fields.2fast",
        ),
        (
            "[inputs.x]\ntype = \"stdin\"\ntimezone = \"Nowhere/City\"\n",
            "inputs.x.timezone",
        ),
    ] {
        let config = format!(
            "[outputs.app]\nendpoint = \"https://x.ingest.monitor.azure.com\"\ndcr = {DCR:?}\n\
             stream = {STREAM:?}\n{extra}"
        );
        let path = write_file(dir.path(), "agent.toml", &config);
        let mut c = dcrship();
        c.args(["check", "--config"]).arg(&path);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains(&format!("key {key}:")),
            "{}",
            stderr(&out)
        );
    }
}
