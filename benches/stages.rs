//! Throughput of the hot stages of `send`, one at a time, through the public library API:
//! line splitting, record decoding, row building, and batching + gzip.
//!
//! `cargo bench --bench stages` (about a minute). Throughput is in bytes of the stage's input,
//! so the figures line up with the end-to-end MB/s of `benches/e2e.rs`.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dcrship::batch::{seal, Batcher, Gzip, Pushed, RawBatch};
use dcrship::input::lines::LineSplitter;
use dcrship::input::{Decoder, Format, Record};
use dcrship::rows::Origin;
use dcrship::transform::{RowEncoder, RowNotes};
use serde_json::{Map, Value};

/// What `send` reads at a time; the splitter and decoder see chunks of this size.
const CHUNK: usize = 256 * 1024;
/// The API's cap on one request body, and `send`'s default batch size.
const CAP: usize = 1_000_000;
const TIME_READ: &str = "2025-11-23T16:30:00.000Z";

fn line_splitter(c: &mut Criterion) {
    let data = common::buffer(4 << 20, common::ndjson_line);
    let mut g = c.benchmark_group("lines");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("split_4MB", |b| {
        b.iter(|| {
            let mut s = LineSplitter::new(64 * 1024);
            let mut n = 0u64;
            for chunk in data.chunks(CHUNK) {
                s.feed(chunk, &mut |l| n += l.bytes.len() as u64);
            }
            s.finish(&mut |l| n += l.bytes.len() as u64);
            black_box(n)
        })
    });
    g.finish();
}

/// Feeds `data` in `send`-sized chunks and counts records that decoded cleanly.
fn decode_all(format: Format, data: &[u8]) -> u64 {
    let mut d = Decoder::new(format, CAP);
    let mut good = 0u64;
    let mut count = |r: Record<'_>| {
        if !matches!(r, Record::Bad { .. }) {
            good += 1;
        }
    };
    for chunk in data.chunks(CHUNK) {
        d.feed(chunk, &mut count);
    }
    d.finish(&mut count);
    good
}

/// Framing only for NDJSON (the record's JSON is parsed by the row encoder, see `rows/json`);
/// lines to UTF-8 text for `text`.
fn decoder(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, format, line) in [
        (
            "ndjson_4MB",
            Format::Ndjson,
            common::ndjson_line as fn(u64, &mut Vec<u8>),
        ),
        ("text_4MB", Format::Text, common::text_line),
    ] {
        let data = common::buffer(4 << 20, line);
        let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
        // A decoder that drops or rejects records would look fast; make sure it does not.
        assert_eq!(decode_all(format, &data), lines, "{name}: records lost");
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(decode_all(format, &data))));
    }
    g.finish();
}

fn row_encoder(c: &mut Criterion) {
    let enc = RowEncoder::new("bench-host", None);
    let path = Some(r#""/var/log/app/app.log""#);
    let mut g = c.benchmark_group("rows");

    let text = common::buffer(4 << 20, common::text_line);
    let text = std::str::from_utf8(&text).expect("generated text is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("text_4MB", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let (mut bytes, mut notes) = (0, RowNotes::default());
            for l in &lines {
                out.clear();
                enc.text(l, false, TIME_READ, path, &mut out, &mut notes);
                bytes += out.len();
            }
            black_box((bytes, notes))
        })
    });

    // `object` consumes its map, as `send` hands over each decoded record; the clones are made
    // in the untimed setup so only the row building is measured.
    let ndjson = common::buffer(4 << 20, common::ndjson_line);
    let maps: Vec<Map<String, Value>> = ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("generated NDJSON parses"))
        .collect();
    g.throughput(Throughput::Bytes(ndjson.len() as u64));
    g.bench_function("object_4MB", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter_batched(
            || maps.clone(),
            |maps| {
                let (mut bytes, mut notes) = (0, RowNotes::default());
                for m in maps {
                    out.clear();
                    enc.object(m, TIME_READ, &mut out, &mut notes);
                    bytes += out.len();
                }
                black_box((bytes, notes))
            },
            BatchSize::LargeInput,
        )
    });

    // The NDJSON path: the record's text straight to a row, values copied verbatim.
    let texts: Vec<&str> = std::str::from_utf8(&ndjson)
        .expect("generated NDJSON is UTF-8")
        .lines()
        .collect();
    g.bench_function("json_4MB", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let (mut bytes, mut notes) = (0, RowNotes::default());
            for t in &texts {
                out.clear();
                enc.json(t, TIME_READ, &mut out, &mut notes)
                    .expect("generated NDJSON is a row");
                bytes += out.len();
            }
            black_box((bytes, notes))
        })
    });
    g.finish();
}

/// Packs `rows` into capped batches and gzips each: what one MB costs between row and wire.
fn batch_and_seal(rows: &[&[u8]], gz: &mut Gzip) -> (usize, usize) {
    let mut batcher = Batcher::new(CAP);
    let mut raw: Vec<RawBatch> = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let origin = Origin {
            line: i as u64 + 1,
            ..Origin::default()
        };
        match batcher.push(row, origin) {
            Pushed::Added => {}
            Pushed::Full(b) => raw.push(b),
            Pushed::TooLarge { .. } => panic!("a 200-byte row is never too large"),
        }
    }
    raw.extend(batcher.flush());
    let (mut requests, mut gzip_bytes) = (0, 0);
    for b in raw {
        for s in seal(b, CAP, gz).batches {
            requests += 1;
            gzip_bytes += s.gzip.len();
        }
    }
    (requests, gzip_bytes)
}

fn batcher(c: &mut Criterion) {
    let data = common::buffer(1 << 20, common::ndjson_line);
    let rows: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut g = c.benchmark_group("batch_gzip");
    g.throughput(Throughput::Bytes(data.len() as u64));
    // Level 3 is the default; 1 and 6 show what the knob buys in size against CPU.
    for level in [1, 3, 6] {
        let mut gz = Gzip::new(level);
        let (requests, gzip_bytes) = batch_and_seal(&rows, &mut gz);
        println!(
            "batch_gzip/level_{level}: {} rows, {} bytes raw -> {requests} requests, \
             {gzip_bytes} bytes gzip (ratio {:.2})",
            rows.len(),
            data.len(),
            data.len() as f64 / gzip_bytes as f64
        );
        g.bench_function(format!("level_{level}_1MB"), |b| {
            b.iter(|| black_box(batch_and_seal(&rows, &mut gz)))
        });
    }
    g.finish();
}

/// Decode → row → batch → gzip in one thread: the CPU `send` spends per byte without HTTP.
fn pipeline(c: &mut Criterion) {
    let data = common::buffer(4 << 20, common::ndjson_line);
    let enc = RowEncoder::new("bench-host", None);
    let mut gz = Gzip::new(3);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("ndjson_to_gzip_4MB", |b| {
        b.iter(|| {
            let mut d = Decoder::new(Format::Ndjson, CAP);
            let mut batcher = Batcher::new(CAP);
            let (mut row, mut notes) = (Vec::with_capacity(1024), RowNotes::default());
            let mut raw: Vec<RawBatch> = Vec::new();
            let mut sink = |r: Record<'_>| {
                row.clear();
                let number = match r {
                    Record::Json { text, number } => {
                        enc.json(&text, TIME_READ, &mut row, &mut notes)
                            .expect("generated NDJSON is a row");
                        number
                    }
                    Record::Object { map, number } => {
                        enc.object(map, TIME_READ, &mut row, &mut notes);
                        number
                    }
                    other => panic!("generated NDJSON decoded to {other:?}"),
                };
                let origin = Origin {
                    line: number,
                    ..Origin::default()
                };
                if let Pushed::Full(b) = batcher.push(&row, origin) {
                    raw.push(b);
                }
            };
            for chunk in data.chunks(CHUNK) {
                d.feed(chunk, &mut sink);
            }
            d.finish(&mut sink);
            raw.extend(batcher.flush());
            let gzip: usize = raw
                .into_iter()
                .flat_map(|b| seal(b, CAP, &mut gz).batches)
                .map(|s| s.gzip.len())
                .sum();
            black_box(gzip)
        })
    });
    g.finish();
}

fn config() -> Criterion {
    // Short runs: the stages take milliseconds per iteration, so 3 s of samples is plenty and
    // the whole file finishes in about a minute.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
}

criterion_group! {
    name = stages;
    config = config();
    targets = line_splitter, decoder, row_encoder, batcher, pipeline
}
// ---------------------------------------------------------------------------------------------
// Parsers (format regex / logfmt / syslog, multiline): rows per second of each, from bytes to
// records (and, for regex, on to row JSON). Separate group so it can run alone:
// `cargo bench --bench stages -- parse/`
// ---------------------------------------------------------------------------------------------

mod parsers {
    use super::*;
    use dcrship::input::multiline::{MultilineRules, Preset, DEFAULT_TIMEOUT};
    use dcrship::input::parse::{OnMismatch, Parser, RegexParser, SyslogParser, TextRules};
    use std::sync::Arc;

    /// Name, input, rules, and the encoder when rows are built too.
    type Case<'a> = (
        &'a str,
        &'a [u8],
        &'a Arc<TextRules>,
        Option<&'a RowEncoder>,
    );

    /// 100,000 lines of each kind; events per input is what the throughput counts.
    const LINES: usize = 100_000;

    const COMBINED: &str = r#"^(?P<ClientIP>\S+) \S+ (?P<RemoteUser>\S+) \[(?P<RequestTime>[^\]]+)\] "(?P<Method>[A-Z]+) (?P<Path>\S+) (?P<Protocol>[^"]*)" (?P<Status>\d{3}) (?P<Bytes>\d+|-) "(?P<Referer>[^"]*)" "(?P<UserAgent>[^"]*)""#;

    fn lines(make: impl Fn(usize) -> String) -> Vec<u8> {
        (0..LINES)
            .flat_map(|i| (make(i) + "\n").into_bytes())
            .collect()
    }

    fn rules(parser: Parser, ml: Option<MultilineRules>) -> Arc<TextRules> {
        Arc::new(TextRules::new(parser, OnMismatch::Raw, ml))
    }

    /// Decodes `data` with `rules`; `encode` also builds each row's JSON.
    fn decode(data: &[u8], rules: &Arc<TextRules>, enc: Option<&RowEncoder>) -> u64 {
        let mut d = Decoder::with_rules(rules.clone(), CAP);
        let (mut n, mut row, mut notes) = (0u64, Vec::with_capacity(1024), RowNotes::default());
        let mut sink = |r: Record<'_>| {
            n += 1;
            if let (Some(enc), Record::Object { map, .. }) = (enc, r) {
                row.clear();
                enc.object(map, TIME_READ, &mut row, &mut notes);
            }
        };
        for chunk in data.chunks(CHUNK) {
            d.feed(chunk, &mut sink);
        }
        d.finish(&mut sink);
        n
    }

    pub fn parsers(c: &mut Criterion) {
        let access = lines(|i| {
            format!(
                r#"203.0.113.{} - - [23/Nov/2025:10:{:02}:{:02} +0000] "GET /api/items/{i}?page=2 HTTP/1.1" 200 {} "https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0""#,
                i % 250,
                i / 60 % 60,
                i % 60,
                1000 + i
            )
        });
        let logfmt = lines(|i| {
            format!(
                r#"ts=2025-11-23T10:00:{:02}Z level=info msg="request done" method=GET path=/api/items/{i} status=200 took={}ms user=alice"#,
                i % 60,
                i % 97
            )
        });
        let bsd = lines(|i| {
            format!(
                "Nov 23 10:{:02}:{:02} vm-web-01 sshd[{}]: Accepted publickey for azureuser from 198.51.100.{} port {} ssh2",
                i / 60 % 60,
                i % 60,
                1000 + i % 5000,
                i % 250,
                40000 + i % 20000
            )
        });
        let ietf = lines(|i| {
            format!(
                r#"<165>1 2025-11-23T10:00:{:02}.{:03}Z vm-web-01 app {} ID47 [meta seq="{i}"] request {i} done"#,
                i % 60,
                i % 1000,
                1000 + i % 5000
            )
        });
        // a logback log where every fifth event carries a 20-line stack trace
        let java: Vec<u8> = (0..LINES / 24)
            .flat_map(|i| {
                let mut e = String::new();
                for j in 0..4 {
                    e.push_str(&format!(
                        "2025-11-23 10:00:00.{:03} [main] INFO  com.example.App - event {i}.{j}\n",
                        j
                    ));
                }
                e.push_str("2025-11-23 10:00:01.000 [main] ERROR com.example.App - failed\n");
                e.push_str("java.lang.IllegalStateException: boom\n");
                for k in 0..18 {
                    e.push_str(&format!("\tat com.example.App.f{k}(App.java:{k})\n"));
                }
                e.into_bytes()
            })
            .collect();
        let java_events = (LINES / 24 * 5) as u64;

        let regex = rules(Parser::Regex(RegexParser::new(COMBINED).expect("re")), None);
        // the access recipe as README.md shows it (it also reads "-" requests, escaped quotes,
        // unquoted referers): the same lines
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let recipe = readme
            .lines()
            .skip_while(|l| *l != "[inputs.access]")
            .find_map(|l| l.strip_prefix("pattern = '")?.strip_suffix('\''))
            .expect("the access recipe's pattern");
        let recipe = rules(Parser::Regex(RegexParser::new(recipe).expect("re")), None);
        let syslog = rules(Parser::Syslog(SyslogParser::default()), None);
        let logfmt_rules = rules(Parser::Logfmt, None);
        let java_rules = rules(
            Parser::Text,
            Some(
                MultilineRules::new(None, Some(Preset::Java), DEFAULT_TIMEOUT, 500, 256 << 10)
                    .expect("ml"),
            ),
        );
        let enc = RowEncoder::new("bench-host", None);

        let mut g = c.benchmark_group("parse");
        g.throughput(Throughput::Elements(LINES as u64));
        let cases: [Case<'_>; 7] = [
            ("regex_nginx_100k", &access, &regex, None),
            ("regex_nginx_to_rows_100k", &access, &regex, Some(&enc)),
            ("regex_access_recipe_100k", &access, &recipe, None),
            ("logfmt_100k", &logfmt, &logfmt_rules, None),
            ("syslog_3164_100k", &bsd, &syslog, None),
            ("syslog_5424_100k", &ietf, &syslog, None),
            ("text_multiline_java_100k_lines", &java, &java_rules, None),
        ];
        for (name, data, rules, enc) in cases {
            if name.starts_with("text_multiline") {
                g.throughput(Throughput::Elements(java_events));
            }
            g.bench_function(name, |b| b.iter(|| black_box(decode(data, rules, enc))));
        }
        g.finish();
    }
}

criterion_group! {
    name = parse_group;
    config = config();
    targets = parsers::parsers
}

// ---------------------------------------------------------------------------------------------
// Container logs: rows per second from tailed file lines to row JSON, the same app lines plain
// and inside a CRI envelope (`[inputs.NAME.container]`), text and JSON. Separate group:
// `cargo bench --bench stages -- container/`
// ---------------------------------------------------------------------------------------------

mod container {
    use super::*;
    use dcrship::deadletter::DeadLetter;
    use dcrship::input::container::{ContainerFiles, ContainerSettings, JsonFields, Runtime};
    use dcrship::input::decode::line_record;
    use dcrship::input::file::{FileKey, FileLines, LineRef};
    use dcrship::input::lines::Line;
    use dcrship::pipeline::sink::{RowSink, SinkCounts};
    use dcrship::rows::RowBuf;
    use dcrship::transform::row::json_string;
    use std::path::PathBuf;
    use std::sync::Arc;

    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// `data`'s lines in tailer-sized batches.
    fn batches(data: &[u8]) -> Vec<FileLines> {
        let path = Arc::new(PathBuf::from(format!(
            "/var/log/containers/web-1_shop_app-{CID}.log"
        )));
        let key = FileKey {
            dev: 1,
            ino: 2,
            fingerprint: 3,
            generation: 0,
        };
        let (mut out, mut offset, mut number) = (Vec::new(), 0u64, 0u64);
        for chunk in data
            .split_inclusive(|&b| b == b'\n')
            .collect::<Vec<_>>()
            .chunks(1000)
        {
            let mut b = FileLines {
                file: key,
                path: path.clone(),
                buf: Vec::new(),
                lines: Vec::new(),
                started_at: None,
                windows: Vec::new(),
            };
            for l in chunk {
                let start = b.buf.len() as u32;
                b.buf.extend_from_slice(&l[..l.len() - 1]);
                offset += l.len() as u64;
                number += 1;
                b.lines.push(LineRef {
                    start,
                    end: b.buf.len() as u32,
                    number,
                    end_offset: offset,
                    truncated: false,
                });
            }
            out.push(b);
        }
        out
    }

    /// The rows of `batches` as the file input makes them: through the container module when
    /// `settings` are given, else line by line as a plain file.
    fn rows(
        batches: &[FileLines],
        format: Format,
        settings: Option<&Arc<ContainerSettings>>,
        enc: &RowEncoder,
        dl: &DeadLetter,
    ) -> u64 {
        let path_json = json_string("/var/log/containers/x.log");
        let mut files = settings.map(|s| ContainerFiles::new(s.clone()));
        let mut rows = RowBuf::with_capacity(1 << 20);
        let mut n = 0;
        let now = tokio::time::Instant::now();
        for b in batches {
            let mut sink = RowSink {
                encoder: enc,
                deadletter: dl,
                name: "bench",
                source: 0,
                file_path_json: Some(&path_json),
                time_read: TIME_READ,
                out: &mut rows,
                counts: SinkCounts::default(),
            };
            match &mut files {
                Some(f) => {
                    f.batch(b, now, &mut sink);
                }
                None => {
                    let f = match format {
                        Format::Ndjson => Format::Ndjson,
                        _ => Format::Text,
                    };
                    for (l, bytes) in b.iter() {
                        let line = Line {
                            bytes,
                            number: l.number,
                            truncated: false,
                            end_offset: l.end_offset,
                        };
                        line_record(f, line, CAP, &mut |r| sink.record(r, l.end_offset));
                    }
                }
            }
            n += sink.counts.read - sink.counts.rejected;
            rows.clear();
        }
        n
    }

    /// `line`'s output with a CRI envelope around each line.
    fn cri(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() * 5 / 4);
        for l in data.split_inclusive(|&b| b == b'\n') {
            out.extend_from_slice(b"2025-11-23T10:00:00.123456789Z stdout F ");
            out.extend_from_slice(l);
        }
        out
    }

    pub fn container(c: &mut Criterion) {
        let enc = RowEncoder::new("bench-host", None);
        let dl = DeadLetter::open(None).expect("dead letter");
        let settings = |format| {
            Arc::new(ContainerSettings::new(
                Runtime::Cri,
                JsonFields::Columns,
                format,
                None,
                CAP,
                &json_string("bench-host"),
            ))
        };
        let mut g = c.benchmark_group("container");
        for (name, line, format) in [
            (
                "text",
                common::text_line as fn(u64, &mut Vec<u8>),
                Format::Text,
            ),
            ("json", common::ndjson_line, Format::Ndjson),
        ] {
            let plain = common::buffer(4 << 20, line);
            let lines = plain.iter().filter(|&&b| b == b'\n').count() as u64;
            let plain = batches(&plain);
            let wrapped = batches(&cri(&common::buffer(4 << 20, line)));
            let s = settings(format);
            // A path that lost or refused rows would look fast; make sure neither does.
            assert_eq!(rows(&plain, format, None, &enc, &dl), lines, "{name} plain");
            assert_eq!(
                rows(&wrapped, format, Some(&s), &enc, &dl),
                lines,
                "{name} cri"
            );
            g.throughput(Throughput::Elements(lines));
            g.bench_function(format!("plain_{name}_4MB"), |b| {
                b.iter(|| black_box(rows(&plain, format, None, &enc, &dl)))
            });
            g.bench_function(format!("cri_{name}_4MB"), |b| {
                b.iter(|| black_box(rows(&wrapped, format, Some(&s), &enc, &dl)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = container_group;
    config = config();
    targets = container::container
}

criterion_main!(stages, parse_group, container_group);
