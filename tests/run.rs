//! `dcrship run` end to end: the real agent binary tailing real files (and stdin) into a fake DCE
//! on 127.0.0.1, stopped with real signals. Every test accounts rows: each line written arrives
//! exactly once (counted over the requests the fake answered 2xx) unless the test is about
//! something else, and conditions are awaited by polling with a deadline.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent::{metric_value, proc_status_kib, Agent};
use common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;

const TOKEN: &str = "run-token-0123456789";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A config file: static-token outputs `(name, fake)`, file inputs `(name, path, output)` all
/// with the same `start_at`, a 2 s shutdown timeout and no HTTP listener.
fn config_text(
    state: &Path,
    outputs: &[(&str, &Fake)],
    inputs: &[(&str, &Path, &str)],
    start_at: &str,
) -> String {
    let mut t = format!(
        "[agent]\nstate_dir = {:?}\nhttp_listen = \"\"\nshutdown_timeout = \"2s\"\n\n\
         [auth]\nmethod = \"static\"\n",
        state.display().to_string(),
    );
    for (name, fake) in outputs {
        t.push_str(&format!(
            "\n[outputs.{name}]\nendpoint = {:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\nbatch_timeout = \"200ms\"\n",
            fake.url(),
        ));
    }
    for (name, path, output) in inputs {
        t.push_str(&format!(
            "\n[inputs.{name}]\ntype = \"file\"\npaths = [{:?}]\nstart_at = {start_at:?}\noutput = {output:?}\n",
            path.display().to_string()
        ));
    }
    t
}

/// [`config_text`] with one output `default` and inputs read from the beginning.
fn simple_config(fake: &Fake, state: &Path, inputs: &[(&str, &Path)]) -> String {
    let inputs: Vec<(&str, &Path, &str)> =
        inputs.iter().map(|(n, p)| (*n, *p, "default")).collect();
    config_text(state, &[("default", fake)], &inputs, "beginning")
}

/// Every line in `lines` arrived exactly once, and nothing else arrived.
fn assert_exactly_once(fake: &Fake, lines: &[String]) {
    assert_each_once(&raw_counts(fake), lines);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// 1. Lines present at start (`--start-at beginning`) and lines appended while running all
///    arrive once as AMA-style text rows; SIGTERM ends the agent with 0 well inside the
///    shutdown timeout and leaves `checkpoints.json` behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_lines_arrive_and_sigterm_exits_0_with_checkpoints() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let first = lines("first", 0..50);
    append(&log, &first);

    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "5s"]);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the lines present at start", secs(10), || {
            all_arrived(&fake, &first)
        })
        .await;

    let mut all = first.clone();
    for round in 0..3 {
        let more = lines(&format!("more{round}"), 0..100);
        append(&log, &more);
        all.extend(more);
    }
    agent
        .wait_for("the appended lines", secs(10), || all_arrived(&fake, &all))
        .await;
    let took = agent.stop(secs(8)).await;
    assert!(took < secs(5), "SIGTERM to exit took {took:?}");

    assert_exactly_once(&fake, &all);
    let row = &fake.accepted()[0].rows()[0];
    assert_eq!(row["FilePath"], Value::from(log.display().to_string()));
    assert!(row["Computer"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(row["TimeGenerated"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    for r in fake.ingest_requests() {
        assert_eq!(r.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        assert_eq!(
            r.path,
            format!("/dataCollectionRules/{DCR}/streams/{STREAM}")
        );
    }
    let cp = std::fs::read_to_string(state.path().join("checkpoints.json"))
        .expect("checkpoints.json after SIGTERM");
    assert!(cp.contains("app.log"), "checkpoint names the file: {cp}");
}

/// 2. Restart in the middle: N lines delivered, SIGTERM, M lines appended while stopped, start
///    again with the same state dir: exactly the M new lines arrive (no loss, no repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let cmd = || {
        let mut c = run_to(&fake, state.path(), None, TOKEN);
        c.arg("--path").arg(&log).args(["--start-at", "beginning"]);
        c
    };
    let before = lines("before", 0..300);
    append(&log, &before);
    let mut agent = Agent::spawn(cmd());
    agent
        .wait_for("the first N lines", secs(10), || {
            all_arrived(&fake, &before)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &before);

    let while_stopped = lines("stopped", 0..200);
    append(&log, &while_stopped);
    let mut agent = Agent::spawn(cmd());
    let mut all = before.clone();
    all.extend(while_stopped.iter().cloned());
    agent
        .wait_for("the M lines written while stopped", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    // and it keeps tailing after the restart
    let after = lines("after", 0..50);
    append(&log, &after);
    all.extend(after);
    agent
        .wait_for("lines appended after the restart", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent.stop_with("INT", secs(10)).await; // SIGINT drains like SIGTERM
    assert_exactly_once(&fake, &all);
}

/// 2b. `start_at = "end"` (the default): a file the agent watched but got no new line from
///     before it was stopped must still resume where the agent started reading it, so lines
///     written while the agent was down are shipped after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_start_at_end_keeps_lines_written_while_stopped() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let old = lines("old", 0..20);
    append(&log, &old);
    let cmd = || {
        let mut c = run_to(&fake, state.path(), None, TOKEN);
        c.arg("--path").arg(&log); // start_at end
        c
    };
    let mut agent = Agent::spawn(cmd());
    agent
        .wait_for("the tailer to open the file", secs(10), || {
            agent.log_has("tailing new file")
        })
        .await;
    agent.stop(secs(10)).await;
    assert!(fake.accepted().is_empty(), "start_at=end skips old lines");

    let while_stopped = lines("stopped", 0..30);
    append(&log, &while_stopped);
    let mut agent = Agent::spawn(cmd());
    // a marker appended after the restart shows the tailer is running: by the time it arrived,
    // the lines before it would have arrived too
    let marker = lines("marker", 0..1);
    agent
        .wait_for("the tailer to open the file again", secs(10), || {
            agent.log_has("tailing new file") || agent.log_has("resuming from checkpoint")
        })
        .await;
    append(&log, &marker);
    agent
        .wait_for("the marker line", secs(10), || all_arrived(&fake, &marker))
        .await;
    agent.stop(secs(10)).await;
    let mut expected = while_stopped.clone();
    expected.extend(marker);
    assert_exactly_once(&fake, &expected);
}

/// 3. Rename rotation: app.log is renamed to app.log.1, the writer (not yet reopened) adds late
///    lines to app.log.1 within rotate_wait, and new lines go to a fresh app.log. With the glob
///    naming only app.log, every line of both files arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_rotation_with_late_writes_loses_nothing() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let rotated = dir.path().join("app.log.1");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path").arg(&log).args(["--start-at", "beginning"]);
    let before = lines("before", 0..200);
    append(&log, &before);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("lines before the rotation", secs(10), || {
            all_arrived(&fake, &before)
        })
        .await;

    // the writer holds the file open across the rename, like a logger that reopens on HUP
    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    let unread = lines("unread", 0..100); // written just before the rename
    writer
        .write_all(text_of(&unread).as_bytes())
        .expect("write");
    std::fs::rename(&log, &rotated).expect("mv app.log app.log.1");
    let late = lines("late", 0..100);
    writer
        .write_all(text_of(&late).as_bytes())
        .expect("late write");
    let new = lines("new", 0..150);
    append(&log, &new);
    // more late lines a moment later, still within rotate_wait (5 s)
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = lines("later", 0..50);
    writer
        .write_all(text_of(&later).as_bytes())
        .expect("later write");
    drop(writer);

    let mut all = before.clone();
    for l in [&unread, &late, &new, &later] {
        all.extend(l.iter().cloned());
    }
    agent
        .wait_for(
            "every line of app.log.1 and the new app.log",
            secs(12),
            || all_arrived(&fake, &all),
        )
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// 3b. Rename rotation within the globs (`/dir/*.log`, app.log → app-1.log): the renamed file
///     goes on being tailed under its new name and is not read twice; the new app.log is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_within_the_globs_is_not_read_twice() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(format!("{}/*.log", dir.path().display()))
        .args(["--start-at", "beginning"]);
    let before = lines("before", 0..200);
    append(&log, &before);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("lines before the rotation", secs(10), || {
            all_arrived(&fake, &before)
        })
        .await;
    let renamed = dir.path().join("app-1.log");
    std::fs::rename(&log, &renamed).expect("mv");
    let late = lines("late", 0..50);
    append(&renamed, &late);
    let new = lines("new", 0..50);
    append(&log, &new);
    let mut all = [before, late, new].concat();
    agent
        .wait_for("late and new lines", secs(10), || all_arrived(&fake, &all))
        .await;
    // the renamed file still matches the globs, so it stays tailed under its new name
    let later = lines("later", 0..20);
    append(&renamed, &later);
    all.extend(later);
    agent
        .wait_for("lines appended to the renamed file", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// 4. copytruncate: the file is copied away and truncated to 0, then new lines are written: the
///    new lines arrive, and the old ones are not sent again. (Lines written between the copy and
///    the truncate are inherently lost; the test writes none there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_new_lines_from_the_start() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path").arg(&log).args(["--start-at", "beginning"]);
    let before = lines("before", 0..300);
    append(&log, &before);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("lines before the truncation", secs(10), || {
            all_arrived(&fake, &before)
        })
        .await;

    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .expect("open")
        .set_len(0)
        .expect("truncate");
    let after = lines("after", 0..40); // fewer bytes than before: the file is seen to shrink
    append(&log, &after);
    let mut all = before.clone();
    all.extend(after.iter().cloned());
    agent
        .wait_for("the lines written after the truncation", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    let more = lines("more", 0..40);
    append(&log, &more);
    all.extend(more);
    agent
        .wait_for("lines appended later", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
    assert!(
        agent.log().contains("truncated"),
        "the truncation is logged\n{}",
        agent.log()
    );
}

/// 5. A new file matching `/dir/*.log` that appears while the agent runs is found (within the
///    5 s rescan, or sooner by inotify) and read from its beginning; a file matching
///    `--exclude` is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_file_matching_the_glob_is_picked_up() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let first = dir.path().join("a.log");
    let a = lines("a", 0..20);
    append(&first, &a);
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(format!("{}/*.log", dir.path().display()))
        .args(["--exclude", "skip-*.log"]);
    let mut agent = Agent::spawn(c);
    // start_at end: a.log's present lines are skipped; a line appended later is not
    agent
        .wait_for("the tailer to open a.log", secs(10), || {
            agent.log_has("tailing new file")
        })
        .await;
    let a2 = lines("a2", 0..10);
    append(&first, &a2);
    agent
        .wait_for("a line appended to a.log", secs(10), || {
            all_arrived(&fake, &a2)
        })
        .await;

    let t = Instant::now();
    let b = lines("b", 0..100);
    append(&dir.path().join("b.log"), &b);
    append(&dir.path().join("skip-me.log"), &lines("skipped", 0..10));
    append(&dir.path().join("c.txt"), &lines("other", 0..10));
    let mut all = a2.clone();
    all.extend(b.iter().cloned());
    agent
        .wait_for("the lines of the new file", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    eprintln!("new file picked up after {:?}", t.elapsed());
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// 6. A deleted file is drained: lines written just before the unlink, and lines a writer that
///    still holds it open adds after the unlink, all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_read_to_its_end() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path").arg(&log).args(["--start-at", "beginning"]);
    let first = lines("first", 0..10);
    append(&log, &first);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the first lines", secs(10), || all_arrived(&fake, &first))
        .await;

    let mut writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open");
    let before_rm = lines("before-rm", 0..300);
    writer
        .write_all(text_of(&before_rm).as_bytes())
        .expect("write");
    std::fs::remove_file(&log).expect("rm");
    let after_rm = lines("after-rm", 0..100);
    writer
        .write_all(text_of(&after_rm).as_bytes())
        .expect("write after unlink");
    drop(writer);

    let mut all = first.clone();
    all.extend(before_rm);
    all.extend(after_rm);
    agent
        .wait_for("every line of the deleted file", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// 7. stdin only: the agent reads piped stdin, and when stdin ends it delivers everything and
///    exits 0 by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_only_exits_0_when_stdin_ends() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--stdin").stdin(Stdio::piped());
    let mut agent = Agent::spawn(c);
    let all = lines("stdin", 0..2000);
    let mut stdin = agent.stdin.take().expect("stdin");
    for chunk in all.chunks(500) {
        stdin
            .write_all(text_of(chunk).as_bytes())
            .await
            .expect("write stdin");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stdin);
    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert_exactly_once(&fake, &all);
}

/// 7b. stdin with `--format json`: one invalid line is dead-lettered in
///     `state_dir/dead-letter.ndjson`; every other object is delivered once with its fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_json_dead_letters_the_invalid_line() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.args(["--stdin", "--format", "json"])
        .stdin(Stdio::piped());
    let mut agent = Agent::spawn(c);
    let mut text = ndjson(0..500, 10);
    text.push_str("{\"id\": 999, this is not json\n");
    text.push_str(&ndjson(500..1000, 10));
    let mut stdin = agent.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).await.expect("write stdin");
    drop(stdin);
    let status = agent.wait_exit(secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());

    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len(), 1000, "every valid object arrived");
    assert!((0..1000).all(|i| counts.get(&i) == Some(&1)), "once each");
    let row = &fake.accepted()[0].rows()[0];
    assert!(row["msg"]
        .as_str()
        .is_some_and(|m| m.starts_with("message")));
    assert!(row["TimeGenerated"].as_str().is_some());

    let dl = std::fs::read_to_string(state.path().join("dead-letter.ndjson"))
        .expect("dead-letter.ndjson");
    let entries: Vec<Value> = dl
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead-letter line is JSON"))
        .collect();
    assert_eq!(entries.len(), 1, "{dl}");
    assert_eq!(entries[0]["record"], "{\"id\": 999, this is not json");
    assert_eq!(entries[0]["source"], "<stdin>");
    assert!(entries[0]["reason"].as_str().is_some_and(|r| !r.is_empty()));
}

/// 7c. stdin only, DCE failing: after stdin ended the agent keeps trying to deliver, but
///     SIGTERM must still stop it within the shutdown timeout with exit 0 (the contract: "Runs
///     until SIGTERM/SIGINT … or, when its only input is stdin, until stdin ends").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_stdin_only_agent_still_delivering() {
    let fake = Fake::start(|_| Reply::Status(503)).await;
    let state = tempfile::tempdir().expect("state");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.args(["--stdin", "--shutdown-timeout", "1s"])
        .stdin(Stdio::piped());
    let mut agent = Agent::spawn(c);
    let mut stdin = agent.stdin.take().expect("stdin");
    stdin
        .write_all(text_of(&lines("stdin", 0..10)).as_bytes())
        .await
        .expect("write");
    drop(stdin);
    agent
        .wait_for("stdin's end and a 503", secs(10), || {
            agent.log_has("stdin ended") && !fake.ingest_requests().is_empty()
        })
        .await;
    let took = agent.stop(secs(5)).await;
    assert!(took < secs(3), "bounded by --shutdown-timeout: {took:?}");
}

/// 8. Config file mode: SIGHUP after adding `[inputs.b]` starts reading b without losing or
///    repeating a's lines; a broken config on the next SIGHUP is logged and the running
///    configuration keeps shipping both files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_keeps_it_when_broken() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, simple_config(&fake, state.path(), &[("a", &a)])).expect("config");
    let a1 = lines("a1", 0..100);
    let b1 = lines("b1", 0..100);
    append(&a, &a1);
    append(&b, &b1);
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    agent
        .wait_for("a's lines", secs(10), || all_arrived(&fake, &a1))
        .await;
    assert!(
        !raw_counts(&fake).keys().any(|k| k.starts_with("b1-")),
        "b is not configured yet"
    );

    std::fs::write(
        &config,
        simple_config(&fake, state.path(), &[("a", &a), ("b", &b)]),
    )
    .expect("config");
    agent.signal("HUP");
    let a2 = lines("a2", 0..100);
    append(&a, &a2);
    let mut all: Vec<String> = [a1, b1, a2].concat();
    agent
        .wait_for("a's and b's lines after the reload", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    assert!(
        agent.log().contains("configuration reloaded"),
        "{}",
        agent.log()
    );

    std::fs::write(&config, "[agent\nthis is = not toml").expect("broken config");
    agent.signal("HUP");
    agent
        .wait_for("the reload error in the log", secs(10), || {
            agent.log_has("keeping the running configuration")
        })
        .await;
    let (a3, b3) = (lines("a3", 0..50), lines("b3", 0..50));
    append(&a, &a3);
    append(&b, &b3);
    all.extend(a3);
    all.extend(b3);
    agent
        .wait_for("lines after the failed reload", secs(10), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
    let log = agent.log();
    assert!(
        log.contains("ERROR"),
        "the bad config is logged as an error:\n{log}"
    );
}

/// An agent run from a config file in `dir` whose one input, `in`, reads stdin (`input` is the
/// rest of its table), and the agent's stdin.
fn stdin_agent(fake: &Fake, dir: &Path, input: &str) -> (Agent, ChildStdin) {
    let config = dir.join("agent.toml");
    let http = free_addr();
    let state = dir.join("state");
    let mut text = config_text(&state, &[("default", fake)], &[], "beginning")
        .replace("http_listen = \"\"", &format!("http_listen = \"{http}\""));
    text.push_str(&format!(
        "\n[inputs.in]\ntype = \"stdin\"\noutput = \"default\"\n{input}"
    ));
    std::fs::write(&config, text).expect("config");
    let mut c = run_config(&config, TOKEN);
    c.stdin(Stdio::piped());
    let mut agent = Agent::spawn(c).with_http(http);
    let stdin = agent.stdin.take().expect("stdin");
    (agent, stdin)
}

/// 7d. SIGTERM with a stdin input: what its decoder holds — a multiline event waiting for its
///     next line, a last line without its newline — is sent before the exit, not dropped:
///     those bytes were taken from the pipe and nothing else holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_the_event_and_line_a_stdin_input_holds() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let input = "[inputs.in.multiline]\nstart = '^\\S'\ntimeout = \"60s\"\n";
    let (mut agent, mut stdin) = stdin_agent(&fake, dir.path(), input);
    let text = "first\n  at one\nsecond\n  at two\nno newline yet";
    stdin.write_all(text.as_bytes()).await.expect("write");
    let metric = "dcrship_input_bytes_total{input=\"in\"}";
    let bytes = text.len() as f64;
    agent.wait_metric(metric, secs(10), |v| v == bytes).await;
    agent.signal("TERM");
    let status = agent.wait_exit(secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let expected = ["first\n  at one", "second\n  at two", "no newline yet"];
    assert_exactly_once(&fake, &expected.map(String::from));
    drop(stdin);
}

/// A stdin input holds a multiline event and a line begun when `edit` rewrites its config and
/// a SIGHUP reloads it: the event is sent at the reload, not dropped.
async fn reload_with_held_stdin(
    edit: impl Fn(&str) -> String,
) -> (Agent, Fake, ChildStdin, tempfile::TempDir) {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let input = "[inputs.in.multiline]\nstart = '^\\S'\ntimeout = \"60s\"\n";
    let (agent, mut stdin) = stdin_agent(&fake, dir.path(), input);
    let held = "first\n  at one\ncut hea";
    stdin.write_all(held.as_bytes()).await.expect("write");
    let metric = "dcrship_input_bytes_total{input=\"in\"}";
    let bytes = held.len() as f64;
    agent.wait_metric(metric, secs(10), |v| v == bytes).await;
    let config = dir.path().join("agent.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, edit(&text)).expect("config");
    agent.signal("HUP");
    agent
        .wait_for("the held event, sent at the reload", secs(10), || {
            raw_counts(&fake).contains_key("first\n  at one")
        })
        .await;
    (agent, fake, stdin, dir)
}

/// 8a. A reload that changes how stdin is read (here the multiline timeout): the line the old
///     pipeline had begun is the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changing_a_stdin_input_sends_the_event_it_held() {
    let (mut agent, fake, mut stdin, _dir) =
        reload_with_held_stdin(|c| c.replace("\"60s\"", "\"50s\"")).await;
    stdin.write_all(b"d\n").await.expect("write");
    drop(stdin);
    let status = agent.wait_exit(secs(15)).await;
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    assert_exactly_once(&fake, &["first\n  at one", "cut head"].map(String::from));
}

/// 8a. A reload to a configuration without a stdin input: nothing will read stdin again, so the
///     line begun goes out as it is, with the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_dropping_a_stdin_input_sends_what_it_held() {
    let (mut agent, fake, stdin, _dir) = reload_with_held_stdin(|c| {
        c.replace(
            "type = \"stdin\"",
            "type = \"file\"\npaths = [\"/nonexistent/*.log\"]",
        )
    })
    .await;
    agent
        .wait_for("the line begun", secs(10), || {
            raw_counts(&fake).contains_key("cut hea")
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &["first\n  at one", "cut hea"].map(String::from));
    drop(stdin);
}

/// A reload with a stdin input (`input` is the rest of its `[inputs.in]` table): `before` (whole
/// records) and `cut`, the head of a record, are written and read by the old pipeline; two
/// SIGHUPs; then `rest`, the record's tail and more. Each byte is counted read once, the end of
/// stdin ends the agent, and every value of `column` in `expected` arrived exactly once.
async fn stdin_across_two_reloads(
    input: &str,
    [before, cut, rest]: [&str; 3],
    column: &str,
    expected: &[String],
) {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (mut agent, mut stdin) = stdin_agent(&fake, dir.path(), input);
    // Each byte counted once, the cut record's head too (carried over, not read again).
    let read = |text: &str| {
        let bytes = text.len() as f64;
        move |v: f64| v == bytes
    };
    let metric = "dcrship_input_bytes_total{input=\"in\"}";
    stdin.write_all(before.as_bytes()).await.expect("write");
    agent.wait_metric(metric, secs(10), read(before)).await;
    stdin.write_all(cut.as_bytes()).await.expect("write");
    agent
        .wait_metric(metric, secs(10), read(&[before, cut].concat()))
        .await;
    for reload in 1..=2 {
        agent.signal("HUP");
        agent
            .wait_for("the reload", secs(10), || {
                agent.count("configuration reloaded") == reload
            })
            .await;
    }
    stdin.write_all(rest.as_bytes()).await.expect("write");
    agent
        .wait_metric(metric, secs(10), read(&[before, cut, rest].concat()))
        .await;
    drop(stdin);
    let status = agent.wait_exit(secs(15)).await;
    assert_eq!(status.code(), Some(0), "the end of stdin ends the agent");
    assert_each_once(&column_counts(&fake, column), expected);
}

/// 8a. Text lines: the stdin read under way when the old pipeline stopped belongs to the new
///     one, and so does the line the old one had begun, so every line arrives once and whole,
///     the one cut by the SIGHUP too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_stdin_input_loses_no_line_written_after_it() {
    let before = lines("before", 0..100);
    let after = lines("after", 0..100);
    let rest = format!(", then the rest\n{}", text_of(&after));
    let cut = vec!["cut-00000 first part, then the rest".to_string()];
    let all: Vec<String> = [before.clone(), cut, after].concat();
    let head = text_of(&before);
    let texts = [head.as_str(), "cut-00000 first part", &rest];
    stdin_across_two_reloads("", texts, "RawData", &all).await;
}

/// 8a. CSV: the header read before the reloads names the columns after them, and a quoted
///     record whose newline came before the SIGHUP is one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_csv_stdin_input_keeps_its_header_and_a_quoted_record() {
    let record = |tag: &str, i: usize| format!("{i},{tag}-{i:03}\n");
    let before: String = std::iter::once("id,msg\n".to_string())
        .chain((0..50).map(|i| record("before", i)))
        .collect();
    let rest: String = std::iter::once("second line\"\n".to_string())
        .chain((0..50).map(|i| record("after", i)))
        .collect();
    let mut expected: Vec<String> = (0..50).map(|i| format!("before-{i:03}")).collect();
    expected.push("first line\nsecond line".into());
    expected.extend((0..50).map(|i| format!("after-{i:03}")));
    let texts = [before.as_str(), "50,\"first line\n", &rest];
    stdin_across_two_reloads("format = \"csv\"\n", texts, "msg", &expected).await;
}

/// 8a. A multiline event begun before the SIGHUP takes the lines written after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_multiline_stdin_input_keeps_the_event_under_way() {
    let input = "[inputs.in.multiline]\nstart = '^\\S'\ntimeout = \"60s\"\n";
    let before: String = (0..50)
        .map(|i| format!("before-{i:03}\n  at frame {i}\n"))
        .collect();
    let rest: String = std::iter::once("  at the second frame\n".to_string())
        .chain((0..50).map(|i| format!("after-{i:03}\n  at frame {i}\n")))
        .chain(std::iter::once("last\n".to_string()))
        .collect();
    // The last event is sent at the end of stdin.
    let mut expected: Vec<String> = (0..50)
        .map(|i| format!("before-{i:03}\n  at frame {i}"))
        .collect();
    expected.push("cut\n  at the first frame\n  at the second frame".into());
    expected.extend((0..50).map(|i| format!("after-{i:03}\n  at frame {i}")));
    expected.push("last".into());
    let texts = [before.as_str(), "cut\n  at the first frame\n", &rest];
    stdin_across_two_reloads(input, texts, "RawData", &expected).await;
}

/// 8b. SIGHUP during an outage, `start_at = "end"` (the default): lines the old pipeline read
///     but could not deliver were never checkpointed; the reloaded tailer must read them again
///     rather than start at the end of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_an_outage_keeps_lines_read_but_not_delivered() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let fake = Fake::start(move |_| Reply::Status(if h.load(Relaxed) { 204 } else { 503 })).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    append(&log, &lines("old", 0..20));
    let config = dir.path().join("agent.toml");
    let text = config_text(
        state.path(),
        &[("default", &fake)],
        &[("a", &log, "default")],
        "end",
    );
    std::fs::write(&config, &text).expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN));
    agent
        .wait_for("the tailer to open the file", secs(10), || {
            agent.log_has("tailing new file")
        })
        .await;
    let during = lines("outage", 0..30);
    append(&log, &during);
    agent
        .wait_for("a 503", secs(10), || !fake.ingest_requests().is_empty())
        .await;
    agent.signal("HUP");
    agent
        .wait_for("the reload", secs(10), || {
            agent.log_has("configuration reloaded")
        })
        .await;
    healthy.store(true, Relaxed);
    let marker = lines("marker", 0..1);
    append(&log, &marker);
    agent
        .wait_for("a line written after the reload", secs(10), || {
            all_arrived(&fake, &marker)
        })
        .await;
    agent.stop(secs(10)).await;
    let expected = [during, marker].concat();
    assert_exactly_once(&fake, &expected);
}

/// 8c. An output removed by a reload leaves `/health`: the agent that swapped a 403ing output
///     for a working one is healthy (200, `ok`), and the line the old output could not deliver
///     is read again and delivered by the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_forgets_an_output_removed_by_a_reload() {
    let denied = Fake::start(|_| Reply::Status(403)).await;
    let fine = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let first = lines("first", 0..5);
    append(&log, &first);
    let http = free_addr();
    let config = dir.path().join("agent.toml");
    let with_listen =
        |t: String| t.replace("http_listen = \"\"", &format!("http_listen = \"{http}\""));
    let old = config_text(
        state.path(),
        &[("old", &denied)],
        &[("a", &log, "old")],
        "beginning",
    );
    std::fs::write(&config, with_listen(old)).expect("config");
    let mut agent = Agent::spawn(run_config(&config, TOKEN)).with_http(http);
    agent
        .wait_for("a 403", secs(10), || !denied.ingest_requests().is_empty())
        .await;
    let new = config_text(
        state.path(),
        &[("new", &fine)],
        &[("a", &log, "new")],
        "beginning",
    );
    std::fs::write(&config, with_listen(new)).expect("config");
    agent.signal("HUP");
    agent
        .wait_for("the lines through the new output", secs(10), || {
            all_arrived(&fine, &first)
        })
        .await;
    let (code, body) = agent.get("/health").await.expect("/health");
    agent.stop(secs(10)).await;
    assert_exactly_once(&fine, &first);
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert!(health["outputs"]["new"].is_object(), "{health}");
    assert!(
        health["outputs"].get("old").is_none(),
        "the removed output is still reported: {health}"
    );
    assert_eq!(code, 200, "{health}");
}

/// 9. SIGTERM drains: with a DCE that answers slowly, the rows already read are all delivered
///    before the agent exits 0 (requests keep arriving after the signal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_delivers_what_was_read_before_exit() {
    let fake =
        Fake::start(|_| Reply::Late(Duration::from_millis(300), Box::new(Reply::Status(204))))
            .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path").arg(&log).args([
        "--start-at",
        "beginning",
        "--concurrency",
        "1",
        "--max-request-bytes",
        "4096",
    ]);
    let all = lines("drain", 0..200);
    append(&log, &all);
    let mut agent = Agent::spawn(c).with_http(http);
    agent
        .wait_metric(
            "dcrship_records_received_total{input=\"files\"}",
            secs(10),
            |v| v == 200.0,
        )
        .await;
    let term_at = Instant::now();
    let delivered_before = raw_counts(&fake).len();
    agent.stop(secs(20)).await;
    let after = fake
        .ingest_requests()
        .iter()
        .filter(|r| r.at > term_at)
        .count();
    eprintln!(
        "drain: {delivered_before} of 200 rows had reached the fake at SIGTERM; {after} requests after it"
    );
    assert!(after > 0, "requests went on after SIGTERM");
    assert!(
        delivered_before < 200,
        "the test stopped before delivery was done"
    );
    assert_exactly_once(&fake, &all);
    let cp = std::fs::read_to_string(state.path().join("checkpoints.json")).expect("checkpoints");
    assert!(cp.contains("app.log"), "{cp}");
}

/// 9b. With a DCE that answers 503 forever and `--shutdown-timeout 1s`, SIGTERM still ends the
///     agent with 0 in about a second; the rows it could not deliver were not checkpointed, so
///     a restart against a healthy DCE delivers them (at-least-once: no loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_the_exit_and_a_restart_delivers_the_rest() {
    let failing = Fake::start(|_| Reply::Status(503)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let all = lines("undelivered", 0..100);
    append(&log, &all);
    let mut c = run_to(&failing, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("a first 503", secs(10), || {
            !failing.ingest_requests().is_empty()
        })
        .await;
    let took = agent.stop(secs(5)).await;
    eprintln!("exit after SIGTERM with a failing DCE took {took:?}");
    assert!(
        took >= Duration::from_millis(900),
        "it waited for the drain: {took:?}"
    );
    assert!(took < secs(3), "bounded by --shutdown-timeout: {took:?}");
    assert!(failing.accepted().is_empty());

    let healthy = Fake::start(|_| Reply::Status(204)).await;
    let mut c = run_to(&healthy, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the undelivered lines after the restart", secs(10), || {
            all_arrived(&healthy, &all)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&healthy, &all);
}

/// 10. sd_notify: READY=1 at start, STATUS= and WATCHDOG=1 (WATCHDOG_USEC=2 s: every second),
///     RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notifications() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf).await {
            g.lock()
                .expect("msgs")
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let msgs = || got.lock().expect("msgs").clone();
    let count = |m: &str| msgs().iter().filter(|x| x.as_str() == m).count();

    let log = dir.path().join("app.log");
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, simple_config(&fake, state.path(), &[("a", &log)])).expect("config");
    let first = lines("first", 0..10);
    append(&log, &first);
    let mut c = run_config(&config, TOKEN);
    c.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000");
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("READY=1", secs(10), || count("READY=1") >= 1)
        .await;
    agent
        .wait_for("the first lines", secs(10), || all_arrived(&fake, &first))
        .await;
    agent
        .wait_for("two WATCHDOG=1 and a STATUS=", secs(10), || {
            count("WATCHDOG=1") >= 2 && msgs().iter().any(|m| m.starts_with("STATUS="))
        })
        .await;
    let status = msgs()
        .into_iter()
        .rfind(|m| m.starts_with("STATUS="))
        .expect("STATUS");
    eprintln!("sd_notify status line: {status}");
    assert!(!status.contains('\n'), "one line: {status:?}");

    let before_hup = msgs().len();
    agent.signal("HUP");
    agent
        .wait_for("RELOADING=1 then READY=1", secs(10), || {
            let m = msgs();
            let tail = &m[before_hup..];
            let r = tail.iter().position(|x| x == "RELOADING=1");
            r.is_some_and(|r| tail[r..].iter().any(|x| x == "READY=1"))
        })
        .await;
    agent.stop(secs(10)).await;
    agent
        .wait_for("STOPPING=1", secs(2), || count("STOPPING=1") == 1)
        .await;
    let m = msgs();
    assert_eq!(m[0], "READY=1", "READY comes first: {m:?}");
    assert_eq!(count("READY=1"), 2, "{m:?}");
    let stopping = m.iter().position(|x| x == "STOPPING=1").expect("STOPPING");
    assert!(
        !m[stopping..].iter().any(|x| x == "READY=1"),
        "nothing claims readiness after STOPPING: {m:?}"
    );
    assert_exactly_once(&fake, &first);
    reader.abort();
}

/// 11. `/metrics` counts what was received and delivered, `/health` is 200 with the output
///     `ok` and a last success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_report_deliveries() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let all = lines("m", 0..250);
    append(&log, &all);
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path").arg(&log).args(["--start-at", "beginning"]);
    let mut agent = Agent::spawn(c).with_http(http);
    agent
        .wait_for("every line", secs(10), || all_arrived(&fake, &all))
        .await;
    agent
        .wait_metric(
            "dcrship_records_sent_total{output=\"default\"}",
            secs(5),
            |v| v == 250.0,
        )
        .await;
    let (code, metrics) = agent.get("/metrics").await.expect("/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric_value(&metrics, "dcrship_records_received_total{input=\"files\"}"),
        Some(250.0),
        "{metrics}"
    );
    let requests = fake.ingest_requests().len() as f64;
    assert_eq!(
        metric_value(
            &metrics,
            "dcrship_requests_total{output=\"default\",status=\"204\"}"
        ),
        Some(requests),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE dcrship_records_sent_total counter"));
    assert!(
        metric_value(
            &metrics,
            "dcrship_token_refresh_total{source=\"static\",result=\"success\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );

    let (code, body) = agent.get("/health").await.expect("/health");
    assert_eq!(code, 200, "{body}");
    let health: Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["outputs"]["default"]["state"], "ok", "{health}");
    assert!(
        health["outputs"]["default"]["last_success"].is_string(),
        "{health}"
    );
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all);
}

/// 11b. A DCE answering 403 forever (inside the permission grace): `/health` says
///      `waiting_for_permission` and answers 503, since the only output cannot deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_waiting_for_permission_on_403() {
    let fake = Fake::start(|_| {
        Reply::json(
            403,
            serde_json::json!({"error": {"code": "OperationFailed", "message": "The authentication token provided does not have access to ingest data for the data collection rule"}}),
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    append(&log, &lines("p", 0..5));
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c).with_http(http);
    agent
        .wait_for("a 403", secs(10), || !fake.ingest_requests().is_empty())
        .await;
    let deadline = Instant::now() + secs(10);
    let (code, health) = loop {
        if let Some((code, body)) = agent.get("/health").await {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["outputs"]["default"]["state"] == "waiting_for_permission" {
                break (code, v);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no waiting_for_permission\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "down", "{health}");
    assert!(health["outputs"]["default"]["last_success"].is_null());
    assert!(
        health["outputs"]["default"]["last_error"].is_string()
            || health["outputs"]["default"]["last_error_message"].is_string(),
        "{health}"
    );
    agent.stop(secs(5)).await;
    assert!(fake.accepted().is_empty());
}

/// Issue 12: a stream the DCR does not declare (400 `InvalidStream`) is a configuration error.
/// The agent neither bisects nor dead-letters: the rows wait in the spool, `/health` says
/// `misconfigured` with what to fix, one WARN says it, and once the DCR declares the stream the
/// rows arrive once and an INFO says delivery recovered. Before: every 400 was bisected to
/// single rows and every row dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_stream_holds_the_rows_until_the_dcr_declares_it() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    fake.forget_dcr(DCR);
    fake.declare(DCR, "Custom-Other_CL");
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let all = lines("s", 0..200);
    append(&log, &all);
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c).with_http(http);
    let deadline = Instant::now() + secs(15);
    let health = loop {
        if let Some((503, body)) = agent.get("/health").await {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["outputs"]["default"]["state"] == "misconfigured" {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no misconfigured\n{}",
            agent.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let message = health["outputs"]["default"]["last_error_message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("stream {STREAM} is not declared in DCR {DCR}")),
        "{health}"
    );
    let refused = fake.ingest_requests();
    assert!(
        refused
            .iter()
            .all(|r| r.answered == Some(400) && r.rows().len() == 200),
        "never split: {:?}",
        refused.iter().map(|r| r.rows().len()).collect::<Vec<_>>()
    );
    fake.declare(DCR, STREAM);
    agent
        .wait_for("every row once the stream is declared", secs(60), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent
        .wait_for("the recovery line", secs(5), || {
            agent.log_has("delivery recovered")
        })
        .await;
    agent.stop(secs(5)).await;
    assert_exactly_once(&fake, &all);
    let text = agent.log();
    let warned: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("delivery is failing"))
        .collect();
    assert_eq!(warned.len(), 1, "{text}");
    assert!(warned[0].contains("streamDeclarations"), "{text}");
    let dead = std::fs::read_to_string(state.path().join("dead-letter.ndjson")).unwrap_or_default();
    assert!(dead.is_empty(), "{dead}");
}

/// Issue 11: a closed port is not silent. One WARN naming the cause within seconds of the
/// first failure (not one per retry), then, once the endpoint is back, one INFO and every row
/// once. Before: zero WARN/ERROR lines in 65 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_one_warning_then_one_recovery_line() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let all = lines("c", 0..100);
    append(&log, &all);
    let mut c = run_at(&format!("http://{addr}"), state.path(), None, TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("a WARN with the cause", secs(10), || {
            let text = agent.log();
            text.lines().any(|l| {
                l.contains("WARN")
                    && l.contains("delivery is failing")
                    && l.to_lowercase().contains("connection refused")
            })
        })
        .await;
    // A few more retries fail meanwhile; they must not log again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fake = Fake::start_on(addr, |_| Reply::Status(204)).await;
    agent
        .wait_for("every row once the endpoint is back", secs(60), || {
            all_arrived(&fake, &all)
        })
        .await;
    agent
        .wait_for("the recovery line", secs(5), || {
            agent.log_has("delivery recovered")
        })
        .await;
    agent.stop(secs(5)).await;
    assert_exactly_once(&fake, &all);
    let text = agent.log();
    let warned = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("delivery is failing"))
        .count();
    assert_eq!(warned, 1, "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("INFO") && l.contains("delivery recovered")),
        "{text}"
    );
}

/// Start-up errors are usage errors (exit 2) with a message: a relative `--path`, a
/// `--http-listen` port already taken, a missing config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_errors_exit_2() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cases: Vec<(&str, tokio::process::Command)> = vec![
        ("absolute", {
            let mut c = run_to(&fake, state.path(), None, TOKEN);
            c.args(["--path", "relative/*.log"]);
            c
        }),
        ("cannot listen", {
            let mut c = run_to(&fake, state.path(), Some(addr), TOKEN);
            c.args(["--path", "/nonexistent-dcrship-test/*.log"]);
            c
        }),
        ("cannot read config file", {
            run_config(&state.path().join("missing.toml"), TOKEN)
        }),
    ];
    for (want, c) in cases {
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{want}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{want}: {}", stderr(&out));
    }
    drop(taken);
}

/// 12. Idle cost, measured (not asserted tightly): CPU used over ~3 s with nothing to read, and
///     resident memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cpu_and_memory() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    append(&log, &lines("x", 0..10));
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path")
        .arg(format!("{}/*.log", dir.path().display()));
    let mut agent = Agent::spawn(c).with_http(http);
    agent
        .wait_for("the tailer to open the file", secs(10), || {
            agent.log_has("tailing new file")
        })
        .await;
    let cpu0 = proc_cpu_ticks(agent.pid);
    let ns0 = proc_cpu_ns(agent.pid);
    let t0 = Instant::now();
    tokio::time::sleep(secs(3)).await; // the measurement window, not an assertion
    let cpu1 = proc_cpu_ticks(agent.pid);
    let ns1 = proc_cpu_ns(agent.pid);
    let wall = t0.elapsed();
    let rss_kib = proc_status_kib(agent.pid, "VmRSS");
    let hz = clock_ticks();
    let cpu_ms = (cpu1 - cpu0) as f64 * 1000.0 / hz as f64;
    eprintln!(
        "IDLE: schedstat {:.2} ms CPU over the window ({} threads)",
        ns1.saturating_sub(ns0) as f64 / 1e6,
        std::fs::read_dir(format!("/proc/{}/task", agent.pid)).map_or(0, |d| d.count()),
    );
    eprintln!(
        "IDLE: {cpu_ms:.0} ms CPU over {:.1} s wall ({:.2}% of one core); VmRSS {} KiB ({:.1} MiB); total CPU since start {} ms",
        wall.as_secs_f64(),
        cpu_ms / wall.as_secs_f64() / 10.0,
        rss_kib,
        rss_kib as f64 / 1024.0,
        cpu1 * 1000 / hz,
    );
    assert!(rss_kib < 60 * 1024, "RSS {rss_kib} KiB");
    assert!(
        cpu_ms / wall.as_secs_f64() / 10.0 < 20.0,
        "idle CPU {cpu_ms} ms in {wall:?}"
    );
    agent.stop(secs(10)).await;
    assert!(
        fake.ingest_requests().iter().all(|r| r.rows().is_empty()),
        "start_at end: nothing to send (only the idle output's probes, POST [])"
    );
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // fields after the parenthesised command name; utime and stime are fields 14 and 15
    let rest = &stat[stat.rfind(')').expect(")") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// CPU time of every live thread, in nanoseconds (`/proc/PID/task/*/schedstat`, first field):
/// finer than the clock ticks of `stat`.
fn proc_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// JSON lines in a tailed file may be as long as a request (not cut at the 64 KiB text limit);
/// a line longer than the request cap is dead-lettered as too long, and the rest delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_json_lines_in_files_are_kept_whole_up_to_the_request_cap() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let logs = tempfile::tempdir().expect("logs");
    let file = logs.path().join("app.ndjson");
    let long = format!("{{\"id\":1,\"blob\":\"{}\"}}\n", "b".repeat(100_000));
    let huge = format!("{{\"id\":2,\"blob\":\"{}\"}}\n", "h".repeat(2_000_000));
    std::fs::write(&file, format!("{long}{huge}{{\"id\":3}}\n")).expect("write");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.args(["--format", "json", "--start-at", "beginning", "--path"])
        .arg(logs.path().join("*.ndjson"));
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("ids 1 and 3", secs(15), || {
            let c = id_counts(&fake.accepted());
            c.contains_key(&1) && c.contains_key(&3)
        })
        .await;
    agent.stop(secs(5)).await;
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.get(&1), Some(&1));
    assert_eq!(counts.get(&3), Some(&1));
    assert!(!counts.contains_key(&2));
    let blob = fake
        .accepted()
        .iter()
        .flat_map(|r| r.rows())
        .find(|r| r["id"] == 1)
        .and_then(|r| r["blob"].as_str().map(str::len));
    assert_eq!(
        blob,
        Some(65_536),
        "kept whole as a row; the field cut to 64 KiB by the encoder"
    );
    let dl = std::fs::read_to_string(state.path().join("dead-letter.ndjson")).expect("dead-letter");
    let entries: Vec<Value> = dl
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(entries.len(), 1, "{dl}");
    assert!(
        entries[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("longer than")),
        "{dl}"
    );
    assert!(entries[0]["record"]
        .as_str()
        .is_some_and(|r| r.len() <= 65_536));
}

/// Flags given with `--config` win over the file's values, as in `send`: the output's
/// endpoint comes from `--endpoint`, not the file, and every line reaches that endpoint once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_the_config_file() {
    let file_fake = Fake::start(|_| Reply::Status(204)).await;
    let flag_fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let text = lines("flagged", 0..40);
    append(&log, &text);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        simple_config(&file_fake, state.path(), &[("app", &log)]),
    )
    .expect("config");
    let mut c = run_config(&config, TOKEN);
    c.args(["--endpoint", &flag_fake.url(), "--concurrency", "2"]);
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the lines at the flag's endpoint", secs(10), || {
            all_arrived(&flag_fake, &text)
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&flag_fake, &text);
    assert!(
        file_fake.ingest_requests().is_empty(),
        "the file's endpoint got requests"
    );
}

/// `run --path` reads `--format auto` by default: a `.log` file of JSON lines becomes rows of
/// their fields, a `.csv` file rows named by its header — read again from the file after a
/// restart, so rows written while stopped keep their column names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_format_reads_json_lines_and_csv_with_its_header_across_a_restart() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let json = dir.path().join("app.log");
    let csv = dir.path().join("table.csv");
    append(&json, &[r#"{"Level":"info","N":1}"#.to_string()]);
    append(&csv, &["Name,Count".to_string(), "a,1".to_string()]);
    let cmd = || {
        let mut c = run_to(&fake, state.path(), None, TOKEN);
        c.arg("--path")
            .arg(dir.path().join("*.log"))
            .arg("--path")
            .arg(dir.path().join("*.csv"))
            .args(["--start-at", "beginning"]);
        c
    };
    let rows =
        |fake: &Fake| -> Vec<Value> { fake.accepted().iter().flat_map(|r| r.rows()).collect() };
    let mut agent = Agent::spawn(cmd());
    agent
        .wait_for("the first rows", secs(10), || rows(&fake).len() == 2)
        .await;
    agent.stop(secs(10)).await;
    append(&csv, &["b,2".to_string()]);
    let mut agent = Agent::spawn(cmd());
    agent
        .wait_for("the row written while stopped", secs(10), || {
            rows(&fake).len() == 3
        })
        .await;
    agent.stop(secs(10)).await;
    let got = rows(&fake);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(
        got.iter().any(|r| r["Level"] == "info" && r["N"] == 1),
        "{got:?}"
    );
    for (name, count) in [("a", "1"), ("b", "2")] {
        assert!(
            got.iter()
                .any(|r| r["Name"] == name && r["Count"] == count && r.get("RawData").is_none()),
            "{name}: {got:?}"
        );
    }
    assert!(
        !got.iter().any(|r| r["Name"] == "Name"),
        "the header is not a row"
    );
}

/// Endpoint flags without an input: the message leads with the fix (`--path` or `--stdin`),
/// not with "cannot read /etc/dcrship/agent.toml".
#[tokio::test]
async fn endpoint_flags_without_an_input_name_the_input_flags() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let state = tempfile::tempdir().expect("state");
    let out = run(run_to(&fake, state.path(), None, TOKEN)).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("dcrship: error: nothing to read: give --path GLOB, --stdin or --journald"),
        "{err}"
    );
}

/// A glob that matches nothing (a typo, or files not there yet) is said at WARN once — not at
/// every rescan — and once at INFO when it matches; the file's lines then arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_that_matches_nothing_is_warned_about_once() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let logs = dir.path().join("app");
    let glob = logs.join("*.log").display().to_string();
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.args(["--path", &glob, "--start-at", "beginning"]);
    let mut agent = Agent::spawn(c);
    let warned = |a: &Agent| {
        a.log()
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("no file matches the glob"))
            .count()
    };
    agent
        .wait_for("the warning", secs(10), || warned(&agent) == 1)
        .await;
    assert!(agent.log().contains(&glob), "{}", agent.log());
    // Two more rescans (every 5 s) pass without a second warning.
    tokio::time::sleep(secs(11)).await;
    assert_eq!(warned(&agent), 1, "{}", agent.log());
    std::fs::create_dir(&logs).expect("mkdir");
    let text = lines("found", 0..5);
    append(&logs.join("a.log"), &text);
    agent
        .wait_for("the lines", secs(15), || all_arrived(&fake, &text))
        .await;
    agent
        .wait_for("the recovery line", secs(5), || {
            agent.log().contains("the glob matches files again")
        })
        .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &text);
}

/// The container's default command is `dcrship run --stdin`: without an endpoint it must say
/// which flags (or variables) are missing — not suggest `--dry-run`, which `run` does not have.
#[tokio::test]
async fn run_without_a_target_names_the_missing_flags_and_no_dry_run() {
    let state = tempfile::tempdir().expect("state");
    let mut c = dcrship();
    c.args(["run", "--stdin", "--auth", "static"])
        .arg("--state-dir")
        .arg(state.path())
        .args(["--http-listen", ""])
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "missing --endpoint (DCRSHIP_ENDPOINT), --dcr (DCRSHIP_DCR), --stream (DCRSHIP_STREAM)"
        ),
        "{err}"
    );
    assert!(!err.contains("--dry-run"), "{err}");
}

/// Issue 17 item 4: on a quiet host (nothing to send) `/health` used to say `ok` while the
/// endpoint was unreachable. An idle output is now probed with `POST []` (5 s after start, then
/// after each `--probe-interval` of idleness): a closed port makes it `failing` with the
/// connect error, and once the endpoint answers 204 the next probe makes it `ok` again; the
/// probes are counted by what they found and the state is in `dcrship_output_state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_agent_probes_its_output_and_health_tells_the_truth() {
    let addr = free_addr();
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("quiet.log");
    append(&log, &lines("q", 0..3)); // read from the end: nothing to send
    let http = free_addr();
    let mut c = dcrship();
    c.arg("run")
        .args(["--endpoint", &format!("http://{addr}"), "--dcr", DCR])
        .args(["--stream", STREAM, "--auth", "static"])
        .args([
            "--http-listen",
            &http.to_string(),
            "--probe-interval",
            "10s",
        ])
        .arg("--state-dir")
        .arg(state.path())
        .arg("--path")
        .arg(&log)
        .args(["--shutdown-timeout", "1s"])
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let mut agent = Agent::spawn(c).with_http(http);
    let health = wait_health(&agent, "failing", secs(15)).await;
    let output = &health["outputs"]["default"];
    let message = output["last_error_message"].as_str().unwrap_or_default();
    assert!(
        message.contains("probe") && message.to_lowercase().contains("connection refused"),
        "the connect error itself: {health}"
    );
    assert!(message.contains("x-ms-client-request-id"), "{health}");
    assert!(output["last_probe"].is_string(), "{health}");
    assert!(output["last_success"].is_null(), "{health}");
    let (code, _) = agent.get("/health").await.expect("/health");
    assert_eq!(code, 503, "the only output cannot deliver");
    agent
        .wait_metric(
            "dcrship_output_state{output=\"default\",state=\"failing\"}",
            secs(5),
            |v| v == 1.0,
        )
        .await;
    assert_eq!(
        agent
            .metric("dcrship_output_state{output=\"default\",state=\"ok\"}")
            .await,
        Some(0.0)
    );
    assert!(agent
        .metric("dcrship_probes_total{output=\"default\",result=\"failing\"}")
        .await
        .is_some_and(|n| n >= 1.0));

    let fake = Fake::start_on(addr, |_| Reply::Status(204)).await;
    let health = wait_health(&agent, "ok", secs(20)).await;
    let output = &health["outputs"]["default"];
    assert!(output["last_probe"].is_string(), "{health}");
    let probes = fake.ingest_requests();
    assert!(!probes.is_empty());
    for p in &probes {
        assert_eq!(p.raw_body(), b"[]", "a probe is an empty array");
        assert_eq!(p.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
    }
    assert!(agent
        .metric("dcrship_probes_total{output=\"default\",result=\"ok\"}")
        .await
        .is_some_and(|n| n >= 1.0));
    assert_eq!(
        agent
            .metric("dcrship_output_state{output=\"default\",state=\"ok\"}")
            .await,
        Some(1.0)
    );
    assert_eq!(
        agent
            .metric("dcrship_records_sent_total{output=\"default\"}")
            .await,
        Some(0.0),
        "a probe delivers nothing"
    );
    agent.stop(secs(5)).await;
    assert!(fake.accepted().iter().all(|r| r.rows().is_empty()));
}

/// A probe's 403 says what the service said and what to fix: the status, the error code and
/// message, the request ids, and the role to grant on the DCR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_403_shows_the_service_error_and_the_fix() {
    let fake = Fake::start(|_| {
        Reply::azure_error(
            403,
            "OperationFailed",
            "The authentication token provided does not have access to ingest data for the data collection rule",
        )
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("quiet.log");
    append(&log, &lines("q", 0..1));
    let http = free_addr();
    let mut c = run_to(&fake, state.path(), Some(http), TOKEN);
    c.arg("--path").arg(&log).args(["--shutdown-timeout", "1s"]);
    let mut agent = Agent::spawn(c).with_http(http);
    let health = wait_health(&agent, "waiting_for_permission", secs(15)).await;
    let message = health["outputs"]["default"]["last_error_message"]
        .as_str()
        .unwrap_or_default();
    for part in [
        "HTTP 403",
        "OperationFailed",
        "does not have access",
        "x-ms-request-id: 5e7a0000-",
        "Monitoring Metrics Publisher",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    assert!(!message.contains(TOKEN), "never the token: {message}");
    let requests = fake.ingest_requests().len() as f64;
    agent
        .wait_metric(
            "dcrship_requests_total{output=\"default\",status=\"403\"}",
            secs(5),
            |v| v == requests,
        )
        .await;
    agent.stop(secs(5)).await;
}

/// `--heartbeat-interval`: a heartbeat row reaches the stream at start, with the text-log
/// columns (what the README's KQL looks for), through the spool like any row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_row_is_sent_at_start() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let all = lines("h", 0..20);
    append(&log, &all);
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path")
        .arg(&log)
        .args(["--start-at", "beginning", "--heartbeat-interval", "1h"]);
    let mut agent = Agent::spawn(c);
    let heartbeats = || -> Vec<Value> {
        fake.accepted()
            .iter()
            .flat_map(|r| r.rows())
            .filter(|row| {
                row["RawData"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("dcrship heartbeat: version "))
            })
            .collect()
    };
    agent
        .wait_for("the heartbeat row", secs(10), || !heartbeats().is_empty())
        .await;
    agent
        .wait_for("every line", secs(10), || all_arrived(&fake, &all))
        .await;
    agent.stop(secs(5)).await;
    let hb = heartbeats();
    assert_eq!(hb.len(), 1, "one at start, the next in an hour: {hb:?}");
    assert!(hb[0]["Computer"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(hb[0]["TimeGenerated"].is_string());
    assert!(hb[0]["RawData"]
        .as_str()
        .is_some_and(|r| r.contains("output default")));
    let rows: Vec<String> = raw_counts(&fake)
        .into_keys()
        .filter(|r| !r.starts_with("dcrship heartbeat"))
        .collect();
    assert_eq!(rows.len(), all.len(), "and every line once");
}

/// Polls `/health` until the only output `default` is in `state`; the body then.
async fn wait_health(agent: &Agent, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Some((_, body)) = agent.get("/health").await {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["outputs"]["default"]["state"] == state {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no {state} in {within:?}: {v}\n--- log ---\n{}",
                agent.log()
            );
        }
        assert!(Instant::now() < deadline, "no /health\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
