//! Logging: to stderr (systemd and container runtimes capture it), as text or JSON lines.

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
        .with_writer(std::io::stderr)
        // A closed stderr is not an error to report (on stderr, with a panic when that fails).
        .log_internal_errors(false)
        .with_target(false);
    // A second init (tests) keeps the first subscriber; nothing to do about it.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn is_bare_level(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "trace" | "debug" | "info" | "warn" | "error" | "off"
    )
}
