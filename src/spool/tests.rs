use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use super::store::Store;
use super::*;
use crate::batch::Gzip;

/// A sealed batch of `rows` rows whose gzip body is `gzip_len` bytes of filler (the spool never
/// looks inside the body).
fn batch(rows: usize, gzip_len: usize, tag: u8) -> SealedBatch {
    let row = format!(r#"{{"tag":{tag}}}"#);
    let raw = RawBatch::from_rows((0..rows).map(|_| (row.as_bytes(), Origin::default())));
    SealedBatch::new(raw, vec![tag; gzip_len])
}

fn opts(max_bytes: u64, when_full: WhenFull) -> Options {
    Options {
        max_bytes,
        fsync_interval: Duration::from_millis(10),
        when_full,
        cache_bytes: 1 << 20,
    }
}

fn open(dir: &Path, o: Options) -> (Store, SpoolMetrics, watch::Receiver<u64>) {
    let m = SpoolMetrics::default();
    let (tx, rx) = watch::channel(0);
    (Store::open(dir, o, m.clone(), tx).expect("open"), m, rx)
}

/// Appends, returning the "taken" receiver and a counter bumped when the rows are safe.
fn append(s: &mut Store, b: SealedBatch, safe: &Arc<AtomicUsize>) -> oneshot::Receiver<()> {
    let (t, r) = oneshot::channel();
    let safe = safe.clone();
    s.append(
        b,
        Box::new(move || {
            safe.fetch_add(1, SeqCst);
        }),
        t,
    );
    r
}

fn tag_of(r: &Record) -> u8 {
    match &r.body {
        Body::Sealed(b) => b.gzip[0],
        Body::Gzip(g) => g[0],
    }
}

fn seg_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count()
}

#[test]
fn records_come_back_in_order_and_a_segment_is_deleted_once_all_of_it_is_acked() {
    let dir = tempfile::tempdir().expect("tmp");
    // 1 MiB cap → 128 KiB segments: four 30 KB records each.
    let (mut s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    let safe = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        let mut taken = append(&mut s, batch(3, 30_000, i), &safe);
        assert!(taken.try_recv().is_ok(), "written at once");
    }
    assert_eq!(safe.load(SeqCst), 0, "not safe before the fsync");
    s.sync();
    assert_eq!(safe.load(SeqCst), 10);
    assert_eq!(s.segment_count(), 3);
    assert_eq!(seg_files(dir.path()), 3);
    let recs: Vec<Record> = (0..10).map(|_| s.next_record().expect("record")).collect();
    assert!(s.next_record().is_none());
    assert!(s.drained());
    assert_eq!(
        recs.iter().map(tag_of).collect::<Vec<_>>(),
        (0..10).collect::<Vec<u8>>()
    );
    assert!(recs.iter().all(|r| r.rows == 3));
    // Acks out of order: the first segment goes only when all four of its records are in.
    for i in [1, 3, 2] {
        s.ack(recs[i].seq);
    }
    assert_eq!(seg_files(dir.path()), 3);
    s.ack(recs[0].seq);
    assert_eq!(seg_files(dir.path()), 2);
    for r in &recs[4..] {
        s.ack(r.seq);
    }
    // The last segment still takes appends; it is deleted when the next one starts.
    assert_eq!(seg_files(dir.path()), 1);
    assert_eq!(s.pending(), (0, 0));
    s.update_metrics();
    // Issue 17: nothing is left to send, so the backlog is 0, while the last segment file
    // (all acknowledged) is still on disk.
    assert_eq!(m.bytes.get(), 0.0, "no backlog");
    let disk = m.disk_bytes.get();
    assert!(disk > 0.0 && disk <= 4.0 * 30_100.0, "{disk}");
    assert_eq!(m.oldest.get(), 0.0);
    assert_eq!(m.max_bytes.get(), (1u64 << 20) as f64);
}

#[test]
fn the_backlog_is_the_bytes_not_yet_acknowledged_also_across_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let frame = (frame::HEADER_BYTES + 10_000) as f64;
    let safe = Arc::new(AtomicUsize::new(0));
    {
        let (mut s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
        for i in 0..6 {
            append(&mut s, batch(2, 10_000, i), &safe);
        }
        s.update_metrics();
        assert_eq!(m.bytes.get(), 6.0 * frame, "written, none acknowledged");
        assert_eq!(m.disk_bytes.get(), 6.0 * frame);
        s.sync();
        let recs: Vec<Record> = (0..6).map(|_| s.next_record().expect("record")).collect();
        // In flight is not acknowledged: still backlog.
        s.update_metrics();
        assert_eq!(m.bytes.get(), 6.0 * frame);
        for r in &recs[..4] {
            s.ack(r.seq);
        }
        s.update_metrics();
        assert_eq!(m.bytes.get(), 2.0 * frame, "two left");
        assert_eq!(
            m.disk_bytes.get(),
            6.0 * frame,
            "one segment holds them all"
        );
        s.save_cursor(Duration::ZERO, true);
    }
    let (s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    assert_eq!(m.bytes.get(), 2.0 * frame, "the two, after a restart");
    assert_eq!(s.pending(), (2, 4));
}

#[test]
fn records_waiting_in_memory_count_in_the_backlog_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    let safe = Arc::new(AtomicUsize::new(0));
    s.fail_writes = true;
    append(&mut s, batch(3, 5_000, 1), &safe);
    s.update_metrics();
    let frame = (frame::HEADER_BYTES + 5_000) as f64;
    assert_eq!(m.bytes.get(), frame, "not written, still backlog");
    assert_eq!(m.disk_bytes.get(), 0.0);
    let rec = s.next_record().expect("delivered from memory");
    s.ack(rec.seq);
    s.update_metrics();
    assert_eq!(m.bytes.get(), 0.0);
}

#[test]
fn a_restart_replays_exactly_the_unacknowledged_records_from_disk() {
    let dir = tempfile::tempdir().expect("tmp");
    let safe = Arc::new(AtomicUsize::new(0));
    {
        let (mut s, _, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
        for i in 0..5 {
            append(&mut s, batch(i as usize + 1, 1000, i), &safe);
        }
        s.sync();
        let recs: Vec<Record> = (0..5).map(|_| s.next_record().expect("record")).collect();
        for i in [0, 1, 3] {
            s.ack(recs[i].seq);
        }
        s.save_cursor(Duration::ZERO, true);
    }
    let (mut s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    assert_eq!(s.pending(), (2, 3 + 5));
    s.update_metrics();
    assert!(m.oldest.get() >= 0.0 && m.bytes.get() > 0.0);
    let a = s.next_record().expect("record 2");
    let b = s.next_record().expect("record 4");
    assert!(s.next_record().is_none());
    assert_eq!((tag_of(&a), a.rows), (2, 3));
    assert_eq!((tag_of(&b), b.rows), (4, 5));
    assert!(matches!(&a.body, Body::Gzip(g) if g == &vec![2u8; 1000]));
    // New records get new numbers after the old ones.
    append(&mut s, batch(1, 10, 9), &safe);
    let c = s.next_record().expect("new record");
    assert!(c.seq > b.seq);
    assert!(
        matches!(c.body, Body::Sealed(_)),
        "fresh records come from memory"
    );
}

#[test]
fn acknowledgements_lost_with_the_cursor_only_mean_duplicates() {
    let dir = tempfile::tempdir().expect("tmp");
    let safe = Arc::new(AtomicUsize::new(0));
    {
        let (mut s, _, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
        for i in 0..3 {
            append(&mut s, batch(1, 100, i), &safe);
        }
        s.sync();
        let r = s.next_record().expect("record");
        s.ack(r.seq);
        // no cursor save: a crash right after the ack
    }
    let (mut s, _, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    let tags: Vec<u8> = std::iter::from_fn(|| s.next_record())
        .map(|r| tag_of(&r))
        .collect();
    assert_eq!(tags, vec![0, 1, 2]);
}

#[test]
fn a_torn_tail_and_garbage_are_cut_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    let safe = Arc::new(AtomicUsize::new(0));
    {
        let (mut s, _, _) = open(dir.path(), opts(64 << 20, WhenFull::Block));
        for i in 0..4 {
            append(&mut s, batch(1, 5000, i), &safe);
        }
        s.sync();
    }
    let seg = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .expect("a segment");
    let full = std::fs::metadata(&seg).expect("meta").len();
    // torn: the last record loses its last 100 bytes
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .and_then(|f| f.set_len(full - 100))
        .expect("truncate");
    {
        let (mut s, _, _) = open(dir.path(), opts(64 << 20, WhenFull::Block));
        let tags: Vec<u8> = std::iter::from_fn(|| s.next_record())
            .map(|r| tag_of(&r))
            .collect();
        assert_eq!(tags, vec![0, 1, 2]);
    }
    let cut = std::fs::metadata(&seg).expect("meta").len();
    assert_eq!(cut, 3 * (5000 + frame::HEADER_BYTES as u64));
    // garbage appended after the last whole record
    let mut data = std::fs::read(&seg).expect("read");
    data.extend_from_slice(b"\x00\x01garbage that is not a record at all");
    std::fs::write(&seg, &data).expect("write");
    // and a flipped byte in the middle record's body
    let mut data = std::fs::read(&seg).expect("read");
    data[(5000 + 32) + 32 + 10] ^= 0x40;
    std::fs::write(&seg, &data).expect("write");
    let (mut s, _, _) = open(dir.path(), opts(64 << 20, WhenFull::Block));
    let tags: Vec<u8> = std::iter::from_fn(|| s.next_record())
        .map(|r| tag_of(&r))
        .collect();
    assert_eq!(
        tags,
        vec![0],
        "everything from the corrupt record on is cut"
    );
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), 5032);
}

#[test]
fn when_full_block_makes_the_append_wait_until_acks_free_a_segment() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, m, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    let safe = Arc::new(AtomicUsize::new(0));
    // 100 KB records, one per 128 KiB segment: ten fill 1 MiB.
    for i in 0..10 {
        let mut t = append(&mut s, batch(2, 100_000, i), &safe);
        assert!(t.try_recv().is_ok(), "record {i} fits");
    }
    let mut waiting = append(&mut s, batch(2, 100_000, 10), &safe);
    assert!(
        waiting.try_recv().is_err(),
        "the spool is full: the append waits"
    );
    assert_eq!(s.unwritten_len(), 1);
    assert!(s.total_bytes() <= 1 << 20);
    s.sync();
    assert_eq!(safe.load(SeqCst), 10, "the waiting record is not safe");
    let first = s.next_record().expect("record");
    s.ack(first.seq);
    assert!(
        waiting.try_recv().is_ok(),
        "written once a segment was freed"
    );
    s.sync();
    assert_eq!(safe.load(SeqCst), 11);
    assert_eq!(m.dropped.get(), 0);
    let tags: Vec<u8> = std::iter::from_fn(|| s.next_record())
        .map(|r| tag_of(&r))
        .collect();
    assert_eq!(tags, (1..=10).collect::<Vec<u8>>(), "nothing dropped");
}

#[test]
fn when_full_drop_oldest_deletes_the_oldest_segment_and_counts_its_rows() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, m, mut dropped) = open(dir.path(), opts(1 << 20, WhenFull::DropOldest));
    let safe = Arc::new(AtomicUsize::new(0));
    for i in 0..10 {
        append(&mut s, batch(2, 100_000, i), &safe);
    }
    // the oldest is being delivered when the spool overflows: its delivery is cancelled
    let in_flight = s.next_record().expect("record 0");
    let mut t = append(&mut s, batch(2, 100_000, 10), &safe);
    assert!(
        t.try_recv().is_ok(),
        "drop_oldest never makes the caller wait"
    );
    assert!(s.total_bytes() <= 1 << 20);
    assert_eq!(m.dropped.get(), 2);
    assert!(*dropped.borrow_and_update() > in_flight.seq);
    s.ack(in_flight.seq); // late answer: ignored
    let tags: Vec<u8> = std::iter::from_fn(|| s.next_record())
        .map(|r| tag_of(&r))
        .collect();
    assert_eq!(tags, (1..=10).collect::<Vec<u8>>());
    s.sync();
    assert_eq!(safe.load(SeqCst), 11);
}

#[test]
fn a_refused_write_delivers_from_memory_and_is_retried() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut s, _, _) = open(dir.path(), opts(1 << 20, WhenFull::Block));
    let safe = Arc::new(AtomicUsize::new(0));
    append(&mut s, batch(1, 100, 0), &safe);
    s.fail_writes = true;
    let mut t1 = append(&mut s, batch(1, 100, 1), &safe);
    let mut t2 = append(&mut s, batch(1, 100, 2), &safe);
    assert!(t1.try_recv().is_err() && t2.try_recv().is_err());
    assert!(s.write_retry_at.is_some());
    s.sync();
    assert_eq!(safe.load(SeqCst), 1);
    let r0 = s.next_record().expect("from disk");
    let r1 = s.next_record().expect("from memory");
    assert_eq!((tag_of(&r0), tag_of(&r1)), (0, 1));
    // delivered before it could be written: safe, and never written
    s.ack(r1.seq);
    assert_eq!(safe.load(SeqCst), 2);
    assert!(t1.try_recv().is_ok());
    // the disk comes back: the other one is written on the retry
    s.fail_writes = false;
    s.write_retry_at = None;
    s.pump();
    assert!(t2.try_recv().is_ok());
    s.sync();
    assert_eq!(safe.load(SeqCst), 3);
    let r2 = s.next_record().expect("record 2");
    assert_eq!(tag_of(&r2), 2);
    assert!(s.next_record().is_none());
}

#[test]
fn unseal_rebuilds_the_rows_of_a_body() {
    let rows = [r#"{"a":1}"#, r#"{"b":"x,]"}"#, r#"{"c":[1,{"d":2}]}"#];
    let raw = RawBatch::from_rows(rows.iter().map(|r| (r.as_bytes(), Origin::default())));
    let gzip = Gzip::new(3).compress(raw.body());
    let back = unseal(gzip, Origin::default()).expect("unseal");
    assert_eq!(back, raw);
    assert!(unseal(b"not gzip".to_vec(), Origin::default()).is_err());
    let not_array = Gzip::new(3).compress(b"{\"a\":1}");
    assert!(unseal(not_array, Origin::default()).is_err());
    let empty = unseal(Gzip::new(3).compress(b"[]"), Origin::default()).expect("[]");
    assert!(empty.is_empty());
}

proptest::proptest! {
    /// Cutting a body at its top-level commas gives back exactly the rows it was built from,
    /// whatever the strings hold (commas, brackets, quotes, backslashes, escapes).
    #[test]
    fn split_rows_finds_exactly_the_rows(
        values in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<String>(), 0..4),
            1..20,
        ),
    ) {
        let rows: Vec<String> = values
            .iter()
            .map(|v| serde_json::json!({ "v": v, "n": {"x": [1, {"y": "]"}]} }).to_string())
            .collect();
        let raw = RawBatch::from_rows(rows.iter().map(|r| (r.as_bytes(), Origin::default())));
        let gzip = Gzip::new(1).compress(raw.body());
        let back = unseal(gzip, Origin::default()).expect("unseal");
        proptest::prop_assert_eq!(back, raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spool_thread_appends_delivers_and_keeps_what_was_not_acked() {
    let dir = tempfile::tempdir().expect("tmp");
    let spool = Spool::open(
        dir.path(),
        opts(1 << 20, WhenFull::Block),
        SpoolMetrics::default(),
    )
    .expect("open");
    let safe = Arc::new(AtomicUsize::new(0));
    for i in 0..3 {
        let s = safe.clone();
        assert!(
            spool
                .append(
                    batch(1, 100, i),
                    Box::new(move || {
                        s.fetch_add(1, SeqCst);
                    })
                )
                .await
        );
    }
    let a = spool.next().await.expect("record");
    spool.ack(a.seq);
    let b = spool.next().await.expect("record");
    assert_eq!((tag_of(&a), tag_of(&b)), (0, 1));
    // the fsync follows shortly (idle), making all three safe
    let start = Instant::now();
    while safe.load(SeqCst) < 3 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(safe.load(SeqCst), 3);
    assert_eq!(spool.pending().await, (2, 2));
    spool.close().await;

    let spool = Spool::open(
        dir.path(),
        opts(1 << 20, WhenFull::Block),
        SpoolMetrics::default(),
    )
    .expect("reopen");
    spool.close_input();
    let mut tags = Vec::new();
    while let Some(r) = spool.next().await {
        tags.push(tag_of(&r));
        spool.ack(r.seq);
    }
    assert_eq!(tags, vec![1, 2], "the unacknowledged records, once each");
    spool.close().await;
}
