//! The process exit codes of the contract, and the one-line reason that goes with them.

/// Exit codes of `send`, `check` and fatal `run` errors (contract.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// every record accepted
    Ok = 0,
    /// internal error
    Internal = 1,
    /// usage or configuration error, unreadable input
    Usage = 2,
    /// no token could be obtained
    NoToken = 3,
    /// permission denied or not found (403/404) past the grace window, or the service refuses
    /// the request as a whole (400 `InvalidStream`: a stream the DCR does not declare)
    Permission = 4,
    /// some records rejected; the rest delivered
    Rejected = 5,
    /// gave up on transient failures past the retry timeout
    Transient = 6,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}
