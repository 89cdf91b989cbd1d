//! Multiline events: joins the lines of one record (a stack trace, a pretty-printed message)
//! into one event, in bounded memory.
//!
//! A line that *starts* an event ends the one pending; any other line is appended to it with
//! `\n`. The rule is a regular expression (`start`: a matching line starts an event) or a preset
//! (`java`, `python`, `go`, `ruby`, `dotnet`, `php`, `nodejs`: the stack-trace rules of
//! [`presets`], which also tell two traces back to back apart).
//!
//! Empty lines inside an event are kept (Python prints them between chained tracebacks); trailing
//! ones are dropped, and an empty line with no event pending is skipped, as in plain text.
//!
//! Bounds: an event holds at most `max_lines` lines and `max_bytes` bytes. A line that would pass
//! either is not appended: the event is emitted as it is (*cut*, counted by the caller) and the
//! line starts the next one, so a stack trace that never ends becomes events of `max_lines`
//! lines, none lost. The caller emits the pending event after `timeout` without a new line, and
//! at the end of the input.

use std::time::Duration;

mod presets;

use ::regex::Regex;

use self::presets::Stage;
use crate::transform::row::floor_char_boundary;

/// `multiline.timeout`: how long a pending event waits for another line.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// `multiline.max_lines`.
pub const DEFAULT_MAX_LINES: usize = 500;
/// `multiline.max_bytes`: four times the field limit, well under a request.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;

/// `multiline.preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Java (and other JVM) stack traces
    Java,
    /// Python tracebacks
    Python,
    /// Go panics and goroutine dumps
    Go,
    /// Ruby backtraces (and Rails')
    Ruby,
    /// .NET (C#) exceptions
    Dotnet,
    /// PHP errors with their stack trace (and Laravel's, Xdebug's)
    Php,
    /// Node.js errors with their stack
    Nodejs,
}

impl Preset {
    /// Every preset, for tests and messages.
    pub const ALL: [Preset; 7] = [
        Preset::Java,
        Preset::Python,
        Preset::Go,
        Preset::Ruby,
        Preset::Dotnet,
        Preset::Php,
        Preset::Nodejs,
    ];
}

#[derive(Debug, Clone)]
enum Rule {
    Start(Regex),
    Preset(presets::Rules),
}

/// The compiled multiline settings of one input.
#[derive(Debug, Clone)]
pub struct MultilineRules {
    rule: Rule,
    pub timeout: Duration,
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl MultilineRules {
    /// Exactly one of `start` and `preset`; the error is one line.
    pub fn new(
        start: Option<&str>,
        preset: Option<Preset>,
        timeout: Duration,
        max_lines: usize,
        max_bytes: usize,
    ) -> Result<Self, String> {
        let rule = match (start, preset) {
            (Some(_), Some(_)) => return Err("set either start or preset, not both".into()),
            (None, None) => {
                return Err(
                    "set start (a regular expression matching the first line of an \
                            event, like '^\\d{4}-\\d{2}-\\d{2}') or a preset: \"java\", \"python\", \
                            \"go\", \"ruby\", \"dotnet\", \"php\" or \"nodejs\""
                        .into(),
                )
            }
            (Some(re), None) => Rule::Start(super::parse::regex::compile(re)?),
            (None, Some(preset)) => Rule::Preset(presets::Rules::new(preset)?),
        };
        Ok(MultilineRules {
            rule,
            timeout,
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
        })
    }

    /// True when `line` starts a new event; `stage` is a preset's state, moved on by the line.
    fn starts(&self, line: &str, stage: &mut Stage) -> bool {
        match &self.rule {
            Rule::Start(re) => re.is_match(line),
            Rule::Preset(rules) => {
                if rules.continues(line, stage) {
                    return false;
                }
                *stage = rules.first(line);
                true
            }
        }
    }
}

/// One joined event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub text: &'a str,
    /// The number of its first line.
    pub number: u64,
    /// The stream offset past its last line: what a file checkpoint stores once it is safe.
    pub end_offset: u64,
    /// A line of it was cut (at the line cap or at `max_bytes`).
    pub truncated: bool,
}

/// The event being gathered for one stream.
#[derive(Debug, Default)]
pub struct Multiline {
    buf: String,
    lines: usize,
    number: u64,
    end_offset: u64,
    truncated: bool,
    stage: Stage,
}

impl Multiline {
    /// An event is pending: the caller flushes it after `timeout` without new lines.
    pub fn is_pending(&self) -> bool {
        self.lines > 0
    }

    /// Bytes held for the pending event.
    #[cfg(test)]
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Takes one line, emitting the event it completes. Returns true when that event was cut
    /// at `max_lines` or `max_bytes`.
    pub fn push(
        &mut self,
        rules: &MultilineRules,
        line: &str,
        number: u64,
        end_offset: u64,
        truncated: bool,
        emit: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let pending = self.is_pending();
        if line.is_empty() {
            // Never a start; kept inside an event while it fits, else dropped like any blank line.
            if pending && self.lines < rules.max_lines && self.buf.len() < rules.max_bytes {
                self.buf.push('\n');
                self.lines += 1;
                self.end_offset = end_offset;
            }
            return false;
        }
        let starts = rules.starts(line, &mut self.stage);
        let mut cut = false;
        if pending {
            let fits =
                self.lines < rules.max_lines && self.buf.len() + 1 + line.len() <= rules.max_bytes;
            if !starts && fits {
                self.buf.push('\n');
                self.buf.push_str(line);
                self.lines += 1;
                self.end_offset = end_offset;
                self.truncated |= truncated;
                return false;
            }
            cut = !starts;
            self.emit(emit);
        }
        let keep = floor_char_boundary(line, rules.max_bytes);
        self.buf.push_str(&line[..keep]);
        self.lines = 1;
        self.number = number;
        self.end_offset = end_offset;
        self.truncated = truncated || keep < line.len();
        cut
    }

    /// Emits the pending event, if any (timeout, end of input, shutdown).
    pub fn flush(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        if self.is_pending() {
            self.emit(emit);
        }
        self.stage = Stage::default();
    }

    fn emit(&mut self, emit: &mut dyn FnMut(Event<'_>)) {
        emit(Event {
            text: self.buf.trim_end_matches('\n'),
            number: self.number,
            end_offset: self.end_offset,
            truncated: self.truncated,
        });
        self.buf.clear();
        self.lines = 0;
        self.truncated = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Got = Vec<(String, u64, u64, bool)>;

    fn rules(start: Option<&str>, preset: Option<Preset>) -> MultilineRules {
        MultilineRules::new(start, preset, DEFAULT_TIMEOUT, 500, 1 << 20).expect("rules")
    }

    /// Feeds lines (offsets are 10 per line) and flushes at the end; returns the events and how
    /// many were cut.
    fn join(r: &MultilineRules, text: &str) -> (Got, usize) {
        let mut m = Multiline::default();
        let mut got = Vec::new();
        let mut cuts = 0;
        let mut emit =
            |e: Event<'_>| got.push((e.text.to_string(), e.number, e.end_offset, e.truncated));
        for (i, line) in text.split('\n').enumerate() {
            let n = i as u64 + 1;
            cuts += usize::from(m.push(r, line, n, n * 10, false, &mut emit));
        }
        m.flush(&mut emit);
        (got, cuts)
    }

    fn texts(got: &Got) -> Vec<&str> {
        got.iter().map(|g| g.0.as_str()).collect()
    }

    const JAVA: &str = "\
2025-11-23 10:00:00.001 INFO  [main] c.e.App - starting
2025-11-23 10:00:01.002 ERROR [main] c.e.App - request failed
java.lang.IllegalStateException: boom
\tat com.example.App.handle(App.java:42)
\tat com.example.App.main(App.java:10)
Caused by: java.io.IOException: disk full
\tat java.base/java.io.FileOutputStream.write(FileOutputStream.java:1)
\t... 2 more
Exception in thread \"main\" java.lang.RuntimeException: fatal
\tat com.example.App.main(App.java:11)
2025-11-23 10:00:02.003 INFO  [main] c.e.App - Error count is 3";

    #[test]
    fn java_stack_traces_are_one_event() {
        let (got, cuts) = join(&rules(None, Some(Preset::Java)), JAVA);
        let lines: Vec<&str> = JAVA.lines().collect();
        assert_eq!(
            texts(&got),
            vec![
                lines[0].to_string(),
                lines[1..8].join("\n"),
                lines[8..10].join("\n"),
                lines[10].to_string(),
            ]
        );
        // numbered by the first line, offset past the last
        assert_eq!((got[1].1, got[1].2), (2, 80));
        assert_eq!((got[3].1, got[3].2), (11, 110));
        assert_eq!(cuts, 0);
    }

    const PYTHON: &str = "\
2025-11-23 10:00:00,001 ERROR app: request failed
Traceback (most recent call last):
  File \"app.py\", line 3, in <module>
    int(\"x\")
ValueError: invalid literal for int() with base 10: 'x'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"app.py\", line 5, in <module>
    raise RuntimeError(\"wrapped\")
RuntimeError: wrapped
2025-11-23 10:00:01,001 INFO app: next


2025-11-23 10:00:02,001 INFO app: last";

    #[test]
    fn python_tracebacks_are_one_event() {
        let (got, _) = join(&rules(None, Some(Preset::Python)), PYTHON);
        let lines: Vec<&str> = PYTHON.split('\n').collect();
        assert_eq!(
            texts(&got),
            vec![
                lines[0..12].join("\n"),
                lines[12].to_string(),
                lines[15].to_string(),
            ]
        );
        // the blank lines after "next" are consumed by its event (its offset covers them)
        assert_eq!(got[1].2, 150);
    }

    #[test]
    fn a_start_pattern_begins_events() {
        let r = rules(Some(r"^\d{4}-"), None);
        let (got, _) = join(
            &r,
            "  orphan first\n2025- a\n more\n\n2025- b\n2025- c\n tail",
        );
        assert_eq!(
            texts(&got),
            vec![
                "  orphan first",
                "2025- a\n more",
                "2025- b",
                "2025- c\n tail"
            ]
        );
        assert_eq!(got[1].2, 40, "the blank line inside is consumed");
    }

    #[test]
    fn events_are_cut_at_max_lines_and_max_bytes_and_nothing_is_lost() {
        let r = MultilineRules::new(Some("^S"), None, DEFAULT_TIMEOUT, 3, 1 << 20).expect("r");
        let text = "S0\n a\n b\n c\n d\n e\n f\n g\nS1";
        let (got, cuts) = join(&r, text);
        assert_eq!(
            texts(&got),
            vec!["S0\n a\n b", " c\n d\n e", " f\n g", "S1"]
        );
        assert_eq!(cuts, 2);

        let r = MultilineRules::new(Some("^S"), None, DEFAULT_TIMEOUT, 100, 10).expect("r");
        let (got, cuts) = join(&r, "S 1234\n 5678\n 9\nS 0123456789abc");
        assert_eq!(texts(&got), vec!["S 1234", " 5678\n 9", "S 01234567"]);
        assert_eq!(cuts, 1);
        assert!(got[2].3, "a line over max_bytes is truncated and flagged");
        assert!(!got[0].3);
    }

    #[test]
    fn a_never_ending_trace_stays_within_its_bounds() {
        let r =
            MultilineRules::new(None, Some(Preset::Java), DEFAULT_TIMEOUT, 50, 4096).expect("r");
        let mut m = Multiline::default();
        let (mut events, mut lines_out, mut cuts) = (0u64, 0usize, 0u64);
        let mut emit = |e: Event<'_>| {
            events += 1;
            lines_out += e.text.split('\n').count();
        };
        m.push(&r, "java.lang.Error: start", 1, 0, false, &mut emit);
        for n in 2..=100_000u64 {
            cuts += u64::from(m.push(&r, "\tat x.Y.z(Y.java:1)", n, 0, false, &mut emit));
            assert!(m.pending_bytes() <= 4096);
        }
        m.flush(&mut emit);
        assert_eq!(lines_out, 100_000, "every line is in an event");
        assert_eq!(events, 2000);
        assert_eq!(cuts, 1999);
    }

    #[test]
    fn settings_are_checked() {
        let t = DEFAULT_TIMEOUT;
        assert!(MultilineRules::new(None, None, t, 1, 1)
            .expect_err("none")
            .contains("set start"));
        assert!(MultilineRules::new(Some("x"), Some(Preset::Java), t, 1, 1)
            .expect_err("both")
            .contains("not both"));
        assert!(MultilineRules::new(Some("(x"), None, t, 1, 1)
            .expect_err("bad")
            .contains("invalid regular expression"));
    }

    #[test]
    fn preset_names_are_those_of_the_config_and_the_flag() {
        #[derive(serde::Deserialize)]
        struct M {
            preset: Preset,
        }
        let names = ["java", "python", "go", "ruby", "dotnet", "php", "nodejs"];
        for (name, preset) in names.iter().zip(Preset::ALL) {
            let m: M = toml::from_str(&format!("preset = {name:?}")).expect(name);
            assert_eq!(m.preset, preset);
            let flag = <Preset as clap::ValueEnum>::from_str(name, false).expect(name);
            assert_eq!(flag, preset);
        }
    }

    proptest! {
        /// Whatever the lines, every non-empty line ends up in exactly one event, in order.
        #[test]
        fn every_line_is_in_one_event(
            lines in proptest::collection::vec("[ a-cS\t]{0,6}", 0..60),
            max_lines in 1usize..6,
            max_bytes in 1usize..20,
            preset in proptest::option::of(proptest::sample::select(Preset::ALL.to_vec())),
        ) {
            let start = if preset.is_none() { Some("^S") } else { None };
            let r = MultilineRules::new(start, preset, DEFAULT_TIMEOUT, max_lines, max_bytes)
                .expect("r");
            let mut m = Multiline::default();
            let mut got: Vec<String> = Vec::new();
            let mut emit = |e: Event<'_>| got.push(e.text.to_string());
            for (i, l) in lines.iter().enumerate() {
                m.push(&r, l, i as u64, 0, false, &mut emit);
                prop_assert!(m.pending_bytes() <= max_bytes);
            }
            m.flush(&mut emit);
            let want: Vec<String> = lines
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| l[..floor_char_boundary(l, max_bytes)].to_string())
                .collect();
            let have: Vec<String> = got
                .iter()
                .flat_map(|e| e.split('\n').filter(|l| !l.is_empty()).map(str::to_string))
                .collect();
            prop_assert_eq!(have, want);
        }
    }
}
