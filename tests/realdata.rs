//! Agreement with ground truth on the shared real log samples (`../shared/realdata/`, beside the
//! repository; `DCRSHIP_REALDATA=DIR` points elsewhere). The samples are read from there, never
//! copied into the repository; without them each test prints a note and passes, as on a clean
//! clone in CI. The rules themselves are also tested with small inline fixtures beside the code.
//!
//! Run with the figures printed:
//!
//! ```sh
//! cargo test --test realdata -- --nocapture
//! ```
//!
//! What is measured, per parser:
//! - `syslog` on the loghub Linux, Mac, OpenSSH and Thunderbird sets (Thunderbird's lines are
//!   syslog after four fields of its own, which are cut off first): a line *agrees* when it
//!   parses and HostName, ProcessName, ProcessID, SyslogMessage and the month, day and time of
//!   EventTime all equal loghub's structured CSV (messages compared without surrounding spaces;
//!   a field the CSV leaves empty must be absent; OpenSSH's CSV names no process).
//! - `regex` with the README's access-log recipe on 10,000 Apache combined lines: lines that
//!   match, rows with every column, and the values `--schema` (Status int, Bytes long) cannot
//!   type (`values_uncoercible`), through the same row encoder `send` uses.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dcrship::input::lines::{Line, LineSplitter};
use dcrship::input::parse::{LineEvents, OnMismatch, Parser, RegexParser, SyslogParser, TextRules};
use dcrship::input::Record;
use dcrship::transform::columns::ColumnType;
use dcrship::transform::row::{RowEncoder, RowNotes, Shaping};
use dcrship::transform::time::TimeParser;
use serde_json::{Map, Value};

mod common;
use common::recipe_pattern;

/// The samples' folder, or `None` (with a note) when it is not there.
fn realdata(test: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("DCRSHIP_REALDATA") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/realdata"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "{test}: skipped, the real samples are not at {} (set DCRSHIP_REALDATA)",
            dir.display()
        );
        None
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// The lines of a file as the line splitter cuts them (CRLF ends, no newline at the end).
fn lines(path: &Path) -> Vec<String> {
    let data = gunzip(path);
    let mut out = Vec::new();
    let mut splitter = LineSplitter::new(64 * 1024);
    let mut keep = |l: Line<'_>| out.push(String::from_utf8_lossy(l.bytes).into_owned());
    splitter.feed(&data, &mut keep);
    splitter.finish(&mut keep);
    out
}

/// loghub's structured CSV: one map per line, keyed by the header.
fn csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8_lossy(&gunzip(path)).into_owned();
    let mut rows = text
        .lines()
        .map(|l| match dcrship::input::csv::split_record(l) {
            dcrship::input::csv::CsvSplit::Fields(f) => f,
            other => panic!("{}: {other:?} in {l}", path.display()),
        });
    let header = rows.next().expect("header");
    rows.map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

/// What a parser made of one line: its columns, or `None` when it fell back to RawData.
fn parse_all(parser: Parser, lines: &[String]) -> Vec<Option<Map<String, Value>>> {
    let rules = Arc::new(TextRules::new(parser, OnMismatch::Raw, None));
    let mut events = LineEvents::new(rules);
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let line = Line {
            bytes: l.as_bytes(),
            number: i as u64 + 1,
            truncated: false,
            end_offset: 0,
        };
        events.line(line, &mut |r, _| {
            out.push(match r {
                Record::Object { map, .. } => Some(map),
                _ => None,
            })
        });
    }
    out
}

/// One set's figures: lines that agree, and per field how many did not.
#[derive(Debug, Default)]
struct Agreement {
    lines: usize,
    agree: usize,
    unparsed: usize,
    wrong: BTreeMap<&'static str, usize>,
    examples: Vec<String>,
}

impl Agreement {
    fn report(&self, name: &str) -> String {
        format!(
            "{name}: {}/{} agree ({:.1}%), {} not parsed, wrong fields {:?}",
            self.agree,
            self.lines,
            100.0 * self.agree as f64 / self.lines.max(1) as f64,
            self.unparsed,
            self.wrong
        )
    }
}

/// The syslog sets: (set, the CSV columns of host, process, pid; fields before the syslog part;
/// lines that must agree). What still disagrees is where loghub's labels are not what a syslog
/// reader can know: Linux's `syslogd 1.4.1: restart.` (rsyslog reads the tag `syslogd`, and so
/// does dcrship), Thunderbird's kernel boot lines without a tag (`Kernel command line: …`, whose
/// first word dcrship takes as the tag, as rsyslog does).
type SyslogSet = (
    &'static str,
    &'static str,
    Option<&'static str>,
    &'static str,
    usize,
    usize,
);
const SYSLOG_SETS: [SyslogSet; 4] = [
    ("Linux", "Level", Some("Component"), "PID", 0, 1992),
    ("Mac", "User", Some("Component"), "PID", 0, 2000),
    ("OpenSSH", "Component", None, "Pid", 0, 2000),
    ("Thunderbird", "Location", Some("Component"), "PID", 4, 1994),
];

fn syslog_agreement(dir: &Path, set: SyslogSet) -> Agreement {
    let (name, host_col, proc_col, pid_col, skip, _) = set;
    let base = dir.join("loghub").join(name);
    let raw = lines(&base.join(format!("{name}_2k.log.gz")));
    let truth = csv(&base.join(format!("{name}_2k.log_structured.csv.gz")));
    assert_eq!(raw.len(), truth.len(), "{name}: lines and CSV rows");
    let raw: Vec<String> = raw
        .iter()
        .map(|l| {
            l.splitn(skip + 1, ' ')
                .last()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let utc = jiff::tz::TimeZone::UTC;
    let got = parse_all(Parser::Syslog(SyslogParser::new(utc.clone())), &raw);
    let mut a = Agreement {
        lines: raw.len(),
        ..Agreement::default()
    };
    for ((line, row), want) in raw.iter().zip(&got).zip(&truth) {
        let Some(row) = row else {
            a.unparsed += 1;
            if a.examples.len() < 5 {
                a.examples.push(format!("unparsed: {line}"));
            }
            continue;
        };
        let s = |k: &str| {
            row.get(k).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let opt = |col: &str| Some(want[col].trim().to_string()).filter(|v| !v.is_empty());
        let time = row["EventTime"].as_str().and_then(|t| {
            let ts: jiff::Timestamp = t.parse().ok()?;
            let dt = utc.to_datetime(ts);
            Some((dt.month(), dt.day(), dt.strftime("%H:%M:%S").to_string()))
        });
        let month_col = ["Month", "Date"].into_iter().find(|c| {
            want.get(*c)
                .is_some_and(|v| v.len() == 3 && v.chars().all(char::is_alphabetic))
        });
        // the day is in `Day` where the month is in `Date` (OpenSSH, Thunderbird), else in `Date`
        let day_col = if want.contains_key("Day") {
            "Day"
        } else {
            "Date"
        };
        let want_time = month_col.and_then(|m| {
            let month = jiff::fmt::strtime::parse("%b", &want[m]).ok()?.month()?;
            let day: i8 = want[day_col].trim().parse().ok()?;
            Some((month, day, want["Time"].clone()))
        });
        let mut checks: Vec<(&'static str, bool)> = vec![
            ("HostName", s("HostName") == opt(host_col)),
            ("ProcessID", s("ProcessID") == opt(pid_col)),
            (
                "SyslogMessage",
                s("SyslogMessage").map(|m| m.trim().to_string()) == opt("Content"),
            ),
            ("EventTime", time.is_some() && time == want_time),
        ];
        if let Some(col) = proc_col {
            checks.push(("ProcessName", s("ProcessName") == opt(col)));
        }
        let mut ok = true;
        for (field, good) in checks {
            if !good {
                ok = false;
                *a.wrong.entry(field).or_default() += 1;
                if a.examples.len() < 5 {
                    a.examples
                        .push(format!("{field}: {line} -> {}", Value::Object(row.clone())));
                }
            }
        }
        a.agree += usize::from(ok);
    }
    a
}

#[test]
fn syslog_agrees_with_loghub() {
    let Some(dir) = realdata("syslog_agrees_with_loghub") else {
        return;
    };
    for set in SYSLOG_SETS {
        let a = syslog_agreement(&dir, set);
        println!("{}", a.report(&format!("syslog {}", set.0)));
        for e in &a.examples {
            println!("    {e}");
        }
        assert!(
            a.agree >= set.5,
            "{}: {} lines agree, {} did before",
            set.0,
            a.agree,
            set.5
        );
    }
}

/// Figures of the access recipe on some lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct Access {
    lines: usize,
    matched: usize,
    /// rows with ClientIP, RequestTime, Method, Path, Protocol, Status, Bytes, Referer, UserAgent
    complete: usize,
    uncoercible: u64,
    time_unparsable: u64,
}

fn access_figures(pattern: &str, lines: &[String]) -> Access {
    let parser = Parser::Regex(RegexParser::new(pattern).expect("the recipe compiles"));
    let columns: BTreeMap<String, ColumnType> = [
        ("Status", ColumnType::Int),
        ("Bytes", ColumnType::Long),
        ("ClientIP", ColumnType::String),
        ("Path", ColumnType::String),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_string(), t))
    .collect();
    let encoder = RowEncoder::with_shaping(
        "host",
        Shaping {
            time_field: Some("RequestTime".into()),
            time: TimeParser::new(Some("%d/%b/%Y:%H:%M:%S %z"), None).expect("format"),
            columns,
            ..Shaping::default()
        },
    );
    let mut f = Access {
        lines: lines.len(),
        ..Access::default()
    };
    let mut notes = RowNotes::default();
    let mut out = Vec::new();
    const ALL: [&str; 9] = [
        "ClientIP",
        "RequestTime",
        "Method",
        "Path",
        "Protocol",
        "Status",
        "Bytes",
        "Referer",
        "UserAgent",
    ];
    for row in parse_all(parser, lines).into_iter().flatten() {
        f.matched += 1;
        f.complete += usize::from(ALL.iter().all(|k| row.contains_key(*k)));
        out.clear();
        encoder.object(row, "2026-01-01T00:00:00.000000Z", &mut out, &mut notes);
    }
    f.uncoercible = notes.uncoercible;
    f.time_unparsable = notes.time_unparsable;
    f
}

#[test]
fn the_access_log_recipe_on_real_apache_lines() {
    let readme = recipe_pattern("README.md");
    assert_eq!(
        readme,
        recipe_pattern("agent.toml.example"),
        "README and agent.toml.example show the same recipe"
    );
    let Some(dir) = realdata("the_access_log_recipe_on_real_apache_lines") else {
        return;
    };
    let lines = lines(&dir.join("access/apache_logs.gz"));
    let f = access_figures(&readme, &lines);
    println!("access recipe on apache_logs: {f:?}");
    assert_eq!(
        f,
        Access {
            lines: 10_000,
            matched: 10_000,
            complete: 10_000,
            uncoercible: 0,
            time_unparsable: 0
        }
    );
}

/// The access recipe on each shape of line (inline, so it runs without the samples): the
/// columns it makes (and those it leaves out), and that `--schema` then counts nothing.
#[test]
fn the_access_log_recipe_reads_every_shape() {
    let p = recipe_pattern("README.md");
    let head = r#"203.0.113.9 - - [23/Nov/2025:10:00:01 +0000] "#;
    // (the line after the time, columns wanted, columns that must be absent)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let request = ["Method", "Path", "Protocol"];
    let cases: &[Case<'_>] = &[
        // combined, and a `-` byte count (a 304)
        (
            r#""GET /a?b=1 HTTP/1.1" 304 - "https://example.com/" "curl/8.5""#,
            &[
                ("Method", "GET"),
                ("Path", "/a?b=1"),
                ("Protocol", "HTTP/1.1"),
                ("Status", "304"),
                ("Bytes", "-"),
                ("Referer", "https://example.com/"),
                ("UserAgent", "curl/8.5"),
            ],
            &["Request"],
        ),
        // Apache's "-" when no request line came (a 408), nginx's ""
        (
            r#""-" 408 - "-" "-""#,
            &[
                ("Request", "-"),
                ("Status", "408"),
                ("Referer", "-"),
                ("UserAgent", "-"),
            ],
            &request,
        ),
        (
            r#""" 400 0 "-" "-""#,
            &[("Request", ""), ("Bytes", "0")],
            &request,
        ),
        // a TLS handshake on the HTTP port, as nginx and Apache escape it
        (
            r#""\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" 400 166 "-" "-""#,
            &[("Request", r"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")],
            &request,
        ),
        // an escaped quote in the request and in the agent (Apache writes \")
        (
            r#""GET /q=\"x\" HTTP/1.1" 200 5 "-" "Mozilla \"quoted\" x""#,
            &[
                ("Request", r#"GET /q=\"x\" HTTP/1.1"#),
                ("UserAgent", r#"Mozilla \"quoted\" x"#),
            ],
            &request,
        ),
        // Apache's unquoted - - referer and agent, and the common format without them
        (
            r#""GET / HTTP/1.0" 200 512 - -"#,
            &[("Path", "/"), ("Bytes", "512")],
            &["Referer", "UserAgent", "Request"],
        ),
        (
            r#""GET /apache_pb.gif HTTP/1.0" 200 2326"#,
            &[("Path", "/apache_pb.gif"), ("Protocol", "HTTP/1.0")],
            &["Referer", "UserAgent", "Request"],
        ),
        // HTTP/0.9 has no protocol; an agent cut before its closing quote is kept
        (
            r#""GET /" 200 12 "-" "-""#,
            &[("Method", "GET"), ("Path", "/")],
            &["Protocol", "Request"],
        ),
        (
            r#""GET /x HTTP/1.1" 200 235 "-" "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html"#,
            &[(
                "UserAgent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html",
            )],
            &["Request"],
        ),
    ];
    let parser = Parser::Regex(RegexParser::new(&p).expect("the recipe compiles"));
    for (rest, want, absent) in cases {
        let line = format!("{head}{rest}");
        let rows = parse_all(parser.clone(), std::slice::from_ref(&line));
        let row = rows[0]
            .as_ref()
            .unwrap_or_else(|| panic!("{line} does not match"));
        assert_eq!(row["ClientIP"], "203.0.113.9", "{line}");
        assert_eq!(row["RequestTime"], "23/Nov/2025:10:00:01 +0000", "{line}");
        for (k, v) in *want {
            assert_eq!(
                row.get(*k).and_then(Value::as_str),
                Some(*v),
                "{k} of {line}"
            );
        }
        for k in *absent {
            assert!(row.get(*k).is_none(), "{k} is in {line}: {row:?}");
        }
        let f = access_figures(&p, std::slice::from_ref(&line));
        assert_eq!(
            (f.matched, f.uncoercible, f.time_unparsable),
            (1, 0, 0),
            "{line}"
        );
    }
}
