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

/// One request as the scripted transport saw it.
#[derive(Debug, Clone)]
struct Call {
    at: Instant,
    rows: Vec<Value>,
    bearer: String,
    client_request_id: String,
}

/// A transport that answers from a script and records when each request came and what it held.
struct Scripted {
    script: Box<Script>,
    calls: StdMutex<Vec<Call>>,
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
            .map(|c| c.at.duration_since(self.start).as_secs())
            .collect()
    }

    fn count(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }
}

impl Transport for Scripted {
    fn post<'a>(
        &'a self,
        bearer: &'a str,
        gzip_body: Bytes,
        client_request_id: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, TransportError>> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&gzip_body[..])
            .read_to_end(&mut raw)
            .expect("gzip");
        let rows: Vec<Value> = serde_json::from_slice(&raw).expect("json array");
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(Call {
                at: Instant::now(),
                rows: rows.clone(),
                bearer: bearer.to_string(),
                client_request_id: client_request_id.to_string(),
            });
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
    /// (rows, raw bytes, gzip bytes) of spooled bodies accepted as stored.
    spooled: StdMutex<Vec<(usize, usize, usize)>>,
    /// (rows, reason) of refused bodies that could not be read back.
    unreadable: StdMutex<Vec<(usize, String)>>,
    rejected: StdMutex<Vec<(u64, String)>>,
    requests: AtomicUsize,
    retries: StdMutex<Vec<RetryReason>>,
}

impl DeliveryReport for Collect {
    fn accepted(&self, batch: &SealedBatch) {
        self.accepted
            .lock()
            .expect("lock")
            .extend(batch.origins().iter().map(|o| o.line));
    }
    fn accepted_spooled(&self, rows: usize, raw_bytes: usize, gzip_bytes: usize) {
        self.spooled
            .lock()
            .expect("lock")
            .push((rows, raw_bytes, gzip_bytes));
    }
    fn rejected(&self, batch: &RawBatch, reason: &str) {
        self.rejected
            .lock()
            .expect("lock")
            .extend(batch.rows().map(|(_, o)| (o.line, reason.to_string())));
    }
    fn unreadable(&self, rows: usize, reason: &str) {
        self.unreadable
            .lock()
            .expect("lock")
            .push((rows, reason.to_string()));
    }
    fn request(&self, _status: Option<u16>, _took: Duration) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
    fn retry(&self, reason: RetryReason, _detail: &str) {
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
        Target::new(
            "dcr-00000000000000000000000000000001",
            "Custom-Test_CL",
            "dce.eastus-1.ingest.monitor.azure.com",
        ),
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
    assert_eq!(r.transport.calls()[0].bearer, "tok-1");
}

/// A spooled body the service takes is sent as stored and never unsealed; one it refuses is
/// unsealed once and then treated as any batch (here split after a 413, both halves taken).
#[tokio::test(start_paused = true)]
async fn spooled_bodies_are_unsealed_only_when_refused() {
    let unsealed = AtomicUsize::new(0);
    let unseal = |g: Vec<u8>| {
        unsealed.fetch_add(1, Ordering::SeqCst);
        async move { crate::spool::unseal(g, Origin::default()) }
    };
    let r = rig(Policy::default(), Scripted::new(|_, _| status(204)));
    let b = batch(0..10);
    let (raw_bytes, gzip) = (b.raw_len(), b.gzip.clone());
    let gzip_bytes = gzip.len();
    let done = r
        .sender
        .deliver_spooled(gzip, 10, &mut Gzip::new(1), unseal)
        .await;
    assert_eq!(done, Ok(()));
    assert_eq!(unsealed.load(Ordering::SeqCst), 0);
    assert_eq!(
        *r.report.spooled.lock().expect("lock"),
        vec![(10, raw_bytes, gzip_bytes)]
    );
    assert!(accepted(&r).is_empty());

    let t = Scripted::new(|n, _| status(if n == 0 { 413 } else { 204 }));
    let r = rig(Policy::default(), t);
    let done = r
        .sender
        .deliver_spooled(batch(0..10).gzip, 10, &mut Gzip::new(1), unseal)
        .await;
    assert_eq!(done, Ok(()));
    assert_eq!(unsealed.load(Ordering::SeqCst), 1);
    let sizes: Vec<usize> = r.transport.calls().iter().map(|c| c.rows.len()).collect();
    assert_eq!(sizes, vec![10, 5, 5]);
    // Rows read back carry the spool's origin (line 0), one per row.
    assert_eq!(accepted(&r), vec![0; 10]);
    assert!(r.report.spooled.lock().expect("lock").is_empty());

    let t = Scripted::new(|_, _| status(413));
    let r = rig(Policy::default(), t);
    let broken = |_: Vec<u8>| async { Err::<RawBatch, _>("not gzip".to_string()) };
    let done = r
        .sender
        .deliver_spooled(batch(0..4).gzip, 4, &mut Gzip::new(1), broken)
        .await;
    assert_eq!(done, Ok(()));
    assert_eq!(
        *r.report.unreadable.lock().expect("lock"),
        vec![(4, "not gzip".to_string())]
    );
    assert!(accepted(&r).is_empty());
}

/// A batch sealed in this process is sent without its raw rows (bisection gunzips them back:
/// `a_bad_row_is_bisected_out_and_the_rest_delivered`). If its gzip were not its own (a bug),
/// the refused rows are reported lost, not silently dropped nor sent as other rows.
#[tokio::test(start_paused = true)]
async fn a_refused_batch_that_cannot_be_unsealed_is_reported_lost() {
    let r = rig(Policy::default(), Scripted::new(|_, _| status(413)));
    let mut b = batch(0..4);
    b.gzip = Gzip::new(1).compress(b"[{\"other\":1}]");
    deliver(&r, b).await.expect("ok");
    let lost = r.report.unreadable.lock().expect("lock").clone();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].0, 4);
    assert!(accepted(&r).is_empty() && r.report.rejected.lock().expect("lock").is_empty());
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
    assert!(
        err.to_string()
            .contains("does not know DCR dcr-00000000000000000000000000000001")
            && err.to_string().contains("DCR immutable id"),
        "{err}"
    );
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
            Err(TransportError::other("connection reset"))
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
    let t = Scripted::new(|n, rows| {
        if rows.iter().any(|r| r["bad"] == true) {
            Ok(Answer {
                status: 400,
                body: r#"{"error":{"code":"InvalidData","message":"row is bad"}}"#.into(),
                request_id: Some(format!("svc-{n}")),
                ..Answer::default()
            })
        } else {
            status(204)
        }
    });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..40)).await.expect("ok");
    // The 400 of the whole batch was checked once with an empty request (204: rows at fault).
    let calls = r.transport.calls();
    assert_eq!(
        calls[1].rows.len(),
        0,
        "the second request is the empty check"
    );
    assert_eq!(calls.iter().filter(|c| c.rows.is_empty()).count(), 1);
    let bad: Vec<u64> = (0..40).filter(|i| i % 7 == 3).collect();
    let good: Vec<u64> = (0..40).filter(|i| i % 7 != 3).collect();
    assert_eq!(accepted(&r), good);
    let mut rejected = r.report.rejected.lock().expect("lock").clone();
    rejected.sort();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), bad);
    // Each reason names the service's id of the refusing request and our id of it.
    for (line, reason) in &rejected {
        let call = calls
            .iter()
            .rposition(|c| c.rows.len() == 1 && c.rows[0]["n"] == *line)
            .expect("the row was sent alone");
        assert_eq!(
            *reason,
            format!(
                "HTTP 400: InvalidData: row is bad (x-ms-request-id: svc-{call}, x-ms-client-request-id: {})",
                calls[call].client_request_id
            )
        );
    }
    // Every request after the first was a strict part of the batch, none repeated a good row.
    let accepted_rows: usize = calls
        .iter()
        .filter(|c| !c.rows.iter().any(|r| r["bad"] == true))
        .map(|c| c.rows.len())
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
        .calls()
        .iter()
        .map(|c| c.bearer.clone())
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
        Target::new(dcr, "Custom-Test_CL", "dce.example"),
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

/// The service's answer to a stream the DCR does not declare.
fn invalid_stream() -> Result<Answer, TransportError> {
    Ok(Answer {
        status: 400,
        error_code: Some("InvalidStream".into()),
        request_id: Some("svc-1".into()),
        body: r#"{"error":{"code":"InvalidStream","message":"The stream Custom-Test_CL was not configured in the data collection rule with immutable Id dcr-00000000000000000000000000000001."}}"#.into(),
        ..Answer::default()
    })
}

#[tokio::test(start_paused = true)]
async fn a_wrong_stream_is_one_request_and_exit_4_not_a_bisect() {
    let r = rig(Policy::default(), Scripted::new(|_, _| invalid_stream()));
    let err = deliver(&r, batch(0..1000)).await.expect_err("fatal");
    assert_eq!(r.transport.count(), 1, "no bisect, no retry");
    assert_eq!(err.exit_code(), ExitCode::Permission);
    let msg = err.to_string();
    for words in [
        "stream Custom-Test_CL is not declared in DCR dcr-00000000000000000000000000000001",
        "streamDeclarations",
        "x-ms-request-id: svc-1",
        "x-ms-client-request-id: ",
    ] {
        assert!(msg.contains(words), "{words}: {msg}");
    }
    assert!(
        r.report.rejected.lock().expect("lock").is_empty(),
        "rows are not refused: they are unsent"
    );
}

#[tokio::test(start_paused = true)]
async fn the_agent_holds_the_rows_of_a_wrong_stream_and_delivers_them_once_it_is_fixed() {
    // The stream appears in the DCR after ten minutes.
    let start = Instant::now();
    let t = Scripted::new(move |_, _| {
        if start.elapsed() < Duration::from_secs(600) {
            invalid_stream()
        } else {
            status(204)
        }
    });
    let policy = Policy {
        retry_forever: true,
        ..Policy::default()
    };
    let r = rig(policy, t);
    deliver(&r, batch(0..50))
        .await
        .expect("delivered in the end");
    assert_eq!(accepted(&r), (0..50).collect::<Vec<_>>());
    assert!(r.report.rejected.lock().expect("lock").is_empty());
    let calls = r.transport.calls();
    assert!(calls.iter().all(|c| c.rows.len() == 50), "never split");
    let times = r.transport.times();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] <= 60),
        "retried at least once a minute: {times:?}"
    );
    assert!(calls.len() < 25, "slowly: {} tries in 10 min", calls.len());
    let retries = r.report.retries.lock().expect("lock").clone();
    assert!(retries.iter().all(|&x| x == RetryReason::Misconfigured));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_400_that_an_empty_request_also_gets_is_not_bisected() {
    let t = Scripted::new(|_, _| {
        Ok(Answer {
            status: 400,
            body: r#"{"error":{"code":"SomethingNew","message":"no"}}"#.into(),
            ..Answer::default()
        })
    });
    let r = rig(Policy::default(), t);
    let err = deliver(&r, batch(0..1000)).await.expect_err("fatal");
    assert_eq!(err.exit_code(), ExitCode::Permission);
    let calls = r.transport.calls();
    assert_eq!(calls.len(), 2, "the batch, then the empty check");
    assert_eq!(calls[1].rows.len(), 0);
    assert!(
        err.to_string().contains("an empty request gets 400 too"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn every_try_of_a_request_has_one_client_request_id() {
    let t = Scripted::new(|n, _| if n < 2 { status(500) } else { status(204) });
    let r = rig(Policy::default(), t);
    deliver(&r, batch(0..3)).await.expect("ok");
    deliver(&r, batch(3..6)).await.expect("ok");
    let ids: Vec<String> = r
        .transport
        .calls()
        .iter()
        .map(|c| c.client_request_id.clone())
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids[0] == ids[1] && ids[1] == ids[2], "{ids:?}");
    assert_ne!(ids[2], ids[3], "a new request, a new id");
    assert!(uuid::Uuid::parse_str(&ids[0]).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_403_from_a_dce_the_dcr_is_not_bound_to_says_so() {
    let t = Scripted::new(|_, _| {
        Ok(Answer {
            status: 403,
            body: r#"{"error":{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data for the data collection rule with immutable Id 'dcr-00000000000000000000000000000001' PipelineAccessResult: AccessGranted: False, IsRbacPresent: True, IsDcrDceBindingValid: False, DcrArmId: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app, Message: x"}}"#.into(),
            ..Answer::default()
        })
    });
    let policy = Policy {
        permission_grace: Duration::from_secs(60),
        ..Policy::default()
    };
    let r = rig(policy, t);
    let err = deliver(&r, batch(0..2)).await.expect_err("fatal");
    let msg = err.to_string();
    assert!(
        msg.contains("not associated with the endpoint dce.eastus-1.ingest.monitor.azure.com")
            && !msg.contains("Monitoring Metrics Publisher"),
        "{msg}"
    );
}

/// An endpoint that answers 204 after `delay`: a try whose timeout is shorter gets none.
struct Slow {
    delay: Duration,
    calls: StdMutex<Vec<(String, Duration)>>,
}

impl Transport for Slow {
    fn post<'a>(
        &'a self,
        _bearer: &'a str,
        _gzip_body: Bytes,
        client_request_id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, TransportError>> {
        self.calls
            .lock()
            .expect("lock")
            .push((client_request_id.to_string(), timeout));
        Box::pin(async move {
            if self.delay > timeout {
                tokio::time::sleep(timeout).await;
                return Err(TransportError::new(
                    crate::ingest::client::TransportErrorKind::Timeout,
                    "no answer within the request timeout",
                ));
            }
            tokio::time::sleep(self.delay).await;
            status(204)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_endpoint_gets_a_request_twice_not_once_per_timeout() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(65),
        calls: StdMutex::new(Vec::new()),
    });
    let tokens = Arc::new(Counting::default());
    let report = Arc::new(Collect::default());
    let sender = Sender::new(
        slow.clone(),
        TokenCache::new(Box::new(tokens)),
        Policy::default(),
        Target::new("dcr-1", "Custom-Test_CL", "dce.example"),
        report.clone(),
    );
    let started = Instant::now();
    sender
        .deliver(batch(0..5), &mut Gzip::new(1))
        .await
        .expect("delivered");
    let calls = slow.calls.lock().expect("lock").clone();
    assert_eq!(
        calls.iter().map(|c| c.1.as_secs()).collect::<Vec<_>>(),
        vec![60, 120],
        "the second try waits twice as long"
    );
    assert_eq!(calls[0].0, calls[1].0, "same x-ms-client-request-id");
    assert!(started.elapsed() < Duration::from_secs(200));
    assert_eq!(
        *report.retries.lock().expect("lock"),
        vec![RetryReason::Timeout]
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_grows_at_most_fourfold() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(100_000),
        calls: StdMutex::new(Vec::new()),
    });
    let policy = Policy {
        retry_timeout: Some(Duration::from_secs(3000)),
        ..Policy::default()
    };
    let sender = Sender::new(
        slow.clone(),
        TokenCache::new(Box::new(Arc::new(Counting::default()))),
        policy,
        Target::new("dcr-1", "Custom-Test_CL", "dce.example"),
        Arc::new(Collect::default()),
    );
    let err = sender
        .deliver(batch(0..1), &mut Gzip::new(1))
        .await
        .expect_err("gives up");
    assert_eq!(err.exit_code(), ExitCode::Transient);
    let timeouts: Vec<u64> = slow
        .calls
        .lock()
        .expect("lock")
        .iter()
        .map(|c| c.1.as_secs())
        .collect();
    assert_eq!(&timeouts[..4], &[60, 120, 240, 240], "{timeouts:?}");
    assert!(timeouts.iter().all(|&t| t <= 240));
}
