//! Logging: to stderr (systemd and container runtimes capture it), as text or JSON lines.
//!
//! Under systemd, when stderr is the journal stream systemd connected (`JOURNAL_STREAM` holds
//! its device and inode), text lines start with the sd-daemon priority prefix (`<3>` error,
//! `<4>` warning, `<6>` info, `<7>` debug and trace) and carry no timestamp of their own (the
//! journal has one), so `journalctl -u dcrship -p warning` shows warnings and errors. JSON lines
//! are left as they are.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `level` (from `--log-level`) wins over `RUST_LOG`; with
/// neither, `info` for dcrship and `warn` for the libraries under it. A bare level
/// (`--log-level debug`) applies to dcrship only; full directives (`debug,hyper=trace`) are
/// taken as written.
pub fn init(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(l) if is_bare_level(l) => EnvFilter::try_new(format!("warn,dcrship={l}")).ok(),
        Some(l) => EnvFilter::try_new(l).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("warn,dcrship=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::console::LogStderr)
        // A closed stderr is not an error to report (on stderr, with a panic when that fails).
        .log_internal_errors(false)
        .with_target(false);
    // A second init (tests) keeps the first subscriber; nothing to do about it.
    let _ = match format {
        LogFormat::Text if stderr_is_the_journal() => builder
            .with_ansi(false)
            .event_format(JournalPrefix::default())
            .try_init(),
        LogFormat::Text => builder.with_ansi(crate::console::stderr_color()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn is_bare_level(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    )
}

/// The sd-daemon priority of a level (`<N>` at the start of a line written to the journal).
pub fn sd_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, in decimal) names the file `dev`/`ino`: systemd
/// sets it for a service whose stderr (or stdout) goes to the journal; a child whose stderr
/// was redirected elsewhere inherits the variable but not the stream.
pub fn journal_stream_is(var: Option<&str>, dev: u64, ino: u64) -> bool {
    let Some((d, i)) = var.and_then(|v| v.split_once(':')) else {
        return false;
    };
    d.parse() == Ok(dev) && i.parse() == Ok(ino)
}

fn stderr_is_the_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let meta = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    meta.is_ok_and(|m| journal_stream_is(Some(&var), m.dev(), m.ino()))
}

/// Text lines for the journal: `<N>` first, no timestamp.
struct JournalPrefix(Format<Full, ()>);

impl Default for JournalPrefix {
    fn default() -> Self {
        JournalPrefix(Format::default().without_time().with_target(false))
    }
}

impl<S, N> FormatEvent<S, N> for JournalPrefix
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", sd_priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn journal_stream_names_a_device_and_inode() {
        for (var, want) in [
            (Some("64768:12345"), true),
            (Some("64768:12346"), false),
            (Some("1:12345"), false),
            (Some("64768"), false),
            (Some(" 64768:12345"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(journal_stream_is(var, 64768, 12345), want, "{var:?}");
        }
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buf").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn journal_lines_start_with_the_priority_and_have_no_timestamp() {
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::TRACE)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .event_format(JournalPrefix::default())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(output = "app", "e");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
            tracing::trace!("t");
        });
        let text = String::from_utf8(buf.0.lock().expect("buf").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>ERROR e output=\"app\"",
                "<4> WARN w",
                "<6> INFO i",
                "<7>DEBUG d",
                "<7>TRACE t"
            ]
        );
    }
}
