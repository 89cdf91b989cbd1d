//! Parsers and multiline end to end: the real binary (`send`, and `run` tailing a file) parses
//! lines into columns and joins stack traces, and the fake DCE receives the rows. Every test
//! accounts lines: each one arrives as a parsed row, a RawData row, or a dead-letter entry.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "parse-token-0123456789";

/// The access-log recipe, as README.md shows it (tests/realdata.rs checks agent.toml.example
/// shows the same).
fn combined() -> String {
    recipe_pattern("README.md")
}

/// The logback recipe of agent.toml.example.
const LOGBACK: &str = r"(?s)^(?P<Time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) \[(?P<Thread>[^\]]*)\] (?P<Level>[A-Z]+) +(?P<Logger>\S+) - (?P<Message>.*)$";

fn access_line(i: usize) -> String {
    format!(
        r#"203.0.113.{} - - [23/Nov/2025:10:00:{:02} +0000] "GET /item/{i}?q=1 HTTP/1.1" 200 {} "-" "curl/8.5.0""#,
        i % 250,
        i % 60,
        100 + i
    )
}

fn all_rows(fake: &Fake) -> Vec<Value> {
    fake.accepted().iter().flat_map(|r| r.rows()).collect()
}

fn send_cmd(fake: &Fake) -> tokio::process::Command {
    let mut c = send_to(fake, TOKEN);
    c.args(["--summary", "json", "--batch-timeout", "100ms"]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_regex_makes_columns_and_unmatched_lines_arrive_as_raw_data() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut text: String = (0..200).map(|i| access_line(i) + "\n").collect();
    text.push_str("this is not an access log line\n");
    let file = write_file(dir.path(), "access.log", &text);
    let mut c = send_cmd(&fake);
    c.args(["--format", "regex", "--pattern", &combined()])
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 201);
    let parsed: Vec<&Value> = rows.iter().filter(|r| r.get("Status").is_some()).collect();
    assert_eq!(parsed.len(), 200);
    let r7 = parsed
        .iter()
        .find(|r| r["Path"] == "/item/7?q=1")
        .expect("row 7");
    for (k, v) in [
        ("ClientIP", "203.0.113.7"),
        ("RemoteUser", "-"),
        ("RequestTime", "23/Nov/2025:10:00:07 +0000"),
        ("Method", "GET"),
        ("Protocol", "HTTP/1.1"),
        ("Status", "200"),
        ("Bytes", "107"),
        ("Referer", "-"),
        ("UserAgent", "curl/8.5.0"),
    ] {
        assert_eq!(r7[k], json!(v), "{k} in {r7}");
    }
    assert!(r7["TimeGenerated"].is_string());
    let raw: Vec<&Value> = rows.iter().filter(|r| r.get("RawData").is_some()).collect();
    assert_eq!(raw.len(), 1);
    assert_eq!(raw[0]["RawData"], "this is not an access log line");
    assert_eq!(
        raw[0]["FilePath"],
        json!(std::path::absolute(&file)
            .expect("abs")
            .display()
            .to_string())
    );
    let s = summary(&out);
    assert_eq!(s["rows_read"], 201);
    assert_eq!(s["rows_sent"], 201);
    assert_eq!(s["parse_failures"], 1);
}

/// The access recipe with typed columns, as the README shows it: a `-` byte count is null and
/// not uncoercible, Apache's "-" request and a TLS handshake land in Request, and a time the
/// format cannot read is warned about once (naming the value and the format) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_access_recipe_with_a_schema_types_every_shape_and_warns_of_bad_times() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = concat!(
        r#"203.0.113.1 - - [23/Nov/2025:10:00:01 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8.5""#,
        "\n",
        r#"203.0.113.2 - - [23/Nov/2025:10:00:02 +0000] "GET /a HTTP/1.1" 304 - "-" "curl/8.5""#,
        "\n",
        r#"203.0.113.3 - - [23/Nov/2025:10:00:03 +0000] "-" 408 - - -"#,
        "\n",
        r#"203.0.113.4 - - [23/Nov/2025:10:00:04 +0000] "\x16\x03\x01\x00" 400 166 "-" "-""#,
        "\n",
        r#"203.0.113.5 - - [yesterday at noon] "GET /b HTTP/1.1" 200 7 "-" "-""#,
        "\n",
        r#"203.0.113.6 - - [someday] "GET /c HTTP/1.1" 200 7 "-" "-""#,
        "\n",
    );
    let file = write_file(dir.path(), "access.log", text);
    let mut streams = serde_json::Map::new();
    streams.insert(
        STREAM.into(),
        json!({"columns": [
            {"name": "TimeGenerated", "type": "datetime"},
            {"name": "ClientIP", "type": "string"},
            {"name": "Request", "type": "string"},
            {"name": "Path", "type": "string"},
            {"name": "Status", "type": "int"},
            {"name": "Bytes", "type": "long"},
        ]}),
    );
    let schema = json!({"properties": {"streamDeclarations": streams}});
    let schema_file = write_file(dir.path(), "dcr.json", &schema.to_string());
    let mut c = send_cmd(&fake);
    c.args(["--format", "regex", "--pattern", &combined()])
        .args(["--time-field", "RequestTime"])
        .args(["--time-format", "%d/%b/%Y:%H:%M:%S %z", "--schema"])
        .arg(&schema_file)
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 6);
    let by_ip = |ip: &str| {
        rows.iter()
            .find(|r| r["ClientIP"] == ip)
            .unwrap_or_else(|| panic!("no row of {ip}"))
    };
    assert_eq!(by_ip("203.0.113.1")["Bytes"], 512);
    assert_eq!(
        by_ip("203.0.113.1")["TimeGenerated"],
        "2025-11-23T10:00:01.000000Z"
    );
    assert_eq!(by_ip("203.0.113.2")["Bytes"], Value::Null);
    assert_eq!(by_ip("203.0.113.2")["Status"], 304);
    assert_eq!(by_ip("203.0.113.3")["Request"], "-");
    assert_eq!(by_ip("203.0.113.3")["Status"], 408);
    assert!(by_ip("203.0.113.3").get("Path").is_none());
    assert_eq!(by_ip("203.0.113.4")["Request"], r"\x16\x03\x01\x00");
    let s = summary(&out);
    assert_eq!(s["rows_sent"], 6);
    assert_eq!(s["values_uncoercible"], 0, "{s}");
    assert_eq!(s["time_unparsable"], 2, "{s}");
    let log = stderr(&out);
    let warned = log.matches("which time_format").count();
    assert_eq!(warned, 1, "one warning a minute: {log}");
    assert!(
        log.contains("yesterday at noon") && log.contains("%d/%b/%Y:%H:%M:%S %z"),
        "the warning names the value and the format: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dead_letters_unmatched_lines_when_asked() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = "level=info msg=\"started\" port=8080\njust prose, no pairs\nlevel=warn msg=slow took=12ms flag\n";
    let file = write_file(dir.path(), "app.log", text);
    let dl = dir.path().join("dead.ndjson");
    let mut c = send_cmd(&fake);
    c.args(["--format", "logfmt", "--on-mismatch", "dead-letter"])
        .arg("--dead-letter")
        .arg(&dl)
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));

    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["msg"], "started");
    assert_eq!(rows[0]["port"], "8080");
    assert_eq!(rows[1]["took"], "12ms");
    assert_eq!(rows[1]["flag"], true);
    let dead = std::fs::read_to_string(&dl).expect("dead-letter file");
    let entries: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(entries.len(), 1, "{dead}");
    assert_eq!(entries[0]["line"], 2);
    assert!(
        entries[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("logfmt")),
        "{dead}"
    );
    assert_eq!(entries[0]["record"], "just prose, no pairs");
    let s = summary(&out);
    assert_eq!(
        (s["rows_read"].as_u64(), s["rows_sent"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(s["rows_rejected"], 1);
    assert_eq!(s["parse_failures"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_syslog_from_stdin() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut c = send_cmd(&fake);
    c.args(["--format", "syslog"]).stdin(Stdio::piped());
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(
            b"<34>1 2025-11-23T10:00:01.5Z vm1 sshd 4242 ID7 - Failed password\n\
              <86>Nov 23 10:00:02 vm1 sudo[99]: pam_unix(sudo:session): session opened\n",
        )
        .await
        .expect("write");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["Facility"], "auth");
    assert_eq!(rows[0]["SeverityLevel"], "crit");
    assert_eq!(rows[0]["HostName"], "vm1");
    assert_eq!(rows[0]["ProcessName"], "sshd");
    assert_eq!(rows[0]["ProcessID"], 4242);
    assert_eq!(rows[0]["MsgId"], "ID7");
    assert_eq!(rows[0]["SyslogMessage"], "Failed password");
    assert_eq!(rows[0]["TimeGenerated"], "2025-11-23T10:00:01.500000Z");
    assert_eq!(rows[1]["Facility"], "authpriv");
    assert_eq!(rows[1]["SeverityLevel"], "info");
    assert_eq!(rows[1]["ProcessName"], "sudo");
    assert_eq!(rows[1]["ProcessID"], 99);
}

/// A logback log with two stack traces; the last event is the trace itself (no line after it).
fn java_log() -> (String, Vec<String>) {
    let events = vec![
        "2025-11-23 10:00:00.001 [main] INFO  com.example.App - starting".to_string(),
        "2025-11-23 10:00:01.002 [main] ERROR com.example.App - request failed\n\
         java.lang.IllegalStateException: boom\n\
         \tat com.example.App.handle(App.java:42)\n\
         Caused by: java.io.IOException: disk full\n\
         \tat java.base/java.io.FileOutputStream.write(FileOutputStream.java:1)\n\
         \t... 2 more"
            .to_string(),
        "2025-11-23 10:00:02.003 [worker-1] WARN  com.example.Job - retrying".to_string(),
        "2025-11-23 10:00:03.004 [worker-1] ERROR com.example.Job - gave up\n\
         java.lang.RuntimeException: no more retries\n\
         \tat com.example.Job.run(Job.java:7)"
            .to_string(),
    ];
    let text = events.iter().map(|e| format!("{e}\n")).collect();
    (text, events)
}

/// The Message column of the rows, keyed by their first line.
fn messages(rows: &[Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["Level"].as_str().unwrap_or("?").to_string(),
                r["Message"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// `--multiline-preset go` through the binary: two panics back to back are two RawData rows,
/// each with its whole goroutine dump (blank lines inside kept), and the log lines around them
/// rows of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_splits_go_panics_back_to_back() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let events = [
        "2024/01/01 10:00:00 serving",
        "panic: first\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:8 +0x1d\nexit status 2",
        "panic: second\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x7fd34f]\n\ngoroutine 5 [running]:\nmain.f()\n\t/app/f.go:3 +0x1f\ncreated by main.main in goroutine 1\n\t/app/main.go:9 +0x25",
        "2024/01/01 10:00:01 restarted",
    ];
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    let file = write_file(dir.path(), "app.log", &text);
    let mut c = send_cmd(&fake);
    c.args(["--multiline-preset", "go"]).arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw: Vec<Value> = all_rows(&fake)
        .iter()
        .map(|r| r["RawData"].clone())
        .collect();
    assert_eq!(raw, events.map(|e| json!(e)).to_vec());
    let s = summary(&out);
    assert_eq!(
        (s["rows_read"].as_u64(), s["rows_sent"].as_u64()),
        (Some(4), Some(4))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_joins_java_stack_traces_and_flushes_the_last_at_eof() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (text, events) = java_log();
    let file = write_file(dir.path(), "app.log", &text);
    let mut c = send_cmd(&fake);
    c.args([
        "--format",
        "regex",
        "--pattern",
        LOGBACK,
        "--multiline-preset",
        "java",
    ])
    .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 4, "{rows:?}");
    let got = messages(&rows);
    assert_eq!(got[1].0, "ERROR");
    let want_msg = events[1].split_once(" - ").expect("msg").1;
    assert_eq!(got[1].1, want_msg);
    assert!(got[3].1.ends_with("\tat com.example.Job.run(Job.java:7)"));
    assert_eq!(rows[1]["Thread"], "main");
    let s = summary(&out);
    assert_eq!(
        (s["rows_read"].as_u64(), s["parse_failures"].as_u64()),
        (Some(4), Some(0))
    );

    // The same file as text: one RawData row per event.
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut c = send_cmd(&fake);
    c.args(["--multiline-preset", "java"]).arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw: Vec<Value> = all_rows(&fake)
        .iter()
        .map(|r| r["RawData"].clone())
        .collect();
    assert_eq!(raw, events.iter().map(|e| json!(e)).collect::<Vec<_>>());
}

/// From a pipe that stays open, the last event goes out after `--multiline-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_from_a_quiet_pipe_flushes_the_pending_event_after_the_timeout() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut c = send_cmd(&fake);
    c.args([
        "--multiline-preset",
        "python",
        "--multiline-timeout",
        "300ms",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let trace = "ERROR app: failed\nTraceback (most recent call last):\n  File \"a.py\", line 1, in <module>\nValueError: x\n";
    stdin.write_all(trace.as_bytes()).await.expect("write");
    stdin.flush().await.expect("flush");
    wait_for(
        "the event, stdin still open",
        Duration::from_secs(20),
        || all_rows(&fake).len() == 1,
    )
    .await;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = all_rows(&fake);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["RawData"], trace.trim_end());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_ending_stack_trace_is_cut_at_max_lines_and_counted() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = String::from("2025-11-23 10:00:00.000 [main] ERROR a.B - endless\n");
    for i in 0..9_999 {
        text.push_str(&format!("\tat a.B.f{i}(B.java:{i})\n"));
    }
    let file = write_file(dir.path(), "endless.log", &text);
    let mut c = send_cmd(&fake);
    c.args(["--multiline-preset", "java", "--multiline-max-lines", "100"])
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw: Vec<String> = all_rows(&fake)
        .iter()
        .map(|r| r["RawData"].as_str().expect("RawData").to_string())
        .collect();
    assert_eq!(raw.len(), 100);
    assert!(raw.iter().all(|r| r.lines().count() == 100));
    // every line, in order, exactly once
    assert_eq!(raw.join("\n") + "\n", text);
    let s = summary(&out);
    assert_eq!(s["rows_read"], 100);
    assert_eq!(s["multiline_cut"], 99);
}

/// Bytes that are not text: every byte value, invalid UTF-8, NULs, lone `\r`, long runs.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            // xorshift: deterministic, no dependency
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(23) {
                b'\n'
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage_through_every_parser_is_accounted_for() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = garbage(0x9e37_79b9_7f4a_7c15, 400_000);
    let file = dir.path().join("garbage.bin");
    std::fs::write(&file, &bytes).expect("write");
    // Lines as the splitter frames them: a trailing \r is dropped; empty lines are no rows.
    let lines = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
        .count() as u64;
    let combined = combined();
    let cases: &[&[&str]] = &[
        &["--format", "regex", "--pattern", &combined],
        &["--format", "regex", "--pattern", r"^(?P<Never>\z\A)x"],
        &["--format", "logfmt"],
        &["--format", "syslog"],
        &["--format", "text", "--multiline-start", "^[a-z]"],
    ];
    for args in cases {
        let mut c = dcrship();
        c.args(["send", "--dry-run", "--summary", "json"])
            .args(*args)
            .arg(&file);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let s = summary(&out);
        if args.contains(&"--multiline-start") {
            // events, not lines; none lost is shown by the unit property test
            assert!(s["rows_read"].as_u64().is_some_and(|n| n > 0 && n <= lines));
        } else {
            assert_eq!(s["rows_read"], lines, "{args:?}");
            assert_eq!(
                s["rows_sent"], lines,
                "{args:?}: mismatches are RawData rows"
            );
        }
        if args.contains(&"^(?P<Never>\\z\\A)x") {
            assert_eq!(s["parse_failures"], lines, "a pattern that matches nothing");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_costs_bounded_memory() {
    let mut c = dcrship();
    c.args([
        "send",
        "--dry-run",
        "--summary",
        "json",
        "--format",
        "regex",
    ])
    .args(["--pattern", LOGBACK, "--multiline-preset", "java"])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let pid = child.id().expect("pid");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        let chunk = vec![b'x'; 1 << 20];
        stdin
            .write_all(b"2025-11-23 10:00:00.000 [main] ERROR a.B - huge: ")
            .await?;
        for _ in 0..256 {
            stdin.write_all(&chunk).await?;
        }
        stdin
            .write_all(b"\n\tat a.B.c(B.java:1)\nnext line\n")
            .await?;
        Ok::<_, std::io::Error>(())
    });
    // Peak RSS of the child, read while it runs.
    let mut peak_kb = 0u64;
    let started = Instant::now();
    while !writer.is_finished() && started.elapsed() < Duration::from_secs(120) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.await.expect("writer").expect("write");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        s["rows_read"], 2,
        "the huge event with its trace line, and the next line"
    );
    assert_eq!(s["fields_truncated"], 1);
    assert!(peak_kb > 0 && peak_kb < 100 * 1024, "peak RSS {peak_kb} kB");
}

// ---------------------------------------------------------------------------------------------
// dcrship run
// ---------------------------------------------------------------------------------------------

/// `dcrship run` from flags, tailing `path` from its beginning, without /metrics.
fn run_cmd(fake: &Fake, state: &Path, path: &Path, extra: &[&str]) -> tokio::process::Command {
    run_cmd_http(fake, state, path, extra, "")
}

/// [`run_cmd`] serving /metrics on `http`.
fn run_cmd_http(
    fake: &Fake,
    state: &Path,
    path: &Path,
    extra: &[&str],
    http: &str,
) -> tokio::process::Command {
    let mut c = dcrship();
    c.arg("run")
        .args(["--endpoint", &fake.url(), "--dcr", DCR, "--stream", STREAM])
        .args([
            "--auth",
            "static",
            "--batch-timeout",
            "100ms",
            "--http-listen",
            http,
        ])
        .args(["--start-at", "beginning", "--shutdown-timeout", "5s"])
        .arg("--state-dir")
        .arg(state)
        .arg("--path")
        .arg(path)
        .args(extra)
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Polls until `cond` holds; panics after `within`.
async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM to the agent this test started, then its output (exit 0 expected).
async fn stop(child: tokio::process::Child) -> std::process::Output {
    let pid = child.id().expect("pid");
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

/// The body of GET /metrics.
async fn metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_tails_syslog_into_columns() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let log = write_file(
        dir.path(),
        "syslog",
        "Nov 23 10:00:01 vm1 sshd[1234]: Accepted publickey for azureuser\n",
    );
    let state = dir.path().join("state");
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let child = run_cmd_http(
        &fake,
        &state,
        &log,
        &["--format", "syslog"],
        &http.to_string(),
    )
    .spawn()
    .expect("spawn");
    wait_for("the first row", Duration::from_secs(20), || {
        all_rows(&fake).len() == 1
    })
    .await;
    append(
        &log,
        "2025-11-23T10:00:02.000001+00:00 vm1 systemd[1]: Started Session 7.\nnot syslog\n",
    );
    wait_for("three rows", Duration::from_secs(20), || {
        all_rows(&fake).len() == 3
    })
    .await;
    let body = metrics(http).await;
    assert!(
        body.contains("dcrship_parse_failures_total{input=\"files\"} 1\n"),
        "{body}"
    );
    stop(child).await;
    let rows = all_rows(&fake);
    assert_eq!(rows[0]["HostName"], "vm1");
    assert_eq!(rows[0]["ProcessName"], "sshd");
    assert_eq!(rows[0]["ProcessID"], 1234);
    assert_eq!(rows[0]["SyslogMessage"], "Accepted publickey for azureuser");
    assert!(rows[0]["EventTime"]
        .as_str()
        .is_some_and(|t| t.ends_with(":00:01.000000Z")));
    assert_eq!(rows[1]["TimeGenerated"], "2025-11-23T10:00:02.000001Z");
    assert_eq!(rows[1]["ProcessName"], "systemd");
    assert_eq!(rows[2]["RawData"], "not syslog");
    assert_eq!(
        rows[2]["FilePath"],
        json!(log.display().to_string()),
        "a mismatch is the text row of the file"
    );
    assert_eq!(all_rows(&fake).len(), 3, "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_joins_a_tailed_java_trace_and_flushes_the_last_event_after_the_timeout() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (text, events) = java_log();
    let log = write_file(dir.path(), "app.log", "");
    let state = dir.path().join("state");
    let args = [
        "--format",
        "regex",
        "--pattern",
        LOGBACK,
        "--multiline-preset",
        "java",
        "--multiline-timeout",
        "1s",
    ];
    let child = run_cmd(&fake, &state, &log, &args).spawn().expect("spawn");
    // Written in two parts, the second one in the middle of a trace.
    let cut = text.find("Caused by").expect("cut");
    append(&log, &text[..cut]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&log, &text[cut..]);
    // The last trace has no line after it: only the timeout sends it, while the agent runs.
    wait_for("four events", Duration::from_secs(20), || {
        all_rows(&fake).len() >= 4
    })
    .await;
    let rows = all_rows(&fake);
    let got = messages(&rows);
    let want: Vec<String> = events
        .iter()
        .map(|e| e.split_once(" - ").expect("msg").1.to_string())
        .collect();
    // The first part may have been read on its own; its trace must still be one event unless
    // the writer paused longer than the timeout, which 100 ms is not.
    assert_eq!(
        got.iter().map(|g| g.1.clone()).collect::<Vec<_>>(),
        want,
        "{rows:?}"
    );
    let out = stop(child).await;
    assert_eq!(all_rows(&fake).len(), 4, "nothing twice");
    // The checkpoint covers the whole file: a restart sends nothing again.
    let child = run_cmd(&fake, &state, &log, &args).spawn().expect("spawn");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop(child).await;
    assert_eq!(all_rows(&fake).len(), 4, "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_pattern_without_named_groups() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let log = write_file(dir.path(), "a.log", "");
    let out = run(run_cmd(
        &fake,
        dir.path(),
        &log,
        &["--format", "regex", "--pattern", r"^(\w+) (.*)$"],
    ))
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no named group"), "{}", stderr(&out));

    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nmethod = \"static\"\n[outputs.app]\nendpoint = {:?}\ndcr = {DCR:?}\n\
             stream = {STREAM:?}\n[inputs.a]\ntype = \"file\"\npaths = [{:?}]\n\
             format = \"regex\"\npattern = '^(?P<1x>\\w+)'\n",
            fake.url(),
            log.display().to_string()
        ),
    )
    .expect("write");
    let mut c = dcrship();
    c.args(["check", "--config"]).arg(&config);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 11, key inputs.a.pattern"),
        "{}",
        stderr(&out)
    );
}
