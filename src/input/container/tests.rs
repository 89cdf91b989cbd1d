//! Container files end to end in memory: runtime lines in, rows out, every line accounted.

use super::*;
use crate::deadletter::DeadLetter;
use crate::input::file::LineRef;
use crate::input::multiline::{MultilineRules, Preset, DEFAULT_TIMEOUT};
use crate::input::parse::{OnMismatch, Parser, RegexParser};
use crate::pipeline::sink::{RowSink, SinkCounts};
use crate::rows::RowBuf;
use crate::transform::RowEncoder;
use serde_json::{json, Value};

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const T0: &str = "2026-12-07T05:00:00.123456789Z";
const TG0: &str = "2026-12-07T05:00:00.123456Z";
const READ: &str = "2026-12-07T05:00:09.000000Z";

struct Harness {
    files: ContainerFiles,
    enc: RowEncoder,
    dl: DeadLetter,
    rows: RowBuf,
    sink: SinkCounts,
    parse: ParseCounts,
    key: FileKey,
    path: Arc<PathBuf>,
    number: u64,
    offset: u64,
}

impl Harness {
    fn new(runtime: Runtime, format: Format, rules: Option<TextRules>) -> Self {
        Self::with(runtime, JsonFields::Columns, format, rules, 1_000_000)
    }

    fn with(
        runtime: Runtime,
        fields: JsonFields,
        format: Format,
        rules: Option<TextRules>,
        max_record: usize,
    ) -> Self {
        let enc = RowEncoder::new("node-7", None);
        let settings = ContainerSettings::new(
            runtime,
            fields,
            format,
            rules.map(Arc::new),
            max_record,
            &crate::transform::row::json_string("node-7"),
        );
        Harness {
            files: ContainerFiles::new(Arc::new(settings)),
            enc,
            dl: DeadLetter::open(None).expect("dead letter"),
            rows: RowBuf::default(),
            sink: SinkCounts::default(),
            parse: ParseCounts::default(),
            key: FileKey {
                dev: 1,
                ino: 2,
                fingerprint: 3,
                generation: 0,
            },
            path: Arc::new(PathBuf::from(format!(
                "/var/log/containers/web-1_shop_app-{ID}.log"
            ))),
            number: 0,
            offset: 0,
        }
    }

    /// One batch of lines (each line's length plus its newline advances the offset).
    fn feed(&mut self, lines: &[&[u8]], now: Instant) {
        let mut buf = Vec::new();
        let mut refs = Vec::new();
        for l in lines {
            let start = buf.len() as u32;
            buf.extend_from_slice(l);
            self.number += 1;
            self.offset += l.len() as u64 + 1;
            refs.push(LineRef {
                start,
                end: buf.len() as u32,
                number: self.number,
                end_offset: self.offset,
                truncated: false,
            });
        }
        let batch = FileLines {
            file: self.key,
            path: self.path.clone(),
            buf,
            lines: refs,
            started_at: None,
            windows: Vec::new(),
        };
        self.run(|files, sink| files.batch(&batch, now, sink));
    }

    fn flush(&mut self, now: Option<Instant>) {
        let key = self.key;
        self.run(|files, sink| files.flush(key, now, sink));
    }

    fn run(&mut self, f: impl FnOnce(&mut ContainerFiles, &mut RowSink<'_>) -> ParseCounts) {
        let Harness {
            files,
            enc,
            dl,
            rows,
            ..
        } = self;
        let mut sink = RowSink {
            encoder: enc,
            deadletter: dl,
            name: "test",
            source: 0,
            file_path_json: Some("\"p\""),
            time_read: READ,
            out: rows,
            counts: SinkCounts::default(),
        };
        let c = f(files, &mut sink);
        let counts = sink.counts;
        self.add(counts, c);
    }

    fn add(&mut self, s: SinkCounts, p: ParseCounts) {
        self.sink.read += s.read;
        self.sink.rejected += s.rejected;
        self.sink.notes.add(&s.notes);
        add_counts(&mut self.parse, p);
    }

    /// The rows so far, each with its checkpoint offset, without the columns every row has.
    fn rows(&self) -> Vec<(Value, u64)> {
        self.rows
            .rows()
            .map(|(r, o)| {
                let mut v: Value = serde_json::from_slice(r).expect("row is JSON");
                let m = v.as_object_mut().expect("object");
                for (k, want) in [
                    ("Computer", json!("node-7")),
                    ("PodName", json!("web-1")),
                    ("PodNamespace", json!("shop")),
                    ("ContainerName", json!("app")),
                    ("ContainerId", json!(ID)),
                ] {
                    assert_eq!(
                        m.remove(k),
                        Some(want),
                        "{k} in {r:?}",
                        r = String::from_utf8_lossy(r)
                    );
                }
                (v, o.offset)
            })
            .collect()
    }

    fn messages(&self) -> Vec<(String, String)> {
        self.rows()
            .into_iter()
            .map(|(v, _)| {
                (
                    v["LogSource"].as_str().unwrap_or("-").to_string(),
                    v["LogMessage"].as_str().unwrap_or("-").to_string(),
                )
            })
            .collect()
    }
}

fn cri(stream: &str, tag: &str, msg: &[u8]) -> Vec<u8> {
    let mut l = format!("{T0} {stream} {tag} ").into_bytes();
    l.extend_from_slice(msg);
    l
}

fn docker(stream: &str, log: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"log": log, "stream": stream, "time": T0})).expect("json")
}

fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
    v.iter().map(Vec::as_slice).collect()
}

#[test]
fn cri_parts_are_joined_per_stream_with_the_runtime_time() {
    let mut h = Harness::new(Runtime::Cri, Format::Text, None);
    let now = Instant::now();
    let lines = [
        cri("stdout", "P", b"first "),
        cri("stderr", "F", b"an error"),
        cri("stdout", "P", b"second "),
        cri("stdout", "F", b"third"),
        cri("stdout", "F", b""),
        cri("stderr", "F", b"  "),
        cri("stdout", "F", b"plain"),
    ];
    h.feed(&refs(&lines), now);
    let rows = h.rows();
    assert_eq!(
        rows[0].0,
        json!({"TimeGenerated": TG0, "LogSource": "stderr", "LogMessage": "an error"})
    );
    assert_eq!(
        h.messages(),
        vec![
            ("stderr".into(), "an error".into()),
            ("stdout".into(), "first second third".into()),
            ("stdout".into(), "plain".into()),
        ]
    );
    // The stderr row came while stdout's first part was pending: its offset stays before it.
    assert_eq!(rows[0].1, 0, "before line 1");
    assert_eq!(rows[1].1, h_end(&lines, 4));
    assert_eq!(rows[2].1, h_end(&lines, 7));
    assert_eq!((h.sink.read, h.sink.rejected), (3, 0));
    assert_eq!(h.parse, ParseCounts::default());
    assert_eq!(h.files.next_due(), None, "nothing pending");
}

/// The offset just past line `n` (1-based) of `lines`.
fn h_end(lines: &[Vec<u8>], n: usize) -> u64 {
    lines[..n].iter().map(|l| l.len() as u64 + 1).sum()
}

#[test]
fn a_character_split_across_parts_comes_out_whole() {
    let mut h = Harness::new(Runtime::Cri, Format::Text, None);
    let word = "naïve café ✓".as_bytes();
    // cut inside 'ï' and inside '✓'
    let (a, rest) = word.split_at(3);
    let (b, c) = rest.split_at(rest.len() - 2);
    let lines = [
        cri("stdout", "P", a),
        cri("stdout", "P", b),
        cri("stdout", "F", c),
    ];
    h.feed(&refs(&lines), Instant::now());
    assert_eq!(h.messages(), vec![("stdout".into(), "naïve café ✓".into())]);
}

#[test]
fn a_mebibyte_line_in_16k_parts_is_one_row_cut_to_the_field_limit() {
    let mut h = Harness::new(Runtime::Cri, Format::Text, None);
    let chunk = "é".repeat(8 * 1024); // 16 KiB of two-byte characters
    let mut lines: Vec<Vec<u8>> = (0..63)
        .map(|_| cri("stdout", "P", chunk.as_bytes()))
        .collect();
    lines.push(cri("stdout", "F", chunk.as_bytes()));
    lines.push(cri("stdout", "F", b"next"));
    let now = Instant::now();
    for l in &lines {
        h.feed(&[l], now); // one line per batch, as a slow reader would hand them
    }
    let m = h.messages();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].1.len(), MAX_FIELD_BYTES);
    assert!(m[0].1.chars().all(|c| c == 'é'));
    assert_eq!(m[1].1, "next");
    assert_eq!(h.sink.notes.truncated_fields, 1, "cut once, counted once");
}

#[test]
fn a_json_line_in_parts_becomes_the_apps_columns_up_to_the_request_cap() {
    let mut h = Harness::new(Runtime::Cri, Format::Json, None);
    let big = "x".repeat(40_000); // three parts of 16 KiB
    let app = format!(r#"{{"level":"info","msg":"{big}","TimeGenerated":"1999-01-01T00:00:00Z"}}"#);
    let parts: Vec<&[u8]> = app.as_bytes().chunks(16 * 1024).collect();
    let mut lines: Vec<Vec<u8>> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| cri("stderr", if i + 1 < parts.len() { "P" } else { "F" }, p))
        .collect();
    lines.push(cri("stdout", "F", b"not json {"));
    lines.push(cri("stdout", "F", b"[1,2]"));
    h.feed(&refs(&lines), Instant::now());
    let rows = h.rows();
    assert_eq!(
        rows[0].0,
        json!({"TimeGenerated": TG0, "LogSource": "stderr", "level": "info", "msg": big}),
        "the runtime's time wins over the app's own TimeGenerated"
    );
    assert_eq!(rows[1].0["LogMessage"], "not json {");
    assert_eq!(rows[2].0["LogMessage"], "[1,2]");
    assert_eq!(
        h.parse.mismatched, 2,
        "messages that are not objects are counted"
    );
    assert_eq!(h.sink.rejected, 0);
}

#[test]
fn a_json_message_over_the_request_cap_is_sent_as_cut_text() {
    let mut h = Harness::with(
        Runtime::Cri,
        JsonFields::Columns,
        Format::Json,
        None,
        100_000,
    );
    let app = format!(r#"{{"msg":"{}"}}"#, "y".repeat(200_000));
    let parts: Vec<&[u8]> = app.as_bytes().chunks(16 * 1024).collect();
    let lines: Vec<Vec<u8>> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| cri("stdout", if i + 1 < parts.len() { "P" } else { "F" }, p))
        .collect();
    h.feed(&refs(&lines), Instant::now());
    let m = h.messages();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].1.len(), MAX_FIELD_BYTES);
    assert!(m[0].1.starts_with("{\"msg\":\"yyy"));
    assert_eq!(h.sink.notes.truncated_fields, 1);
}

#[test]
fn json_fields_can_go_into_log_message_as_in_container_log_v2() {
    let mut h = Harness::with(
        Runtime::Docker,
        JsonFields::LogMessage,
        Format::Json,
        None,
        1_000_000,
    );
    let lines = [
        docker("stdout", "{\"level\":\"warn\",\"n\":2}\n"),
        docker("stdout", "text\n"),
    ];
    h.feed(&refs(&lines), Instant::now());
    let rows = h.rows();
    assert_eq!(
        rows[0].0,
        json!({"TimeGenerated": TG0, "LogSource": "stdout", "LogMessage": {"level": "warn", "n": 2}})
    );
    assert_eq!(rows[1].0["LogMessage"], "text");
}

#[test]
fn docker_parts_are_joined_per_stream() {
    let mut h = Harness::new(Runtime::Docker, Format::Text, None);
    let lines = [
        docker("stdout", "long "),
        docker("stderr", "oops\n"),
        docker("stdout", "line\n"),
        docker("stdout", "tab\tand \"quotes\"\n"),
    ];
    h.feed(&refs(&lines), Instant::now());
    assert_eq!(
        h.messages(),
        vec![
            ("stderr".into(), "oops".into()),
            ("stdout".into(), "long line".into()),
            ("stdout".into(), "tab\tand \"quotes\"".into()),
        ]
    );
    assert_eq!(h.rows()[0].0["TimeGenerated"], TG0);
}

#[test]
fn auto_reads_each_files_envelope_from_its_first_line() {
    let cases: [(Vec<Vec<u8>>, &str); 3] = [
        (vec![cri("stderr", "F", b"from cri")], "stderr"),
        (vec![docker("stderr", "from docker\n")], "stderr"),
        (vec![b"from a plain file".to_vec()], "-"),
    ];
    for (lines, source) in cases {
        let mut h = Harness::new(Runtime::Auto, Format::Text, None);
        h.feed(&refs(&lines), Instant::now());
        let m = h.messages();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, source);
        assert!(m[0].1.starts_with("from "), "{m:?}");
        assert_eq!(h.parse.mismatched, 0);
    }
    // a plain row has no runtime time: the encoder writes the time read
    let mut h = Harness::new(Runtime::Auto, Format::Text, None);
    h.feed(&[b"plain"], Instant::now());
    assert_eq!(h.rows()[0].0["TimeGenerated"], READ);
}

#[test]
fn a_line_without_the_envelope_is_a_row_of_its_own_and_counted() {
    let mut h = Harness::new(Runtime::Cri, Format::Text, None);
    let lines = [
        cri("stdout", "F", b"ok"),
        b"garbage without a prefix".to_vec(),
        cri("stdout", "F", b"ok again"),
    ];
    h.feed(&refs(&lines), Instant::now());
    assert_eq!(
        h.messages(),
        vec![
            ("stdout".into(), "ok".into()),
            ("-".into(), "garbage without a prefix".into()),
            ("stdout".into(), "ok again".into()),
        ]
    );
    assert_eq!(h.parse.mismatched, 1);
}

#[test]
fn a_part_whose_rest_never_comes_is_sent_after_the_timeout() {
    let mut h = Harness::new(Runtime::Docker, Format::Text, None);
    let now = Instant::now();
    h.feed(&[&docker("stdout", "no newline at exit")], now);
    assert!(h.messages().is_empty());
    assert_eq!(h.files.next_due(), Some(now + PARTIAL_TIMEOUT));
    assert!(h.files.due(now).is_empty());
    h.flush(Some(now + PARTIAL_TIMEOUT - Duration::from_millis(1)));
    assert!(h.messages().is_empty(), "not yet due");
    assert_eq!(h.files.due(now + PARTIAL_TIMEOUT).len(), 1);
    h.flush(Some(now + PARTIAL_TIMEOUT));
    assert_eq!(
        h.messages(),
        vec![("stdout".into(), "no newline at exit".into())]
    );
    assert_eq!(h.files.next_due(), None);
}

#[test]
fn multiline_events_join_per_stream_and_take_their_first_lines_time() {
    let ml = MultilineRules::new(None, Some(Preset::Java), DEFAULT_TIMEOUT, 500, 256 * 1024)
        .expect("rules");
    let rules = TextRules::new(Parser::Text, OnMismatch::Raw, Some(ml));
    let mut h = Harness::new(Runtime::Cri, Format::Text, Some(rules));
    let t1 = "2026-12-07T05:00:01.5Z";
    let at = |t: &str, stream: &str, msg: &str| format!("{t} {stream} F {msg}").into_bytes();
    let lines = [
        cri(
            "stderr",
            "F",
            b"Exception in thread \"main\" java.lang.IllegalStateException: x",
        ),
        at(t1, "stdout", "request served"),
        at(t1, "stderr", "\tat com.example.App.main(App.java:5)"),
        at(t1, "stdout", "another request"),
        at(t1, "stderr", "next error"),
    ];
    let now = Instant::now();
    h.feed(&refs(&lines), now);
    h.flush(None);
    let rows = h.rows();
    let got: Vec<(String, String, String)> = rows
        .iter()
        .map(|(v, _)| {
            (
                v["LogSource"].as_str().unwrap_or_default().into(),
                v["TimeGenerated"].as_str().unwrap_or_default().into(),
                v["LogMessage"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let t1 = "2026-12-07T05:00:01.500000Z".to_string();
    assert_eq!(
        got,
        vec![
            ("stdout".into(), t1.clone(), "request served".into()),
            (
                "stderr".into(),
                TG0.into(),
                "Exception in thread \"main\" java.lang.IllegalStateException: x\n\tat com.example.App.main(App.java:5)".into()
            ),
            ("stdout".into(), t1.clone(), "another request".into()),
            ("stderr".into(), t1, "next error".into()),
        ]
    );
    // "request served" came while the stderr event (from line 1) was pending
    assert_eq!(rows[0].1, 0);
}

#[test]
fn a_parser_sees_the_message_and_its_columns_get_ours() {
    let re = RegexParser::new(r"^(?P<Level>[A-Z]+) (?P<Text>.*)$").expect("re");
    let rules = TextRules::new(Parser::Regex(re), OnMismatch::Raw, None);
    let mut h = Harness::new(Runtime::Cri, Format::Regex, Some(rules));
    let lines = [
        cri("stderr", "F", b"WARN disk low"),
        cri("stdout", "F", b"no match"),
    ];
    h.feed(&refs(&lines), Instant::now());
    let rows = h.rows();
    assert_eq!(
        rows[0].0,
        json!({"TimeGenerated": TG0, "LogSource": "stderr", "Level": "WARN", "Text": "disk low"})
    );
    assert_eq!(rows[1].0["LogMessage"], "no match");
    assert_eq!(h.parse.mismatched, 1);
}

#[test]
fn idle_files_are_forgotten_and_pending_ones_kept() {
    let mut h = Harness::new(Runtime::Cri, Format::Text, None);
    let now = Instant::now();
    h.feed(&[&cri("stdout", "F", b"x")], now);
    h.key.ino = 99;
    h.feed(&[&cri("stdout", "P", b"pending")], now);
    assert_eq!(h.files.files(), 2);
    h.key.ino = 100;
    h.feed(
        &[&cri("stdout", "F", b"y")],
        now + IDLE_FORGET + Duration::from_secs(1),
    );
    assert_eq!(
        h.files.files(),
        2,
        "the idle one went, the pending one stayed"
    );
}
