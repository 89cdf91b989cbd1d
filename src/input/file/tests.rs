//! The tailer against real files in a temp directory, with short intervals. Every wait is a
//! deadline-bounded poll for the expected outcome; no assertion rests on a fixed sleep.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::input::checkpoint::CheckpointStore;
use crate::input::fingerprint;

/// Longest any single expectation may take.
const DEADLINE: Duration = Duration::from_secs(4);

/// One received line, flattened for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    key: FileKey,
    path: PathBuf,
    text: String,
    number: u64,
    end_offset: u64,
    truncated: bool,
}

/// A running tailer and everything it has sent so far.
struct Tail {
    rx: mpsc::Receiver<FileLines>,
    stop: CancellationToken,
    task: JoinHandle<Result<(), TailError>>,
    got: Vec<Got>,
    largest_batch: usize,
    /// The checkpoints the pipeline would save if every batch so far were safe.
    safe: Checkpoints,
}

impl Tail {
    fn start(config: TailerConfig, checkpoints: &Checkpoints) -> Tail {
        Tail::with_capacity(config, checkpoints, 16)
    }

    fn with_capacity(config: TailerConfig, checkpoints: &Checkpoints, capacity: usize) -> Tail {
        Tail::with_tailer(
            FileTailer::new(config, checkpoints).expect("valid config"),
            capacity,
        )
    }

    fn with_budget(config: TailerConfig, checkpoints: &Checkpoints, budget: usize) -> Tail {
        let tailer = FileTailer::new(config, checkpoints)
            .expect("valid config")
            .with_open_files(OpenFiles::new(budget));
        Tail::with_tailer(tailer, 16)
    }

    fn with_tailer(tailer: FileTailer, capacity: usize) -> Tail {
        let (tx, rx) = mpsc::channel(capacity);
        let stop = CancellationToken::new();
        let task = tokio::spawn(tailer.run(tx, stop.clone()));
        Tail {
            rx,
            stop,
            task,
            got: Vec::new(),
            largest_batch: 0,
            safe: Checkpoints::new(),
        }
    }

    fn take(&mut self, batch: FileLines) {
        self.largest_batch = self.largest_batch.max(batch.buf.len());
        if let Some(end) = batch.end_offset().or(batch.started_at) {
            let window = batch.windows.last().copied();
            self.safe.advance(batch.file, &batch.path, end, window);
        }
        for (line, bytes) in batch.iter() {
            self.got.push(Got {
                key: batch.file,
                path: batch.path.to_path_buf(),
                text: String::from_utf8_lossy(bytes).into_owned(),
                number: line.number,
                end_offset: line.end_offset,
                truncated: line.truncated,
            });
        }
    }

    /// Receives until `done` holds for what arrived, or fails after [`DEADLINE`].
    async fn until(&mut self, what: &str, done: impl Fn(&[Got]) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !done(&self.got) {
            match timeout(deadline - Instant::now(), self.rx.recv()).await {
                Ok(Some(batch)) => self.take(batch),
                Ok(None) => panic!("tailer ended while waiting for {what}: {:?}", self.got),
                Err(_) => panic!("timed out waiting for {what}; got {:#?}", self.texts()),
            }
        }
    }

    /// Waits until the texts received are exactly `want`.
    async fn until_texts(&mut self, want: &[&str]) {
        let what = format!("{want:?}");
        self.until(&what, |got| got.len() >= want.len()).await;
        assert_eq!(self.texts(), want);
    }

    fn texts(&self) -> Vec<&str> {
        self.got.iter().map(|g| g.text.as_str()).collect()
    }

    /// Raises the stop signal, waits for the task, and collects what was sent before it ended.
    async fn stop(mut self) -> Vec<Got> {
        self.stop.cancel();
        let ended = timeout(DEADLINE, &mut self.task).await;
        let result = ended.expect("tailer stops in time").expect("task ran");
        assert!(result.is_ok(), "{result:?}");
        while let Ok(batch) = self.rx.try_recv() {
            self.take(batch);
        }
        self.got
    }
}

/// Short intervals so each test takes well under a second or two.
fn config(dir: &Path, globs: &[&str], start_at: StartAt) -> TailerConfig {
    let paths = globs
        .iter()
        .map(|g| dir.join(g).to_string_lossy().into_owned())
        .collect();
    TailerConfig {
        rescan_interval: Duration::from_millis(50),
        poll_interval: Duration::from_millis(20),
        rotate_wait: Duration::from_millis(300),
        line_timeout: Duration::from_millis(300),
        ..TailerConfig::new(paths, Vec::new(), start_at)
    }
}

/// A temp directory under its canonical name, so it compares equal to `/proc/self/fd` links.
fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().canonicalize().expect("canonical");
    (dir, path)
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

fn writer(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open writer")
}

/// Whether this process has `path` open (also when it was deleted since).
fn held_open(path: &Path) -> bool {
    let deleted = format!("{} (deleted)", path.display());
    let Ok(fds) = fs::read_dir("/proc/self/fd") else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|target| target == path || target.to_string_lossy() == deleted.as_str())
    })
}

/// Polls `cond` until it holds, or fails after [`DEADLINE`].
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn key_of(path: &Path) -> FileKey {
    let meta = fs::metadata(path).expect("stat");
    let head = fingerprint::read_head(&File::open(path).expect("open")).expect("head");
    FileKey {
        dev: meta.dev(),
        ino: meta.ino(),
        fingerprint: fingerprint::fingerprint(&head).expect("first line complete"),
        generation: 0,
    }
}

fn texts_of<'a>(got: &'a [Got], key: &FileKey) -> Vec<&'a str> {
    got.iter()
        .filter(|g| &g.key == key)
        .map(|g| g.text.as_str())
        .collect()
}

#[tokio::test]
async fn appended_lines_arrive_in_order_with_their_offsets() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, "one\ntwo\r\n");
    let mut tail = Tail::start(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["one", "two"]).await;
    append(&log, "three\n");
    tail.until_texts(&["one", "two", "three"]).await;
    let got = tail.stop().await;
    let numbers: Vec<_> = got.iter().map(|g| (g.number, g.end_offset)).collect();
    assert_eq!(numbers, vec![(1, 4), (2, 9), (3, 15)]);
    assert!(got.iter().all(|g| g.path == log && g.key == key_of(&log)));
}

#[tokio::test]
async fn a_big_backlog_arrives_whole_in_bounded_batches_under_backpressure() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("big.log");
    let text: String = (0..40_000)
        .map(|i| format!("{i:09} {}\n", "y".repeat(40)))
        .collect();
    append(&log, &text);
    let cfg = config(&dir, &["big.log"], StartAt::Beginning);
    let cap = cfg.max_batch_bytes + cfg.max_line_bytes + 64 * 1024;
    let mut tail = Tail::with_capacity(cfg, &Checkpoints::new(), 1);
    tail.until("40000 lines", |got| got.len() >= 40_000).await;
    assert!(tail.largest_batch <= cap, "{} > {cap}", tail.largest_batch);
    let got = tail.stop().await;
    assert_eq!(got.len(), 40_000);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, g)| g.number == i as u64 + 1));
    assert_eq!(got[39_999].end_offset, text.len() as u64);
    assert!(got[12_345].text.starts_with("000012345 "));
}

#[tokio::test]
async fn rename_rotation_reads_late_writes_to_the_old_file_then_closes_it() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let rotated = dir.join("app.log.1");
    let mut cfg = config(&dir, &["app.log"], StartAt::Beginning);
    cfg.rotate_wait = Duration::from_millis(1000);
    let mut tail = Tail::start(cfg, &Checkpoints::new());
    let mut old = writer(&log);
    old.write_all(b"old-1\nold-2\n").expect("write");
    tail.until("old lines", |got| got.len() >= 2).await;
    let old_key = key_of(&log);

    fs::rename(&log, &rotated).expect("rotate");
    append(&log, "new-1\nnew-2\n");
    // The writer has not reopened yet: these land in the rotated file.
    old.write_all(b"old-3\nold-4\n").expect("late write");
    let new_key = key_of(&log);
    tail.until("every line", |got| got.len() >= 6).await;
    assert!(
        held_open(&rotated),
        "old file is kept open during rotate_wait"
    );
    drop(old);
    eventually("rotated file closed after rotate_wait", || {
        !held_open(&rotated)
    })
    .await;
    append(&log, "new-3\n");
    tail.until("new-3", |got| got.len() >= 7).await;

    let got = tail.stop().await;
    assert_ne!(old_key, new_key);
    assert_eq!(
        texts_of(&got, &old_key),
        ["old-1", "old-2", "old-3", "old-4"]
    );
    assert_eq!(texts_of(&got, &new_key), ["new-1", "new-2", "new-3"]);
    assert_eq!(got.len(), 7, "nothing twice: {got:#?}");
    let new_lines: Vec<_> = got.iter().filter(|g| g.key == new_key).collect();
    assert_eq!(new_lines[0].number, 1, "new file read from its beginning");
}

#[tokio::test]
async fn rotation_into_a_name_the_glob_also_matches_reads_nothing_twice() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let mut tail = Tail::start(
        config(&dir, &["app.log*"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    append(&log, "a-1\n");
    tail.until_texts(&["a-1"]).await;
    let old_key = key_of(&log);
    fs::rename(&log, dir.join("app.log.1")).expect("rotate");
    append(&dir.join("app.log.1"), "a-2\n");
    append(&log, "b-1\n");
    tail.until("a-2 and b-1", |got| got.len() >= 3).await;
    // Several rescans later still nothing is read again.
    append(&log, "b-2\n");
    append(&dir.join("app.log.1"), "a-3\n");
    tail.until("b-2 and a-3", |got| got.len() >= 5).await;
    let got = tail.stop().await;
    assert_eq!(texts_of(&got, &old_key), ["a-1", "a-2", "a-3"]);
    assert_eq!(texts_of(&got, &key_of(&log)), ["b-1", "b-2"]);
    assert_eq!(got.len(), 5, "{got:#?}");
    let last_old = got.iter().rfind(|g| g.key == old_key).expect("old");
    assert_eq!(
        last_old.path,
        dir.join("app.log.1"),
        "path follows the rename"
    );
}

#[tokio::test]
async fn copytruncate_reads_the_file_again_from_the_start() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, "a-1\na-2\n");
    let mut tail = Tail::start(
        config(&dir, &["app.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["a-1", "a-2"]).await;
    fs::copy(&log, dir.join("app.log.1")).expect("copy");
    File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    append(&log, "b-1\n");
    tail.until_texts(&["a-1", "a-2", "b-1"]).await;
    let got = tail.stop().await;
    assert_ne!(got[0].key, got[2].key, "a new first line is a new key");
    assert_eq!((got[2].number, got[2].end_offset), (1, 4));
}

#[tokio::test]
async fn truncated_and_rewritten_past_the_old_offset_between_polls_is_noticed() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, "a-1\n");
    let mut tail = Tail::start(
        config(&dir, &["app.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["a-1"]).await;
    // One write replaces the content with more bytes than were read: the size never looks smaller.
    let mut f = File::create(&log).expect("truncate");
    f.write_all(b"b-1\nb-2\nb-3\n").expect("rewrite");
    tail.until_texts(&["a-1", "b-1", "b-2", "b-3"]).await;
    tail.stop().await;
}

#[tokio::test]
async fn new_files_are_found_and_read_from_their_beginning_even_with_start_at_end() {
    let (_tmp, dir) = temp_dir();
    let a = dir.join("a.log");
    append(&a, "old\nhal");
    let mut tail = Tail::start(config(&dir, &["*.log"], StartAt::End), &Checkpoints::new());
    eventually("first scan opened a.log", || held_open(&a)).await;
    let b = dir.join("b.log");
    append(&b, "b-1\nb-2\n");
    tail.until_texts(&["b-1", "b-2"]).await;
    append(&a, "f\nnew\n");
    tail.until_texts(&["b-1", "b-2", "half", "new"]).await;
    let got = tail.stop().await;
    assert!(got.iter().all(|g| g.text != "old"));
    assert_eq!(
        got[2].end_offset, 9,
        "the half line present at startup is read whole"
    );
}

#[tokio::test]
async fn start_at_beginning_reads_what_is_already_there() {
    let (_tmp, dir) = temp_dir();
    append(&dir.join("a.log"), "old-1\nold-2\n");
    let mut tail = Tail::start(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["old-1", "old-2"]).await;
    tail.stop().await;
}

#[tokio::test]
async fn excluded_files_are_not_read() {
    let (_tmp, dir) = temp_dir();
    let mut cfg = config(&dir, &["*.log"], StartAt::Beginning);
    cfg.exclude = vec!["skip*.log".into()];
    let mut tail = Tail::start(cfg, &Checkpoints::new());
    append(&dir.join("skip-1.log"), "secret\n");
    let keep = dir.join("keep.log");
    append(&keep, "kept-1\n");
    tail.until_texts(&["kept-1"]).await;
    // A later round has certainly looked at every file the glob matched.
    append(&keep, "kept-2\n");
    tail.until_texts(&["kept-1", "kept-2"]).await;
    assert!(!held_open(&dir.join("skip-1.log")));
    tail.stop().await;
}

#[tokio::test]
async fn a_deleted_file_is_read_to_its_end_then_closed() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let mut w = writer(&log);
    w.write_all(b"l-1\n").expect("write");
    let mut tail = Tail::start(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["l-1"]).await;
    w.write_all(b"l-2\n").expect("write");
    fs::remove_file(&log).expect("delete");
    w.write_all(b"l-3\nunfinished").expect("write after delete");
    drop(w);
    // The unfinished line is handed out on close, without waiting for a newline.
    tail.until_texts(&["l-1", "l-2", "l-3", "unfinished"]).await;
    eventually("deleted file closed", || !held_open(&log)).await;
    tail.stop().await;
}

#[tokio::test]
async fn a_file_recreated_after_delete_is_read_whole_even_with_the_same_head() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, "header\nfirst-gen\n");
    let mut tail = Tail::start(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until_texts(&["header", "first-gen"]).await;
    fs::remove_file(&log).expect("delete");
    eventually("deleted file closed", || !held_open(&log)).await;
    // The kernel often hands the freed inode to the next file; the head is the same too. A deleted
    // file is never remembered, so nothing of the new one is skipped.
    append(&log, "header\nsecond-gen\n");
    tail.until_texts(&["header", "first-gen", "header", "second-gen"])
        .await;
    let got = tail.stop().await;
    assert_eq!((got[3].number, got[3].end_offset), (2, 18));
}

#[tokio::test]
async fn the_same_inode_with_another_fingerprint_is_a_new_file() {
    let (_tmp, dir) = temp_dir();
    let reused = dir.join("reused.log");
    let same = dir.join("same.log");
    append(&reused, "fresh-1\nfresh-2\n");
    append(&same, "kept-1\nkept-2\n");
    let stale = FileKey {
        fingerprint: fingerprint::fingerprint(b"a line of the deleted file\n").expect("fp"),
        ..key_of(&reused)
    };
    let mut checkpoints = Checkpoints::new();
    checkpoints.advance(stale, &reused, 8, None);
    checkpoints.advance(key_of(&same), &same, 7, None);
    let mut tail = Tail::start(config(&dir, &["*.log"], StartAt::Beginning), &checkpoints);
    tail.until("three lines", |got| got.len() >= 3).await;
    let got = tail.stop().await;
    assert_eq!(texts_of(&got, &key_of(&reused)), ["fresh-1", "fresh-2"]);
    assert_eq!(texts_of(&got, &key_of(&same)), ["kept-2"]);
    assert_eq!(got.len(), 3);
}

#[tokio::test]
async fn a_restart_from_checkpoints_neither_skips_nor_repeats() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let store = CheckpointStore::open(&dir.join("state")).expect("store");
    append(&log, "1\n2\n3\n4\n5\n");
    let mut first = Tail::start(config(&dir, &["*.log"], StartAt::Beginning), &store.load());
    first.until("five lines", |got| got.len() >= 5).await;
    // Only the first three rows were made safe before the agent stopped.
    let mut checkpoints = Checkpoints::new();
    for g in &first.got[..3] {
        checkpoints.advance(g.key, &g.path, g.end_offset, None);
    }
    first.stop().await;
    store.save(&checkpoints).expect("save");
    append(&log, "6\n7\n");

    // start_at = end would skip everything here; the checkpoint wins.
    let mut second = Tail::start(config(&dir, &["*.log"], StartAt::End), &store.load());
    second.until_texts(&["4", "5", "6", "7"]).await;
    append(&log, "8\n");
    second.until_texts(&["4", "5", "6", "7", "8"]).await;
    let got = second.stop().await;
    assert_eq!(got[0].end_offset, 8);
}

#[tokio::test]
async fn a_checkpoint_past_the_end_means_truncated_and_reads_from_zero() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, "x-1\n");
    let mut checkpoints = Checkpoints::new();
    checkpoints.advance(key_of(&log), &log, 4096, None);
    let mut tail = Tail::start(config(&dir, &["*.log"], StartAt::End), &checkpoints);
    tail.until_texts(&["x-1"]).await;
    tail.stop().await;
}

#[tokio::test]
async fn an_unfinished_last_line_waits_for_line_timeout() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let mut cfg = config(&dir, &["*.log"], StartAt::Beginning);
    cfg.line_timeout = Duration::from_millis(400);
    let line_timeout = cfg.line_timeout;
    let mut tail = Tail::start(cfg, &Checkpoints::new());
    let written = Instant::now();
    append(&log, "a\nb");
    tail.until_texts(&["a"]).await;
    tail.until_texts(&["a", "b"]).await;
    assert!(
        written.elapsed() >= line_timeout,
        "b came after {:?}",
        written.elapsed()
    );
    assert_eq!(tail.got[1].end_offset, 3);
    // Finished well within the timeout: one line, not two pieces.
    let mut w = writer(&log);
    w.write_all(b"c").expect("write");
    w.write_all(b"d\n").expect("write");
    tail.until_texts(&["a", "b", "cd"]).await;
    assert_eq!(tail.got[2].end_offset, 6);
    tail.stop().await;
}

#[tokio::test]
async fn a_10_mb_line_is_cut_and_memory_stays_bounded() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("huge.log");
    let cfg = config(&dir, &["*.log"], StartAt::Beginning);
    let (max_line, cap) = (
        cfg.max_line_bytes,
        cfg.max_batch_bytes + cfg.max_line_bytes + 64 * 1024,
    );
    {
        let mut w = writer(&log);
        w.write_all(b"before\n").expect("write");
        let block = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            w.write_all(&block).expect("write");
        }
        w.write_all(b"\nafter\n").expect("write");
    }
    let mut tail = Tail::start(cfg, &Checkpoints::new());
    tail.until("three lines", |got| got.len() >= 3).await;
    assert!(tail.largest_batch <= cap, "{} > {cap}", tail.largest_batch);
    let got = tail.stop().await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].text, "before");
    assert!(got[1].truncated);
    assert_eq!(got[1].text.len(), max_line);
    assert_eq!(got[1].end_offset, 7 + (10 << 20) + 1);
    assert_eq!((got[2].text.as_str(), got[2].truncated), ("after", false));
}

#[tokio::test]
async fn stop_ends_the_tailer_even_while_the_channel_is_full() {
    let (_tmp, dir) = temp_dir();
    let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
    append(&dir.join("a.log"), &text);
    let tail = Tail::with_capacity(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
        1,
    );
    eventually("channel full", || tail.rx.len() == 1).await;
    let started = Instant::now();
    tail.stop().await;
    assert!(started.elapsed() < DEADLINE);
}

#[tokio::test]
async fn a_missing_directory_is_picked_up_once_it_exists() {
    let (_tmp, dir) = temp_dir();
    let sub = dir.join("later");
    let mut tail = Tail::start(
        config(&dir, &["later/*.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    fs::create_dir(&sub).expect("mkdir");
    append(&sub.join("x.log"), "x-1\n");
    tail.until_texts(&["x-1"]).await;
    tail.stop().await;
}

#[test]
fn invalid_settings_are_refused() {
    let ok = TailerConfig::new(vec!["/var/log/*.log".into()], vec![], StartAt::End);
    assert!(FileTailer::new(ok.clone(), &Checkpoints::new()).is_ok());
    let cases = [
        TailerConfig {
            paths: vec![],
            ..ok.clone()
        },
        TailerConfig {
            paths: vec!["/var/log/[".into()],
            ..ok.clone()
        },
        TailerConfig {
            exclude: vec!["[".into()],
            ..ok.clone()
        },
        TailerConfig {
            poll_interval: Duration::ZERO,
            ..ok.clone()
        },
        TailerConfig {
            max_line_bytes: 0,
            ..ok.clone()
        },
        TailerConfig {
            max_batch_bytes: usize::MAX,
            ..ok
        },
    ];
    for cfg in cases {
        assert!(
            FileTailer::new(cfg.clone(), &Checkpoints::new()).is_err(),
            "{cfg:?}"
        );
    }
}

#[test]
fn file_lines_hand_out_their_lines() {
    let lines = FileLines {
        started_at: None,
        file: FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            generation: 0,
        },
        windows: Vec::new(),
        path: Arc::new(PathBuf::from("/a")),
        buf: b"onetwo".to_vec(),
        lines: vec![
            LineRef {
                start: 0,
                end: 3,
                number: 1,
                end_offset: 4,
                truncated: false,
            },
            LineRef {
                start: 3,
                end: 6,
                number: 2,
                end_offset: 8,
                truncated: false,
            },
        ],
    };
    let texts: Vec<_> = lines.iter().map(|(_, b)| b).collect();
    assert_eq!(texts, [b"one", b"two"]);
    assert_eq!(lines.end_offset(), Some(8));
    let bogus = LineRef {
        start: 5,
        end: 99,
        ..lines.lines[0]
    };
    assert_eq!(lines.line(&bogus), b"");
}

/// `lines` as text, one per line, after a header every file of the test shares.
fn csv(tag: &str, lines: std::ops::Range<usize>) -> String {
    lines
        .map(|i| format!("2026-12-07T10:00:{i:05},INFO,{tag} {i}\n"))
        .collect()
}

const HEADER: &str = "timestamp,level,message\n";

/// A tailer run that reads `want` lines, then stops: the checkpoints it leaves.
async fn run_until(
    cfg: TailerConfig,
    checkpoints: &Checkpoints,
    want: usize,
) -> (Vec<Got>, Checkpoints) {
    let mut tail = Tail::start(cfg, checkpoints);
    tail.until(&format!("{want} lines"), |got| got.len() >= want)
        .await;
    let safe = tail.safe.clone();
    (tail.stop().await, safe)
}

#[tokio::test]
async fn a_file_rotated_while_stopped_is_read_from_its_checkpoint() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..100)));
    let cfg = config(&dir, &["*.log"], StartAt::Beginning);
    let (_, cps) = run_until(cfg.clone(), &Checkpoints::new(), 101).await;
    // While stopped: more lines, then a rename rotation and a new file.
    append(&log, &csv("unread", 0..50));
    fs::rename(&log, dir.join("app.log.1")).expect("rotate");
    append(&log, &format!("{HEADER}{}", csv("new", 0..10)));
    let (got, _) = run_until(cfg, &cps, 61).await;
    let texts: Vec<&str> = got.iter().map(|g| g.text.as_str()).collect();
    assert_eq!(got.len(), 61, "{texts:?}");
    assert_eq!(texts.iter().filter(|t| t.contains("unread")).count(), 50);
    assert_eq!(texts.iter().filter(|t| t.contains(",new ")).count(), 10);
    assert!(
        got.iter().all(|g| g.path == log),
        "lines keep the watched name"
    );
}

#[tokio::test]
async fn a_file_rotated_and_compressed_while_stopped_is_read_from_the_gzip() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..300)));
    let cfg = config(&dir, &["app.log"], StartAt::End);
    let (_, cps) = run_until(cfg.clone(), &Checkpoints::new(), 0).await;
    // start_at = end: nothing read, but the start is checkpointed once the tailer saw it.
    let mut tail = Tail::start(cfg.clone(), &cps);
    eventually("the file opened", || held_open(&log)).await;
    append(&log, &csv("first", 0..5));
    tail.until("first lines", |got| got.len() >= 5).await;
    let cps = tail.safe.clone();
    tail.stop().await;
    append(&log, &csv("unread", 0..500));
    let bytes = fs::read(&log).expect("read");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).expect("gzip");
    fs::write(dir.join("app.log.1.gz"), gz.finish().expect("gzip")).expect("write gz");
    fs::remove_file(&log).expect("rm");
    append(&log, &format!("{HEADER}{}", csv("new", 0..3)));
    let (got, _) = run_until(cfg, &cps, 500).await;
    let unread: Vec<&str> = got
        .iter()
        .map(|g| g.text.as_str())
        .filter(|t| t.contains("unread"))
        .collect();
    assert_eq!(unread.len(), 500);
    assert!(unread[499].ends_with("unread 499"));
}

#[tokio::test]
async fn copytruncate_while_stopped_with_the_same_header_reads_the_copy_then_the_new_file() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..100)));
    let cfg = config(&dir, &["app.log"], StartAt::Beginning);
    let (_, cps) = run_until(cfg.clone(), &Checkpoints::new(), 101).await;
    append(&log, &csv("unread", 0..20));
    fs::copy(&log, dir.join("app.log.1")).expect("copy");
    // Refilled with the same header and more bytes than were read: size and head look the same.
    fs::write(&log, format!("{HEADER}{}", csv("new", 0..200))).expect("truncate and refill");
    let (got, _) = run_until(cfg, &cps, 221).await;
    let count = |tag: &str| got.iter().filter(|g| g.text.contains(tag)).count();
    assert_eq!(
        (count("unread"), count(",new "), count("old")),
        (20, 200, 0)
    );
    assert_eq!(
        got.iter().filter(|g| g.text == HEADER.trim_end()).count(),
        1
    );
    let new_key = got
        .iter()
        .find(|g| g.text.contains(",new "))
        .expect("new")
        .key;
    assert_eq!(new_key.generation, 1, "a lookalike of the checkpointed key");
}

#[tokio::test]
async fn copytruncate_refilled_past_the_offset_between_polls_is_read_again_from_the_start() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..5)));
    let mut tail = Tail::start(
        config(&dir, &["app.log"], StartAt::Beginning),
        &Checkpoints::new(),
    );
    tail.until("old lines", |got| got.len() >= 6).await;
    // One write: truncated and refilled with the same header, past the old offset.
    fs::write(&log, format!("{HEADER}{}", csv("new", 0..50))).expect("rewrite");
    tail.until("new lines", |got| got.len() >= 57).await;
    let got = tail.stop().await;
    assert_eq!(got.iter().filter(|g| g.text.contains(",new ")).count(), 50);
    assert_eq!(
        got.len(),
        57,
        "{:#?}",
        got.iter().map(|g| &g.text).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_lookalike_without_a_copy_is_read_from_zero_and_old_checkpoints_still_resume() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    let kept = dir.join("kept.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..100)));
    append(&kept, &format!("{HEADER}{}", csv("kept", 0..10)));
    let cfg = config(&dir, &["*.log"], StartAt::Beginning);
    let (_, mut cps) = run_until(cfg.clone(), &Checkpoints::new(), 112).await;
    // An entry written before windows existed (no window) resumes as it always did.
    let kept_key = key_of(&kept);
    let offset = cps.offset(&kept_key).expect("kept checkpoint");
    cps.remove(&kept_key);
    cps.advance(kept_key, &kept, offset, None);
    append(&kept, &csv("later", 0..3));
    fs::write(&log, format!("{HEADER}{}", csv("reused", 0..150))).expect("rewrite");
    let (got, _) = run_until(cfg, &cps, 154).await;
    let count = |tag: &str| got.iter().filter(|g| g.text.contains(tag)).count();
    assert_eq!(
        (count("reused"), count("later"), count("kept")),
        (150, 3, 0)
    );
}

#[tokio::test]
async fn with_a_budget_of_two_descriptors_every_file_is_read_and_read_again_when_it_grows() {
    let (_tmp, dir) = temp_dir();
    for i in 0..40 {
        append(&dir.join(format!("f{i:02}.log")), &format!("first {i}\n"));
    }
    let mut tail = Tail::with_budget(
        config(&dir, &["*.log"], StartAt::Beginning),
        &Checkpoints::new(),
        2,
    );
    tail.until("a line of each file", |got| got.len() >= 40)
        .await;
    let open = || {
        fs::read_dir("/proc/self/fd")
            .map(|fds| {
                fds.flatten()
                    .filter(|fd| fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&dir)))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(open() <= 2, "{} files open", open());
    for i in (0..40).step_by(3) {
        append(&dir.join(format!("f{i:02}.log")), &format!("second {i}\n"));
    }
    tail.until("the appended lines", |got| got.len() >= 54)
        .await;
    // Lines of a file keep their order and offsets across closes and reopens.
    let f00: Vec<(&str, u64)> = tail
        .got
        .iter()
        .filter(|g| g.path.ends_with("f00.log"))
        .map(|g| (g.text.as_str(), g.end_offset))
        .collect();
    assert_eq!(f00, [("first 0", 8), ("second 0", 17)]);
    let got = tail.stop().await;
    assert_eq!(got.len(), 54, "nothing twice");
}

#[tokio::test]
async fn a_closed_file_that_is_rotated_is_found_and_read_to_its_end() {
    let (_tmp, dir) = temp_dir();
    let log = dir.join("app.log");
    append(&log, &format!("{HEADER}{}", csv("old", 0..3)));
    let mut cfg = config(&dir, &["app.log"], StartAt::Beginning);
    cfg.close_idle = Duration::ZERO;
    let mut tail = Tail::start(cfg, &Checkpoints::new());
    tail.until("old lines", |got| got.len() >= 4).await;
    eventually("the idle file closed", || !held_open(&log)).await;
    // Written and rotated between two polls of the closed file.
    let mut both = String::new();
    for l in csv("late", 0..30).lines() {
        both.push_str(l);
        both.push('\n');
    }
    append(&log, &both);
    fs::rename(&log, dir.join("app.log.1")).expect("rotate");
    append(&log, &format!("{HEADER}{}", csv("new", 0..2)));
    tail.until("late and new lines", |got| got.len() >= 37)
        .await;
    let got = tail.stop().await;
    let count = |tag: &str| got.iter().filter(|g| g.text.contains(tag)).count();
    assert_eq!((count("late"), count(",new ")), (30, 2));
    assert_eq!(got.len(), 37);
}
