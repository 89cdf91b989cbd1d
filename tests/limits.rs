//! Rate limits and disk trouble, end to end: the real binary against the fake DCE on 127.0.0.1.
//!
//! Times are the fake's receive times. Only lower bounds are asserted (a request must not come
//! before the time it was told to wait for); how much later it comes depends on the machine.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::*;
use serde_json::Value;
use tokio::io::AsyncReadExt;

const TOKEN: &str = "limits-token-0123456789";

// ---------------------------------------------------------------------------------------------
// `send`
// ---------------------------------------------------------------------------------------------

/// A 429 with `Retry-After: 2` holds every sender (`--concurrency 4`): after each 429, no
/// request comes until 2 s have passed, except those already on their way when it was
/// answered; and every row arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_waits_out_retry_after_with_every_sender() {
    let fake = Fake::start(|r| {
        if r.is_ingest() && r.n < 3 {
            Reply::with_header(429, "retry-after", "2")
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let rows = 3000;
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..rows, 40));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--concurrency", "4", "--max-request-bytes", "8192"])
        .args(["--summary", "json"])
        .arg(&file);
    let out = run(c).await;
    assert_all_rows_once(&fake, &out, rows);

    let reqs = fake.ingest_requests();
    assert!(
        reqs.len() > 20,
        "enough requests to see a pause: {}",
        reqs.len()
    );
    // A request the client had sent before the 429 reached it may land just after the answer.
    let in_flight = Duration::from_millis(300);
    let wait = secs(2);
    let throttled: Vec<Instant> = reqs
        .iter()
        .filter(|r| r.answered == Some(429))
        .map(|r| r.at)
        .collect();
    assert_eq!(throttled.len(), 3);
    for t in &throttled {
        let early: Vec<Duration> = reqs
            .iter()
            .filter(|r| r.at > *t + in_flight && r.at < *t + wait)
            .map(|r| r.at - *t)
            .collect();
        assert!(
            early.is_empty(),
            "requests {early:?} after a 429 asking for 2 s\n{}",
            stderr(&out)
        );
        let just_after = reqs
            .iter()
            .filter(|r| r.at > *t && r.at <= *t + in_flight)
            .count();
        assert!(just_after <= 3, "{just_after} requests right after a 429");
    }
    let first = reqs[0].at;
    let last = reqs.last().map_or(first, |r| r.at);
    assert!(last - first >= wait, "the run took {:?}", last - first);
}

/// `--max-requests-per-minute 60` spaces requests a second apart: 6 requests span at least 5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_request_limit_paces_requests() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    // About 6 requests of at most 4 KiB.
    let rows = 120;
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..rows, 150));
    let mut c = send_to(&fake, TOKEN);
    c.args(["--concurrency", "4", "--max-request-bytes", "4096"])
        .args(["--max-requests-per-minute", "60", "--summary", "json"])
        .arg(&file);
    let out = run(c).await;
    assert_all_rows_once(&fake, &out, rows);
    let times: Vec<Instant> = fake.ingest_requests().iter().map(|r| r.at).collect();
    assert!(times.len() >= 5, "{} requests", times.len());
    // One a second; 100 ms for the first request's connection setup.
    let slack = Duration::from_millis(100);
    for (k, t) in times.iter().enumerate() {
        let want = secs(k as u64).saturating_sub(slack);
        assert!(
            *t - times[0] >= want,
            "request {k} came {:?} after the first",
            *t - times[0]
        );
    }
    assert!(
        stderr(&out).contains("holding requests to the DCR's rate limits"),
        "{}",
        stderr(&out)
    );
}

/// `send --dead-letter` on a full disk: exit 5, and the summary says the file lacks the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_says_when_the_dead_letter_file_could_not_be_written() {
    let fake = Fake::start(|r| {
        if r.is_ingest() && r.rows().iter().any(|row| row["id"] == 3) {
            Reply::json(
                400,
                serde_json::json!({"error": {"code": "InvalidData", "message": "bad row"}}),
            )
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..10, 10));
    let mut c = send_to(&fake, TOKEN);
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    c.args(["--dead-letter", "/dev/full", "--summary", "json"])
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["rows_sent"], 9);
    assert_eq!(s["rows_rejected"], 1);
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("writing them to /dev/full failed")),
        "{s}"
    );
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_flags_are_checked() {
    for (flag, value, want) in [
        ("--max-requests-per-minute", "0", "1..=1000000"),
        ("--max-bytes-per-minute", "10KB", "from 1MiB to 1TiB"),
        ("--max-bytes-per-minute", "lots", "invalid size"),
    ] {
        let mut c = dcrship();
        c.args(["send", "--dry-run", flag, value, "-"]);
        let out = run(c).await;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(want),
            "{flag} {value}: {}",
            stderr(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// `run`
// ---------------------------------------------------------------------------------------------

/// `[agent]` and `[auth]` of a test config; `http` "" for none.
fn agent_section(state: &Path, http: &str) -> String {
    format!(
        "[agent]\nstate_dir = {:?}\nhttp_listen = {http:?}\nshutdown_timeout = \"2s\"\n\n\
         [auth]\nmethod = \"static\"\n",
        state.display().to_string()
    )
}

fn output_section(name: &str, fake: &Fake, extra: &str) -> String {
    format!(
        "\n[outputs.{name}]\nendpoint = {:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\n\
         batch_timeout = \"200ms\"\n{extra}",
        fake.url()
    )
}

fn input_section(name: &str, path: &Path, output: &str) -> String {
    format!(
        "\n[inputs.{name}]\ntype = \"file\"\npaths = [{:?}]\nstart_at = \"beginning\"\noutput = {output:?}\n",
        path.display().to_string()
    )
}

fn assert_exactly_once(fake: &Fake, lines: &[String]) {
    assert_each_once(&raw_counts(fake), lines);
}

/// The offset saved for the one file in `checkpoints.json`, if the file is there and valid.
fn saved_offset(state: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(state.join("checkpoints.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["files"][0]["offset"].as_u64()
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

/// Two outputs to one DCR share its Retry-After: a 429 answered to output `a` holds output `b`
/// (another endpoint, another input) for the whole wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_one_output_holds_the_other_output_of_the_dcr() {
    let fake_a = Fake::start(|r| {
        if r.is_ingest() && r.n == 0 {
            Reply::with_header(429, "retry-after", "3")
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let fake_b = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&log_a, &[]);
    append(&log_b, &[]);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), "")
            + &output_section("a", &fake_a, "")
            + &output_section("b", &fake_b, "")
            + &input_section("a", &log_a, "a")
            + &input_section("b", &log_b, "b"),
    )
    .expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    agent
        .wait_for("both inputs", secs(10), || {
            agent.count("input started") == 2
        })
        .await;

    let line_a = lines("a", 0..1);
    append(&log_a, &line_a);
    agent
        .wait_for("the 429 to output a", secs(10), || {
            !fake_a.ingest_requests().is_empty()
        })
        .await;
    let throttled_at = fake_a.ingest_requests()[0].at;
    let line_b = lines("b", 0..1);
    append(&log_b, &line_b);
    agent
        .wait_for("both lines", secs(15), || {
            all_arrived(&fake_a, &line_a) && all_arrived(&fake_b, &line_b)
        })
        .await;
    agent.stop(secs(10)).await;

    let b_at = fake_b.ingest_requests()[0].at;
    assert!(
        b_at - throttled_at >= secs(3),
        "output b sent {:?} after output a's 429 asked for 3 s\n{}",
        b_at - throttled_at,
        agent.log()
    );
    let a_retry = fake_a.ingest_requests()[1].at;
    assert!(a_retry - throttled_at >= secs(3));
    assert_exactly_once(&fake_b, &line_b);
}

/// The state directory stops taking writes while the agent runs: rows keep arriving, the
/// error is logged once (not once per save attempt), and once it can be written again the
/// checkpoint catches up and an info line says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_that_cannot_be_saved_do_not_stop_delivery() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let first = lines("first", 0..20);
    append(&log, &first);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), "")
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    let len = file_len(&log);
    agent
        .wait_for("the first checkpoint", secs(10), || {
            saved_offset(state.path()) == Some(len)
        })
        .await;

    // Root ignores permissions: a directory where the temp file goes fails every save.
    let blocker = state.path().join(".checkpoints.json.tmp");
    std::fs::create_dir(&blocker).expect("mkdir");
    let second = lines("second", 0..20);
    append(&log, &second);
    let mut all = first.clone();
    all.extend(second);
    agent
        .wait_for("rows read while saves fail", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    // Saves are tried every second: wait for a few.
    agent
        .wait_for("the error", secs(5), || {
            agent.count("cannot write the checkpoints") >= 1
        })
        .await;
    tokio::time::sleep(secs(3)).await;
    assert_eq!(
        agent.count("cannot write the checkpoints"),
        1,
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains(".checkpoints.json.tmp"),
        "{}",
        agent.log()
    );
    assert_eq!(
        saved_offset(state.path()),
        Some(len),
        "the old checkpoint stays"
    );

    std::fs::remove_dir(&blocker).expect("rmdir");
    let len = file_len(&log);
    agent
        .wait_for("the checkpoint to catch up", secs(10), || {
            saved_offset(state.path()) == Some(len)
        })
        .await;
    agent
        .wait_for("the recovery line", secs(5), || {
            agent.count("can write the checkpoints again") == 1
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// A damaged `checkpoints.json` at start: logged, set aside, files read by `start_at`, every
/// row delivered, and a good checkpoint written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_checkpoint_file_is_set_aside_and_the_files_read_by_start_at() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let garbage = b"{\"version\":1,\"files\":[{\"dev\":1,\x00\xff";
    std::fs::write(state.path().join("checkpoints.json"), garbage).expect("garbage");
    let log = dir.path().join("app.log");
    let rows = lines("row", 0..30);
    append(&log, &rows);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), "")
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    let len = file_len(&log);
    agent
        .wait_for("every row and a new checkpoint", secs(10), || {
            all_arrived(&fake, &rows) && saved_offset(state.path()) == Some(len)
        })
        .await;
    agent.stop(secs(10)).await;
    assert!(
        agent.log().contains("damaged checkpoint file ignored"),
        "{}",
        agent.log()
    );
    assert_eq!(
        std::fs::read(state.path().join("checkpoints.json.corrupt")).expect("set aside"),
        garbage
    );
    assert_exactly_once(&fake, &rows);
}

/// A state directory dcrship cannot write in stops it at start, exit 2, with the path and the
/// fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_dir_that_cannot_be_written_is_a_startup_error() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    std::fs::create_dir(state.path().join(".checkpoints.json.tmp")).expect("mkdir");
    let log = dir.path().join("app.log");
    append(&log, &lines("x", 0..1));
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), "")
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let out = run(run_config(&config, TOKEN)).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&state.path().display().to_string()) && err.contains("StateDirectory="),
        "{err}"
    );
    assert!(fake.ingest_requests().is_empty());
}

/// The dead-letter file's disk is full: the refused row is still counted as dropped with its
/// reason, the error is logged once, and the good rows are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_file_on_a_full_disk_is_reported_and_counted() {
    let fake = Fake::start(|r| {
        let bad = r.is_ingest()
            && r.rows()
                .iter()
                .any(|row| row["RawData"].as_str().is_some_and(|s| s.contains("BAD")));
        if bad {
            Reply::json(
                400,
                serde_json::json!({"error": {"code": "InvalidData", "message": "bad row"}}),
            )
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    // Writes to /dev/full fail with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", state.path().join("dead-letter.ndjson"))
        .expect("symlink");
    let log = dir.path().join("app.log");
    let mut good = lines("good", 0..10);
    let bad = vec!["row BAD 1".to_string(), "row BAD 2".to_string()];
    let mut all = good.clone();
    all.extend(bad.clone());
    all.extend(lines("more", 0..10));
    good.extend(lines("more", 0..10));
    append(&log, &all);
    let http = free_addr();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), &http.to_string())
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN)).with_http(http);
    agent
        .wait_for("the good rows", secs(10), || all_arrived(&fake, &good))
        .await;
    let sample = "dcrship_records_dropped_total{output=\"app\",reason=\"rejected\"}";
    agent.wait_metric(sample, secs(10), |v| v == 2.0).await;
    agent.stop(secs(10)).await;
    assert_eq!(
        agent.count("cannot write the dead-letter file"),
        1,
        "{}",
        agent.log()
    );
    assert!(
        agent.log().contains("No space left on device"),
        "{}",
        agent.log()
    );
    assert_exactly_once(&fake, &good);
}

/// The spool cursor cannot be saved (it is saved every 20 ms while requests are acked): the
/// error is logged once, not fifty times a second, delivery goes on, and one line says when it
/// can be saved again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_cursor_that_cannot_be_saved_is_logged_once_a_minute() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let first = lines("first", 0..10);
    append(&log, &first);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(state.path(), "")
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    agent
        .wait_for("the first rows", secs(10), || all_arrived(&fake, &first))
        .await;
    // Root ignores permissions: a directory where the cursor's temp file goes fails every save.
    let blocker = state.path().join("spool/app/cursor.tmp");
    std::fs::create_dir(&blocker).expect("mkdir");
    let mut all = first.clone();
    for burst in 0..15 {
        let more = lines(&format!("burst{burst}"), 0..5);
        append(&log, &more);
        all.extend(more);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent
        .wait_for("every row", secs(10), || all_arrived(&fake, &all))
        .await;
    let failed = "cannot save the spool cursor";
    assert_eq!(agent.count(failed), 1, "{}", agent.log());
    std::fs::remove_dir(&blocker).expect("rmdir");
    let last = lines("last", 0..5);
    append(&log, &last);
    all.extend(last);
    agent
        .wait_for("the recovery line", secs(10), || {
            agent.count("can save the spool cursor again") == 1
        })
        .await;
    agent.stop(secs(10)).await;
    assert_eq!(agent.count(failed), 1, "{}", agent.log());
    assert_exactly_once(&fake, &all);
}

/// Whatever the umask (a container or a manual run without the unit's `UMask=0077`), the state
/// directory the agent creates is 0700 and every file in it 0600: they hold log rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let fake = Fake::start(|r| {
        let bad = r.is_ingest()
            && r.rows()
                .iter()
                .any(|row| row["RawData"].as_str().is_some_and(|s| s.contains("BAD")));
        if bad {
            Reply::json(
                400,
                serde_json::json!({"error": {"code": "InvalidData", "message": "bad row"}}),
            )
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = dir.path().join("state");
    let log = dir.path().join("app.log");
    let good = lines("good", 0..10);
    let mut all = good.clone();
    all.push("row BAD".to_string());
    append(&log, &all);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_section(&state, "")
            + &output_section("app", &fake, "")
            + &input_section("app", &log, "app"),
    )
    .expect("config");
    let mut cmd = run_config(&config, TOKEN);
    // SAFETY: umask is async-signal-safe; the closure runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    let mut agent = Agent::spawn(cmd);
    agent
        .wait_for("rows and the dead-letter line", secs(10), || {
            all_arrived(&fake, &good) && state.join("dead-letter.ndjson").exists()
        })
        .await;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let mut seen = Vec::new();
    let mut dirs = vec![state.clone()];
    while let Some(d) = dirs.pop() {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                seen.push(p.file_name().expect("name").to_string_lossy().into_owned());
            }
        }
    }
    for want in ["lock", "checkpoints.json", "dead-letter.ndjson", "cursor"] {
        assert!(seen.iter().any(|s| s == want), "{want} in {seen:?}");
    }
    assert!(
        seen.iter().any(|s| s.ends_with(".seg")),
        "a segment in {seen:?}"
    );
    agent.stop(secs(10)).await;
}

/// `dcrship send --summary json … | true`: stdout is closed before the summary is written; and
/// `dcrship send … 2>&-`-like, stderr closed before the text summary. Neither is a crash (exit
/// 101): the command exits with its own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_a_closed_stdout_or_stderr_exits_with_its_own_code() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..50, 10));
    for (summary, closed) in [("json", "stdout"), ("text", "stderr")] {
        let mut c = send_to(&fake, TOKEN);
        c.args(["--summary", summary, "--log-level", "debug"])
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn");
        let mut err = String::new();
        if closed == "stdout" {
            drop(child.stdout.take());
            let mut stderr = child.stderr.take().expect("stderr");
            let _ = stderr.read_to_string(&mut err).await;
        } else {
            drop(child.stderr.take());
        }
        let status = tokio::time::timeout(secs(60), child.wait())
            .await
            .expect("exit")
            .expect("wait");
        assert_eq!(
            status.code(),
            Some(0),
            "--summary {summary}, {closed} closed: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let rows: usize = fake.accepted().iter().map(|r| r.rows().len()).sum();
    assert_eq!(rows, 100);
}
