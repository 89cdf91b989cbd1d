//! The policy against scripted answers, on tokio's paused clock: waits are measured exactly and
//! an hour of 403s takes milliseconds.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex as StdMutex;

use serde_json::Value;

use super::*;
use crate::auth::{AccessToken, AuthError, BoxFuture, TokenSource};
use crate::ingest::classify::Answer;
use crate::ingest::client::TransportError;
use crate::rows::Origin;
use crate::secret::Secret;

type Script = dyn Fn(usize, &[Value]) -> Result<Answer, TransportError> + Send + Sync;

/// A transport that answers from a script and records when each request came and what it held.
struct Scripted {
    script: Box<Script>,
    calls: StdMutex<Vec<(Instant, Vec<Value>, String)>>,
    start: Instant,
}

impl Scripted {
    fn new(
        f: impl Fn(usize, &[Value]) -> Result<Answer, TransportError> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Scripted {
            script: Box::new(f),
            calls: StdMutex::new(Vec::new()),
            start: Instant::now(),
        })
    }

    /// Seconds since the start at which each request came.
    fn times(&self) -> Vec<u64> {
        let calls = self.calls.lock().expect("lock");
        calls
            .iter()
            .map(|c| c.0.duration_since(self.start).as_secs())
            .collect()
    }

    fn count(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
}

impl Transport for Scripted {
    fn post<'a>(
        &'a self,
        bearer: &'a str,
        gzip_body: Bytes,
        _id: &'a str,
    ) -> BoxFuture<'a, Result<Answer, TransportError>> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gzip_body[..])
            .read_to_end(&mut raw)
            .expect("gzip");
        let rows: Vec<Value> = serde_json::from_slice(&raw).expect("json array");
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push((Instant::now(), rows.clone(), bearer.to_string()));
            calls.len() - 1
        };
        let answer = (self.script)(n, &rows);
        Box::pin(async move { answer })
    }
}

fn status(s: u16) -> Result<Answer, TransportError> {
    Ok(Answer {
        status: s,
        ..Answer::default()
    })
}

fn retry_after(s: u16, secs: &str) -> Result<Answer, TransportError> {
    Ok(Answer {
        status: s,
        retry_after: Some(secs.into()),
        ..Answer::default()
    })
}

/// Tokens `tok-1`, `tok-2`, … valid for an hour; counts fetches.
#[derive(Debug, Default)]
struct Counting(AtomicUsize);

impl TokenSource for Arc<Counting> {
    fn name(&self) -> &'static str {
        "test"
    }
    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            Ok(AccessToken {
                token: Secret::new(format!("tok-{n}")),
                expires_at: jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600),
            })
        })
    }
}

/// Collects what the sender reports.
#[derive(Default)]
struct Collect {
    accepted: StdMutex<Vec<u64>>,
    rejected: StdMutex<Vec<(u64, String)>>,
    requests: AtomicUsize,
    retries: StdMutex<Vec<RetryReason>>,
}

impl DeliveryReport for Collect {
    fn accepted(&self, batch: &RawBatch, _gzip: usize) {
        self.accepted
            .lock()
            .expect("lock")
            .extend(batch.rows().map(|(_, o)| o.line));
    }
    fn rejected(&self, batch: &RawBatch, reason: &str) {
        self.rejected
            .lock()
            .expect("lock")
            .extend(batch.rows().map(|(_, o)| (o.line, reason.to_string())));
    }
    fn request(&self, _status: Option<u16>) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
    fn retry(&self, reason: RetryReason) {
        self.retries.lock().expect("lock").push(reason);
    }
}

struct Rig {
    sender: Arc<Sender>,
    transport: Arc<Scripted>,
    report: Arc<Collect>,
    tokens: Arc<Counting>,
}

fn rig(policy: Policy, transport: Arc<Scripted>) -> Rig {
    let tokens = Arc::new(Counting::default());
    let report = Arc::new(Collect::default());
    let sender = Arc::new(Sender::new(
        transport.clone(),
        TokenCache::new(Box::new(tokens.clone())),
        policy,
        "dcr-00000000000000000000000000000001",
        report.clone(),
    ));
    Rig {
        sender,
        transport,
        report,
        tokens,
    }
}

fn batch(lines: std::ops::Range<u64>) -> SealedBatch {
    let rows: Vec<Vec<u8>> = lines
        .clone()
        .map(|i| format!(r#"{{"n":{i},"bad":{}}}"#, i % 7 == 3).into_bytes())
        .collect();
    let raw = RawBatch::from_rows(rows.iter().zip(lines).map(|(r, i)| {
        (
            &r[..],
            Origin {
                source: 0,
                line: i,
                offset: 0,
            },
        )
    }));
    let mut sealed = seal(raw, 1_000_000, &mut Gzip::new(1));
    sealed.batches.remove(0)
}

async fn deliver(r: &Rig, b: SealedBatch) -> Result<(), Fatal> {
    r.sender.deliver(b, &mut Gzip::new(1)).await
}

fn accepted(r: &Rig) -> Vec<u64> {
    let mut v = r.report.accepted.lock().expect("lock").clone();
    v.sort_unstable();
    v
}

#[tokio::test(start_paused = true)]
async fn accepted_on_the_first_try() {
    let r = rig(Policy::default(), Scripted::new(|_, _| status(204)));
    deliver(&r, batch(0..10)).await.expect("ok");
    assert_eq!(accepted(&r), (0..10).collect::<Vec<_>>());
    assert_eq!(r.transport.count(), 1);
    assert_eq!(r.transport.calls.lock().expect("lock")[0].2, "tok-1");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_exactly() {
    let t = Scripted::new(|n, _| {
        if n < 2 {
            retry_after(429, "7")
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..3)).await.expect("ok");
    assert_eq!(r.transport.times(), vec![0, 7, 14]);
    assert_eq!(accepted(&r).len(), 3);
    assert_eq!(
        *r.report.retries.lock().expect("lock"),
        vec![RetryReason::Throttled; 2]
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_every_sender_of_the_dcr() {
    let t = Scripted::new(|n, _| {
        if n == 0 {
            retry_after(429, "30")
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    let s1 = r.sender.clone();
    let first = tokio::spawn(async move { s1.deliver(batch(0..2), &mut Gzip::new(1)).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    // A second batch offered 5 s later must still wait for the 30 s pause.
    deliver(&r, batch(2..4)).await.expect("ok");
    first.await.expect("join").expect("ok");
    let times = r.transport.times();
    assert_eq!(times[0], 0);
    assert!(times[1..].iter().all(|&t| t >= 30), "{times:?}");
    assert_eq!(accepted(&r), vec![0, 1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn forbidden_until_the_grant_lands_then_delivered() {
    let t = Scripted::new(|n, _| if n < 4 { status(403) } else { status(204) });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..5)).await.expect("ok");
    assert_eq!(accepted(&r).len(), 5);
    // 2, 4, 8, 16 s of slow backoff
    assert_eq!(r.transport.times(), vec![0, 2, 6, 14, 30]);
}

#[tokio::test(start_paused = true)]
async fn forbidden_past_the_grace_window_is_fatal() {
    let t = Scripted::new(|_, _| status(403));
    let policy = Policy {
        permission_grace: Duration::from_secs(3600),
        ..Policy::default()
    };
    let r = rig(policy, t);
    let started = Instant::now();
    let err = deliver(&r, batch(0..5)).await.expect_err("fatal");
    assert!(
        matches!(&err, Fatal::Permission(m) if m.contains("Monitoring Metrics Publisher") && m.contains("dcr-00000000000000000000000000000001")),
        "{err}"
    );
    assert_eq!(err.exit_code(), ExitCode::Permission);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3600) && elapsed < Duration::from_secs(3600 + 61),
        "{elapsed:?}"
    );
    let times = r.transport.times();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] <= 60),
        "never more than a minute between tries"
    );
    assert!(accepted(&r).is_empty());
    assert!(
        r.report.rejected.lock().expect("lock").is_empty(),
        "rows are not refused: they are unsent"
    );
}

#[tokio::test(start_paused = true)]
async fn not_found_names_the_dcr_and_stream_to_check() {
    let policy = Policy {
        permission_grace: Duration::from_secs(60),
        ..Policy::default()
    };
    let r = rig(policy, Scripted::new(|_, _| status(404)));
    let err = deliver(&r, batch(0..1)).await.expect_err("fatal");
    assert!(err.to_string().contains("stream name"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_until_the_retry_timeout() {
    let policy = Policy {
        retry_timeout: Some(Duration::from_secs(600)),
        ..Policy::default()
    };
    let r = rig(policy, Scripted::new(|_, _| status(500)));
    let started = Instant::now();
    let err = deliver(&r, batch(0..2)).await.expect_err("fatal");
    assert_eq!(err.exit_code(), ExitCode::Transient);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(600) && elapsed <= Duration::from_secs(601),
        "{elapsed:?}"
    );
    let times = r.transport.times();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] <= 60),
        "backoff capped at 60 s: {times:?}"
    );
    assert!(times.len() >= 10, "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_gives_up_instead_of_sending_early() {
    let policy = Policy {
        retry_timeout: Some(Duration::from_secs(10)),
        ..Policy::default()
    };
    let r = rig(policy, Scripted::new(|_, _| retry_after(503, "60")));
    let err = deliver(&r, batch(0..1)).await.expect_err("fatal");
    assert_eq!(err.exit_code(), ExitCode::Transient);
    assert_eq!(r.transport.times(), vec![0]);
}

#[tokio::test(start_paused = true)]
async fn network_errors_are_retried() {
    let t = Scripted::new(|n, _| {
        if n < 3 {
            Err(TransportError("connection reset".into()))
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..4)).await.expect("ok");
    assert_eq!(accepted(&r).len(), 4);
    assert_eq!(
        *r.report.retries.lock().expect("lock"),
        vec![RetryReason::Network; 3]
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_row_is_bisected_out_and_the_rest_delivered() {
    let t = Scripted::new(|_, rows| {
        if rows.iter().any(|r| r["bad"] == true) {
            Ok(Answer {
                status: 400,
                body: r#"{"error":{"code":"InvalidData","message":"row is bad"}}"#.into(),
                ..Answer::default()
            })
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..40)).await.expect("ok");
    let bad: Vec<u64> = (0..40).filter(|i| i % 7 == 3).collect();
    let good: Vec<u64> = (0..40).filter(|i| i % 7 != 3).collect();
    assert_eq!(accepted(&r), good);
    let mut rejected = r.report.rejected.lock().expect("lock").clone();
    rejected.sort();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), bad);
    assert!(rejected
        .iter()
        .all(|r| r.1 == "HTTP 400: InvalidData: row is bad"));
    // Every request after the first was a strict part of the batch, none repeated a good row.
    let calls = r.transport.calls.lock().expect("lock");
    let accepted_rows: usize = calls
        .iter()
        .filter(|c| !c.1.iter().any(|r| r["bad"] == true))
        .map(|c| c.1.len())
        .sum();
    assert_eq!(accepted_rows, good.len(), "no good row sent twice");
}

#[tokio::test(start_paused = true)]
async fn too_large_is_split_until_it_fits() {
    let t = Scripted::new(|_, rows| {
        if rows.len() > 3 {
            status(413)
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..20)).await.expect("ok");
    assert_eq!(accepted(&r), (0..20).collect::<Vec<_>>());
    assert!(r.report.rejected.lock().expect("lock").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_single_row_too_large_for_the_service_is_refused() {
    let r = rig(Policy::default(), Scripted::new(|_, _| status(413)));
    deliver(&r, batch(0..2)).await.expect("ok");
    let rejected = r.report.rejected.lock().expect("lock").clone();
    assert_eq!(rejected.len(), 2);
    assert!(rejected[0].1.contains("413"));
}

#[tokio::test(start_paused = true)]
async fn unauthorized_fetches_a_new_token_once_then_gives_up() {
    let t = Scripted::new(|n, _| if n == 0 { status(401) } else { status(204) });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..1)).await.expect("ok");
    let tokens: Vec<String> = r
        .transport
        .calls
        .lock()
        .expect("lock")
        .iter()
        .map(|c| c.2.clone())
        .collect();
    assert_eq!(tokens, vec!["tok-1", "tok-2"]);

    let r = rig(Policy::default(), Scripted::new(|_, _| status(401)));
    let err = deliver(&r, batch(0..1)).await.expect_err("fatal");
    assert_eq!(err.exit_code(), ExitCode::NoToken);
    assert!(err.to_string().contains("--cloud"));
    assert_eq!(r.tokens.0.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn other_client_errors_refuse_the_batch_without_retrying() {
    let r = rig(Policy::default(), Scripted::new(|_, _| status(405)));
    deliver(&r, batch(0..3)).await.expect("ok");
    assert_eq!(r.report.rejected.lock().expect("lock").len(), 3);
    assert_eq!(r.transport.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_agent_never_gives_up_on_403_past_the_grace_window() {
    let t = Scripted::new(|n, _| if n < 80 { status(403) } else { status(204) });
    let policy = Policy {
        permission_grace: Duration::from_secs(600),
        retry_forever: true,
        ..Policy::default()
    };
    let r = rig(policy, t);
    deliver(&r, batch(0..3))
        .await
        .expect("delivered in the end");
    assert_eq!(accepted(&r).len(), 3);
    let times = r.transport.times();
    assert!(
        *times.last().unwrap_or(&0) > 600,
        "went on past the grace window: {times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_agent_retries_server_errors_forever() {
    let t = Scripted::new(|n, _| if n < 40 { status(500) } else { status(204) });
    let policy = Policy {
        retry_timeout: None,
        retry_forever: true,
        ..Policy::default()
    };
    let r = rig(policy, t);
    deliver(&r, batch(0..3))
        .await
        .expect("delivered in the end");
    assert_eq!(accepted(&r).len(), 3);
    assert!(r.transport.times().last().is_some_and(|&t| t > 1000));
}

/// A sender to `dcr` through `gate`, with its own transport and report.
fn rig_on(gate: &Arc<DcrGate>, dcr: &str, transport: Arc<Scripted>) -> Rig {
    let tokens = Arc::new(Counting::default());
    let report = Arc::new(Collect::default());
    let sender = Sender::new(
        transport.clone(),
        TokenCache::new(Box::new(tokens.clone())),
        Policy::default(),
        dcr,
        report.clone(),
    )
    .with_gate(gate.clone());
    Rig {
        sender: Arc::new(sender),
        transport,
        report,
        tokens,
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_on_one_output_pauses_the_other_outputs_of_the_dcr_only() {
    let dcr = "dcr-00000000000000000000000000000001";
    let other_dcr = "dcr-00000000000000000000000000000002";
    let gate = Arc::new(DcrGate::new(dcr, DcrLimits::default()));
    let other_gate = Arc::new(DcrGate::new(other_dcr, DcrLimits::default()));
    let throttled = rig_on(
        &gate,
        dcr,
        Scripted::new(|n, _| {
            if n == 0 {
                retry_after(429, "5")
            } else {
                status(204)
            }
        }),
    );
    let same_dcr = rig_on(&gate, dcr, Scripted::new(|_, _| status(204)));
    let other = rig_on(&other_gate, other_dcr, Scripted::new(|_, _| status(204)));

    let s = throttled.sender.clone();
    let first = tokio::spawn(async move { s.deliver(batch(0..2), &mut Gzip::new(1)).await });
    // Let the 429 land, then offer a batch to each of the other two senders 1 s later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (a, b) = tokio::join!(
        deliver(&same_dcr, batch(2..4)),
        deliver(&other, batch(4..6))
    );
    a.expect("ok");
    b.expect("ok");
    first.await.expect("join").expect("ok");

    assert_eq!(throttled.transport.times(), vec![0, 5]);
    assert_eq!(same_dcr.transport.times(), vec![5], "waited for the pause");
    assert_eq!(
        other.transport.times(),
        vec![1],
        "another DCR is not paused"
    );
    for r in [&throttled, &same_dcr, &other] {
        assert_eq!(accepted(r).len(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn the_request_limit_paces_every_attempt_retries_included() {
    // 60 a minute: one a second. The 500 costs a request like any other.
    let policy = Policy {
        limits: DcrLimits {
            requests_per_minute: 60,
            bytes_per_minute: 1 << 30,
        },
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
        ..Policy::default()
    };
    let t = Scripted::new(|n, _| if n == 1 { status(500) } else { status(204) });
    let r = rig(policy, t);
    for i in 0..4 {
        deliver(&r, batch(i * 2..i * 2 + 2)).await.expect("ok");
    }
    assert_eq!(r.transport.times(), vec![0, 1, 2, 3, 4]);
    assert_eq!(accepted(&r).len(), 8);
}
