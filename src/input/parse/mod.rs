//! Text lines → records: the parsers of `format = "regex" | "logfmt" | "syslog"`, and multiline
//! joining, behind one per-stream type, [`LineEvents`].
//!
//! ```text
//! lines ─▶ [multiline: join into events] ─▶ parser ─▶ Record::Object (the columns)
//!                                              └─ no match ─▶ Record::Line (RawData row), or
//!                                                             Record::Bad (dead-letter)
//! ```
//! A line (or event) a parser does not recognise is never lost: by default it becomes the same
//! `RawData` row a `text` input makes, else (`on_mismatch = "dead-letter"`) a dead-letter entry;
//! either way it is counted in [`ParseCounts::mismatched`].
//!
//! Plain `text` and `json` inputs without multiline do not come here at all, so they pay nothing
//! for it.

pub mod logfmt;
pub mod regex;
pub mod syslog;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use ::regex::CaptureLocations;

use super::decode::{lossy, sample, Record};
use super::lines::Line;
use super::multiline::{Event, Multiline, MultilineRules};
use crate::config::{InputConfig, InputFormat};

pub use self::regex::RegexParser;
pub use self::syslog::SyslogParser;

/// `on_mismatch`: what happens to a line its parser does not recognise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnMismatch {
    /// send it as a text row (RawData, Computer, FilePath), as format = "text" would
    #[default]
    Raw,
    /// write it to the dead-letter file with the reason
    DeadLetter,
}

/// How one line or event becomes columns.
#[derive(Debug, Clone)]
pub enum Parser {
    /// No parsing: the event is a `RawData` row (text with multiline).
    Text,
    Regex(RegexParser),
    Logfmt,
    Syslog(SyslogParser),
}

impl Parser {
    fn what(&self) -> &'static str {
        match self {
            Parser::Text => "text",
            Parser::Regex(_) => "the pattern",
            Parser::Logfmt => "logfmt",
            Parser::Syslog(_) => "RFC 3164 or RFC 5424 syslog",
        }
    }
}

/// A setting of a parsed input is wrong; [`ParseSetupError::key`] names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSetupError {
    #[error("{0}")]
    Pattern(String),
    #[error("{0}")]
    Multiline(String),
    #[error("{0}")]
    MultilineStart(String),
}

impl ParseSetupError {
    /// The key under `[inputs.NAME]` the error is about.
    pub fn key(&self) -> &'static [&'static str] {
        match self {
            ParseSetupError::Pattern(_) => &["pattern"],
            ParseSetupError::Multiline(_) => &["multiline"],
            ParseSetupError::MultilineStart(_) => &["multiline", "start"],
        }
    }
}

/// Everything that turns one input's lines into records, compiled once and shared.
#[derive(Debug, Clone)]
pub struct TextRules {
    pub parser: Parser,
    pub on_mismatch: OnMismatch,
    pub multiline: Option<MultilineRules>,
}

impl TextRules {
    /// The rules of a configured input; `None` for `text` and `json` without multiline, which
    /// keep their direct path.
    pub fn for_input(input: &InputConfig) -> Result<Option<TextRules>, ParseSetupError> {
        let parser = match input.format {
            InputFormat::Json | InputFormat::Raw => return Ok(None),
            InputFormat::Text if input.multiline.is_none() => return Ok(None),
            InputFormat::Text => Parser::Text,
            InputFormat::Regex => {
                let pattern = input.pattern.as_deref().unwrap_or_default();
                Parser::Regex(RegexParser::new(pattern).map_err(ParseSetupError::Pattern)?)
            }
            InputFormat::Logfmt => Parser::Logfmt,
            InputFormat::Syslog => Parser::Syslog(SyslogParser::default()),
        };
        let multiline = match &input.multiline {
            Some(m) => Some(
                MultilineRules::new(
                    m.start.as_deref(),
                    m.preset,
                    m.timeout,
                    m.max_lines,
                    m.max_bytes,
                )
                .map_err(|e| match (&m.start, m.preset) {
                    (Some(_), None) => ParseSetupError::MultilineStart(e),
                    _ => ParseSetupError::Multiline(e),
                })?,
            ),
            None => None,
        };
        Ok(Some(TextRules {
            parser,
            on_mismatch: input.on_mismatch,
            multiline,
        }))
    }

    /// Rules from command-line flags (`send`).
    pub fn from_flags(
        parser: Parser,
        on_mismatch: OnMismatch,
        multiline: Option<MultilineRules>,
    ) -> TextRules {
        TextRules {
            parser,
            on_mismatch,
            multiline,
        }
    }
}

/// Things counted while parsing, added to the run's counters by the caller.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseCounts {
    /// Lines or events the parser did not recognise (sent as RawData, or dead-lettered).
    pub mismatched: u64,
    /// Multiline events emitted early because they reached `max_lines` or `max_bytes`.
    pub cut: u64,
    /// Parsed rows made from a line that was cut at the line cap (a text row counts its own).
    pub truncated: u64,
}

/// The state of one stream (a file, stdin): a pending multiline event and parser scratch.
#[derive(Debug)]
pub struct LineEvents {
    rules: Arc<TextRules>,
    multiline: Multiline,
    locs: Option<CaptureLocations>,
    counts: ParseCounts,
}

impl LineEvents {
    pub fn new(rules: Arc<TextRules>) -> Self {
        let locs = match &rules.parser {
            Parser::Regex(p) => Some(p.scratch()),
            _ => None,
        };
        LineEvents {
            rules,
            multiline: Multiline::default(),
            locs,
            counts: ParseCounts::default(),
        }
    }

    /// One line; `emit` gets each record it completes with the stream offset past the record's
    /// last line.
    pub fn line(&mut self, l: Line<'_>, emit: &mut dyn FnMut(Record<'_>, u64)) {
        let LineEvents {
            rules,
            multiline,
            locs,
            counts,
        } = self;
        let rules: &TextRules = rules;
        let text = lossy(l.bytes, l.truncated);
        match &rules.multiline {
            None => {
                if !text.is_empty() {
                    let ev = Event {
                        text: &text,
                        number: l.number,
                        end_offset: l.end_offset,
                        truncated: l.truncated,
                    };
                    record(rules, locs, counts, ev, emit);
                }
            }
            Some(ml) => {
                let cut =
                    multiline.push(ml, &text, l.number, l.end_offset, l.truncated, &mut |ev| {
                        record(rules, locs, counts, ev, emit)
                    });
                counts.cut += u64::from(cut);
            }
        }
    }

    /// Emits the pending multiline event, if any: after `timeout`, at the end of the input, or
    /// at shutdown.
    pub fn flush(&mut self, emit: &mut dyn FnMut(Record<'_>, u64)) {
        let LineEvents {
            rules,
            multiline,
            locs,
            counts,
        } = self;
        let rules: &TextRules = rules;
        multiline.flush(&mut |ev| record(rules, locs, counts, ev, emit));
    }

    /// How long a pending event may wait for its next line; `None` when nothing is pending.
    pub fn pending_timeout(&self) -> Option<Duration> {
        match &self.rules.multiline {
            Some(ml) if self.multiline.is_pending() => Some(ml.timeout),
            _ => None,
        }
    }

    /// The counts since the last call.
    pub fn take_counts(&mut self) -> ParseCounts {
        std::mem::take(&mut self.counts)
    }
}

/// One event → a record: columns, or the fallback for a mismatch.
fn record(
    rules: &TextRules,
    locs: &mut Option<CaptureLocations>,
    counts: &mut ParseCounts,
    ev: Event<'_>,
    emit: &mut dyn FnMut(Record<'_>, u64),
) {
    let parsed = match (&rules.parser, locs) {
        (Parser::Text, _) => None,
        (Parser::Regex(p), Some(locs)) => p.parse(ev.text, locs),
        (Parser::Regex(p), None) => p.parse(ev.text, &mut p.scratch()),
        (Parser::Logfmt, _) => logfmt::parse(ev.text),
        (Parser::Syslog(p), _) => p.parse(ev.text),
    };
    let rec = match parsed {
        Some(map) => {
            counts.truncated += u64::from(ev.truncated);
            Record::Object {
                map,
                number: ev.number,
            }
        }
        None if matches!(rules.parser, Parser::Text) => text(ev),
        None => {
            counts.mismatched += 1;
            match rules.on_mismatch {
                OnMismatch::Raw => text(ev),
                OnMismatch::DeadLetter => Record::Bad {
                    reason: format!("does not match {}", rules.parser.what()),
                    raw: Cow::Owned(sample(ev.text).to_string()),
                    number: ev.number,
                },
            }
        }
    };
    emit(rec, ev.end_offset);
}

fn text(ev: Event<'_>) -> Record<'_> {
    Record::Line {
        text: Cow::Borrowed(ev.text),
        number: ev.number,
        truncated: ev.truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::multiline::{Preset, DEFAULT_TIMEOUT};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[derive(Debug, PartialEq)]
    enum R {
        Obj(Value, u64, u64),
        Raw(String, u64, u64, bool),
        Bad(String, String, u64),
    }

    fn rules(
        parser: Parser,
        on_mismatch: OnMismatch,
        ml: Option<MultilineRules>,
    ) -> Arc<TextRules> {
        Arc::new(TextRules::from_flags(parser, on_mismatch, ml))
    }

    /// Feeds `lines` (offsets 10 per line, `!` at the end marks a cut line) and flushes.
    fn run(rules: Arc<TextRules>, lines: &[&str]) -> (Vec<R>, ParseCounts) {
        let mut ev = LineEvents::new(rules);
        let mut got = Vec::new();
        let mut emit = |r: Record<'_>, off: u64| {
            got.push(match r {
                Record::Object { map, number } => R::Obj(Value::Object(map), number, off),
                Record::Line {
                    text,
                    number,
                    truncated,
                } => R::Raw(text.into_owned(), number, off, truncated),
                Record::Bad {
                    reason,
                    raw,
                    number,
                } => R::Bad(reason, raw.into_owned(), number),
                Record::Json { .. } => panic!("no JSON here"),
            })
        };
        for (i, l) in lines.iter().enumerate() {
            let n = i as u64 + 1;
            let (bytes, truncated) = match l.strip_suffix('!') {
                Some(b) => (b.as_bytes(), true),
                None => (l.as_bytes(), false),
            };
            ev.line(
                Line {
                    bytes,
                    number: n,
                    truncated,
                    end_offset: n * 10,
                },
                &mut emit,
            );
        }
        ev.flush(&mut emit);
        (got, ev.take_counts())
    }

    #[test]
    fn each_parser_makes_columns_and_falls_back_to_raw_data() {
        let regex =
            Parser::Regex(RegexParser::new(r"^(?P<Level>[A-Z]+) (?P<Msg>.*)$").expect("re"));
        let syslog = Parser::Syslog(SyslogParser::new(jiff::tz::TimeZone::UTC));
        let cases: Vec<(Parser, &str, Option<Value>)> = vec![
            (
                regex.clone(),
                "WARN disk low",
                Some(json!({"Level":"WARN","Msg":"disk low"})),
            ),
            (regex, "warn lowercase", None),
            (
                Parser::Logfmt,
                "a=1 b=\"x y\"",
                Some(json!({"a":"1","b":"x y"})),
            ),
            (Parser::Logfmt, "prose only", None),
            (
                syslog.clone(),
                "<13>1 - h app - - - hi",
                Some(
                    json!({"Facility":"user","SeverityLevel":"notice","HostName":"h",
                    "ProcessName":"app","SyslogMessage":"hi"}),
                ),
            ),
            (syslog, "plain words", None),
        ];
        for (parser, line, want) in cases {
            let (got, counts) = run(rules(parser, OnMismatch::Raw, None), &[line]);
            let expected = match want {
                Some(v) => R::Obj(v, 1, 10),
                None => R::Raw(line.to_string(), 1, 10, false),
            };
            assert_eq!(got, vec![expected], "{line}");
            assert_eq!(counts.mismatched, u64::from(matches!(got[0], R::Raw(..))));
        }
    }

    #[test]
    fn a_mismatch_can_be_dead_lettered_and_blank_lines_are_no_records() {
        let (got, counts) = run(
            rules(Parser::Logfmt, OnMismatch::DeadLetter, None),
            &["k=v", "", "nope", "k=w"],
        );
        assert_eq!(
            got,
            vec![
                R::Obj(json!({"k":"v"}), 1, 10),
                R::Bad("does not match logfmt".into(), "nope".into(), 3),
                R::Obj(json!({"k":"w"}), 4, 40),
            ]
        );
        assert_eq!(
            counts,
            ParseCounts {
                mismatched: 1,
                cut: 0,
                truncated: 0
            }
        );
    }

    #[test]
    fn a_cut_line_is_counted_when_parsed_and_flagged_when_raw() {
        let (got, counts) = run(
            rules(Parser::Logfmt, OnMismatch::Raw, None),
            &["k=v!", "xx!"],
        );
        assert_eq!(
            got,
            vec![
                R::Obj(json!({"k":"v"}), 1, 10),
                R::Raw("xx".into(), 2, 20, true)
            ]
        );
        assert_eq!((counts.truncated, counts.mismatched), (1, 1));
    }

    #[test]
    fn multiline_events_are_parsed_whole_with_their_last_offset() {
        let re = RegexParser::new(r"(?s)^(?P<Level>[A-Z]+) (?P<Msg>.*)$").expect("re");
        let ml =
            MultilineRules::new(None, Some(Preset::Java), DEFAULT_TIMEOUT, 3, 1 << 20).expect("ml");
        let (got, counts) = run(
            rules(Parser::Regex(re), OnMismatch::Raw, Some(ml)),
            &[
                "ERROR failed",
                "java.lang.Error: x",
                "\tat a.B(B.java:1)",
                "\tat a.C(C.java:2)",
                "INFO fine",
            ],
        );
        assert_eq!(
            got,
            vec![
                R::Obj(
                    json!({"Level":"ERROR","Msg":"failed\njava.lang.Error: x\n\tat a.B(B.java:1)"}),
                    1,
                    30
                ),
                // cut at max_lines: the rest starts an event of its own, which does not match
                R::Raw("\tat a.C(C.java:2)".into(), 4, 40, false),
                R::Obj(json!({"Level":"INFO","Msg":"fine"}), 5, 50),
            ]
        );
        assert_eq!(
            counts,
            ParseCounts {
                mismatched: 1,
                cut: 1,
                truncated: 0
            }
        );
    }

    #[test]
    fn text_with_multiline_makes_raw_data_events_and_never_counts_mismatches() {
        let ml = MultilineRules::new(Some("^S"), None, DEFAULT_TIMEOUT, 10, 1 << 20).expect("ml");
        let mut ev = LineEvents::new(rules(Parser::Text, OnMismatch::Raw, Some(ml)));
        let mut got = Vec::new();
        let mut emit = |r: Record<'_>, off: u64| {
            if let Record::Line { text, .. } = r {
                got.push((text.into_owned(), off));
            }
        };
        for (i, l) in ["S1", " a", "S2"].iter().enumerate() {
            let n = i as u64 + 1;
            let line = Line {
                bytes: l.as_bytes(),
                number: n,
                truncated: false,
                end_offset: n,
            };
            ev.line(line, &mut emit);
        }
        assert_eq!(ev.pending_timeout(), Some(DEFAULT_TIMEOUT));
        ev.flush(&mut emit);
        assert_eq!(ev.pending_timeout(), None);
        assert_eq!(got, vec![("S1\n a".into(), 2), ("S2".into(), 3)]);
        assert_eq!(ev.take_counts(), ParseCounts::default());
    }

    #[test]
    fn settings_come_from_the_input_config() {
        let mut input: crate::config::InputConfig =
            toml::from_str("type = \"stdin\"\nformat = \"text\"").expect("input");
        assert!(
            TextRules::for_input(&input).expect("ok").is_none(),
            "plain text"
        );
        input.format = InputFormat::Json;
        assert!(TextRules::for_input(&input).expect("ok").is_none(), "json");
        input.format = InputFormat::Regex;
        input.pattern = Some("(x)".into());
        assert!(matches!(
            TextRules::for_input(&input),
            Err(e @ ParseSetupError::Pattern(_)) if e.key() == ["pattern"]
        ));
        input.format = InputFormat::Text;
        input.pattern = None;
        input.multiline = Some(crate::config::MultilineConfig::new(Some("(".into()), None));
        assert!(matches!(
            TextRules::for_input(&input),
            Err(e @ ParseSetupError::MultilineStart(_)) if e.key() == ["multiline", "start"]
        ));
        input.multiline = Some(crate::config::MultilineConfig::new(
            None,
            Some(Preset::Python),
        ));
        let r = TextRules::for_input(&input).expect("ok").expect("rules");
        assert!(matches!(r.parser, Parser::Text) && r.multiline.is_some());
    }

    proptest! {
        /// Any bytes through any parser, with or without multiline: no panic, and every
        /// non-empty line is in exactly one record.
        #[test]
        fn arbitrary_bytes_are_accounted_for(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            which in 0usize..4,
            multiline in any::<bool>(),
            dead in any::<bool>(),
        ) {
            let parser = match which {
                0 => Parser::Regex(RegexParser::new(r"^(?P<A>\w+)=(?P<B>.*)$").expect("re")),
                1 => Parser::Logfmt,
                2 => Parser::Syslog(SyslogParser::new(jiff::tz::TimeZone::UTC)),
                _ => Parser::Text,
            };
            let ml = multiline.then(|| {
                MultilineRules::new(None, Some(Preset::Java), DEFAULT_TIMEOUT, 4, 64).expect("ml")
            });
            let on = if dead { OnMismatch::DeadLetter } else { OnMismatch::Raw };
            let mut ev = LineEvents::new(rules(parser, on, ml));
            let mut splitter = crate::input::lines::LineSplitter::new(100);
            let (mut lines, mut records) = (0u64, 0u64);
            let mut last_offset = 0;
            splitter.feed(&data, &mut |l| {
                lines += u64::from(!l.bytes.is_empty());
                ev.line(l, &mut |_, off| {
                    records += 1;
                    assert!(off >= last_offset, "offsets move forward");
                    last_offset = off;
                });
            });
            splitter.finish(&mut |l| {
                lines += u64::from(!l.bytes.is_empty());
                ev.line(l, &mut |_, _| records += 1);
            });
            ev.flush(&mut |_, _| records += 1);
            if multiline {
                prop_assert!(records <= lines && (lines == 0) == (records == 0));
            } else {
                prop_assert_eq!(records, lines);
            }
        }
    }
}
