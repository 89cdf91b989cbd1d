//! Authentication end to end: the real `dcrship send` against ONE fake on 127.0.0.1 that plays
//! the identity endpoint (Entra's token endpoint, or IMDS) and the DCE at once, dispatching on
//! the request path. Every test accounts its rows: each one arrives exactly once, or none do.

mod common;

use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP: &str = "11112222-aaaa-bbbb-cccc-333344445555";
/// Holds characters a form must percent-encode (`+ / = & %` and a space), so a body that is not
/// encoded, or encoded twice, does not survive the fake's form parsing.
const SECRET: &str = "Zx8Q~s3cr3t+/=&% value.42";
const OID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
const ROWS: u64 = 300;

fn token_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

/// The path without the scheme and authority a request through a proxy carries
/// (`http://127.0.0.1:1234/x` → `/x`).
fn origin_path(r: &Req) -> &str {
    match r.path.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => &r.path,
    }
}

fn is_token_request(r: &Req) -> bool {
    origin_path(r) == token_path()
}

fn is_imds_request(r: &Req) -> bool {
    origin_path(r) == IMDS_PATH
}

/// The DCE half of a script: 204 for the expected bearer token, 401 for anything else.
fn dce(r: &Req, bearer: &str) -> Reply {
    if r.header("authorization") == Some(format!("Bearer {bearer}").as_str()) {
        Reply::Status(204)
    } else {
        Reply::Status(401)
    }
}

/// A loopback address nothing listens on.
async fn closed_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// `dcrship send` of `ROWS` NDJSON rows to the fake's DCE, JSON summary on stdout. The
/// managed-identity endpoint is a closed port unless a test points it elsewhere.
async fn send(fake: &Fake, dir: &tempfile::TempDir) -> tokio::process::Command {
    let file = write_file(dir.path(), "rows.ndjson", &ndjson(0..ROWS, 20));
    let mut c = dcrship();
    c.arg("send")
        .args(["--endpoint", &fake.url(), "--dcr", DCR, "--stream", STREAM])
        .args(["--no-progress", "--summary", "json"])
        .arg(&file)
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", closed_url().await);
    c
}

/// The service principal's variables, as `EnvironmentCredential` reads them, with Entra at the
/// fake.
fn service_principal(c: &mut tokio::process::Command, fake: &Fake) {
    c.env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_CLIENT_SECRET", SECRET)
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()));
}

/// The secret as it travels in the form body.
fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn jwt_payload(token: &str) -> &str {
    token.split('.').nth(1).expect("JWT payload")
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Client secret from the environment, with `--auth client-secret` or the default `auto`.
async fn client_secret_round_trip(auth: Option<&str>, log_level: &str) {
    let token = fake_jwt(OID);
    let t = token.clone();
    let fake = Fake::start(move |r| {
        if is_token_request(r) && r.method == "POST" {
            entra_token(&t, 3599)
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    // IMDS answers at the same fake: `auto` must not get that far when a secret is configured.
    c.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url());
    if let Some(auth) = auth {
        c.args(["--auth", auth]);
    }
    c.args(["--log-level", log_level]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let reqs = fake.requests();
    let tokens: Vec<&Req> = reqs.iter().filter(|r| is_token_request(r)).collect();
    assert_eq!(tokens.len(), 1, "one token serves the whole upload");
    let t = tokens[0];
    assert_eq!(
        t.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = t.form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], APP);
    assert_eq!(
        form["client_secret"], SECRET,
        "the secret survives encoding"
    );
    assert_eq!(form["scope"], "https://monitor.azure.com//.default");
    assert_eq!(form.len(), 4, "{form:?}");
    assert!(
        reqs.iter().all(|r| !is_imds_request(r)),
        "IMDS was asked although a client secret is configured"
    );
    let ingest = fake.ingest_requests();
    assert!(!ingest.is_empty());
    for r in &ingest {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert!(r.n > t.n, "rows went out before the token came");
    }
    assert_all_rows_once(&fake, &out, ROWS);

    let err = stderr(&out);
    assert!(
        err.contains("client-secret") && err.contains(OID),
        "names the source and the principal:\n{err}"
    );
    assert_no_leak(
        &out,
        &[SECRET, &form_encoded(SECRET), &token, jwt_payload(&token)],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_method_sends_rows_with_the_entra_token_and_leaks_nothing() {
    client_secret_round_trip(Some("client-secret"), "trace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_client_secret_from_the_environment_and_leaks_nothing() {
    client_secret_round_trip(None, "trace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_leaks_even_with_the_http_libraries_tracing() {
    // A full directive: hyper and reqwest log at trace too, not only dcrship.
    client_secret_round_trip(Some("client-secret"), "trace,dcrship=trace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usgov_cloud_asks_for_the_usgov_scope() {
    let token = fake_jwt(OID);
    let t = token.clone();
    let fake = Fake::start(move |r| {
        if is_token_request(r) {
            entra_token(&t, 3599)
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret", "--cloud", "usgov"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tokens: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(is_token_request)
        .collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].form()["scope"],
        "https://monitor.azure.us//.default"
    );
    assert_all_rows_once(&fake, &out, ROWS);
}

/// Entra refuses the secret (and, hostile, echoes it back in the description).
async fn refused_secret(auth: Option<&str>) -> (Fake, Output) {
    let fake = Fake::start(|r| {
        if is_token_request(r) {
            Reply::json(
                400,
                json!({
                    "error": "invalid_client",
                    "error_description": format!("AADSTS7000215: Invalid client secret provided: {SECRET}. Ensure the secret being sent in the request is the client secret value.\r\nTrace ID: 0f7c\r\nCorrelation ID: 9d2e\r\nTimestamp: 2026-01-01 00:00:00Z"),
                    "error_codes": [7000215],
                    "trace_id": "0f7c",
                    "correlation_id": "9d2e",
                }),
            )
        } else {
            Reply::Status(204)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    if let Some(auth) = auth {
        c.args(["--auth", auth]);
    }
    c.args(["--log-level", "trace"]);
    let out = run(c).await;
    (fake, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_secret_exits_3_naming_aadsts_and_never_the_secret() {
    let (fake, out) = refused_secret(Some("client-secret")).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(
        err.contains(APP),
        "names the client that was refused:\n{err}"
    );
    assert_eq!(summary(&out)["exit_code"], 3);
    assert_no_leak(&out, &[SECRET, &form_encoded(SECRET)]);
    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().filter(|r| is_token_request(r)).count(),
        1,
        "a 400 from Entra is not retried"
    );
    assert!(fake.ingest_requests().is_empty(), "nothing sent untokened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_a_refused_secret_and_no_imds_exits_3_with_both_reasons() {
    let (fake, out) = refused_secret(None).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("AADSTS7000215"), "{err}");
    assert!(
        err.contains("client-secret") && err.contains("managed-identity"),
        "{err}"
    );
    assert_no_leak(&out, &[SECRET, &form_encoded(SECRET)]);
    assert!(fake.ingest_requests().is_empty());
}

/// A fake IMDS (answers scripted by `imds`, called with the 0-based IMDS request number) and DCE.
async fn imds_fake(
    token: &str,
    imds: impl Fn(usize) -> Option<Reply> + Send + Sync + 'static,
) -> Fake {
    let t = token.to_string();
    let calls = counter();
    Fake::start(move |r| {
        if is_imds_request(r) && r.method == "GET" {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            imds(n).unwrap_or_else(|| identity_endpoint_token(&t))
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await
}

async fn managed_identity(fake: &Fake, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(fake, &dir).await;
    c.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url())
        .args(["--auth", "managed-identity"])
        .args(extra);
    run(c).await
}

fn imds_requests(fake: &Fake) -> Vec<Req> {
    fake.requests()
        .into_iter()
        .filter(is_imds_request)
        .collect()
}

fn assert_imds_request_shape(r: &Req) {
    assert_eq!(r.method, "GET");
    assert_eq!(r.header("metadata"), Some("true"));
    let q = r.query_map();
    assert_eq!(q["resource"], "https://monitor.azure.com");
    let version = q.get("api-version").expect("api-version");
    assert!(
        version.len() == 10 && version.as_str() >= "2018-02-01",
        "api-version {version}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_gets_the_imds_token_and_sends_with_it() {
    let token = fake_jwt(OID);
    let fake = imds_fake(&token, |_| None).await;
    let out = managed_identity(&fake, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imds = imds_requests(&fake);
    assert_eq!(imds.len(), 1, "one token serves the whole upload");
    assert_imds_request_shape(&imds[0]);
    assert_eq!(
        imds[0].query_map().len(),
        2,
        "system-assigned: no identity parameter: {}",
        imds[0].query
    );
    for r in fake.ingest_requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[&token, jwt_payload(&token)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_with_a_client_id_asks_for_that_identity() {
    let token = fake_jwt(OID);
    let fake = imds_fake(&token, |_| None).await;
    let out = managed_identity(&fake, &["--client-id", "my-uami-client-id"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imds = imds_requests(&fake);
    assert_eq!(imds.len(), 1);
    assert_imds_request_shape(&imds[0]);
    let q = imds[0].query_map();
    assert_eq!(q["client_id"], "my-uami-client-id");
    assert_eq!(q.len(), 3, "only one identity parameter: {}", imds[0].query);
    assert_all_rows_once(&fake, &out, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_retries_an_imds_500() {
    let token = fake_jwt(OID);
    let fake = imds_fake(&token, |n| {
        (n == 0).then(|| {
            Reply::json(
                500,
                json!({"error":"unknown_error","error_description":"IMDS is busy"}),
            )
        })
    })
    .await;
    let out = managed_identity(&fake, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imds = imds_requests(&fake);
    assert_eq!(
        imds.iter().map(|r| r.answered).collect::<Vec<_>>(),
        vec![Some(500), Some(200)]
    );
    for r in &imds {
        assert_imds_request_shape(r);
    }
    assert_all_rows_once(&fake, &out, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_no_identity_exits_3_quickly_saying_why_for_each_source() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = send(&fake, &dir).await; // IMDS: a closed port; no AZURE_* variables
    let started = Instant::now();
    let out = run(c).await;
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The client secret: which variables are missing.
    assert!(err.contains("client-secret"), "{err}");
    for var in ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"] {
        assert!(err.contains(var), "{var} not named:\n{err}");
    }
    // IMDS: tried, and not reachable.
    assert!(err.contains("managed-identity"), "{err}");
    assert!(err.contains("not reachable"), "{err}");
    let s = summary(&out);
    assert_eq!(s["exit_code"], 3);
    assert!(fake.requests().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_from_the_dce_fetches_a_new_token_and_delivers() {
    let first = fake_jwt("aaaaaaaa-0000-0000-0000-00000000000a");
    let second = fake_jwt("bbbbbbbb-0000-0000-0000-00000000000b");
    let (f, s) = (first.clone(), second.clone());
    let issued = counter();
    let fake = Fake::start(move |r| {
        if is_token_request(r) {
            match issued.fetch_add(1, Ordering::SeqCst) {
                0 => entra_token(&f, 3599),
                _ => entra_token(&s, 3599),
            }
        } else if r.is_ingest() {
            dce(r, &s)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret", "--concurrency", "1"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = fake.requests();
    let tokens: Vec<&Req> = reqs.iter().filter(|r| is_token_request(r)).collect();
    assert_eq!(tokens.len(), 2, "one token, then one more after the 401");
    let ingest = fake.ingest_requests();
    assert_eq!(ingest[0].answered, Some(401));
    assert_eq!(
        ingest[0].header("authorization"),
        Some(format!("Bearer {first}").as_str())
    );
    assert!(tokens[1].n > ingest[0].n, "refetched after the 401");
    for r in &ingest[1..] {
        assert_eq!(r.answered, Some(204));
    }
    assert_eq!(summary(&out)["requests"], ingest.len());
    assert_all_rows_once(&fake, &out, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_refetch_the_token_once() {
    let first = fake_jwt("aaaaaaaa-0000-0000-0000-00000000000a");
    let f = first.clone();
    let issued = counter();
    let fake = Fake::start(move |r| {
        if is_token_request(r) {
            match issued.fetch_add(1, Ordering::SeqCst) {
                0 => entra_token(&f, 3599),
                n => entra_token(&fake_jwt(&format!("later-{n}")), 3599),
            }
        } else if r.is_ingest() {
            if r.header("authorization") == Some(format!("Bearer {f}").as_str()) {
                // slow, so every worker has a request in flight with the first token
                Reply::Late(Duration::from_millis(300), Box::new(Reply::Status(401)))
            } else {
                Reply::Status(204)
            }
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret", "--concurrency", "4"])
        .args(["--max-request-bytes", "2000"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rejected = fake
        .ingest_requests()
        .iter()
        .filter(|r| r.answered == Some(401))
        .count();
    assert!(rejected >= 2, "several requests were in flight: {rejected}");
    assert_all_rows_once(&fake, &out, ROWS);
    let tokens = fake
        .requests()
        .iter()
        .filter(|r| is_token_request(r))
        .count();
    assert_eq!(
        tokens, 2,
        "{rejected} requests refused the same token; one new token answers them all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dce_that_always_answers_401_exits_3_with_a_cloud_hint() {
    let issued = counter();
    let fake = Fake::start(move |r| {
        if is_token_request(r) {
            let n = issued.fetch_add(1, Ordering::SeqCst);
            entra_token(&fake_jwt(&format!("00000000-0000-0000-0000-00000000000{n}")), 3599)
        } else if r.is_ingest() {
            Reply::json(
                401,
                json!({"error":{"code":"InvalidToken","message":"The audience of the token is not valid"}}),
            )
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret"]);
    let started = Instant::now();
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.contains("--cloud"), "{err}");
    assert!(err.contains("audience"), "{err}");
    let s = summary(&out);
    assert_eq!(s["exit_code"], 3);
    assert_eq!(s["rows_sent"], 0);
    assert_eq!(s["rows_unsent"], ROWS);
    assert!(fake.accepted().is_empty());
    let tokens = fake
        .requests()
        .iter()
        .filter(|r| is_token_request(r))
        .count();
    let refused = fake.ingest_requests().len();
    assert!(
        (2..=6).contains(&tokens),
        "a fresh token was tried, and the tries are bounded: {tokens} tokens"
    );
    assert!((2..=3 * 4).contains(&refused), "{refused} refused requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_names_the_principal_from_the_tokens_oid() {
    let token = fake_jwt(OID);
    let t = token.clone();
    let posts = counter();
    let fake = Fake::start(move |r| {
        if is_token_request(r) {
            entra_token(&t, 3599)
        } else if r.is_ingest() {
            if posts.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::json(
                    403,
                    json!({"error":{"code":"OperationFailed","message":"The authentication token provided does not have access to ingest data for the data collection rule"}}),
                )
            } else {
                dce(r, &t)
            }
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret", "--permission-grace", "1m"]);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("Monitoring Metrics Publisher"))
        .unwrap_or_else(|| panic!("no role hint:\n{err}"));
    assert!(line.contains(OID), "{line}");
    assert!(line.contains(DCR), "{line}");
    let ingest = fake.ingest_requests();
    assert_eq!(ingest[0].answered, Some(403));
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| is_token_request(r))
            .count(),
        1,
        "a 403 is not a token problem"
    );
    assert_all_rows_once(&fake, &out, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imds_never_goes_through_the_proxy_while_the_dce_does() {
    // The fake is also the HTTP proxy: a proxied request arrives with an absolute URI.
    let token = fake_jwt(OID);
    let fake = imds_fake(&token, |_| None).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    c.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url())
        .env("HTTP_PROXY", fake.url())
        .env("http_proxy", fake.url())
        .args(["--auth", "managed-identity"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imds = imds_requests(&fake);
    assert_eq!(imds.len(), 1);
    assert_eq!(imds[0].path, IMDS_PATH, "IMDS was asked through the proxy");
    for r in fake.ingest_requests() {
        assert!(
            r.path.starts_with("http://"),
            "the DCE was not asked through the proxy: {}",
            r.path
        );
    }
    assert_all_rows_once(&fake, &out, ROWS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_auth_configuration_exits_2() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    // (environment, arguments, what the message names)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 3] = [
        // plain http to a host that is not loopback: the same rule as --endpoint, which exits 2
        (
            &[
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_CLIENT_ID", APP),
                ("AZURE_CLIENT_SECRET", SECRET),
                ("AZURE_AUTHORITY_HOST", "http://login.example.com/"),
            ],
            &["--auth", "client-secret"],
            "authority host",
        ),
        // a tenant that cannot be a path segment
        (
            &[
                ("AZURE_TENANT_ID", "../evil"),
                ("AZURE_CLIENT_ID", APP),
                ("AZURE_CLIENT_SECRET", SECRET),
            ],
            &["--auth", "client-secret"],
            "tenant id",
        ),
        // a certificate file that is not there
        (
            &[
                ("AZURE_TENANT_ID", TENANT),
                ("AZURE_CLIENT_ID", APP),
                ("AZURE_CLIENT_CERTIFICATE_PATH", "/no/such/cert.pem"),
            ],
            &["--auth", "client-certificate"],
            "/no/such/cert.pem",
        ),
    ];
    for (env, args, want) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = send(&fake, &dir).await;
        c.envs(env.iter().copied()).args(args);
        let out = run(c).await;
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_no_leak(&out, &[SECRET]);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_and_the_dce_honour_http_proxy_and_no_proxy() {
    // The fake is also the HTTP proxy: a proxied request arrives with an absolute URI.
    for no_proxy in [None, Some("127.0.0.1")] {
        let token = fake_jwt(OID);
        let t = token.clone();
        let fake = Fake::start(move |r| {
            if is_token_request(r) {
                entra_token(&t, 3599)
            } else if r.is_ingest() {
                dce(r, &t)
            } else {
                Reply::Status(404)
            }
        })
        .await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = send(&fake, &dir).await;
        service_principal(&mut c, &fake);
        c.env("HTTP_PROXY", fake.url())
            .args(["--auth", "client-secret"]);
        if let Some(list) = no_proxy {
            c.env("NO_PROXY", list);
        }
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let proxied = no_proxy.is_none();
        let reqs = fake.requests();
        assert!(reqs.iter().any(is_token_request));
        for r in &reqs {
            assert_eq!(
                r.path.starts_with("http://"),
                proxied,
                "NO_PROXY={no_proxy:?}: {} {}",
                r.method,
                r.path
            );
        }
        assert_all_rows_once(&fake, &out, ROWS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_no_identity_names_every_source_of_the_contract() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(send(&fake, &dir).await).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    for lacked in [
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "IMDS",
        "Azure CLI",
    ] {
        assert!(err.contains(lacked), "{lacked} not mentioned:\n{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Azure as it really answers: IMDS updates, foreign metadata services, hostile answers
// ---------------------------------------------------------------------------------------------

/// An IMDS that answers 410 ("updating") to every token request for `window` from the first
/// one, then a token, as during a host update (Microsoft: up to 70 s).
async fn updating_imds(token: &str, window: Duration) -> Fake {
    let first: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let t = token.to_string();
    Fake::start(move |r| {
        if is_imds_request(r) && r.method == "GET" {
            let started = *first.lock().expect("first").get_or_insert(r.at);
            if r.at.duration_since(started) < window {
                Reply::json(410, json!({"error": "IMDS is updating"}))
            } else {
                identity_endpoint_token(&t)
            }
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await
}

/// Issue 12.2: a 60 s IMDS update (410s) is ridden out: the token comes after it and every row
/// arrives. (Before: retries ended after 44–52 s with exit 3.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_rides_out_a_minute_of_imds_410s() {
    let token = fake_jwt(OID);
    let fake = updating_imds(&token, Duration::from_secs(60)).await;
    let out = managed_identity(&fake, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let imds = imds_requests(&fake);
    let gone: Vec<&Req> = imds.iter().filter(|r| r.answered == Some(410)).collect();
    let ok = imds.last().expect("IMDS was asked");
    assert_eq!(ok.answered, Some(200));
    assert!(ok.at.duration_since(gone[0].at) >= Duration::from_secs(60));
    assert!(
        gone.len() >= 6,
        "more tries than the plain schedule: {}",
        gone.len()
    );
    assert_all_rows_once(&fake, &out, ROWS);
}

/// Issue 12.4: a metadata service that is not Azure's (404 to everything, as AWS's, GCP's and
/// OpenStack's answer an Azure path) is asked once, without the Metadata header, and `auto`
/// moves on saying what it found. (Before: six 404s retried over ~47 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_passes_a_foreign_metadata_service_after_one_question() {
    let fake = Fake::start(|_| Reply::Full {
        status: 404,
        headers: vec![("content-type".into(), "text/html".into())],
        body: "<html><body>404 - Not Found</body></html>".into(),
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    c.env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url());
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not Azure's IMDS") && err.contains("HTTP 404"),
        "{err}"
    );
    let asked = fake.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].header("metadata"), None);
}

/// Issue 11.7: an IMDS that accepts the request and never answers costs `send` its
/// `--retry-timeout`, not minutes: exit 3 saying so. (Before: 227 s with --retry-timeout 30s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_imds_fails_within_the_retry_timeout() {
    let fake = imds_fake("unused", |_| {
        Some(Reply::Late(
            Duration::from_secs(3600),
            Box::new(Reply::Status(500)),
        ))
    })
    .await;
    let started = Instant::now();
    let out = managed_identity(&fake, &["--retry-timeout", "8s"]).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no answer within the time allowed"), "{err}");
    // One attempt hung for the whole time: no retry was started past the deadline.
    assert_eq!(imds_requests(&fake).len(), 1);
    eprintln!("a hanging IMDS with --retry-timeout 8s failed after {took:?}");
    assert!(fake.ingest_requests().is_empty());
}

/// Issue 11.7: a 100 MB token answer is refused after 64 KiB, not buffered (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_imds_answer_is_refused_unread() {
    let huge = format!(
        r#"{{"access_token":"{}","expires_in":"3599"}}"#,
        "a".repeat(100 << 20)
    );
    let fake = imds_fake("unused", move |_| {
        Some(Reply::Full {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: huge.clone(),
        })
    })
    .await;
    let out = managed_identity(&fake, &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("larger than 64 KiB"),
        "{}",
        stderr(&out)
    );
    assert_eq!(imds_requests(&fake).len(), 1, "not retried");
}

/// Issue 11.7: tokens that arrive already expired (a clock hours off) are logged at WARN once
/// and not fetched for every request; the rows still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_warned_about_once_and_not_fetched_per_request() {
    let token = fake_jwt(OID);
    let t = token.clone();
    let fake = imds_fake(&token, move |_| {
        let past = jiff::Timestamp::now().as_second() - 600;
        Some(Reply::json(
            200,
            json!({"access_token": t, "expires_in": "0", "expires_on": past.to_string(),
                   "resource": "https://monitor.azure.com", "token_type": "Bearer"}),
        ))
    })
    .await;
    let out = managed_identity(
        &fake,
        &["--max-request-bytes", "2048", "--concurrency", "1"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let requests = fake.ingest_requests().len();
    assert!(requests >= 10, "{requests} requests");
    let fetches = imds_requests(&fake).len();
    assert!(
        fetches <= 2,
        "{fetches} token fetches for {requests} requests"
    );
    let err = stderr(&out);
    let warnings = err
        .lines()
        .filter(|l| l.contains("expired or about to expire"))
        .count();
    assert_eq!(warnings, 1, "{err}");
    assert_all_rows_once(&fake, &out, ROWS);
}

/// Issue 12.5: Entra's `Retry-After` is waited out in full (not cut to 8 s), and the upload
/// then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_entra_is_waited_out_as_long_as_it_asks() {
    let token = fake_jwt(OID);
    let t = token.clone();
    let calls = counter();
    let fake = Fake::start(move |r| {
        if is_token_request(r) && r.method == "POST" {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Reply::Full {
                    status: 429,
                    headers: vec![("retry-after".into(), "12".into())],
                    body: r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196: throttled"}"#.into(),
                }
            } else {
                entra_token(&t, 3599)
            }
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(&fake, &dir).await;
    service_principal(&mut c, &fake);
    c.args(["--auth", "client-secret"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let posts: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(is_token_request)
        .collect();
    assert_eq!(posts.len(), 2);
    let waited = posts[1].at.duration_since(posts[0].at);
    assert!(
        waited >= Duration::from_secs(12),
        "retried after {waited:?}"
    );
    assert_all_rows_once(&fake, &out, ROWS);
}
