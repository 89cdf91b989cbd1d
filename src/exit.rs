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
    /// interrupted (SIGINT or SIGTERM) before every record was read and delivered; 128 + 2, as
    /// shells report a command that Ctrl-C stopped
    Interrupted = 130,
}

impl ExitCode {
    const ALL: [ExitCode; 8] = [
        ExitCode::Ok,
        ExitCode::Internal,
        ExitCode::Usage,
        ExitCode::NoToken,
        ExitCode::Permission,
        ExitCode::Rejected,
        ExitCode::Transient,
        ExitCode::Interrupted,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The exit code whose number is `code` (a summary's `exit_code`).
    pub fn from_code(code: i32) -> Option<ExitCode> {
        ExitCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_nothing_else_does() {
        for c in ExitCode::ALL {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
        }
        let numbers: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 130]);
        for n in [-1, 7, 129, 131, 143] {
            assert_eq!(ExitCode::from_code(n), None, "{n}");
        }
    }
}
