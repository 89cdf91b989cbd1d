//! The systemd notification protocol (`sd_notify`): READY, RELOADING, STOPPING, STATUS and
//! WATCHDOG datagrams to `$NOTIFY_SOCKET`.
//!
//! Hand-written because the protocol is one datagram of `KEY=value` lines to a Unix socket,
//! and it is stable by systemd's own promise. Without `NOTIFY_SOCKET` (not under systemd, or
//! `Type=simple`) every call does nothing. A failure to notify never stops the agent: the
//! first one is logged as a warning, later ones at debug level, since the same cause (a
//! missing socket, `NotifyAccess=` too strict) would repeat on every watchdog tick.
//!
//! `RELOADING=1` is sent without `MONOTONIC_USEC=`: reading `CLOCK_MONOTONIC` as an absolute
//! value needs `clock_gettime`, which std does not expose. systemd accepts RELOADING=1 alone
//! (with `Type=notify-reload` it then cannot tell this reload from an earlier one, which does
//! not matter for a single reloading process).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The notification could not be sent, or `NOTIFY_SOCKET` could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET {0:?} is neither an absolute socket path nor an @abstract name")]
    BadAddress(String),
    #[error("NOTIFY_SOCKET {socket:?}: {source}")]
    Io { socket: String, source: io::Error },
}

/// Sends notifications to the service manager. Cheap to share (`&self` everywhere).
#[derive(Debug)]
pub struct Notifier {
    /// `None` when not running under a manager that listens.
    target: Option<Target>,
    watchdog: Option<Duration>,
    error_logged: AtomicBool,
}

#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// `NOTIFY_SOCKET` as written, for error messages.
    display: String,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. An address it cannot use
    /// is logged and gives a notifier that does nothing.
    pub fn from_env() -> Self {
        Self::from_values(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// A notifier that does nothing.
    pub fn disabled() -> Self {
        Notifier {
            target: None,
            watchdog: None,
            error_logged: AtomicBool::new(false),
        }
    }

    /// A notifier for this socket (`/path` or `@abstract`), without a watchdog, whatever the
    /// environment says; for tests and for callers that read the address elsewhere.
    pub fn with_socket(socket: impl AsRef<OsStr>) -> Result<Self, NotifyError> {
        let socket = socket.as_ref();
        Ok(Notifier {
            target: Some(Target {
                addr: parse_address(socket)?,
                display: socket.to_string_lossy().into_owned(),
            }),
            watchdog: None,
            error_logged: AtomicBool::new(false),
        })
    }

    fn from_values(
        socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        our_pid: u32,
    ) -> Self {
        let socket = match socket {
            Some(s) if !s.is_empty() => s,
            _ => return Self::disabled(),
        };
        match Self::with_socket(&socket) {
            Ok(mut n) => {
                n.watchdog = watchdog_interval_from(watchdog_usec, watchdog_pid, our_pid);
                n
            }
            Err(e) => {
                tracing::warn!("systemd notifications are off: {e}");
                Self::disabled()
            }
        }
    }

    /// True when notifications go somewhere.
    #[cfg(test)]
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Start-up is complete (`Type=notify`): inputs open, HTTP listener bound.
    pub fn ready(&self) {
        self.send("READY=1");
    }

    /// A reload (SIGHUP) began; send [`Notifier::ready`] when it is done.
    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    /// Shutdown began (draining).
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// One line for `systemctl status`. Line breaks become spaces: a newline would start a new
    /// `KEY=value` assignment, so text from elsewhere could otherwise forge `READY=1` or
    /// `MAINPID=`.
    pub fn status(&self, text: &str) {
        if self.target.is_none() {
            return;
        }
        let clean: String = text
            .chars()
            .map(|c| {
                if matches!(c, '\n' | '\r' | '\0') {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        self.send(&format!("STATUS={clean}"));
    }

    /// "Still alive", for `WatchdogSec=`; send every [`Notifier::watchdog_interval`].
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// How often to call [`Notifier::watchdog`]: half of `WATCHDOG_USEC` (as systemd
    /// recommends), when the watchdog is on and meant for this process (`WATCHDOG_PID` unset
    /// or ours). `None` otherwise, and when notifications are off.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=value` lines). Does nothing, successfully, when disabled.
    pub fn notify(&self, message: &str) -> Result<(), NotifyError> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let io_err = |source| NotifyError::Io {
            socket: target.display.clone(),
            source,
        };
        let sock = UnixDatagram::unbound().map_err(io_err)?;
        // Never stall a runtime thread: a full queue at the manager is an error to log, not a
        // reason to wait.
        sock.set_nonblocking(true).map_err(io_err)?;
        sock.send_to_addr(message.as_bytes(), &target.addr)
            .map_err(io_err)?;
        Ok(())
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.notify(message) {
            if self.error_logged.swap(true, Ordering::Relaxed) {
                tracing::debug!("systemd notification failed: {e}");
            } else {
                tracing::warn!(
                    "systemd notification failed (further failures are logged at debug level): {e}"
                );
            }
        }
    }
}

/// `/path` → a filesystem socket; `@name` → a Linux abstract socket. systemd also knows
/// `vsock:` addresses (for virtual machines), which std cannot reach.
fn parse_address(socket: &OsStr) -> Result<SocketAddr, NotifyError> {
    let bytes = socket.as_bytes();
    let bad = || NotifyError::BadAddress(socket.to_string_lossy().into_owned());
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(socket).map_err(|_| bad()),
        Some(b'@') => abstract_address(&bytes[1..]).ok_or_else(bad),
        _ => Err(bad()),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> Option<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> Option<SocketAddr> {
    None
}

/// Half of `WATCHDOG_USEC` when it is a positive number and `WATCHDOG_PID` is unset or
/// `our_pid`; never zero (a zero period would make a timer spin).
fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, our_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != our_pid {
            return None;
        }
    }
    Some(Duration::from_micros((usec / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket standing in for systemd, bound in a temp dir.
    fn manager() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (dir, path, sock)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).expect("utf-8")
    }

    #[test]
    fn sends_each_notification_to_a_path_socket() {
        let (_dir, path, sock) = manager();
        let n = Notifier::with_socket(&path).expect("notifier");
        assert!(n.is_enabled());
        n.ready();
        assert_eq!(recv(&sock), "READY=1");
        n.status("shipping: 3 outputs");
        assert_eq!(recv(&sock), "STATUS=shipping: 3 outputs");
        n.watchdog();
        assert_eq!(recv(&sock), "WATCHDOG=1");
        n.reloading();
        assert_eq!(recv(&sock), "RELOADING=1");
        n.stopping();
        assert_eq!(recv(&sock), "STOPPING=1");
        n.notify("STATUS=a\nREADY=1").expect("raw message");
        assert_eq!(recv(&sock), "STATUS=a\nREADY=1");
    }

    #[test]
    fn status_cannot_inject_other_assignments() {
        let (_dir, path, sock) = manager();
        let n = Notifier::with_socket(&path).expect("notifier");
        n.status("bad\nREADY=1\r\0x");
        assert_eq!(recv(&sock), "STATUS=bad READY=1  x");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "dcrship-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let n = Notifier::with_socket(format!("@{name}")).expect("notifier");
        n.ready();
        assert_eq!(recv(&sock), "READY=1");
    }

    #[test]
    fn errors_are_returned_by_notify_and_swallowed_by_the_helpers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = Notifier::with_socket(dir.path().join("nobody-listens")).expect("notifier");
        assert!(matches!(n.notify("READY=1"), Err(NotifyError::Io { .. })));
        n.ready();
        assert!(n.error_logged.load(Ordering::Relaxed));
        n.watchdog(); // second failure: debug level, still no panic
    }

    #[test]
    fn unset_or_unusable_notify_socket_disables() {
        let off = Notifier::from_values(None, Some("1000000"), None, 1);
        assert!(!off.is_enabled());
        assert_eq!(off.watchdog_interval(), None);
        off.ready();
        off.notify("READY=1").expect("no-op");
        assert!(!Notifier::from_values(Some("".into()), None, None, 1).is_enabled());
        assert!(!Notifier::from_values(Some("relative".into()), None, None, 1).is_enabled());
        assert!(!Notifier::from_values(Some("vsock:2:1".into()), None, None, 1).is_enabled());
        assert!(matches!(
            Notifier::with_socket("relative/path"),
            Err(NotifyError::BadAddress(_))
        ));
        let on = Notifier::from_values(
            Some("/run/systemd/notify".into()),
            Some("20000000"),
            None,
            7,
        );
        assert!(on.is_enabled());
        assert_eq!(on.watchdog_interval(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn watchdog_interval_is_half_of_usec_for_our_pid_only() {
        let f = watchdog_interval_from;
        assert_eq!(f(Some("30000000"), None, 42), Some(Duration::from_secs(15)));
        assert_eq!(
            f(Some("30000000"), Some("42"), 42),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            f(Some("30000000"), Some("43"), 42),
            None,
            "another process's watchdog"
        );
        assert_eq!(f(Some("30000000"), Some("x"), 42), None);
        assert_eq!(f(None, Some("42"), 42), None, "no watchdog");
        assert_eq!(f(Some("0"), None, 42), None);
        assert_eq!(f(Some("soon"), None, 42), None);
        assert_eq!(
            f(Some("1"), None, 42),
            Some(Duration::from_micros(1)),
            "never zero"
        );
    }
}
