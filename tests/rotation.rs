//! File rotation, lookalike files and many files, end to end: the real agent tailing real files
//! into a fake DCE on 127.0.0.1, stopped with SIGTERM or killed with SIGKILL while the files are
//! rotated (renamed, compressed, copied and truncated) under it, and run with 10,000 files under
//! a 1,024 descriptor limit. Every line written is accounted for: missing lines fail the test,
//! duplicates are counted and bounded. Waits poll with a deadline.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::agent::Agent;
use common::*;

const TOKEN: &str = "rotation-token-0123456789";
/// The first line of every CSV-like file here: the same in every file, so it cannot tell them
/// apart.
const HEADER: &str = "timestamp,level,message";

/// `dcrship run` tailing `glob` from the beginning into the fake, with a static token.
fn agent_cmd(fake: &Fake, state: &Path, glob: &str) -> tokio::process::Command {
    let mut c = run_to(fake, state, None, TOKEN);
    c.args(["--start-at", "beginning", "--path", glob]);
    c
}

fn glob_in(dir: &Path, pattern: &str) -> String {
    format!("{}/{pattern}", dir.display())
}

/// Lines `"{tag}-{i:06},INFO,…"` for i in the range.
fn lines(tag: &str, ids: std::ops::Range<usize>) -> Vec<String> {
    ids.map(|i| format!("2026-12-07T10:00:00Z,INFO,{tag}-{i:06} request served in {i} ms"))
        .collect()
}

fn text_of(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn gzip_file(from: &Path, to: &Path) {
    let bytes = std::fs::read(from).expect("read");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).expect("gzip");
    std::fs::write(to, gz.finish().expect("gzip")).expect("write gz");
    std::fs::remove_file(from).expect("rm");
}

/// Lines of `expected` that have not arrived.
fn missing(fake: &Fake, expected: &[String]) -> usize {
    let got = raw_counts(fake);
    expected.iter().filter(|l| !got.contains_key(*l)).count()
}

/// Every line of `expected` arrived exactly once, and nothing but them and `headers` headers;
/// `logs` (of the agent runs) are shown when not.
fn assert_exactly_once(
    fake: &Fake,
    expected: &[String],
    headers: usize,
    what: &str,
    logs: &[String],
) {
    let got = raw_counts(fake);
    let lost = missing(fake, expected);
    let twice: Vec<_> = got
        .iter()
        .filter(|(l, n)| **n > 1 && *l != HEADER)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| *k != HEADER && !expected.contains(k))
        .collect();
    assert!(
        lost == 0 && twice.is_empty() && extra.is_empty(),
        "{what}: lost {lost} of {} lines; {} sent twice {:?}; {} unexpected {:?}\n--- logs ---\n{}",
        expected.len(),
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(5).collect::<Vec<_>>(),
        logs.iter()
            .map(|l| agent::tail(l, 6000))
            .collect::<Vec<_>>()
            .join("\n--- next run ---\n"),
    );
    assert_eq!(
        got.get(HEADER).copied().unwrap_or(0),
        headers,
        "{what}: header rows"
    );
}

/// Starts the agent and waits until every line of `expected` arrived; the failure message says
/// how many did not.
async fn run_until_arrived(
    fake: &Fake,
    state: &Path,
    glob: &str,
    expected: &[String],
    within: Duration,
    what: &str,
) -> Agent {
    let agent = Agent::spawn(agent_cmd(fake, state, glob));
    let deadline = std::time::Instant::now() + within;
    while missing(fake, expected) > 0 {
        if std::time::Instant::now() > deadline {
            panic!(
                "{what}: {} of {} lines never arrived within {within:?}\n--- log ---\n{}",
                missing(fake, expected),
                expected.len(),
                agent::tail(&agent.log(), 4000)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent
}

// ---------------------------------------------------------------------------------------------
// 1. Rotation while the agent is stopped
// ---------------------------------------------------------------------------------------------

/// The README's own pattern, `dir/*.log`: the agent is stopped, 1,000 lines are appended, the
/// file is rotated (`app.log` → `app.log.1`, which the glob does not match) and a new `app.log`
/// is started. After the restart the 1,000 lines are read from the rotated file, from its
/// checkpoint, and logged at info; nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_stopped_is_read_from_the_checkpoint_to_the_end() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let glob = glob_in(dir.path(), "*.log");
    let before = lines("before", 0..500);
    append(&log, &before);
    let mut agent =
        run_until_arrived(&fake, state.path(), &glob, &before, secs(20), "first run").await;
    agent.stop(secs(10)).await;
    let first_log = agent.log();

    let stopped = lines("stopped", 0..1000);
    append(&log, &stopped);
    std::fs::rename(&log, dir.path().join("app.log.1")).expect("mv app.log app.log.1");
    let new = lines("new", 0..200);
    append(&log, &new);
    let all = [before, stopped, new].concat();
    let mut agent = run_until_arrived(
        &fake,
        state.path(),
        &glob,
        &all,
        secs(20),
        "after the rotation",
    )
    .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(
        &fake,
        &all,
        0,
        "rotation while stopped",
        &[first_log, agent.log()],
    );
    assert!(
        agent.log_has("found a rotated file"),
        "logged at info\n{}",
        agent.log()
    );
}

/// The same with `compress` and `dateext`: while the agent is stopped the file is rotated to
/// `app.log-20261207` and compressed to `app.log-20261207.gz` (a new inode). It is recognised by
/// its decompressed bytes and read from its checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_gzip_while_stopped_is_read_from_the_compressed_file() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let glob = glob_in(dir.path(), "*.log");
    let before = lines("before", 0..500);
    append(&log, &before);
    let mut agent =
        run_until_arrived(&fake, state.path(), &glob, &before, secs(20), "first run").await;
    agent.stop(secs(10)).await;
    let first_log = agent.log();

    let stopped = lines("stopped", 0..1000);
    append(&log, &stopped);
    let rotated = dir.path().join("app.log-20261207");
    std::fs::rename(&log, &rotated).expect("rotate");
    gzip_file(&rotated, &dir.path().join("app.log-20261207.gz"));
    let new = lines("new", 0..200);
    append(&log, &new);
    let all = [before, stopped, new].concat();
    let mut agent = run_until_arrived(
        &fake,
        state.path(),
        &glob,
        &all,
        secs(20),
        "after the rotation and compression",
    )
    .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(
        &fake,
        &all,
        0,
        "compressed while stopped",
        &[first_log, agent.log()],
    );
    assert!(
        agent.log_has("found a compressed rotated file"),
        "logged at info\n{}",
        agent.log()
    );
}

/// A small deterministic generator for the kill moments.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// logrotate's numbered scheme with `rotate 8` (and `compress` without `delaycompress`):
/// `app.log.7` → `app.log.8`, …, `app.log` → `app.log.1`, then gzip it.
fn rotate(dir: &Path, compress: bool) {
    const KEEP: usize = 8;
    let name = |i: usize| {
        dir.join(if compress {
            format!("app.log.{i}.gz")
        } else {
            format!("app.log.{i}")
        })
    };
    let _ = std::fs::remove_file(name(KEEP));
    for i in (1..KEEP).rev() {
        let _ = std::fs::rename(name(i), name(i + 1));
    }
    let first = dir.join("app.log.1");
    if std::fs::rename(dir.join("app.log"), &first).is_ok() && compress {
        gzip_file(&first, &name(1));
    }
}

/// The scenario: a writer appends about 500 lines a second, the file is rotated every
/// second, and the agent is killed with SIGKILL at random moments and restarted up to 1.2 s
/// later, eight times.
/// After a last start every line has arrived; duplicates (rows spooled but not yet
/// checkpointed at a kill) stay within a fraction of a second of input per kill.
async fn kill_loop(compress: bool) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("rotation kill loop (compress={compress}) seed {seed}");
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let glob = glob_in(dir.path(), "*.log");
    // The writer and logrotate take turns, as a writer that reopens its file after each rotation
    // does: lines written to a renamed file after it was compressed are lost with any shipper.
    let turn = Arc::new(Mutex::new(()));
    let done = Arc::new(AtomicBool::new(false));
    let (d, t, stop) = (dir.path().to_path_buf(), turn.clone(), done.clone());
    let writer = std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Relaxed) {
            {
                let _turn = t.lock().expect("turn");
                append(&d.join("app.log"), &lines("w", n..n + 5));
            }
            n += 5;
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    });
    let (d, t, stop) = (dir.path().to_path_buf(), turn.clone(), done.clone());
    let rotator = std::thread::spawn(move || {
        let mut rotations = 0;
        while !stop.load(Relaxed) {
            std::thread::sleep(Duration::from_secs(1));
            let _turn = t.lock().expect("turn");
            rotate(&d, compress);
            rotations += 1;
        }
        rotations
    });

    let mut rng = Rng(seed);
    let kills = 8;
    for k in 0..kills {
        let mut agent = Agent::spawn(agent_cmd(&fake, state.path(), &glob));
        let after = Duration::from_millis(600 + rng.below(900));
        tokio::time::sleep(after).await;
        agent.kill().await;
        // Down for a moment, as under systemd's RestartSec: a rotation may happen meanwhile.
        let down = Duration::from_millis(rng.below(1200));
        tokio::time::sleep(down).await;
        eprintln!("kill {k}: SIGKILL after {after:?}, down for {down:?}");
    }
    done.store(true, Relaxed);
    let written = writer.join().expect("writer");
    let rotations = rotator.join().expect("rotator");
    let all = lines("w", 0..written);

    let deadline = secs(60);
    let mut agent = Agent::spawn(agent_cmd(&fake, state.path(), &glob));
    let start = std::time::Instant::now();
    while missing(&fake, &all) > 0 && start.elapsed() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop(secs(10)).await;
    let got = raw_counts(&fake);
    let lost = missing(&fake, &all);
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    eprintln!(
        "rotation kill loop (compress={compress}): {written} lines, {rotations} rotations, \
         {kills} SIGKILLs: lost {lost} ({:.1}%), duplicates {duplicates}",
        100.0 * lost as f64 / written as f64
    );
    if lost > 0 {
        let ranges = missing_ranges(&got, written);
        eprintln!("missing line ranges: {ranges:?}");
    }
    assert_eq!(
        lost,
        0,
        "lost {lost} of {written} lines\n--- log of the last run ---\n{}",
        agent::tail(&agent.log(), 4000)
    );
    assert!(
        got.keys().all(|k| all.contains(k)),
        "nothing but the lines written"
    );
    // A row comes twice when it was spooled but its checkpoint not yet saved (every 50 ms) at a
    // kill, or delivered but not yet in the spool cursor (every 20 ms): a fraction of a second
    // of input (about 500 lines a second here) per kill.
    let per_kill = duplicates / kills;
    assert!(per_kill <= 400, "{per_kill} duplicates per kill");
}

/// The runs of consecutive writer lines `w-…` that never arrived.
fn missing_ranges(got: &HashMap<String, usize>, written: usize) -> Vec<(usize, usize)> {
    let all = lines("w", 0..written);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, l) in all.iter().enumerate() {
        if got.contains_key(l) {
            continue;
        }
        match ranges.last_mut() {
            Some(r) if r.1 + 1 == i => r.1 = i,
            _ => ranges.push((i, i)),
        }
    }
    ranges
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_rotation_every_second_loses_nothing() {
    kill_loop(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_compressing_rotation_every_second_loses_nothing() {
    kill_loop(true).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Lookalike files: the same inode and the same first line, other content
// ---------------------------------------------------------------------------------------------

/// copytruncate while the agent is stopped, on a log whose first line is always the same CSV
/// header: lines appended after the last checkpoint are in the copy (`app.log.1`), and the
/// original is refilled with the header and more bytes than were read. The agent reads the
/// rest of the copy from its checkpoint, then the new file from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_while_stopped_with_a_constant_header_loses_nothing() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let glob = glob_in(dir.path(), "*.log");
    let before = lines("before", 0..300);
    append(&log, &[HEADER.to_string()]);
    append(&log, &before);
    let mut agent =
        run_until_arrived(&fake, state.path(), &glob, &before, secs(20), "first run").await;
    agent.stop(secs(10)).await;
    let first_log = agent.log();

    let unread = lines("unread", 0..100);
    append(&log, &unread);
    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    let new = lines("new", 0..600);
    std::fs::write(&log, format!("{HEADER}\n{}", text_of(&new))).expect("truncate and refill");
    let all = [before, unread, new].concat();
    let mut agent = run_until_arrived(
        &fake,
        state.path(),
        &glob,
        &all,
        secs(20),
        "after copytruncate",
    )
    .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(
        &fake,
        &all,
        2,
        "copytruncate while stopped",
        &[first_log, agent.log()],
    );
    assert!(
        agent.log_has("another file"),
        "the lookalike is logged\n{}",
        agent.log()
    );
}

/// The same inode and header, other content, while the agent is stopped: what an inode reused
/// for a new file with the same header looks like to the agent. (Deleting and recreating may or
/// may not get the inode back, depending on the file system; truncating and rewriting the file
/// keeps it for certain.) The new content is read whole, from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_inode_with_the_same_header_but_other_lines_is_read_whole() {
    use std::os::unix::fs::MetadataExt;
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let glob = glob_in(dir.path(), "*.log");
    let before = lines("before", 0..300);
    append(&log, &[HEADER.to_string()]);
    append(&log, &before);
    let mut agent =
        run_until_arrived(&fake, state.path(), &glob, &before, secs(20), "first run").await;
    agent.stop(secs(10)).await;
    let first_log = agent.log();

    let inode = std::fs::metadata(&log).expect("stat").ino();
    let replaced = lines("replaced", 0..500);
    std::fs::write(&log, format!("{HEADER}\n{}", text_of(&replaced))).expect("rewrite");
    assert_eq!(std::fs::metadata(&log).expect("stat").ino(), inode);
    let all = [before, replaced].concat();
    let mut agent = run_until_arrived(
        &fake,
        state.path(),
        &glob,
        &all,
        secs(20),
        "after the reuse",
    )
    .await;
    agent.stop(secs(10)).await;
    assert_exactly_once(
        &fake,
        &all,
        2,
        "same inode, same header",
        &[first_log, agent.log()],
    );
}

/// copytruncate while the agent runs, on a log with a constant header, refilled past the old
/// offset between two stat polls (so the file never looks smaller): the bytes before the
/// offset changed, so the new file is read from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_with_a_constant_header_refilled_while_running_loses_nothing() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let log = dir.path().join("app.log");
    let glob = glob_in(dir.path(), "app.log");
    let before = lines("before", 0..300);
    append(&log, &[HEADER.to_string()]);
    append(&log, &before);
    let agent = run_until_arrived(&fake, state.path(), &glob, &before, secs(20), "first").await;
    std::fs::copy(&log, dir.path().join("app.log.1")).expect("copy");
    let new = lines("new", 0..600);
    // One write truncates and refills the file.
    std::fs::write(&log, format!("{HEADER}\n{}", text_of(&new))).expect("truncate and refill");
    let all = [before, new].concat();
    let mut agent = agent;
    let deadline = std::time::Instant::now() + secs(20);
    while missing(&fake, &all) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of the {} refilled lines never arrived\n--- log ---\n{}",
            missing(&fake, &all),
            new_count(&all),
            agent::tail(&agent.log(), 4000)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.stop(secs(10)).await;
    assert_exactly_once(&fake, &all, 2, "copytruncate while running", &[agent.log()]);
}

fn new_count(all: &[String]) -> usize {
    all.iter().filter(|l| l.contains(",new-")).count()
}

// ---------------------------------------------------------------------------------------------
// 3. Many files, few descriptors
// ---------------------------------------------------------------------------------------------

/// The agent with its soft and hard `RLIMIT_NOFILE` at `limit` (set in the child before exec).
fn with_nofile_limit(mut cmd: tokio::process::Command, limit: u64) -> tokio::process::Command {
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd
}

/// Descriptors `pid` holds on files under `dir`.
fn open_under(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
                .count()
        })
        .unwrap_or(0)
}

/// 10,000 files of one line each, under a soft and hard limit of 1,024 descriptors: every line
/// arrives, the agent never holds more files than its budget (768), the spool, its cursor and
/// the checkpoints never fail, and lines appended later to a tenth of the files arrive too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_files_under_a_1024_descriptor_limit_all_arrive() {
    const FILES: usize = 10_000;
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let logs = dir.path().canonicalize().expect("canonical");
    let path = |i: usize| logs.join(format!("f{i:05}.log"));
    let first: Vec<String> = (0..FILES)
        .map(|i| format!("first line of file {i:05}"))
        .collect();
    for (i, line) in first.iter().enumerate() {
        std::fs::write(path(i), format!("{line}\n")).expect("write");
    }
    let glob = glob_in(&logs, "*.log");
    let mut agent = Agent::spawn(with_nofile_limit(
        agent_cmd(&fake, state.path(), &glob),
        1024,
    ));
    let mut most_open = 0;
    let deadline = std::time::Instant::now() + secs(180);
    while missing(&fake, &first) > 0 {
        most_open = most_open.max(open_under(agent.pid, &logs));
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {FILES} lines never arrived\n--- log ---\n{}",
            missing(&fake, &first),
            agent::tail(&agent.log(), 4000)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second: Vec<String> = (0..FILES)
        .step_by(10)
        .map(|i| format!("second line of file {i:05}"))
        .collect();
    for i in (0..FILES).step_by(10) {
        append(&path(i), &[format!("second line of file {i:05}")]);
    }
    let all = [first, second].concat();
    let deadline = std::time::Instant::now() + secs(120);
    while missing(&fake, &all) > 0 {
        most_open = most_open.max(open_under(agent.pid, &logs));
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} appended lines never arrived\n--- log ---\n{}",
            missing(&fake, &all),
            FILES / 10,
            agent::tail(&agent.log(), 4000)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.stop(secs(30)).await;
    eprintln!("10,000 files under ulimit -n 1024: at most {most_open} tailed files open at once");
    assert!(most_open <= 768, "{most_open} files open at once");
    let log = agent.log();
    assert!(
        !log.to_lowercase().contains("too many open files"),
        "{}",
        agent::tail(&log, 4000)
    );
    assert_exactly_once(&fake, &all, 0, "10,000 files", &[agent.log()]);
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.path().join("checkpoints.json")).expect("checkpoints saved"),
    )
    .expect("checkpoints JSON");
    assert_eq!(saved["files"].as_array().map(Vec::len), Some(FILES));
}
