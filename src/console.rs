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

/// One line to stderr.
pub fn err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
