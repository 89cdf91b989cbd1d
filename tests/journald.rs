//! `type = "journald"` end to end: the real agent reads a journal through a `journalctl` on its
//! PATH and ships it to a fake DCE on 127.0.0.1.
//!
//! Most tests put `tests/fixtures/journal/fake-journalctl` there: it replays real
//! `journalctl -o json` output (`vm.json`, made from a journal built by systemd-journal-remote,
//! see that directory's README) and entries the tests write in the same shape, honours the
//! options dcrship passes (`--after-cursor`, `--no-tail`, `--unit`, `--priority`, matches,
//! `--directory`) and can die or print garbage on request. One test runs the real journalctl on
//! journal files built with systemd-journal-remote, when both are installed (.ci/run installs
//! them). Every test accounts rows: each entry arrives exactly once.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agent::Agent;
use common::*;
use serde_json::Value;

const TOKEN: &str = "journald-token-0123456789";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/journal")
        .join(name)
}

/// A directory holding `journalctl` → the fake.
fn fake_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::os::unix::fs::symlink(fixture("fake-journalctl"), bin.join("journalctl"))
        .expect("symlink");
    bin
}

/// `PATH` with `bin` first.
fn path_with(bin: &Path) -> String {
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Everything a test needs: the fake DCE, a state dir, a journal dir, a bin dir.
struct Setup {
    fake: Fake,
    tmp: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        Setup::with_fake(Fake::start(|_| Reply::Status(204)).await)
    }

    fn with_fake(fake: Fake) -> Setup {
        let tmp = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(tmp.path().join("journal")).expect("journal dir");
        fake_bin(tmp.path());
        Setup { fake, tmp }
    }

    fn journal(&self) -> PathBuf {
        self.tmp.path().join("journal")
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn invocations_file(&self) -> PathBuf {
        self.tmp.path().join("journalctl-calls.ndjson")
    }

    /// The argument lists journalctl was started with.
    fn invocations(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.invocations_file())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("call"))
            .collect()
    }

    fn follows(&self) -> Vec<Vec<String>> {
        self.invocations()
            .into_iter()
            .filter(|a| a.iter().any(|x| x == "--follow"))
            .collect()
    }

    /// A config with one journald input `journal` (and `extra` keys in it) to one output.
    fn config(&self, extra: &str) -> PathBuf {
        self.config_with("shutdown_timeout = \"10s\"", "", extra)
    }

    /// [`Setup::config`] with keys for `[agent]` and `[outputs.syslog]` too.
    fn config_with(&self, agent: &str, output: &str, input: &str) -> PathBuf {
        let text = format!(
            "[agent]\nstate_dir = {:?}\nhttp_listen = \"\"\n{agent}\n\n\
             [auth]\nmethod = \"static\"\n\n\
             [outputs.syslog]\nendpoint = {:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\n\
             batch_timeout = \"200ms\"\n{output}\n\n\
             [inputs.journal]\ntype = \"journald\"\njournal_directory = {:?}\n{input}\n",
            self.state().display().to_string(),
            self.fake.url(),
            self.journal().display().to_string(),
        );
        let path = self.tmp.path().join("agent.toml");
        std::fs::write(&path, text).expect("config");
        path
    }

    /// `dcrship run --config`; `DCRSHIP_BIN` runs another build (the release one, to measure:
    /// `DCRSHIP_BIN=target/release/dcrship cargo test --test journald 100k -- --nocapture`).
    fn command(&self, config: &Path) -> tokio::process::Command {
        let mut c = match std::env::var_os("DCRSHIP_BIN") {
            Some(bin) => {
                let mut c = tokio::process::Command::new(bin);
                c.env_clear()
                    .env("HOME", std::env::temp_dir())
                    .stdin(Stdio::null())
                    .kill_on_drop(true);
                c
            }
            None => dcrship(),
        };
        c.arg("run")
            .arg("--config")
            .arg(config)
            .env("DCRSHIP_ACCESS_TOKEN", TOKEN)
            .env("PATH", path_with(&self.tmp.path().join("bin")))
            .env("FAKE_JOURNALCTL_LOG", self.invocations_file());
        c
    }

    /// Rows the fake accepted, by SyslogMessage.
    fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.fake.accepted() {
            for row in r.rows() {
                let key = row["SyslogMessage"]
                    .as_str()
                    .or_else(|| row["MESSAGE"].as_str())
                    .unwrap_or_default()
                    .to_string();
                *m.entry(key).or_insert(0) += 1;
            }
        }
        m
    }

    fn rows(&self) -> Vec<Value> {
        self.fake.accepted().iter().flat_map(|r| r.rows()).collect()
    }

    fn all_arrived(&self, messages: &[String]) -> bool {
        let got = self.counts();
        messages.iter().all(|m| got.contains_key(m))
    }

    /// Waits until every message arrived; the panic names what is missing.
    async fn wait_all(&self, agent: &Agent, what: &str, within: Duration, messages: &[String]) {
        let deadline = Instant::now() + within;
        while !self.all_arrived(messages) {
            if Instant::now() > deadline {
                let got = self.counts();
                let missing: Vec<_> = messages
                    .iter()
                    .filter(|m| !got.contains_key(*m))
                    .take(5)
                    .collect();
                panic!("timed out after {within:?} waiting for {what}; missing {missing:?}\n--- log ---\n{}", agent.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Each message arrived exactly once and nothing else did.
    fn assert_exactly_once(&self, messages: &[String]) {
        let got = self.counts();
        let missing: Vec<_> = messages.iter().filter(|m| !got.contains_key(*m)).collect();
        let dup: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
        let extra: Vec<_> = got.keys().filter(|k| !messages.contains(k)).collect();
        assert!(
            missing.is_empty() && dup.is_empty() && extra.is_empty(),
            "missing {} {:?}\nduplicated {} {:?}\nunexpected {} {:?}",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>(),
            dup.len(),
            dup.iter().take(5).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(5).collect::<Vec<_>>()
        );
    }

    fn saved_cursor(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.state().join("checkpoints.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["journals"]
            .as_array()?
            .iter()
            .find(|j| j["input"] == "journal")?["cursor"]
            .as_str()
            .map(str::to_string)
    }
}

/// Entries like journalctl prints them: an `orders.service` stdout line with MESSAGE
/// `"{tag}-{i:06}"` and a cursor of its own, `pad` bytes of padding in the message.
fn entries(tag: &str, ids: std::ops::Range<usize>, pad: usize) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut messages = Vec::new();
    for i in ids {
        let msg = format!("{tag}-{i:06}{}", noise(i as u64, pad));
        let t = 1_767_261_600_000_000u64 + i as u64 * 1000;
        let line = serde_json::json!({
            "__CURSOR": format!("s=0a1b2c3d4e5f60718293a4b5c6d7e8f9;i={i:x};b=5b0a4c9e2f3d4e1a8c7b6d5e4f3a2b1c;m={i:x};t={t:x};x={tag}"),
            "__REALTIME_TIMESTAMP": t.to_string(),
            "__MONOTONIC_TIMESTAMP": (5_000_000 + i).to_string(),
            "_BOOT_ID": "5b0a4c9e2f3d4e1a8c7b6d5e4f3a2b1c",
            "_TRANSPORT": "stdout",
            "_HOSTNAME": "vm-web-01",
            "_PID": "2301",
            "_COMM": "orders-api",
            "_SYSTEMD_UNIT": "orders.service",
            "SYSLOG_FACILITY": "3",
            "SYSLOG_IDENTIFIER": "orders-api",
            "PRIORITY": "6",
            "MESSAGE": msg,
        });
        text.push_str(&line.to_string());
        text.push('\n');
        messages.push(msg);
    }
    (text, messages)
}

/// `n` hex digits that gzip cannot squeeze much (so a spool's size means something).
fn noise(seed: u64, n: usize) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            char::from_digit(((x >> 33) % 16) as u32, 16).unwrap_or('0')
        })
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

/// The fixture's messages, decoded as dcrship must decode them (byte arrays lossily).
fn fixture_messages() -> Vec<String> {
    std::fs::read_to_string(fixture("vm.json"))
        .expect("vm.json")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("entry");
            match &v["MESSAGE"] {
                Value::String(s) => s.clone(),
                Value::Array(b) => {
                    let bytes: Vec<u8> = b.iter().map(|n| n.as_u64().unwrap_or(0) as u8).collect();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
                _ => String::new(),
            }
        })
        .collect()
}

/// 1. The fixture (a real journal's `-o json` output) arrives as rows of the Syslog table's
///    columns; stopped and started again, the agent reads only what was written meanwhile, from
///    the saved cursor, with `--after-cursor` and `--no-tail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_entries_become_syslog_rows_and_a_restart_resumes_after_the_saved_cursor() {
    let s = Setup::new().await;
    std::fs::copy(fixture("vm.json"), s.journal().join("system.json")).expect("fixture");
    let config = s.config("since_now = false");
    let mut all = fixture_messages();
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the fixture's entries", secs(20), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);

    let rows = s.rows();
    let by_msg = |m: &str| {
        rows.iter()
            .find(|r| r["SyslogMessage"] == m)
            .unwrap_or_else(|| panic!("row {m:?}"))
            .clone()
    };
    let failed =
        by_msg("Failed password for invalid user oracle from 198.51.100.23 port 40112 ssh2");
    assert_eq!(failed["Facility"], "auth");
    assert_eq!(failed["SeverityLevel"], "err");
    assert_eq!(failed["ProcessName"], "sshd");
    assert!(failed["ProcessID"].is_u64(), "{failed}");
    assert_eq!(failed["Computer"], "vm-web-01");
    assert_eq!(failed["HostName"], "vm-web-01");
    assert_eq!(failed["SystemdUnit"], "ssh.service");
    let t = failed["TimeGenerated"].as_str().expect("time");
    assert!(
        t.starts_with("2026-01-01T10:00:") && t.ends_with('Z'),
        "{t}"
    );
    let kernel = by_msg("Buffer I/O error on dev sdb1, logical block 0, async page read");
    assert_eq!(
        (&kernel["Facility"], &kernel["SeverityLevel"]),
        (&"kern".into(), &"err".into())
    );
    let binary = by_msg("upload chunk \u{0}\u{1}\u{fffd}\u{fffd} done");
    assert_eq!(binary["ProcessName"], "orders-api");
    let cron = by_msg("(root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)");
    assert_eq!(cron["Facility"], "cron");
    let saved = s.saved_cursor().expect("a saved cursor");
    let last: Value = serde_json::from_str(
        std::fs::read_to_string(fixture("vm.json"))
            .expect("vm.json")
            .lines()
            .last()
            .expect("line"),
    )
    .expect("json");
    assert_eq!(saved, last["__CURSOR"].as_str().expect("cursor"));

    // Written while the agent is stopped: read after the cursor, nothing again.
    let (text, more) = entries("later", 0..300, 0);
    append(&s.journal().join("system.json"), &text);
    all.extend(more);
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the entries written while stopped", secs(20), || {
            s.all_arrived(&all)
        })
        .await;
    // The rows of the catch-up can arrive before the agent has started to follow.
    agent
        .wait_for("journalctl --follow after the catch-up", secs(20), || {
            s.invocations().len() == 3
        })
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    // The second start: a catch-up after the saved cursor, then following after the newest.
    let calls = s.invocations();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls
        .iter()
        .all(|a| a.contains(&"--no-tail".to_string()) && a.contains(&"--all".to_string())));
    assert!(calls[0].contains(&"--follow".to_string()));
    assert!(!calls[0].iter().any(|a| a.starts_with("--after-cursor")));
    assert!(
        !calls[1].contains(&"--follow".to_string()),
        "{:?}",
        calls[1]
    );
    assert!(
        calls[1].contains(&format!("--after-cursor={saved}")),
        "{:?}",
        calls[1]
    );
    assert!(calls[2].contains(&"--follow".to_string()));
    assert!(
        calls[2]
            .iter()
            .any(|a| a.starts_with("--after-cursor=") && a.contains(";i=12b;")),
        "{:?}",
        calls[2]
    );
}

/// 2. A restart in the middle of a 20,000-entry backlog to a slow endpoint, with a 1 MiB spool
///    that holds the reader back: SIGTERM while entries are still unread (what was read is
///    delivered, its cursor saved), start again: every entry arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_backlog_loses_nothing_and_repeats_nothing() {
    let slow =
        Fake::start(|_| Reply::Late(Duration::from_millis(300), Box::new(Reply::Status(204))));
    let s = Setup::with_fake(slow.await);
    let (text, all) = entries("backlog", 0..20_000, 40);
    append(&s.journal().join("system.json"), &text);
    let config = s.config_with(
        "shutdown_timeout = \"20s\"\n[spool]\nmax_bytes = \"1MiB\"",
        "max_request_bytes = 100000\nconcurrency = 2",
        "since_now = false",
    );
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("some rows", secs(20), || s.counts().len() >= 1000)
        .await;
    agent.stop(secs(20)).await;
    let first = s.counts().len();
    assert!(
        first < all.len(),
        "stopped after everything arrived: make the backlog larger"
    );
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the rest", secs(60), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
}

/// 3. journalctl dies twice after 400 entries (status 1, a message on stderr): the agent logs
///    it (once: the second time within a minute is counted, not logged), starts it again after
///    the last entry read, and every entry arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journalctl_dying_is_restarted_after_the_last_entry_read() {
    let s = Setup::new().await;
    let (text, all) = entries("dying", 0..1500, 0);
    append(&s.journal().join("system.json"), &text);
    let config = s.config("since_now = false");
    let mut c = s.command(&config);
    c.env("FAKE_JOURNALCTL_DIE_AFTER", "400")
        .env("FAKE_JOURNALCTL_DIE_RUNS", "2");
    let mut agent = Agent::spawn(c);
    s.wait_all(&agent, "every entry", secs(30), &all).await;
    agent
        .wait_for("journalctl following again", secs(10), || {
            s.invocations().len() == 4
        })
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    // Each run starts after the last entry the one before read: a catch-up run (no --follow)
    // after the cursor, then following after the newest entry.
    let calls = s.invocations();
    let after = |a: &[String]| {
        a.iter()
            .find_map(|x| x.strip_prefix("--after-cursor=").map(str::to_string))
    };
    let shape: Vec<(bool, Option<String>)> = calls
        .iter()
        .map(|a| {
            let index = after(a).and_then(|c| c.split(';').nth(1).map(str::to_string));
            (a.contains(&"--follow".to_string()), index)
        })
        .collect();
    let want = [
        (true, None),
        (false, Some("i=18f")),
        (false, Some("i=31f")),
        (true, Some("i=5db")),
    ]
    .map(|(f, i)| (f, i.map(str::to_string)));
    assert_eq!(shape, want, "{calls:?}");
    let log = agent.log();
    // Logged once (the second failure within a minute is counted, not logged): as journalctl's
    // stderr when it came, and in the error when it ended.
    assert_eq!(log.matches("ERROR").count(), 1, "{log}");
    assert_eq!(log.matches("dying as told").count(), 2, "{log}");
    assert!(log.contains("starting it again in 1s"), "{log}");
}

/// 4. Lines that are not journal entries are dead-lettered with the reason; the entries around
///    them arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_journalctl_is_dead_lettered_and_the_rest_delivered() {
    let s = Setup::new().await;
    let (text, all) = entries("amid-garbage", 0..100, 0);
    append(&s.journal().join("system.json"), &text);
    let config = s.config("since_now = false");
    let mut c = s.command(&config);
    c.env("FAKE_JOURNALCTL_GARBAGE", "1");
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the entries", secs(20), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    let dead = std::fs::read_to_string(s.state().join("dead-letter.ndjson")).unwrap_or_default();
    let dead: Vec<Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).expect("dl"))
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}\n{}", agent.log());
    for d in &dead {
        let reason = d["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("not JSON"), "{d}");
    }
}

/// 5. Rotation: a second journal file appears while the agent runs; its entries arrive, and
///    the entries still written to the first one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_journal_file_is_read_as_it_appears() {
    let s = Setup::new().await;
    let (text, mut all) = entries("before", 0..200, 0);
    append(&s.journal().join("system@0001.json"), &text);
    let config = s.config("since_now = false");
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the first file", secs(20), || s.all_arrived(&all))
        .await;
    let (text, more) = entries("rotated", 200..500, 0);
    append(&s.journal().join("system@0002.json"), &text);
    all.extend(more);
    agent
        .wait_for("the new file", secs(20), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
}

/// 6. A 1 MB MESSAGE arrives, cut to the 64 KiB field limit (counted); an entry larger than
///    the entry cap (8 times the request cap) is dead-lettered as too large and what follows
///    it arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1mb_message_is_delivered_and_a_huge_entry_is_skipped_with_a_count() {
    let s = Setup::new().await;
    let (big, big_msg) = entries("big", 0..1, 1_000_000);
    let (huge, _) = entries("huge", 1..2, 9_000_000);
    let (after, after_msg) = entries("after", 2..3, 0);
    let file = s.journal().join("system.json");
    append(&file, &big);
    append(&file, &huge);
    append(&file, &after);
    let config = s.config("since_now = false");
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for(
            "the big row and the one after the huge one",
            secs(30),
            || {
                let rows = s.rows();
                rows.iter()
                    .any(|r| r["SyslogMessage"] == after_msg[0].as_str())
                    && rows.iter().any(|r| {
                        r["SyslogMessage"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("big-000000"))
                    })
            },
        )
        .await;
    agent.stop(secs(20)).await;
    let rows = s.rows();
    assert_eq!(rows.len(), 2, "only the big and the last entry");
    let big_row = rows
        .iter()
        .find(|r| {
            r["SyslogMessage"]
                .as_str()
                .is_some_and(|m| m.starts_with("big-"))
        })
        .expect("big row");
    let m = big_row["SyslogMessage"].as_str().expect("message");
    assert_eq!(m.len(), 64 * 1024);
    assert!(big_msg[0].starts_with(m));
    let dead = std::fs::read_to_string(s.state().join("dead-letter.ndjson")).expect("dead-letter");
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(
        dead.contains("more than 8000000 bytes"),
        "{}",
        &dead[..dead.len().min(400)]
    );
}

/// 7. A backlog of 100,000 entries is delivered exactly once; prints entries/s and the agent's
///    CPU seconds per 100k entries (the figures of the README; a debug build here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100k_entry_backlog_is_delivered_once() {
    let s = Setup::new().await;
    let (text, all) = entries("bulk", 0..100_000, 200);
    append(&s.journal().join("system.json"), &text);
    let config = s.config("since_now = false");
    let started = Instant::now();
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("100k rows", secs(240), || s.counts().len() >= all.len())
        .await;
    let took = started.elapsed();
    let cpu = proc_cpu_seconds(agent.pid);
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    eprintln!(
        "journald backlog: {} entries in {:.2}s = {:.0} entries/s; dcrship CPU {:.2}s per 100k entries",
        all.len(),
        took.as_secs_f64(),
        all.len() as f64 / took.as_secs_f64(),
        cpu * 100_000.0 / all.len() as f64
    );
}

fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the comm.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// 8. Without journalctl on PATH the agent does not start: exit 2, naming the package and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journalctl_missing_is_a_clear_error_at_start() {
    let s = Setup::new().await;
    let config = s.config("");
    let mut c = s.command(&config);
    let empty = s.tmp.path().join("empty-bin");
    std::fs::create_dir_all(&empty).expect("dir");
    c.env("PATH", &empty);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("journalctl not found on PATH")
            && err.contains("systemd package")
            && err.contains("journal_directory"),
        "{err}"
    );
}

/// 9. The first start (since_now, the default) skips what the journal holds, saves the newest
///    cursor at once, and ships what comes next — also across a restart before any row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_reads_from_now_and_a_quick_restart_loses_nothing() {
    let s = Setup::new().await;
    let file = s.journal().join("system.json");
    let (old, _) = entries("old", 0..50, 0);
    append(&file, &old);
    let config = s.config("");
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the start cursor saved", secs(20), || {
            s.saved_cursor().is_some_and(|c| c.contains("i=31;"))
        })
        .await;
    agent.stop(secs(20)).await;
    // Written while stopped, before any row was shipped: still read.
    let (text, mut all) = entries("new", 50..80, 0);
    append(&file, &text);
    let mut agent = Agent::spawn(s.command(&config));
    agent
        .wait_for("the new entries", secs(20), || s.all_arrived(&all))
        .await;
    let (text, more) = entries("live", 80..100, 0);
    append(&file, &text);
    all.extend(more);
    agent
        .wait_for("the live entries", secs(20), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    let calls = s.invocations();
    assert!(calls[0].contains(&"--lines=1".to_string()), "{calls:?}");
}

/// 10. units, priority and match go to journalctl; exclude_units is applied by the agent;
///     format = "raw" keeps every field under a valid column name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_reach_journalctl_and_raw_keeps_every_field() {
    let s = Setup::new().await;
    std::fs::copy(fixture("vm.json"), s.journal().join("system.json")).expect("fixture");
    let config = s.config(
        "since_now = false\nformat = \"raw\"\npriority = \"warning\"\n\
         exclude_units = [\"orders\"]\n[inputs.journal.match]\n_TRANSPORT = [\"syslog\", \"kernel\", \"stdout\"]\n",
    );
    let mut agent = Agent::spawn(s.command(&config));
    // priority ≤ 4 of kernel/syslog/stdout, without orders.service: the kernel's err and
    // sshd's two errors and dcrship's warning.
    let want = [
        "Buffer I/O error on dev sdb1, logical block 0, async page read",
        "Failed password for invalid user oracle from 198.51.100.23 port 40112 ssh2",
        "error: kex_exchange_identification: Connection closed by remote host",
        "WARN the DCE answered 503; retrying in 2s",
    ]
    .map(String::from);
    agent
        .wait_for("the filtered entries", secs(20), || s.all_arrived(&want))
        .await;
    // Entries are delivered in order: the last one of the fixture that passes has arrived,
    // so anything else that would pass has too.
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&want);
    let follow = &s.follows()[0];
    for a in [
        "--priority=4",
        "_TRANSPORT=syslog",
        "_TRANSPORT=kernel",
        "_TRANSPORT=stdout",
    ] {
        assert!(follow.contains(&a.to_string()), "{follow:?}");
    }
    let row = s
        .rows()
        .into_iter()
        .find(|r| r["MESSAGE"] == want[1].as_str())
        .expect("sshd row");
    for col in [
        "PID",
        "SYSTEMD_UNIT",
        "BOOT_ID",
        "REALTIME_TIMESTAMP",
        "CURSOR",
        "SYSLOG_IDENTIFIER",
        "TimeGenerated",
    ] {
        assert!(row.get(col).is_some(), "{col} in {row}");
    }
    assert!(row
        .as_object()
        .expect("obj")
        .keys()
        .all(|k| !k.starts_with('_')));
}

/// 11. The real journalctl on journal files built by systemd-journal-remote: the fixture's
///     export arrives, a restart resumes after the saved cursor, and a second journal file
///     (a rotation) is read. Skipped (said on stderr) where either tool is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_journalctl_reads_journal_files_and_resumes_after_the_cursor() {
    let remote = Path::new("/lib/systemd/systemd-journal-remote");
    let journalctl = std::process::Command::new("journalctl")
        .arg("--version")
        .output();
    if !remote.exists() || !journalctl.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: needs journalctl and systemd-journal-remote (Debian: systemd-journal-remote)"
        );
        return;
    }
    let s = Setup::new().await;
    let export = |script_args: &[&str], file: &str| {
        let out = std::process::Command::new("python3")
            .arg(fixture("make-export.py"))
            .args(script_args)
            .output()
            .expect("make-export.py");
        assert!(out.status.success());
        let mut child = std::process::Command::new(remote)
            .arg("-o")
            .arg(s.journal().join(file))
            .arg("-")
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-journal-remote");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&out.stdout)
            .expect("write");
        assert!(child.wait().expect("wait").success());
    };
    export(&[], "system.journal");
    let all = fixture_messages();
    let config = s.config("since_now = false");
    let mut c = s.command(&config);
    // the real one: the system's PATH only
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    let mut agent = Agent::spawn(c);
    agent
        .wait_for("the journal's entries", secs(30), || s.all_arrived(&all))
        .await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    assert!(s.saved_cursor().is_some());
    // A second file, of a later boot: read after the cursor, the first file not again.
    export(&["--later"], "system@later.journal");
    let mut all2 = all.clone();
    all2.extend(all.iter().map(|m| format!("{m} (later boot)")));
    let mut c = s.command(&config);
    c.env("PATH", std::env::var("PATH").unwrap_or_default());
    let mut agent = Agent::spawn(c);
    s.wait_all(&agent, "the second file's entries", secs(30), &all2)
        .await;
    assert!(
        !agent.children().is_empty(),
        "journalctl runs under the agent"
    );
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all2);
}

/// Runs the agent with stderr on a pipe whose device:inode is in `JOURNAL_STREAM` (as systemd
/// sets it), with a journalctl that dies once (a warning with its stderr, an error): its lines
/// until it warned and erred, then SIGTERM.
async fn lines_under_journald(log_format: &str) -> Vec<String> {
    use std::io::BufRead;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let s = Setup::new().await;
    let (text, _) = entries("own-logs", 0..5, 0);
    append(&s.journal().join("system.json"), &text);
    let config = s.config("since_now = false");
    let (reader, writer) = std::io::pipe().expect("pipe");
    let meta = std::fs::File::from(writer.as_fd().try_clone_to_owned().expect("fd"))
        .metadata()
        .expect("fstat");
    let mut c = s.command(&config);
    c.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("DCRSHIP_LOG_FORMAT", log_format)
        .env("FAKE_JOURNALCTL_DIE_AFTER", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::from(writer));
    let mut child = c.spawn().expect("spawn");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader)
            .lines()
            .map_while(Result::ok)
        {
            l.lock().expect("lines").push(line);
        }
    });
    let deadline = Instant::now() + secs(20);
    let seen = |needle: &str| {
        lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains(needle))
    };
    while !(seen("journalctl says") && seen("cannot read the journal")) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            lines.lock().expect("lines")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let _ = tokio::time::timeout(secs(20), child.wait()).await;
    let got = lines.lock().expect("lines").clone();
    got
}

/// 12. Under journald (stderr is the stream JOURNAL_STREAM names) text lines carry the
///     sd-daemon priority and no timestamp, so `journalctl -p warning` finds warnings and
///     errors; `--log-format json` is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_log_lines_carry_journal_priorities_under_journald() {
    let lines = lines_under_journald("text").await;
    let with = |p: &str, word: &str| lines.iter().any(|l| l.starts_with(p) && l.contains(word));
    assert!(with("<6> INFO", "output ready"), "{lines:#?}");
    assert!(with("<4> WARN", "journalctl says"), "{lines:#?}");
    assert!(with("<3>ERROR", "cannot read the journal"), "{lines:#?}");
    for l in &lines {
        assert!(
            l.starts_with("<3>")
                || l.starts_with("<4>")
                || l.starts_with("<6>")
                || l.starts_with("<7>"),
            "{l}"
        );
        // no timestamp of our own: the level follows the prefix
        assert!(l[3..].trim_start().starts_with(char::is_alphabetic), "{l}");
    }
    let json = lines_under_journald("json").await;
    assert!(
        !json.is_empty() && json.iter().all(|l| l.starts_with('{')),
        "{json:#?}"
    );
}

/// 13. Flag mode: `run --journald` with its filters, no config file; `--format raw` is refused
///     for a file input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_journald_from_flags() {
    let s = Setup::new().await;
    let (text, all) = entries("flags", 0..50, 0);
    append(&s.journal().join("system.json"), &text);
    let flags = || {
        let mut c = run_to(&s.fake, &s.state(), None, TOKEN);
        c.env("PATH", path_with(&s.tmp.path().join("bin")))
            .env("FAKE_JOURNALCTL_LOG", s.invocations_file());
        c
    };
    let mut c = flags();
    c.args([
        "--journald",
        "--journald-unit",
        "orders",
        "--start-at",
        "beginning",
    ])
    .arg("--journald-directory")
    .arg(s.journal());
    let mut agent = Agent::spawn(c);
    s.wait_all(&agent, "the entries", secs(20), &all).await;
    agent.stop(secs(20)).await;
    s.assert_exactly_once(&all);
    let follow = &s.follows()[0];
    assert!(
        follow.contains(&"--unit=orders.service".to_string()),
        "{follow:?}"
    );
    assert!(!s.invocations()[0].contains(&"--lines=1".to_string()));

    let mut c = flags();
    c.args(["--path", "/var/log/x.log", "--format", "raw"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--format: format = \"raw\" is for type = \"journald\""),
        "{}",
        stderr(&out)
    );
}
