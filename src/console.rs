//! Writing to stdout and stderr without panicking. `println!` panics when the stream is closed
//! (`dcrship send --summary json | true`, a terminal gone away); a command's output that nobody
//! reads is not a crash, so these ignore a broken pipe (and any other write error: there is
//! nowhere left to report it) and the command still exits with its own code.

use std::io::Write;

/// One line to stdout.
pub fn out(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// One line to stderr (above the progress bar, when one is shown).
pub fn err(line: &str) {
    above_progress(|| {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    });
}

/// The progress bar on stderr, while one is shown: lines written to stderr meanwhile (logs,
/// messages) go above it, or it would be drawn over them and lose its place.
static PROGRESS: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows `bar` (or none) as the one stderr lines are written above.
pub fn set_progress(bar: Option<indicatif::ProgressBar>) {
    *PROGRESS.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// Runs `write` with the progress bar, if any, taken off the screen and drawn again after.
fn above_progress<R>(write: impl FnOnce() -> R) -> R {
    // Cloned out of the lock: the bar's own lock is taken while drawing, never this one.
    let bar = PROGRESS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match bar {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Stderr for the log (`tracing_subscriber`'s writer): each event above the progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogStderr;

impl Write for LogStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        above_progress(|| std::io::stderr().lock().write(buf))
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        above_progress(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Whether colour may be used on a terminal: not when `NO_COLOR` is set to anything but ""
/// (<https://no-color.org>). `no_color` is the variable's value, if set.
pub fn color_allowed(no_color: Option<&std::ffi::OsStr>, is_terminal: bool) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// [`color_allowed`] for stderr and this process's environment.
pub fn stderr_color() -> bool {
    color_allowed(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )
}

/// One JSON line shaped like the log's (`--log-format json`): `timestamp`, `level`, `message`,
/// then `fields`, so a log pipeline reading dcrship's stderr sees nothing but JSON lines.
pub fn json_line(
    level: &str,
    message: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> String {
    let mut m = serde_json::Map::new();
    m.insert(
        "timestamp".into(),
        jiff::Timestamp::now().to_string().into(),
    );
    m.insert("level".into(), level.into());
    m.insert("message".into(), message.into());
    for (k, v) in fields {
        m.entry(k).or_insert(v);
    }
    serde_json::Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_turns_colour_off_when_set_to_anything() {
        let cases = [
            (None, true, true),
            (None, false, false),
            (Some(""), true, true),
            (Some("1"), true, false),
            (Some("0"), true, false),
            (Some("1"), false, false),
        ];
        for (var, tty, want) in cases {
            assert_eq!(
                color_allowed(var.map(OsStr::new), tty),
                want,
                "{var:?} {tty}"
            );
        }
    }

    #[test]
    fn json_lines_look_like_log_lines() {
        let mut fields = serde_json::Map::new();
        fields.insert("rows_sent".into(), 3.into());
        fields.insert("message".into(), "not this one".into());
        let line = json_line("INFO", "summary", fields);
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "summary", "the message is not overwritten");
        assert_eq!(v["rows_sent"], 3);
        v["timestamp"]
            .as_str()
            .expect("timestamp")
            .parse::<jiff::Timestamp>()
            .expect("RFC 3339");
        assert!(!line.contains('\n'));
    }
}
