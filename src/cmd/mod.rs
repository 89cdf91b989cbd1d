//! One file per command (`send`, `run`, `check`, `dcr`): each turns arguments into work using
//! the library's pieces; `settings` and `shaping` are the flag handling they share.

pub mod check;
pub mod dcr;
pub mod run;
pub mod send;
pub mod settings;
pub mod shaping;

use crate::exit::ExitCode;

/// A command failed before or instead of doing its work: a code and a one-line message that
/// names the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CmdError {
    pub code: ExitCode,
    pub message: String,
}

impl CmdError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CmdError {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CmdError::new(ExitCode::Usage, message)
    }
}
