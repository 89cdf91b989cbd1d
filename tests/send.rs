//! `dcrship send` end to end: the real binary against a fake DCE on 127.0.0.1 with scripted
//! faults. Every test accounts rows: sent = received, duplicates counted.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-abc123";

fn input(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    write_file(dir.path(), name, text).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_arrives_once_in_requests_within_the_cap() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "rows.ndjson", &ndjson(0..5000, 40));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--max-request-bytes", "50000", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let reqs = fake.ingest_requests();
    assert!(reqs.len() > 5, "many requests: {}", reqs.len());
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            format!("/dataCollectionRules/{DCR}/streams/{STREAM}")
        );
        assert_eq!(r.query, "api-version=2023-01-01");
        assert_eq!(r.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r
            .header("x-ms-client-request-id")
            .is_some_and(|v| v.len() == 36));
        assert!(r.body.len() <= 50_000, "gzip body {}", r.body.len());
        assert!(
            r.raw_body().len() <= 50_000,
            "raw body {}",
            r.raw_body().len()
        );
        assert_eq!(r.raw_body()[0], b'[', "a JSON array, never a bare object");
    }
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 5000);
    assert!(counts.values().all(|&n| n == 1), "no duplicates");
    let s = summary(&out);
    assert_eq!(s["rows_read"], 5000);
    assert_eq!(s["rows_sent"], 5000);
    assert_eq!(s["rows_rejected"], 0);
    assert_eq!(s["requests"], reqs.len());
    assert_eq!(s["exit_code"], 0);
    // rows keep their fields and get TimeGenerated
    let row = &fake.accepted()[0].rows()[0];
    assert!(row["msg"]
        .as_str()
        .is_some_and(|m| m.starts_with("message")));
    assert!(row["TimeGenerated"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 27));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_become_ama_style_rows() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(
        &dir,
        "app.log",
        "first line\n\nsecond \u{e9}\nbad \u{FFFD}\nlast without newline",
    );
    std::fs::write(
        &file,
        b"first line\n\nsecond \xc3\xa9\nbad \xff\xfe\nlast without newline",
    )
    .expect("write");
    let mut c = send_to(&fake, TOKEN);
    c.arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<Value> = fake.accepted().iter().flat_map(|r| r.rows()).collect();
    let raw: Vec<&str> = rows
        .iter()
        .map(|r| r["RawData"].as_str().expect("RawData"))
        .collect();
    assert_eq!(
        raw,
        vec![
            "first line",
            "second \u{e9}",
            "bad \u{FFFD}\u{FFFD}",
            "last without newline"
        ]
    );
    let path = std::path::absolute(&file)
        .expect("abs")
        .display()
        .to_string();
    for r in &rows {
        assert_eq!(r["FilePath"], json!(path));
        assert!(r["Computer"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(r["TimeGenerated"].as_str().is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_csv_and_json_inputs_with_time_field() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let csv = input(
        &dir,
        "a.csv",
        "ts,level,msg\n2024-01-02T03:04:05Z,INFO,\"hello, world\"\n1704164645,WARN,two\n",
    );
    let json = input(
        &dir,
        "b.json",
        r#"[{"ts":"2024-01-02 03:04:05.5","n":1},{"ts":1704164645123,"n":2}]"#,
    );
    let mut c = send_to(&fake, TOKEN);
    c.args(["--time-field", "ts", &csv, &json]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<Value> = fake.accepted().iter().flat_map(|r| r.rows()).collect();
    assert_eq!(rows.len(), 4);
    let times: Vec<&str> = rows
        .iter()
        .map(|r| r["TimeGenerated"].as_str().expect("t"))
        .collect();
    assert!(times.contains(&"2024-01-02T03:04:05.000000Z"));
    assert!(times.contains(&"2024-01-02T03:04:05.500000Z"));
    assert!(times.contains(&"2024-01-02T03:04:05.123000Z"));
    assert!(rows
        .iter()
        .any(|r| r["msg"] == "hello, world" && r["level"] == "INFO"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_dead_lettered_and_the_rest_delivered() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let big = format!("{{\"id\":99,\"blob\":\"{}\"}}\n", "z".repeat(3_000_000));
    let text = format!("{{\"id\":1}}\nnot json\n{big}[1,2]\n{{\"id\":2}}\n");
    let file = input(&dir, "mixed.ndjson", &text);
    let ragged = input(&dir, "r.csv", "id,msg\n3,ok\n4\n5,ok,extra\n6,fine\n");
    let dl = dir.path().join("dead.ndjson");
    let mut c = send_to(&fake, TOKEN);
    c.args([
        "--dead-letter",
        &dl.display().to_string(),
        "--summary",
        "json",
        &file,
        &ragged,
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let ids: Vec<Value> = fake
        .accepted()
        .iter()
        .flat_map(|r| r.rows())
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(2), json!("3"), json!("6")]);
    let dead: Vec<Value> = std::fs::read_to_string(&dl)
        .expect("dead-letter")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let reasons: Vec<(u64, &str)> = dead
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().expect("line"),
                d["reason"].as_str().expect("reason"),
            )
        })
        .collect();
    assert_eq!(dead.len(), 5, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(l, r)| *l == 2 && r.starts_with("invalid JSON: ")),
        "{reasons:?}"
    );
    assert!(reasons
        .iter()
        .any(|(l, r)| *l == 3 && r.contains("longer than")));
    assert!(reasons
        .iter()
        .any(|(l, r)| *l == 4 && r.contains("an array")));
    assert!(reasons
        .iter()
        .any(|(l, r)| *l == 3 && r.contains("1 fields, the header has 2")));
    assert!(reasons
        .iter()
        .any(|(l, r)| *l == 4 && r.contains("3 fields")));
    let s = summary(&out);
    assert_eq!(
        (
            s["rows_read"].as_u64(),
            s["rows_sent"].as_u64(),
            s["rows_rejected"].as_u64()
        ),
        (Some(9), Some(4), Some(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_while_the_grant_propagates_then_delivered() {
    let fake = Fake::start(|r| {
        if r.n < 1 {
            Reply::Status(403)
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let mut c = send_to(&fake, &fake_jwt("11111111-2222-3333-4444-555555555555"));
    c.args(["--format", "ndjson", "-"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(ndjson(0..100, 10).as_bytes())
            .await
            .expect("write");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("in time")
        .expect("ran");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Monitoring Metrics Publisher")
            && err.contains("11111111-2222-3333-4444-555555555555"),
        "{err}"
    );
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 100);
    assert!(counts.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_past_the_grace_window_exits_4_naming_the_fix() {
    let fake = Fake::start(|_| Reply::json(403, json!({"error":{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data"}}))).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..10, 1));
    let mut c = send_to(&fake, &fake_jwt("aaaaaaaa-0000-0000-0000-000000000001"));
    c.args(["--permission-grace", "3s", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let s = summary(&out);
    let e = s["error"].as_str().expect("error");
    assert!(
        e.contains("Monitoring Metrics Publisher")
            && e.contains(DCR)
            && e.contains("aaaaaaaa-0000-0000-0000-000000000001"),
        "{e}"
    );
    assert_eq!(s["rows_unsent"], 10);
    assert!(fake.accepted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_waits_for_retry_after() {
    let fake = Fake::start(|r| {
        if r.n == 0 {
            Reply::with_header(429, "Retry-After", "2")
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..50, 1));
    let mut c = send_to(&fake, TOKEN);
    c.arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = fake.ingest_requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_secs(2),
        "waited {gap:?}, Retry-After said 2 s"
    );
    assert_eq!(id_counts(&fake.accepted()).len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_dropped_connections_are_retried() {
    // 503, a dropped connection, an HTML 502, then success.
    let fake = Fake::start(|r| match r.n {
        0 => Reply::Status(503),
        1 => Reply::Drop,
        2 => Reply::Full {
            status: 502,
            headers: vec![],
            body: "<html>Bad gateway</html>".into(),
        },
        _ => Reply::Status(204),
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..20, 1));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&n| n == 1));
    let s = summary(&out);
    assert_eq!(s["retries"], 3);
    assert_eq!(s["requests"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_the_work_was_done_duplicates_only_that_batch() {
    // The fake takes the first request's rows, then the answer is lost (slow answer past no
    // timeout is hard to stage; a drop after reading is the same for the client).
    let fake = Fake::start(|r| {
        if r.n == 0 {
            Reply::Drop
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..30, 1));
    let mut c = send_to(&fake, TOKEN);
    c.arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // counting the dropped request as landed (the worst case): each row at most twice, and
    // only the rows of the one lost answer twice
    let all = id_counts(&fake.ingest_requests());
    let dup: usize = all.values().filter(|&&n| n > 1).count();
    assert_eq!(all.len(), 30);
    assert_eq!(dup, fake.ingest_requests()[0].rows().len());
    assert!(all.values().all(|&n| n <= 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_service_refuses_is_bisected_out() {
    let fake = Fake::start(|r| {
        if r.rows().iter().any(|row| row["msg"].as_str().is_some_and(|m| m.contains("poison"))) {
            Reply::json(400, json!({"error":{"code":"InvalidData","message":"Data of type string cannot be converted"}}))
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = ndjson(0..200, 5);
    text.push_str("{\"id\":1000,\"msg\":\"poison\"}\n");
    text.push_str(&ndjson(200..400, 5));
    let file = input(&dir, "a.ndjson", &text);
    let dl = dir.path().join("dl.ndjson");
    let mut c = send_to(&fake, TOKEN);
    c.args([
        "--dead-letter",
        &dl.display().to_string(),
        "--summary",
        "json",
        &file,
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 400);
    assert!(counts.values().all(|&n| n == 1));
    assert!(!counts.contains_key(&1000));
    let dead = std::fs::read_to_string(&dl).expect("dl");
    let d: Value = serde_json::from_str(dead.trim()).expect("one line");
    assert_eq!(d["row"]["id"], 1000);
    assert_eq!(d["line"], 201);
    // The reason names the refusing request by the service's id and by ours, as the fake saw
    // them: the last request that held the poison row alone.
    let refusal = fake
        .ingest_requests()
        .into_iter()
        .rev()
        .find(|r| r.rows().len() == 1 && r.rows()[0]["id"] == 1000)
        .expect("the row was sent alone");
    assert_eq!(
        d["reason"],
        format!(
            "HTTP 400: InvalidData: Data of type string cannot be converted (x-ms-request-id: {}, x-ms-client-request-id: {})",
            fake_request_id(refusal.n),
            refusal.header("x-ms-client-request-id").expect("client request id")
        )
    );
    assert_eq!(summary(&out)["rows_rejected"], 1);
}

/// Issue 12: a stream the DCR does not declare is a 400 `InvalidStream` about the request as a
/// whole. A 1 MB batch is one request (plus nothing: the code is known), exit 4 naming the
/// stream, the DCR and what to check; no row is dead-lettered. Before: every 400 was bisected,
/// ~2,000 requests for 1,000 rows, all of them dead-lettered, exit 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_stream_is_one_request_and_exit_4_naming_the_fix() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..1000, 950));
    let dl = dir.path().join("dl.ndjson");
    let mut c = dcrship();
    c.arg("send")
        .args([
            "--endpoint",
            &fake.url(),
            "--dcr",
            DCR,
            "--stream",
            "Custom-Wrong_CL",
        ])
        .args(["--auth", "static", "--no-progress", "--summary", "json"])
        .arg("--dead-letter")
        .arg(&dl)
        .arg(&file)
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let reqs = fake.ingest_requests();
    assert!(
        !reqs.is_empty() && reqs.len() <= 2,
        "{} requests",
        reqs.len()
    );
    assert!(reqs.iter().all(|r| r.answered == Some(400)));
    let s = summary(&out);
    assert_eq!(s["rows_read"], 1000);
    assert_eq!(s["rows_rejected"], 0);
    assert_eq!(s["rows_unsent"], 1000);
    let msg = s["error"].as_str().unwrap_or_default();
    for words in [
        "stream Custom-Wrong_CL is not declared in DCR",
        DCR,
        "streamDeclarations",
        "x-ms-request-id: ",
    ] {
        assert!(msg.contains(words), "{words}: {msg}");
    }
    assert!(std::fs::read_to_string(&dl).unwrap_or_default().is_empty());
}

/// An unknown DCR is a 404 `NotFound` (as Azure answers it): retried for the grace window,
/// then exit 4 naming the DCR, not the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dcr_exits_4_naming_the_dcr() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    fake.forget_dcr(DCR);
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..10, 1));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--permission-grace", "1s", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let msg = summary(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.contains(&format!("does not know DCR {DCR}"))
            && msg.contains("Data collection rule with immutable Id"),
        "{msg}"
    );
}

/// Issue 11: an endpoint slower than the request timeout. Each request goes again after a
/// timeout with the same x-ms-client-request-id and twice the time, so it lands within two
/// tries; every timeout is a WARN naming the request. Before: a fixed 60 s timeout, no flag,
/// the same rows again and again (4 copies in 200 s from a 65 s endpoint), nothing logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_gets_each_request_at_most_twice() {
    let fake =
        Fake::start(|_| Reply::Late(Duration::from_millis(1500), Box::new(Reply::Status(204))))
            .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..50, 10));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--request-timeout", "1s", "--summary", "json", &file]);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let reqs = fake.ingest_requests();
    // copies of each row: every request the fake took counts, answered in time or not
    let copies = id_counts(&reqs);
    assert_eq!(copies.len(), 50);
    assert!(copies.values().all(|&n| n <= 2), "{copies:?}");
    let ids: std::collections::HashSet<&str> = reqs
        .iter()
        .filter_map(|r| r.header("x-ms-client-request-id"))
        .collect();
    assert!(
        ids.len() < reqs.len(),
        "the second try reuses the id: {ids:?}"
    );
    let first = reqs[0].header("x-ms-client-request-id").expect("id");
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("no answer within the request timeout")
            && l.contains(first)),
        "{err}"
    );
}

/// Issue 11: nothing delivered is not silent. A closed port gives one WARN with the cause at
/// the first failure (not one per retry), and send gives up at the retry timeout with exit 6.
/// Before: nothing above debug until the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_one_warning_with_the_cause() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..5, 1));
    let mut c = dcrship();
    c.arg("send")
        .args([
            "--endpoint",
            &format!("http://{addr}"),
            "--dcr",
            DCR,
            "--stream",
            STREAM,
        ])
        .args([
            "--auth",
            "static",
            "--no-progress",
            "--retry-timeout",
            "5s",
            &file,
        ])
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    let warns: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("delivery is failing"))
        .collect();
    assert_eq!(warns.len(), 1, "{err}");
    assert!(
        warns[0].to_lowercase().contains("connection refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_is_split_and_every_row_lands() {
    let fake = Fake::start(|r| {
        if r.raw_body().len() > 20_000 {
            Reply::too_large()
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..1000, 50));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--max-request-bytes", "100000", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 1000);
    assert!(counts.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_past_the_retry_timeout_with_exit_6() {
    let fake = Fake::start(|_| Reply::Status(500)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..10, 1));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--retry-timeout", "2s", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["rows_unsent"], 10);
    assert!(s["error"]
        .as_str()
        .is_some_and(|e| e.contains("--retry-timeout")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_is_not_http_is_a_transient_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s
                .write_all(b"\x00\xffgarbage that is not HTTP\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..3, 1));
    let mut c = dcrship();
    c.args([
        "send",
        "--endpoint",
        &format!("http://{addr}"),
        "--dcr",
        DCR,
        "--stream",
        STREAM,
        "--auth",
        "static",
    ])
    .args(["--retry-timeout", "2s", &file])
    .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_in_stdin_flushes_a_partial_batch() {
    use tokio::io::AsyncWriteExt;
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut c = send_to(&fake, TOKEN);
    c.args(["--batch-timeout", "300ms", "--format", "text"]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"one\ntwo\n").await.expect("write");
    stdin.flush().await.expect("flush");
    // stdin stays open: the rows must still go out after the batch timeout
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fake.accepted().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "partial batch never sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stdin.write_all(b"three\n").await.expect("write");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("in time")
        .expect("ran");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let raw: Vec<String> = fake
        .accepted()
        .iter()
        .flat_map(|r| r.rows())
        .map(|r| r["RawData"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(raw, vec!["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_exits_3() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut c = dcrship();
    c.args([
        "send",
        "--endpoint",
        &fake.url(),
        "--dcr",
        DCR,
        "--stream",
        STREAM,
        "--auth",
        "static",
        "/dev/null",
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("DCRSHIP_ACCESS_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["send".into(), "--bogus".into()], "--bogus"),
        (
            vec!["send".into(), "--dry-run".into(), "/no/such/file".into()],
            "no such file",
        ),
        (
            vec![
                "send".into(),
                "--dry-run".into(),
                dir.path().display().to_string(),
            ],
            "is a directory",
        ),
        (
            vec!["send".into(), "/dev/null".into()],
            "missing --endpoint",
        ),
        (
            vec![
                "send".into(),
                "--endpoint".into(),
                "http://example.com".into(),
                "--dcr".into(),
                DCR.into(),
                "--stream".into(),
                STREAM.into(),
                "/dev/null".into(),
            ],
            "not loopback",
        ),
        (
            vec![
                "send".into(),
                "--endpoint".into(),
                "https://x.example".into(),
                "--dcr".into(),
                "mydcr".into(),
                "--stream".into(),
                STREAM.into(),
                "/dev/null".into(),
            ],
            "immutable id",
        ),
        (
            vec!["send".into(), "--retry-timeout".into(), "10".into()],
            "invalid duration",
        ),
    ];
    for (args, want) in cases {
        let mut c = dcrship();
        c.args(&args);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_counts_what_would_go() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..300, 20));
    let mut c = dcrship();
    c.args(["send", "--dry-run", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["rows_sent"], 300);
    assert_eq!(s["requests"], 0);
    assert_eq!(s["dry_run"], true);
    assert!(s["bytes_gzip"]
        .as_u64()
        .is_some_and(|g| g > 0 && g < s["bytes_raw"].as_u64().unwrap_or(0)));
}

/// Issue 17 item 7: with `--log-format json` every line on stderr is JSON, the summary (its
/// numbers as fields, its text as the message) and a failure's error line too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_makes_the_summary_and_the_error_json_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &format!("{}not json\n", ndjson(0..40, 5)));
    let mut c = dcrship();
    c.args(["--log-format", "json", "send", "--dry-run", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let lines: Vec<Value> = stderr(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let summary = lines
        .iter()
        .find(|v| v["rows_read"].is_u64())
        .expect("the summary line");
    assert_eq!(summary["rows_read"], 41);
    assert_eq!(summary["rows_sent"], 40);
    assert_eq!(summary["rows_rejected"], 1);
    assert!(summary["bytes_read"].as_u64().is_some_and(|b| b > 0));
    assert!(summary["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("dcrship: 41 rows read")));
    let error = lines
        .iter()
        .find(|v| v["level"] == "ERROR")
        .expect("the error line");
    assert_eq!(error["exit_code"], 5);
    assert!(error["message"]
        .as_str()
        .is_some_and(|m| m.contains("1 row rejected")));
    assert!(
        out.stdout.is_empty(),
        "the summary goes to stderr, as the text one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_output_even_at_trace_level() {
    let secret = fake_jwt("bbbbbbbb-0000-0000-0000-000000000002");
    let fake = Fake::start(|r| match r.n {
        0 => Reply::Status(401),
        1 => Reply::Status(403),
        _ => Reply::Status(204),
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = input(&dir, "a.ndjson", &ndjson(0..5, 1));
    let mut c = send_to(&fake, &secret);
    c.args(["--log-level", "trace", "--summary", "json", &file]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(all.len() > 200, "trace output was produced");
    let payload = secret.split('.').nth(1).expect("payload");
    assert!(
        !all.contains(&secret) && !all.contains(payload),
        "token leaked:\n{all}"
    );
}

/// Peak RSS (VmHWM) of a running process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_and_binary_garbage_keep_memory_bounded() {
    use tokio::io::AsyncWriteExt;
    let fake = Fake::start(|_| Reply::Status(204)).await;
    for format in ["text", "ndjson"] {
        let mut c = send_to(&fake, TOKEN);
        c.args(["--format", format, "--summary", "json"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        let pid = child.id().expect("pid");
        let mut stdin = child.stdin.take().expect("stdin");
        let writer = tokio::spawn(async move {
            stdin.write_all(b"{\"id\":1}\n").await?;
            // one 200 MB line, then binary garbage with NULs and invalid UTF-8, then a good row
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..200 {
                stdin.write_all(&chunk).await?;
            }
            stdin.write_all(b"\n").await?;
            let garbage: Vec<u8> = (0..300_000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            stdin.write_all(&garbage).await?;
            stdin.write_all(b"\n{\"id\":2}\n").await?;
            Ok::<_, std::io::Error>(())
        });
        let mut peak = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !writer.is_finished() {
            assert!(std::time::Instant::now() < deadline, "writing stalled");
            peak = peak.max(peak_rss(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak = peak.max(peak_rss(pid).unwrap_or(0));
        writer.await.expect("join").expect("stdin write");
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("in time")
            .expect("ran");
        assert!(peak > 0, "RSS was read");
        assert!(
            peak < 50 << 20,
            "{format}: peak RSS {} MB for a 200 MB line",
            peak >> 20
        );
        let s = summary(&out);
        let code = out.status.code();
        match format {
            // text: every line is a row; the long one cut to 64 KiB and counted
            "text" => {
                assert_eq!(code, Some(0), "{}", stderr(&out));
                assert!(
                    s["fields_truncated"].as_u64().is_some_and(|n| n >= 1),
                    "{s}"
                );
                assert_eq!(s["rows_sent"], s["rows_read"]);
            }
            // ndjson: the long line and the garbage are refused, the good rows delivered
            _ => {
                assert_eq!(code, Some(5), "{}", stderr(&out));
                assert!(s["rows_rejected"].as_u64().is_some_and(|n| n >= 2), "{s}");
                assert_eq!(s["rows_sent"], 2, "{s}");
            }
        }
        assert_eq!(
            s["rows_read"],
            s["rows_sent"].as_u64().unwrap_or(0) + s["rows_rejected"].as_u64().unwrap_or(0)
        );
    }
    let text_rows = fake
        .accepted()
        .iter()
        .flat_map(|r| r.rows())
        .filter(|r| r.get("RawData").is_some())
        .count();
    assert!(text_rows >= 3);
}

/// A full ingestion URL pasted as `--endpoint` (with no `--dcr` / `--stream`) is taken apart:
/// the rows reach the stream it names, once. Another path is refused before any request, with
/// the fix; an endpoint without `https://` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ingestion_url_as_endpoint_is_taken_apart_and_other_paths_are_refused() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..30, 10));
    let full = format!(
        "{}/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01",
        fake.url().trim_end_matches('/')
    );
    let mut c = dcrship();
    c.args([
        "send",
        "--endpoint",
        &full,
        "--auth",
        "static",
        "--no-progress",
    ])
    .args(["--summary", "json"])
    .arg(&file)
    .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_all_rows_once(&fake, &out, 30);

    for (endpoint, says) in [
        (
            format!("{}/api/logs", fake.url().trim_end_matches('/')),
            "drop the path",
        ),
        (
            "my-dce.eastus-1.ingest.monitor.azure.com".to_string(),
            "has no scheme; write https://",
        ),
    ] {
        let before = fake.requests().len();
        let mut c = dcrship();
        c.args([
            "send",
            "--endpoint",
            &endpoint,
            "--dcr",
            DCR,
            "--stream",
            STREAM,
        ])
        .args(["--auth", "static", "--no-progress"])
        .arg(&file)
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{endpoint}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{endpoint}: {}", stderr(&out));
        assert!(stderr(&out).contains("--endpoint:"), "{}", stderr(&out));
        assert_eq!(fake.requests().len(), before, "no request for {endpoint}");
    }
}

/// The `--summary json` line of a `send` run through [`agent::Agent`] (its stdout, in the log).
fn summary_in(log: &str) -> Value {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("stdout: "))
        .unwrap_or_else(|| panic!("no summary in {log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary JSON ({e}): {line}"))
}

/// `send -` reading a pipe that stays open, through [`agent::Agent`] (logs and signals).
fn send_stdin(fake: &Fake) -> agent::Agent {
    let mut c = send_to(fake, TOKEN);
    c.args([
        "--format",
        "text",
        "--batch-timeout",
        "200ms",
        "--summary",
        "json",
    ])
    .arg("-")
    .stdin(std::process::Stdio::piped());
    agent::Agent::spawn(c)
}

/// Ctrl-C in the middle of a pipe: reading stops, what was read is delivered — the last line,
/// still without its newline, too — and the summary and exit code 130 say the input was cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_reading_delivers_what_was_read_and_exits_130() {
    use tokio::io::AsyncWriteExt;
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let mut agent = send_stdin(&fake);
    let mut stdin = agent.stdin.take().expect("stdin");
    let whole = lines("read", 0..50);
    let text = format!("{}no newline yet", text_of(&whole));
    stdin.write_all(text.as_bytes()).await.expect("write");
    agent
        .wait_for("the whole lines", secs(10), || all_arrived(&fake, &whole))
        .await;
    agent.signal("INT");
    let status = agent.wait_exit(secs(15)).await;
    assert_eq!(status.code(), Some(130), "{}", agent.log());
    let s = summary_in(&agent.log());
    assert_eq!(
        (
            &s["rows_read"],
            &s["rows_sent"],
            &s["rows_unsent"],
            &s["exit_code"]
        ),
        (&json!(51), &json!(51), &json!(0), &json!(130)),
        "{s}"
    );
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("interrupted")),
        "{s}"
    );
    let got = raw_counts(&fake);
    assert_eq!(got.len(), 51, "{got:?}");
    assert!(got.values().all(|&n| n == 1), "{got:?}");
    assert_eq!(got.get("no newline yet"), Some(&1));
    drop(stdin);
}

/// SIGTERM while the endpoint fails: delivery goes on for the grace, and a second signal ends
/// the upload at once with 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_send_at_once() {
    use tokio::io::AsyncWriteExt;
    let fake = Fake::start(|_| Reply::Status(503)).await;
    let mut agent = send_stdin(&fake);
    let mut stdin = agent.stdin.take().expect("stdin");
    stdin
        .write_all(text_of(&lines("x", 0..10)).as_bytes())
        .await
        .expect("write");
    agent
        .wait_for("a failed request", secs(10), || {
            !fake.ingest_requests().is_empty()
        })
        .await;
    agent.signal("TERM");
    agent
        .wait_for("the first signal's warning", secs(10), || {
            agent.log_has("stopped reading; delivering what was read")
        })
        .await;
    agent.signal("TERM");
    let status = agent.wait_exit(secs(5)).await;
    assert_eq!(status.code(), Some(130), "{}", agent.log());
    assert!(
        agent.log_has("SIGTERM again: stopping now"),
        "{}",
        agent.log()
    );
    assert!(fake.accepted().is_empty());
    drop(stdin);
}

/// One SIGINT while the endpoint fails and stdin holds far more than the queues: reading stops
/// and delivery gives up after the grace (10 s), though each request would be retried for two
/// minutes, and the summary counts the rows not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_ends_a_stalled_send_after_the_grace() {
    let fake = Fake::start(|_| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let rows: String = (0..400)
        .map(|c| text_of(&lines(&format!("c{c}"), 0..1000)))
        .collect();
    let file = write_file(dir.path(), "rows.txt", &rows);
    let mut c = send_to(&fake, TOKEN);
    c.args([
        "--format",
        "text",
        "--summary",
        "json",
        "--retry-timeout",
        "120s",
    ])
    .arg("-")
    .stdin(std::fs::File::open(&file).expect("open"));
    let mut agent = agent::Agent::spawn(c);
    agent
        .wait_for("a failed request", secs(10), || {
            !fake.ingest_requests().is_empty()
        })
        .await;
    agent.signal("INT");
    let took = std::time::Instant::now();
    let status = agent.wait_exit(secs(30)).await;
    let took = took.elapsed();
    assert_eq!(status.code(), Some(130), "{}", agent.log());
    assert!(took < secs(20), "bounded by the grace: {took:?}");
    let s = summary_in(&agent.log());
    let (read, unsent) = (s["rows_read"].as_u64(), s["rows_unsent"].as_u64());
    assert!(unsent > Some(0) && unsent == read, "{s}");
    assert!(read < Some(400_000), "reading stopped: {s}");
    assert!(fake.accepted().is_empty());
}
