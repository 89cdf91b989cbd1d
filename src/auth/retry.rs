//! Retrying one token request: the schedule, the loop, and reading `Retry-After`.
//!
//! Token endpoints fail transiently (IMDS while the host updates, Entra under load), so every
//! HTTP source runs its single exchange through `with_retries`. The source decides what is
//! worth retrying; this module only waits and counts.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::AuthError;

/// Delays between attempts: exponential from `first_delay`, capped at `max_delay`, with jitter
/// (each delay grows by up to 100%, so many agents do not retry in step), at most `retries` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
}

impl RetrySchedule {
    /// The IMDS guidance: about 1 s doubling, capped at 60 s, six tries in all (≈ 30–60 s), which
    /// rides out an IMDS update (404/410) and throttling (429).
    pub const IMDS: RetrySchedule = RetrySchedule {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        retries: 5,
    };

    /// Entra: a few quick retries; a longer outage is the caller's retry policy's business.
    pub const ENTRA: RetrySchedule = RetrySchedule {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        retries: 3,
    };

    /// App Service's identity endpoint: a few quick retries (a wrong resource or id also shows as
    /// a 500 there, which no amount of waiting fixes).
    pub const APP_SERVICE: RetrySchedule = RetrySchedule {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(8),
        retries: 3,
    };

    /// The delays, in order; the iterator ends when the retries are used up.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::new()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.retries)
            .with_jitter()
            // backon without its `std` feature seeds every generator alike; seed it ourselves.
            .with_jitter_seed(jitter_seed())
            .build()
    }
}

fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) ^ (u64::from(std::process::id()) << 32)
}

/// What one attempt came to.
pub(crate) enum Outcome<T> {
    Done(T),
    /// Worth another try; `after` is the server's `Retry-After`, when it sent one.
    Retry {
        error: AuthError,
        after: Option<Duration>,
    },
    /// Retrying cannot help (a refusal, a bad answer).
    Fail(AuthError),
}

/// Runs `attempt` (called with the 1-based attempt number) until it is done, fails for good,
/// or the schedule is used up; then the last error is returned, noting how many tries were made.
pub(crate) async fn with_retries<T, F, Fut>(
    source: &'static str,
    schedule: &RetrySchedule,
    mut attempt: F,
) -> Result<T, AuthError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Outcome<T>>,
{
    let mut delays = schedule.delays();
    let mut tries = 0;
    loop {
        tries += 1;
        let (error, after) = match attempt(tries).await {
            Outcome::Done(value) => return Ok(value),
            Outcome::Fail(error) => return Err(error),
            Outcome::Retry { error, after } => (error, after),
        };
        let Some(delay) = delays.next() else {
            return Err(gave_up(error, tries));
        };
        // Honour a longer Retry-After, within the schedule's cap.
        let delay = after.map_or(delay, |after| delay.max(after.min(schedule.max_delay)));
        tracing::warn!(
            source,
            attempt = tries,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "token request failed; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Adds "after N attempts" to the last error, so a person knows retries already happened.
fn gave_up(error: AuthError, tries: usize) -> AuthError {
    if tries < 2 {
        return error;
    }
    let note = |reason: String| format!("{reason} (gave up after {tries} attempts)");
    match error {
        AuthError::Unavailable {
            source_name,
            reason,
        } => AuthError::Unavailable {
            source_name,
            reason: note(reason),
        },
        AuthError::Failed {
            source_name,
            reason,
        } => AuthError::Failed {
            source_name,
            reason: note(reason),
        },
        other => other,
    }
}

/// `Retry-After` in seconds (the form token endpoints use); an HTTP date is ignored.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An error with its causes (`error sending request: connection refused`), since reqwest's own
/// message leaves out the part a person needs.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failed(reason: &str) -> AuthError {
        AuthError::Failed {
            source_name: "test",
            reason: reason.to_string(),
        }
    }

    #[test]
    fn imds_schedule_doubles_from_one_second_with_jitter() {
        let delays: Vec<Duration> = RetrySchedule::IMDS.delays().collect();
        assert_eq!(delays.len(), 5);
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_secs(1 << i);
            assert!(*d >= base && *d <= base * 2, "{i}: {d:?}");
        }
    }

    #[test]
    fn reads_retry_after_seconds_only() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_done_and_stops_on_fail() {
        let schedule = RetrySchedule {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            retries: 5,
        };
        let calls = AtomicUsize::new(0);
        let got = with_retries("test", &schedule, |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 3 {
                    Outcome::Retry {
                        error: failed("busy"),
                        after: None,
                    }
                } else {
                    Outcome::Done(n)
                }
            }
        })
        .await;
        assert_eq!(got.unwrap(), 3);

        let calls = AtomicUsize::new(0);
        let got: Result<(), _> = with_retries("test", &schedule, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Outcome::Fail(failed("no")) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_schedule_saying_so() {
        let schedule = RetrySchedule {
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            retries: 2,
        };
        let calls = AtomicUsize::new(0);
        let got: Result<(), _> = with_retries("test", &schedule, |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Outcome::Retry {
                    error: failed("busy"),
                    after: Some(Duration::from_secs(3600)),
                }
            }
        })
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let message = got.unwrap_err().to_string();
        assert!(message.contains("gave up after 3 attempts"), "{message}");
    }
}
