//! When to speak while delivery fails: the "failure episode" of one output, from the first
//! failed request until the next accepted one.
//!
//! Without it an outage is silent (every retry logs at debug) or a flood (every retry at warn).
//! The rule: one WARN when delivery starts failing, then at most one a minute while it lasts
//! ("no request accepted for 3m; …"), then one INFO at recovery. Throttling (429/503 with
//! `Retry-After`) is the service pacing us, not a failure: it is only reported once it has gone
//! on for a minute. A WARN is never closer than a minute to the previous one, so a link that
//! fails one request in ten logs one WARN and one INFO a minute, not one per request.
//!
//! [`Episode`] only decides; the sender words and logs what it returns.

use std::time::Duration;

use tokio::time::Instant;

/// What to log now, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// Delivery is failing (WARN). `for_` is how long it has failed already (zero at once,
    /// longer when throttling or a recent WARN held it back).
    Started { for_: Duration },
    /// Still failing (WARN), at most once per interval.
    Ongoing { for_: Duration, failures: u64 },
    /// A request was accepted after a reported episode (INFO).
    Recovered { after: Duration, failures: u64 },
}

/// One output's failure episode. Shared by the output's sender tasks (behind the sender's lock).
#[derive(Debug, Clone)]
pub struct Episode {
    every: Duration,
    /// First failure of the current episode.
    since: Option<Instant>,
    /// Failed requests in the current episode.
    failures: u64,
    /// A failure other than throttling was seen in this episode.
    hard: bool,
    /// A WARN was logged for this episode.
    reported: bool,
    /// When the last WARN was logged, over every episode.
    last_warn: Option<Instant>,
}

impl Episode {
    /// `every`: the least time between two WARNs (a minute in the agent).
    pub fn new(every: Duration) -> Self {
        Episode {
            every,
            since: None,
            failures: 0,
            hard: false,
            reported: false,
            last_warn: None,
        }
    }

    /// A request failed. `throttled`: the service asked us to wait (429/503/408).
    pub fn failed(&mut self, now: Instant, throttled: bool) -> Option<Note> {
        let since = *self.since.get_or_insert(now);
        self.failures += 1;
        self.hard |= !throttled;
        let for_ = now.duration_since(since);
        let quiet_long_enough = self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= self.every);
        if !quiet_long_enough {
            return None;
        }
        if !self.reported {
            if !self.hard && for_ < self.every {
                return None;
            }
            self.reported = true;
            self.last_warn = Some(now);
            return Some(Note::Started { for_ });
        }
        self.last_warn = Some(now);
        Some(Note::Ongoing {
            for_,
            failures: self.failures,
        })
    }

    /// A request was accepted: the episode ends.
    pub fn accepted(&mut self, now: Instant) -> Option<Note> {
        let since = self.since.take()?;
        let note = self.reported.then(|| Note::Recovered {
            after: now.duration_since(since),
            failures: self.failures,
        });
        self.failures = 0;
        self.hard = false;
        self.reported = false;
        note
    }

    /// True while an episode is on (a request failed and none was accepted since).
    #[cfg(test)]
    pub fn failing(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Fail,
        Throttled,
        Ok,
    }

    const MIN: Duration = Duration::from_secs(60);

    /// A case: its name, events at seconds, and the notes expected at seconds.
    type Case = (&'static str, Vec<(u64, Ev)>, Vec<(u64, Note)>);

    /// Runs events at the given seconds (on the paused clock) and returns what was noted when.
    async fn play(events: &[(u64, Ev)]) -> Vec<(u64, Note)> {
        let start = Instant::now();
        let mut e = Episode::new(MIN);
        let mut out = Vec::new();
        for &(at, ev) in events {
            tokio::time::advance(start + Duration::from_secs(at) - Instant::now()).await;
            let now = Instant::now();
            let note = match ev {
                Ev::Fail => e.failed(now, false),
                Ev::Throttled => e.failed(now, true),
                Ev::Ok => e.accepted(now),
            };
            out.extend(note.map(|n| (at, n)));
        }
        out
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn the_table() {
        use Ev::*;
        let every_second = |from: u64, to: u64, ev: Ev| (from..to).map(move |t| (t, ev));
        let outage: Vec<(u64, Ev)> = every_second(0, 200, Fail).chain([(200, Ok)]).collect();
        let cases: Vec<Case> = vec![
            ("all well", vec![(0, Ok), (1, Ok)], vec![]),
            (
                "one failure, then recovery",
                vec![(0, Fail), (3, Ok)],
                vec![
                    (0, Note::Started { for_: secs(0) }),
                    (
                        3,
                        Note::Recovered {
                            after: secs(3),
                            failures: 1,
                        },
                    ),
                ],
            ),
            (
                "a 200 s outage: one WARN, one a minute, one INFO",
                outage,
                vec![
                    (0, Note::Started { for_: secs(0) }),
                    (
                        60,
                        Note::Ongoing {
                            for_: secs(60),
                            failures: 61,
                        },
                    ),
                    (
                        120,
                        Note::Ongoing {
                            for_: secs(120),
                            failures: 121,
                        },
                    ),
                    (
                        180,
                        Note::Ongoing {
                            for_: secs(180),
                            failures: 181,
                        },
                    ),
                    (
                        200,
                        Note::Recovered {
                            after: secs(200),
                            failures: 200,
                        },
                    ),
                ],
            ),
            (
                "throttling is only reported once it lasts a minute",
                vec![
                    (0, Throttled),
                    (30, Throttled),
                    (59, Throttled),
                    (60, Throttled),
                    (61, Ok),
                ],
                vec![
                    (60, Note::Started { for_: secs(60) }),
                    (
                        61,
                        Note::Recovered {
                            after: secs(61),
                            failures: 4,
                        },
                    ),
                ],
            ),
            (
                "short throttling is silent, recovery too",
                vec![(0, Throttled), (10, Throttled), (20, Ok)],
                vec![],
            ),
            (
                "a hard failure during throttling is reported at once",
                vec![(0, Throttled), (5, Fail), (9, Ok)],
                vec![
                    (5, Note::Started { for_: secs(5) }),
                    (
                        9,
                        Note::Recovered {
                            after: secs(9),
                            failures: 2,
                        },
                    ),
                ],
            ),
            (
                "flapping: at most one WARN a minute",
                vec![
                    (0, Fail),
                    (1, Ok),
                    (2, Fail),
                    (3, Ok),
                    (30, Fail),
                    (31, Ok),
                    (59, Fail),
                    (60, Fail),
                    (61, Ok),
                    (62, Fail),
                    (63, Ok),
                ],
                vec![
                    (0, Note::Started { for_: secs(0) }),
                    (
                        1,
                        Note::Recovered {
                            after: secs(1),
                            failures: 1,
                        },
                    ),
                    (60, Note::Started { for_: secs(1) }),
                    (
                        61,
                        Note::Recovered {
                            after: secs(2),
                            failures: 2,
                        },
                    ),
                ],
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(play(&events).await, want, "{name}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failing_is_true_from_the_first_failure_to_the_next_success() {
        let mut e = Episode::new(MIN);
        assert!(!e.failing());
        e.failed(Instant::now(), true);
        assert!(e.failing());
        e.accepted(Instant::now());
        assert!(!e.failing());
    }
}
