//! Retrying one token request: the schedule, the loop, and reading `Retry-After`.
//!
//! Token endpoints fail transiently (IMDS while the host updates, Entra under load), so every
//! HTTP source runs its single exchange through `with_retries`. The source decides what is
//! worth retrying; this module only waits and counts, and keeps the whole exchange within its
//! deadline: each attempt is cut off at the deadline, and no wait is begun that would end past it.
//! A `Retry-After` is honoured as asked (the service knows how long it needs); when it reaches
//! past the deadline, the request gives up now rather than ask early.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

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

/// The longest wait between two attempts while an outage window lasts (IMDS 410): short enough
/// to notice the end of a host update soon, long enough not to hammer it.
const WINDOW_STEP: Duration = Duration::from_secs(10);

impl RetrySchedule {
    /// The IMDS guidance: about 1 s doubling, capped at 60 s, six tries in all (≈ 30–60 s), which
    /// rides out an IMDS update (404) and throttling (429). A 410 is retried longer: see
    /// [`Outcome::RetryFor`].
    pub const IMDS: RetrySchedule = RetrySchedule {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        retries: 5,
    };

    /// Entra: a few quick retries (a `Retry-After` is waited out in full); a longer outage is
    /// the caller's retry policy's business.
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

    /// The longest wait while an outage window lasts.
    fn window_step(&self) -> Duration {
        self.max_delay.min(WINDOW_STEP)
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
    /// Worth another try, while the schedule lasts; `after` is the server's `Retry-After`.
    Retry {
        error: AuthError,
        after: Option<Duration>,
    },
    /// Worth trying again for at least `window` from the first such answer, however many tries
    /// that takes (IMDS answers 410 for up to 70 s while its host updates). Past the window it
    /// counts as [`Outcome::Retry`].
    RetryFor {
        error: AuthError,
        after: Option<Duration>,
        window: Duration,
    },
    /// Retrying cannot help (a refusal, a bad answer).
    Fail(AuthError),
}

/// What the loop does after a failed attempt. Pure, so the rules have a table test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    Wait(Duration),
    /// The schedule (and any window) is used up.
    GiveUp,
    /// The wait would end past the deadline (`asked`: the server asked for it).
    OutOfTime {
        wait: Duration,
        asked: bool,
    },
}

/// The state of one request's retries.
struct Retries<I> {
    delays: I,
    step: Duration,
    /// When the current outage window ends (set by the first `RetryFor`).
    window_end: Option<Instant>,
}

impl<I: Iterator<Item = Duration>> Retries<I> {
    /// The wait after a failure at `now`: the schedule's next delay, or within an outage window a
    /// delay of at most the window step; never shorter than the server's `Retry-After`.
    fn next(
        &mut self,
        now: Instant,
        after: Option<Duration>,
        window: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Next {
        if let Some(window) = window {
            self.window_end.get_or_insert(now + window);
        }
        let in_window = window.is_some() && self.window_end.is_some_and(|end| now < end);
        let scheduled = match (self.delays.next(), in_window) {
            (Some(delay), true) => delay.min(self.step),
            (None, true) => self.step,
            (Some(delay), false) => delay,
            (None, false) => return Next::GiveUp,
        };
        let wait = after.map_or(scheduled, |after| scheduled.max(after));
        match deadline {
            Some(deadline) if now + wait >= deadline => Next::OutOfTime {
                wait,
                asked: after.is_some_and(|a| a >= scheduled),
            },
            _ => Next::Wait(wait),
        }
    }
}

/// Runs `attempt` (called with the 1-based attempt number) until it is done, fails for good,
/// the schedule is used up, or `deadline` comes; then the last error is returned, noting how
/// many tries were made.
pub(crate) async fn with_retries<T, F, Fut>(
    source: &'static str,
    schedule: &RetrySchedule,
    deadline: Option<Instant>,
    mut attempt: F,
) -> Result<T, AuthError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Outcome<T>>,
{
    let started = Instant::now();
    let mut retries = Retries {
        delays: schedule.delays(),
        step: schedule.window_step(),
        window_end: None,
    };
    let mut last: Option<AuthError> = None;
    let mut tries = 0;
    loop {
        tries += 1;
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, attempt(tries)).await {
                Ok(outcome) => outcome,
                Err(_) => return Err(no_answer_in_time(source, last, tries, started)),
            },
            None => attempt(tries).await,
        };
        let (error, after, window) = match outcome {
            Outcome::Done(value) => return Ok(value),
            Outcome::Fail(error) => return Err(error),
            Outcome::Retry { error, after } => (error, after, None),
            Outcome::RetryFor {
                error,
                after,
                window,
            } => (error, after, Some(window)),
        };
        let delay = match retries.next(Instant::now(), after, window, deadline) {
            Next::Wait(delay) => delay,
            Next::GiveUp => return Err(gave_up(error, tries, None)),
            Next::OutOfTime { wait, asked } => {
                let why = if asked {
                    format!(
                        "the endpoint asked to wait {}s, past the time allowed for a token",
                        wait.as_secs()
                    )
                } else {
                    format!(
                        "the time allowed for a token ends before the next try ({}s in)",
                        started.elapsed().as_secs()
                    )
                };
                return Err(gave_up(error, tries, Some(why)));
            }
        };
        tracing::warn!(
            source,
            attempt = tries,
            delay_ms = delay.as_millis() as u64,
            error = %error,
            "token request failed; retrying"
        );
        last = Some(error);
        tokio::time::sleep(delay).await;
    }
}

/// The deadline came during an attempt: say so, with what the tries before it ran into.
fn no_answer_in_time(
    source_name: &'static str,
    last: Option<AuthError>,
    tries: usize,
    started: Instant,
) -> AuthError {
    let waited = started.elapsed().as_secs();
    let reason = match last {
        Some(AuthError::Unavailable { reason, .. } | AuthError::Failed { reason, .. }) => format!(
            "no answer within the time allowed for a token ({waited}s, {tries} attempts); \
             the try before said: {reason}"
        ),
        _ => format!(
            "no answer within the time allowed for a token ({waited}s): the endpoint accepted \
             the request but did not answer"
        ),
    };
    AuthError::Failed {
        source_name,
        reason,
    }
}

/// Adds "after N attempts" (and why it stopped, when not the plain end of the schedule) to the
/// last error, so a person knows retries already happened.
fn gave_up(error: AuthError, tries: usize, why: Option<String>) -> AuthError {
    if tries < 2 && why.is_none() {
        return error;
    }
    let note = |reason: String| match &why {
        Some(why) => format!("{reason} (gave up after {tries} attempts: {why})"),
        None => format!("{reason} (gave up after {tries} attempts)"),
    };
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
        let got = with_retries("test", &schedule, None, |n| {
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
        let got: Result<(), _> = with_retries("test", &schedule, None, |_| {
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
        let got: Result<(), _> = with_retries("test", &schedule, None, |_| {
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

    fn busy(after: Option<Duration>) -> Outcome<()> {
        Outcome::Retry {
            error: failed("busy"),
            after,
        }
    }

    #[test]
    fn next_wait_table() {
        let s = Duration::from_secs;
        let now = Instant::now();
        // (schedule delays left, Retry-After, window, deadline from now) → what comes next
        type Row = (Vec<u64>, Option<u64>, Option<u64>, Option<u64>, Next);
        let table: Vec<Row> = vec![
            (vec![2], None, None, None, Next::Wait(s(2))),
            (vec![], None, None, None, Next::GiveUp),
            // Retry-After is honoured in full, not cut to the schedule's cap.
            (vec![2], Some(30), None, None, Next::Wait(s(30))),
            (vec![2], Some(30), None, Some(600), Next::Wait(s(30))),
            (
                vec![2],
                Some(30),
                None,
                Some(20),
                Next::OutOfTime {
                    wait: s(30),
                    asked: true,
                },
            ),
            (
                vec![40],
                None,
                None,
                Some(20),
                Next::OutOfTime {
                    wait: s(40),
                    asked: false,
                },
            ),
            // Within an outage window: steps of at most 10 s, and on when the schedule is spent.
            (vec![32], None, Some(75), None, Next::Wait(s(10))),
            (vec![], None, Some(75), None, Next::Wait(s(10))),
            (vec![1], None, Some(75), None, Next::Wait(s(1))),
        ];
        for (delays, after, window, deadline, expected) in table {
            let mut r = Retries {
                delays: delays.clone().into_iter().map(s),
                step: WINDOW_STEP,
                window_end: None,
            };
            let got = r.next(
                now,
                after.map(s),
                window.map(s),
                deadline.map(|d| now + s(d)),
            );
            assert_eq!(
                got, expected,
                "{delays:?} {after:?} {window:?} {deadline:?}"
            );
        }
        // Past the window's end, the schedule rules again.
        let mut r = Retries {
            delays: std::iter::empty(),
            step: WINDOW_STEP,
            window_end: Some(now),
        };
        assert_eq!(r.next(now, None, Some(s(75)), None), Next::GiveUp);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_retry_after_is_waited_out_in_full() {
        let started = Instant::now();
        let times = std::sync::Mutex::new(Vec::new());
        let got = with_retries("test", &RetrySchedule::ENTRA, None, |n| {
            times.lock().unwrap().push(started.elapsed().as_secs());
            async move {
                if n < 3 {
                    busy(Some(Duration::from_secs(30)))
                } else {
                    Outcome::Done(())
                }
            }
        })
        .await;
        assert!(got.is_ok());
        assert_eq!(*times.lock().unwrap(), [0, 30, 60]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_past_the_deadline_gives_up_at_once() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(20);
        let got: Result<(), _> =
            with_retries("test", &RetrySchedule::ENTRA, Some(deadline), |_| async {
                busy(Some(Duration::from_secs(30)))
            })
            .await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        let message = got.unwrap_err().to_string();
        assert!(message.contains("asked to wait 30s"), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_window_is_ridden_out_for_75_seconds() {
        let started = Instant::now();
        let last = std::sync::Mutex::new(Duration::ZERO);
        let got: Result<(), _> = with_retries("test", &RetrySchedule::IMDS, None, |_| {
            *last.lock().unwrap() = started.elapsed();
            async {
                Outcome::RetryFor {
                    error: failed("HTTP 410"),
                    after: None,
                    window: Duration::from_secs(75),
                }
            }
        })
        .await;
        assert!(got.is_err());
        let last = *last.lock().unwrap();
        assert!(last >= Duration::from_secs(75), "last try at {last:?}");
        assert!(last <= Duration::from_secs(75 + 10), "last try at {last:?}");

        // And a window that ends in success in between: at 70 s, as Microsoft's guidance says.
        let started = Instant::now();
        let got = with_retries("test", &RetrySchedule::IMDS, None, |_| async move {
            if started.elapsed() < Duration::from_secs(70) {
                Outcome::RetryFor {
                    error: failed("HTTP 410"),
                    after: None,
                    window: Duration::from_secs(75),
                }
            } else {
                Outcome::Done(())
            }
        })
        .await;
        assert!(got.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_attempt_ends_at_the_deadline() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        let got: Result<(), _> = with_retries(
            "test",
            &RetrySchedule::IMDS,
            Some(deadline),
            |n| async move {
                if n == 1 {
                    busy(None)
                } else {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Outcome::Done(())
                }
            },
        )
        .await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        let message = got.unwrap_err().to_string();
        assert!(
            message.contains("no answer within the time allowed"),
            "{message}"
        );
        assert!(message.contains("busy"), "{message}");
    }
}
