//! Every identity source end to end: the real `dcrship` binary against ONE fake on 127.0.0.1 that
//! plays the identity endpoint (the Arc agent, App Service's endpoint, Entra) and the DCE at once.
//! Each test checks the token request as the platform documents it (azure-api.md §4), that the
//! DCE received `Authorization: Bearer <the token that source issued>`, that every row arrived
//! exactly once, and that the source's credential (challenge key, identity header, federated
//! token, private key) never shows in what dcrship prints, even at trace level.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const APP: &str = "11112222-aaaa-bbbb-cccc-333344445555";
const OID: &str = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0";
const IMDS_PATH: &str = "/metadata/identity/oauth2/token";
/// Where the fake App Service endpoint listens (any path: `IDENTITY_ENDPOINT` names it).
const APP_SERVICE_PATH: &str = "/msi/token";
/// App Service's rotated `IDENTITY_HEADER`: a secret.
const IDENTITY_HEADER: &str = "5e1a7c0d-identity-header-9f3b2a11c4d6";
/// A projected service-account token, as kubelet writes it (a JWT; contents are a credential).
const FEDERATED_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6Imt1YmUifQ.eyJhdWQiOlsiYXBpOi8vQXp1cmVBRFRva2VuRXhjaGFuZ2UiXSwic3ViIjoic3lzdGVtOnNlcnZpY2VhY2NvdW50OmRlZmF1bHQ6ZGNyc2hpcCJ9.ZmVkZXJhdGVkLXNpZ25hdHVyZS1kMG43LWw0M2s";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SCOPE: &str = "https://monitor.azure.com//.default";
const RESOURCE: &str = "https://monitor.azure.com";
const ROWS: u64 = 300;

fn b64url() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// An unsigned JWT for `oid` that expires in `lifetime` seconds (dcrship reads claims only).
fn jwt(oid: &str, lifetime: i64) -> String {
    let exp = jiff::Timestamp::now().as_second() + lifetime;
    format!(
        "{}.{}.{}",
        b64url().encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64url()
            .encode(json!({"oid": oid, "exp": exp, "aud": RESOURCE, "tid": TENANT}).to_string()),
        b64url().encode("sig-not-checked")
    )
}

fn jwt_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("JWT part");
    serde_json::from_slice(&b64url().decode(part).expect("base64url")).expect("JSON")
}

fn entra_path() -> String {
    format!("/{TENANT}/oauth2/v2.0/token")
}

fn is_entra(r: &Req) -> bool {
    r.method == "POST" && r.path == entra_path()
}

/// App Service's answer: `expires_on` in epoch seconds as a string, and no `expires_in`.
fn app_service_token(access_token: &str) -> Reply {
    let now = jiff::Timestamp::now().as_second();
    Reply::json(
        200,
        json!({
            "access_token": access_token,
            "expires_on": (now + 3600).to_string(),
            "resource": RESOURCE,
            "token_type": "Bearer",
            "client_id": APP,
        }),
    )
}

/// The bearer token a request carried.
fn bearer(r: &Req) -> Option<&str> {
    r.header("authorization")?.strip_prefix("Bearer ")
}

/// The DCE half of a script: 204 for the expected bearer token, 401 for anything else.
fn dce(r: &Req, token: &str) -> Reply {
    if bearer(r) == Some(token) {
        Reply::Status(204)
    } else {
        Reply::Status(401)
    }
}

/// `dcrship send` of `ROWS` NDJSON rows, JSON summary on stdout. With `to`, the DCE is given by
/// flags; without, by the config file the caller passes with `-c`.
fn send(dir: &Path, to: Option<&Fake>) -> tokio::process::Command {
    let file = write_file(dir, "rows.ndjson", &ndjson(0..ROWS, 20));
    let mut c = dcrship();
    c.arg("send");
    if let Some(fake) = to {
        c.args(["--endpoint", &fake.url(), "--dcr", DCR, "--stream", STREAM]);
    }
    c.args(["--no-progress", "--summary", "json"]).arg(&file);
    c
}

/// A config file with `[auth]` lines and one output `x` at the fake.
fn config_file(dir: &Path, auth: &str, fake: &Fake) -> PathBuf {
    write_file(
        dir,
        "agent.toml",
        &format!(
            "[auth]\n{auth}\n\n[outputs.x]\nendpoint = {:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\n",
            fake.url()
        ),
    )
}

/// Every ingestion request carried `token`, and came after the fake issued it (request `n`, when
/// the fake issued it).
fn assert_ingest_carried(fake: &Fake, token: &str, issued_at: Option<usize>) {
    let ingest = fake.ingest_requests();
    assert!(!ingest.is_empty(), "no ingestion request");
    for r in &ingest {
        assert_eq!(bearer(r), Some(token), "request {} {}", r.n, r.path);
        assert_eq!(r.answered, Some(204));
        assert!(
            issued_at.is_none_or(|n| r.n > n),
            "rows went out before the token came"
        );
    }
}

/// The line logging which source `auto` (or the configuration) chose.
fn chosen_line(out: &Output) -> String {
    let err = stderr(out);
    err.lines()
        .find(|l| l.contains("identity source chosen"))
        .unwrap_or_else(|| panic!("no `identity source chosen` line:\n{err}"))
        .to_string()
}

fn assert_chose(out: &Output, source: &str) {
    let line = chosen_line(out);
    assert!(
        line.contains(&format!("source=\"{source}\""))
            || line.contains(&format!("source={source} ")),
        "expected {source}: {line}"
    );
}

// ---------------------------------------------------------------------------------------------
// Azure Arc
// ---------------------------------------------------------------------------------------------

/// A tempdir laid out as an Arc server: `tokens/` is `arc_key_dir`; `other/` is not.
struct ArcHost {
    dir: tempfile::TempDir,
    /// The challenge file's contents: written by the fake when it answers the challenge.
    key: String,
}

impl ArcHost {
    fn new() -> ArcHost {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(dir.path().join("tokens")).expect("tokens");
        std::fs::create_dir(dir.path().join("other")).expect("other");
        ArcHost {
            dir,
            key: format!("arc-key-{}-d0n7l34k", uuid::Uuid::new_v4().simple()),
        }
    }

    fn key_dir(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// A config with `arc_key_dir` and `method` (none: `auto`), output `x` at the fake.
    fn config(&self, fake: &Fake, method: Option<&str>) -> PathBuf {
        let mut auth = format!("arc_key_dir = {:?}", self.key_dir().display().to_string());
        if let Some(m) = method {
            auth.push_str(&format!("\nmethod = {m:?}"));
        }
        config_file(self.dir.path(), &auth, fake)
    }
}

/// A fake Arc agent (and DCE): a GET without `Authorization` writes `key` to `realm` (as himds
/// does) and answers 401 `Basic realm=<realm>`; `Basic <key>` gets `token`; anything else 401.
async fn arc_fake(realm: PathBuf, key: String, token: String) -> Fake {
    Fake::start(move |r| {
        if r.path == IMDS_PATH && r.method == "GET" {
            match r.header("authorization") {
                None => {
                    std::fs::write(&realm, &key).expect("write the challenge file");
                    Reply::with_header(
                        401,
                        "WWW-Authenticate",
                        &format!("Basic realm={}", realm.display()),
                    )
                }
                Some(a) if a == format!("Basic {key}") => identity_endpoint_token(&token),
                Some(_) => Reply::Status(401),
            }
        } else if r.is_ingest() {
            dce(r, &token)
        } else {
            Reply::Status(404)
        }
    })
    .await
}

fn arc_env(c: &mut tokio::process::Command, fake: &Fake) {
    c.env("IDENTITY_ENDPOINT", format!("{}{IMDS_PATH}", fake.url()))
        .env("IMDS_ENDPOINT", fake.url());
}

fn arc_requests(fake: &Fake) -> Vec<Req> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == IMDS_PATH)
        .collect()
}

/// The Arc exchange with `--auth` (or `auto` from the config); returns what the agent and DCE
/// saw, the output, the token and the key.
async fn arc_round_trip(auth: Option<&str>) -> (Fake, Output, String, String) {
    let host = ArcHost::new();
    let token = jwt(OID, 3600);
    let realm = host.key_dir().join("abc.key");
    let fake = arc_fake(realm, host.key.clone(), token.clone()).await;
    let cfg = host.config(&fake, auth);
    let mut c = send(host.dir.path(), None);
    c.arg("-c")
        .arg(&cfg)
        .args(["--log-level", "trace,dcrship=trace"]);
    if let Some(auth) = auth {
        c.args(["--auth", auth]);
    }
    arc_env(&mut c, &fake);
    let out = run(c).await;
    (fake, out, token, host.key.clone())
}

/// 1. Arc: the challenge (401 + realm), the key file read from `arc_key_dir`, the second GET
///    answering it with `Basic <contents>` and `Metadata: true`; rows go with the agent's token,
///    and the key shows nowhere at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_answers_the_challenge_with_the_key_file_and_sends_with_the_token() {
    let (fake, out, token, key) = arc_round_trip(Some("arc")).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gets = arc_requests(&fake);
    assert_eq!(gets.len(), 2, "challenge, then the answer: {gets:?}");
    let (challenge, answer) = (&gets[0], &gets[1]);
    assert_eq!(challenge.answered, Some(401));
    assert_eq!(challenge.header("authorization"), None);
    assert_eq!(answer.answered, Some(200));
    assert_eq!(
        answer.header("authorization"),
        Some(format!("Basic {key}").as_str()),
        "the raw file contents, not re-encoded"
    );
    for r in &gets {
        assert_eq!(r.method, "GET");
        assert_eq!(r.header("metadata"), Some("true"));
        let q = r.query_map();
        assert_eq!(q["resource"], RESOURCE);
        assert_eq!(q["api-version"], "2020-06-01");
    }
    assert_ingest_carried(&fake, &token, Some(answer.n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[&key, &token]);
}

/// 1b. Arc: a challenge naming a file that is not directly inside `arc_key_dir` is refused
///     before it is read: exit 3 saying so, no answer to the challenge, nothing sent, and the
///     planted file's contents nowhere in the output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arc_refuses_a_challenge_file_outside_the_key_dir() {
    // (what the realm names, relative to the tempdir; a symlink to create first)
    let cases: [(&str, Option<(&str, &str)>); 5] = [
        ("other/abc.key", None),
        ("tokens/../other/abc.key", None),
        ("tokens/sub/abc.key", None),
        (
            "tokens/link.key",
            Some(("tokens/link.key", "other/abc.key")),
        ),
        // inside the directory, but not a .key file
        ("tokens/abc.txt", None),
    ];
    for (realm, link) in cases {
        let host = ArcHost::new();
        std::fs::create_dir(host.key_dir().join("sub")).expect("sub");
        if let Some((from, to)) = link {
            std::os::unix::fs::symlink(host.dir.path().join(to), host.dir.path().join(from))
                .expect("symlink");
        }
        let realm_path = host.dir.path().join(realm);
        let token = jwt(OID, 3600);
        let fake = arc_fake(realm_path.clone(), host.key.clone(), token.clone()).await;
        let cfg = host.config(&fake, Some("arc"));
        let mut c = send(host.dir.path(), None);
        c.arg("-c")
            .arg(&cfg)
            .args(["--auth", "arc", "--log-level", "trace,dcrship=trace"]);
        arc_env(&mut c, &fake);
        let out = run(c).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{realm}: {err}");
        assert!(
            err.contains("refusing"),
            "{realm}: the message says the path is refused:\n{err}"
        );
        if realm.ends_with(".key") {
            assert!(
                err.contains("arc_key_dir"),
                "{realm}: names the setting:\n{err}"
            );
        }
        assert!(
            err.contains(&realm_path.display().to_string()),
            "{realm}: names the path:\n{err}"
        );
        assert_eq!(summary(&out)["exit_code"], 3);
        assert!(
            fake.requests()
                .iter()
                .all(|r| r.header("authorization").is_none()),
            "{realm}: the challenge was answered"
        );
        assert!(fake.ingest_requests().is_empty(), "{realm}: rows were sent");
        assert_no_leak(&out, &[&host.key]);
    }
}

// ---------------------------------------------------------------------------------------------
// App Service
// ---------------------------------------------------------------------------------------------

async fn app_service_round_trip(auth: Option<&str>) -> (Fake, Output, String) {
    let token = jwt(OID, 3600);
    let t = token.clone();
    let fake = Fake::start(move |r| {
        if r.path == APP_SERVICE_PATH && r.method == "GET" {
            if r.header("x-identity-header") == Some(IDENTITY_HEADER) {
                app_service_token(&t)
            } else {
                Reply::json(400, json!({"statusCode": 400, "message": "bad header"}))
            }
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(dir.path(), Some(&fake));
    c.env(
        "IDENTITY_ENDPOINT",
        format!("{}{APP_SERVICE_PATH}", fake.url()),
    )
    .env("IDENTITY_HEADER", IDENTITY_HEADER)
    .args(["--log-level", "trace,dcrship=trace"]);
    if let Some(auth) = auth {
        c.args(["--auth", auth]);
    }
    let out = run(c).await;
    (fake, out, token)
}

fn app_service_requests(fake: &Fake) -> Vec<Req> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path == APP_SERVICE_PATH)
        .collect()
}

/// 2. App Service: one GET with `X-IDENTITY-HEADER`, `api-version=2019-08-01` and the resource;
///    the string `expires_on` is understood; the identity header never shows at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_service_sends_the_identity_header_and_uses_the_token() {
    let (fake, out, token) = app_service_round_trip(Some("app-service")).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let gets = app_service_requests(&fake);
    assert_eq!(gets.len(), 1, "one token serves the whole upload");
    let g = &gets[0];
    assert_eq!(g.method, "GET");
    assert_eq!(g.header("x-identity-header"), Some(IDENTITY_HEADER));
    let q = g.query_map();
    assert_eq!(q["api-version"], "2019-08-01");
    assert_eq!(q["resource"], RESOURCE);
    assert_eq!(
        q.len(),
        2,
        "system-assigned: no identity parameter: {}",
        g.query
    );
    assert_ingest_carried(&fake, &token, Some(g.n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[IDENTITY_HEADER, &token]);
}

// ---------------------------------------------------------------------------------------------
// Workload identity
// ---------------------------------------------------------------------------------------------

/// Entra at the fake for a service principal: every POST to the token URL gets `token`.
async fn entra_fake(token: &str) -> Fake {
    let t = token.to_string();
    Fake::start(move |r| {
        if is_entra(r) {
            entra_token(&t, 3599)
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await
}

fn entra_requests(fake: &Fake) -> Vec<Req> {
    fake.requests().into_iter().filter(is_entra).collect()
}

/// The variables the workload identity webhook injects, with Entra at the fake.
fn workload_env(c: &mut tokio::process::Command, fake: &Fake, token_file: &Path) {
    c.env("AZURE_FEDERATED_TOKEN_FILE", token_file)
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()));
}

async fn workload_round_trip(auth: Option<&str>) -> (Fake, Output, String) {
    let token = jwt(OID, 3600);
    let fake = entra_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    // kubelet writes the token with a trailing newline
    let file = write_file(
        dir.path(),
        "azure-identity-token",
        &format!("{FEDERATED_TOKEN}\n"),
    );
    let mut c = send(dir.path(), Some(&fake));
    workload_env(&mut c, &fake, &file);
    c.args(["--log-level", "trace,dcrship=trace"]);
    if let Some(auth) = auth {
        c.args(["--auth", auth]);
    }
    let out = run(c).await;
    (fake, out, token)
}

fn assert_workload_form(r: &Req) {
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = r.form();
    assert_eq!(form["client_assertion"], FEDERATED_TOKEN);
    assert_eq!(form["client_assertion_type"], JWT_BEARER);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], SCOPE);
    assert_eq!(form["client_id"], APP);
    assert!(!form.contains_key("client_secret"), "{form:?}");
}

/// 3. Workload identity: the federated token file's contents go as `client_assertion` to
///    `/<tenant>/oauth2/v2.0/token`; rows go with Entra's token; the file's contents never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_exchanges_the_federated_token_and_sends_with_it() {
    let (fake, out, token) = workload_round_trip(Some("workload-identity")).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1, "one token serves the whole upload");
    assert_workload_form(&posts[0]);
    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    let signature = FEDERATED_TOKEN.rsplit('.').next().expect("signature");
    assert_no_leak(&out, &[FEDERATED_TOKEN, signature, &token]);
}

// ---------------------------------------------------------------------------------------------
// Client certificate
// ---------------------------------------------------------------------------------------------

/// The DER of the first certificate in a PEM.
fn cert_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("base64 certificate")
}

/// 4. Client certificate: the POST carries a PS256 assertion, signed by the certificate's key
///    (checked with its public key), with `x5t#S256` = the certificate's SHA-256 thumbprint,
///    `aud` = the token URL, `iss` = `sub` = the client id and at most 10 minutes of validity;
///    rows go with Entra's token; no line of the private key shows at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_signs_a_ps256_assertion_and_sends_with_the_token() {
    let token = jwt(OID, 3600);
    let fake = entra_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    let pem = write_file(dir.path(), "sp.pem", &[CERT_PEM, KEY_PKCS8_PEM].concat());
    let mut c = send(dir.path(), Some(&fake));
    c.env("AZURE_CLIENT_CERTIFICATE_PATH", &pem)
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()))
        .args([
            "--auth",
            "client-certificate",
            "--log-level",
            "trace,dcrship=trace",
        ]);
    let before = jiff::Timestamp::now().as_second();
    let out = run(c).await;
    let after = jiff::Timestamp::now().as_second();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1, "one token serves the whole upload");
    let form = posts[0].form();
    assert_eq!(form["client_assertion_type"], JWT_BEARER);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], SCOPE);
    assert_eq!(form["client_id"], APP);
    assert!(!form.contains_key("client_secret"), "{form:?}");
    let assertion = &form["client_assertion"];

    let header = jwt_part(assertion, 0);
    assert_eq!(header["alg"], "PS256", "{header}");
    let thumbprint = b64url().encode(ring::digest::digest(
        &ring::digest::SHA256,
        &cert_der(CERT_PEM),
    ));
    assert_eq!(header["x5t#S256"], thumbprint.as_str(), "{header}");

    let claims = jwt_part(assertion, 1);
    assert_eq!(
        claims["aud"],
        format!("{}{}", fake.url(), entra_path()).as_str(),
        "{claims}"
    );
    assert_eq!(claims["iss"], APP);
    assert_eq!(claims["sub"], APP);
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let nbf = claims["nbf"].as_i64().expect("nbf");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(exp > nbf && exp - nbf <= 600, "{claims}");
    assert!(
        (before - 5..=after + 5).contains(&nbf),
        "nbf {nbf} is now ({before}..{after})"
    );

    let (signing_input, signature) = assertion.rsplit_once('.').expect("signed JWT");
    let public = base64::engine::general_purpose::STANDARD
        .decode(PUBLIC_KEY_DER_B64)
        .expect("public key");
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PSS_2048_8192_SHA256, &public)
        .verify(
            signing_input.as_bytes(),
            &b64url().decode(signature).expect("signature"),
        )
        .expect("the assertion is signed RSA-PSS SHA-256 by the certificate's key");

    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    let key_lines: Vec<&str> = KEY_PKCS8_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut secrets = key_lines.clone();
    secrets.push(&token);
    assert_no_leak(&out, &secrets);
    assert!(!stderr(&out).contains("PRIVATE KEY"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Azure CLI
// ---------------------------------------------------------------------------------------------

/// 5. Azure CLI: `az account get-access-token --resource https://monitor.azure.com …` from `PATH`
///    (a fake `az` that refuses any other arguments); rows go with the token it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cli_token_from_az_on_the_path_is_used() {
    use std::os::unix::fs::PermissionsExt;
    let token = jwt(OID, 3600);
    let t = token.clone();
    let fake = Fake::start(move |r| {
        if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let args_log = dir.path().join("az-args.log");
    let expires_on = jiff::Timestamp::now().as_second() + 3600;
    let script = format!(
        "#!/bin/sh\n\
         printf '%s\\n' \"$*\" >> '{log}'\n\
         if [ \"$1\" = account ] && [ \"$2\" = get-access-token ] && [ \"$3\" = --resource ] \
            && [ \"$4\" = https://monitor.azure.com ]; then\n\
           printf '%s\\n' '{{\"accessToken\":\"{token}\",\"expires_on\":{expires_on},\"tokenType\":\"Bearer\"}}'\n\
           exit 0\n\
         fi\n\
         echo \"ERROR: unexpected arguments: $*\" >&2\n\
         exit 1\n",
        log = args_log.display(),
    );
    let az = bin.join("az");
    std::fs::write(&az, script).expect("write az");
    std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut c = send(dir.path(), Some(&fake));
    c.env(
        "PATH",
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    )
    .args(["--auth", "azure-cli", "--log-level", "trace,dcrship=trace"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let calls = std::fs::read_to_string(&args_log).expect("az was run");
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls.len(),
        1,
        "one token serves the whole upload: {calls:?}"
    );
    assert!(
        calls[0].starts_with("account get-access-token --resource https://monitor.azure.com"),
        "{calls:?}"
    );
    assert_ingest_carried(&fake, &token, None);
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[&token]);
}

// ---------------------------------------------------------------------------------------------
// auto
// ---------------------------------------------------------------------------------------------

/// 6a. `auto` with only App Service's variables chooses app-service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chooses_app_service_from_its_variables() {
    let (fake, out, token) = app_service_round_trip(None).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "app-service");
    let gets = app_service_requests(&fake);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].header("x-identity-header"), Some(IDENTITY_HEADER));
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path == APP_SERVICE_PATH || r.is_ingest()),
        "only App Service's endpoint was asked for a token"
    );
    assert_ingest_carried(&fake, &token, Some(gets[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[IDENTITY_HEADER]);
}

/// 6b. `auto` with only the workload identity variables chooses workload-identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chooses_workload_identity_from_its_variables() {
    let (fake, out, token) = workload_round_trip(None).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "workload-identity");
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1);
    assert_workload_form(&posts[0]);
    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[FEDERATED_TOKEN]);
}

/// 6c. `auto` with `IDENTITY_ENDPOINT` + `IMDS_ENDPOINT` (no `IDENTITY_HEADER`) chooses arc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chooses_arc_from_its_variables() {
    let (fake, out, token, key) = arc_round_trip(None).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "arc");
    let gets = arc_requests(&fake);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(
        gets[1].header("authorization"),
        Some(format!("Basic {key}").as_str())
    );
    assert_ingest_carried(&fake, &token, Some(gets[1].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[&key]);
}

// ---------------------------------------------------------------------------------------------
// Refresh while streaming
// ---------------------------------------------------------------------------------------------

/// 7. `dcrship run --stdin` with 8-second tokens, a row every 100 ms for 20 s: tokens are
///    renewed while rows stream, no request ever carries a token 8 s old or older (the DCE
///    answers such a request 401, as the service would), every row arrives once, and the
///    agent exits 0 when stdin ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_while_rows_stream() {
    const LIFETIME: Duration = Duration::from_secs(8);
    const STREAMED: u64 = 200;
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let (iss, cnt) = (issued.clone(), count.clone());
    let fake = Fake::start(move |r| {
        if is_entra(r) {
            let n = cnt.fetch_add(1, Ordering::SeqCst);
            let token = jwt(&format!("00000000-0000-0000-0000-{n:012}"), 8);
            iss.lock().expect("issued").insert(token.clone(), r.at);
            entra_token(&token, LIFETIME.as_secs() as i64)
        } else if r.is_ingest() {
            let fresh = bearer(r)
                .and_then(|t| iss.lock().expect("issued").get(t).copied())
                .is_some_and(|at| r.at.duration_since(at) < LIFETIME);
            Reply::Status(if fresh { 204 } else { 401 })
        } else {
            Reply::Status(404)
        }
    })
    .await;
    let state = tempfile::tempdir().expect("state");
    let mut c = dcrship();
    c.arg("run")
        .args(["--endpoint", &fake.url(), "--dcr", DCR, "--stream", STREAM])
        .args(["--auth", "client-secret", "--batch-timeout", "100ms"])
        .args(["--stdin", "--format", "json", "--http-listen", ""])
        .arg("--state-dir")
        .arg(state.path())
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_CLIENT_SECRET", "s3cr3t-value")
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn dcrship run");
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_task = tokio::spawn(async move {
        let mut buf = String::new();
        let _ = out_pipe.read_to_string(&mut buf).await;
        buf
    });
    let err_task = tokio::spawn(async move {
        let mut buf = String::new();
        let _ = err_pipe.read_to_string(&mut buf).await;
        buf
    });

    let mut stdin = child.stdin.take().expect("stdin");
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..STREAMED {
        tick.tick().await;
        stdin
            .write_all(ndjson(i..i + 1, 10).as_bytes())
            .await
            .expect("write a row");
    }
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the agent exits once stdin ends")
        .expect("wait");
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        out_task.await.expect("stdout"),
        err_task.await.expect("stderr")
    );
    assert_eq!(status.code(), Some(0), "{log}");

    let issued = issued.lock().expect("issued").clone();
    assert!(
        issued.len() > 1,
        "the token was renewed: {} issued\n{log}",
        issued.len()
    );
    let ingest = fake.ingest_requests();
    let mut used = HashSet::new();
    for r in &ingest {
        let token = bearer(r).unwrap_or_else(|| panic!("request {} has no bearer", r.n));
        let at = issued
            .get(token)
            .unwrap_or_else(|| panic!("request {} carried a token never issued", r.n));
        let age = r.at.duration_since(*at);
        assert!(
            age < LIFETIME,
            "request {} carried a token issued {age:?} earlier\n{log}",
            r.n
        );
        assert_eq!(r.answered, Some(204));
        used.insert(token.to_string());
    }
    assert!(
        used.len() > 1,
        "rows went out with more than one token: {}",
        used.len()
    );
    let counts = id_counts(&fake.accepted());
    assert_eq!(counts.len() as u64, STREAMED, "{log}");
    assert!(
        (0..STREAMED).all(|i| counts.get(&i) == Some(&1)),
        "every row once: {counts:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// check --live
// ---------------------------------------------------------------------------------------------

/// 8. `dcrship check --live -c FILE` with `[auth] method = "workload-identity"` names the source
///    and the principal (the `oid` of the issued token), and probes the stream with `[]` and
///    that token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_check_names_the_workload_identity_and_its_principal() {
    let token = jwt(OID, 3600);
    let fake = entra_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "azure-identity-token", FEDERATED_TOKEN);
    let cfg = config_file(
        dir.path(),
        &format!(
            "method = \"workload-identity\"\ntenant_id = {TENANT:?}\nclient_id = {APP:?}\n\
             authority_host = \"{}/\"",
            fake.url()
        ),
        &fake,
    );
    let mut c = dcrship();
    c.args(["check", "--live", "-c"])
        .arg(&cfg)
        .env("AZURE_FEDERATED_TOKEN_FILE", &file);
    let out = run(c).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!(
            "identity: workload-identity (principal object id {OID})"
        )),
        "{text}"
    );
    assert!(text.contains("output x: ok"), "{text}");
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1);
    assert_workload_form(&posts[0]);
    let ingest = fake.ingest_requests();
    assert_eq!(ingest.len(), 1);
    assert_eq!(ingest[0].raw_body(), b"[]");
    assert_eq!(bearer(&ingest[0]), Some(token.as_str()));
    assert_no_leak(&out, &[FEDERATED_TOKEN]);
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A self-signed test certificate (CN=dcrship-test, valid to 2126) and its RSA 2048 key, copied
/// from `src/auth/client_cert.rs`'s tests. Test-only: it proves nothing.
const CERT_PEM: &str = include_str!("fixtures/test-client-cert.pem");
const KEY_PKCS8_PEM: &str = include_str!("fixtures/test-client-key.pem");
const PUBLIC_KEY_DER_B64: &str = "MIIBCgKCAQEAuBGVWZziWs9uaHzVpmP5nhGoe0z7t/Dc+nsvwx1UYBMRlmiDd9FXS19MYC6zRavIqBUsUUFK9l7tzyui3FDcJfxeW+bao9oLU/ChIbuUNlfh7qow28dcOzPgq7zDhYFBavguUCVoPOv3HZTIfs4Qfgb7zDuwo+O7CRz6B4KoEkDjm6JCSE1s3mCJBS7FOnmm/7DscpQfGfFRqlHfq4A5bqs30ZHGlPGXL5Sq01dFXoW5PDJ4T4UzDnLOW4vmZtZBPlRhNYZj6F3Y6ucC6qg4T3cIANEOnl/DsSwN+8OuuFH/hd+mFNw/U9+3X5gy2p69zDfgleAFaOtAyO5x40YQvQIDAQAB";

// ---------------------------------------------------------------------------------------------
// CI pipelines: GitHub Actions and Azure Pipelines OIDC federation
// ---------------------------------------------------------------------------------------------

/// The job's token that asks the CI platform for an ID token: a secret.
const JOB_TOKEN: &str = "ci-job-request-token-d0n7-l34k";
/// The ID token the CI platform issues (a JWT; a credential).
const CI_ID_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vcjpyZWY6cmVmcy9oZWFkcy9tYWluIn0.Y2ktc2lnbmF0dXJlLWQwbjctbDQzaw";
const GITHUB_PATH: &str = "/_apis/pipelines/idtoken";
const ADO_PATH: &str = "/org/0f1e2d3c/_apis/distributedtask/hubs/build/plans/p1/jobs/j1/oidctoken";

/// The CI platform's ID-token endpoint (GET for GitHub, POST for Azure DevOps, each answering
/// only to the job token), Entra exchanging only that ID token, and the DCE.
async fn ci_fake(token: &str) -> Fake {
    let t = token.to_string();
    Fake::start(move |r| {
        let authorized = r.header("authorization") == Some(&format!("Bearer {JOB_TOKEN}"));
        if r.path == GITHUB_PATH && r.method == "GET" {
            if authorized {
                Reply::json(200, json!({"count": 1, "value": CI_ID_TOKEN}))
            } else {
                Reply::Status(401)
            }
        } else if r.path == ADO_PATH && r.method == "POST" {
            if authorized {
                Reply::json(200, json!({"oidcToken": CI_ID_TOKEN}))
            } else {
                Reply::Status(401)
            }
        } else if is_entra(r) {
            if r.form().get("client_assertion").map(String::as_str) == Some(CI_ID_TOKEN) {
                entra_token(&t, 3599)
            } else {
                Reply::json(
                    400,
                    json!({"error": "invalid_client", "error_description": "AADSTS700213"}),
                )
            }
        } else if r.is_ingest() {
            dce(r, &t)
        } else {
            Reply::Status(404)
        }
    })
    .await
}

/// 7a. GitHub Actions: with the job's two ID-token variables and the app's client and tenant id,
///     `auto` picks `github-actions`, GETs the ID token for `api://AzureADTokenExchange` with the
///     request token, exchanges it at Entra as the client assertion and sends with Entra's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_actions_exchanges_the_jobs_id_token_and_sends_with_it() {
    let token = jwt(OID, 3600);
    let fake = ci_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(dir.path(), Some(&fake));
    c.env(
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        format!("{}{GITHUB_PATH}?api-version=2.0", fake.url()),
    )
    .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", JOB_TOKEN)
    .env("AZURE_CLIENT_ID", APP)
    .env("AZURE_TENANT_ID", TENANT)
    .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()))
    .args(["--log-level", "trace,dcrship=trace"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "github-actions");
    let asked: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == GITHUB_PATH)
        .collect();
    assert_eq!(asked.len(), 1);
    let q = asked[0].query_map();
    assert_eq!(q["api-version"], "2.0");
    assert_eq!(q["audience"], "api://AzureADTokenExchange");
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1, "one token serves the whole upload");
    let form = posts[0].form();
    assert_eq!(form["client_assertion"], CI_ID_TOKEN);
    assert_eq!(form["client_assertion_type"], JWT_BEARER);
    assert_eq!(form["client_id"], APP);
    assert_eq!(form["scope"], SCOPE);
    assert!(asked[0].n < posts[0].n);
    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[JOB_TOKEN, CI_ID_TOKEN, &token]);
}

/// 7b. Azure Pipelines: in an AzureCLI@2 task (its `AZURESUBSCRIPTION_*` variables) with
///     `SYSTEM_ACCESSTOKEN` mapped, `auto` picks `azure-pipelines`, POSTs to
///     `SYSTEM_OIDCREQUESTURI?api-version=7.1&serviceConnectionId=…` with the access token,
///     exchanges the `oidcToken` at Entra and sends with Entra's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_pipelines_exchanges_the_service_connections_id_token_and_sends_with_it() {
    let token = jwt(OID, 3600);
    let fake = ci_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(dir.path(), Some(&fake));
    c.env("SYSTEM_OIDCREQUESTURI", format!("{}{ADO_PATH}", fake.url()))
        .env("SYSTEM_ACCESSTOKEN", JOB_TOKEN)
        .env("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", "5a6b7c8d-conn")
        .env("AZURESUBSCRIPTION_CLIENT_ID", APP)
        .env("AZURESUBSCRIPTION_TENANT_ID", TENANT)
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()))
        .args(["--log-level", "trace,dcrship=trace"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "azure-pipelines");
    let asked: Vec<Req> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == ADO_PATH)
        .collect();
    assert_eq!(asked.len(), 1);
    let q = asked[0].query_map();
    assert_eq!(q["api-version"], "7.1");
    assert_eq!(q["serviceConnectionId"], "5a6b7c8d-conn");
    assert_eq!(asked[0].header("content-type"), Some("application/json"));
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].form()["client_assertion"], CI_ID_TOKEN);
    assert_eq!(posts[0].form()["client_id"], APP);
    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[JOB_TOKEN, CI_ID_TOKEN, &token]);
}

/// 7c. A pipeline job without the service connection (`SYSTEM_OIDCREQUESTURI` alone, as in a
///     plain script step) is not guessed at: `auto` says what the job lacks, and sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_in_a_pipeline_without_a_service_connection_says_what_is_missing() {
    let fake = ci_fake("unused").await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut c = send(dir.path(), Some(&fake));
    c.env("SYSTEM_OIDCREQUESTURI", format!("{}{ADO_PATH}", fake.url()));
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("azure-pipelines: this is an Azure Pipelines job"),
        "{err}"
    );
    assert!(
        err.contains("SYSTEM_ACCESSTOKEN")
            && err.contains("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID"),
        "{err}"
    );
    assert!(
        fake.requests().is_empty(),
        "nothing was asked: {:?}",
        fake.requests()
    );
}

// ---------------------------------------------------------------------------------------------
// PKCS#12
// ---------------------------------------------------------------------------------------------

const PFX_PASSWORD: &str = "pfx-pa55word-d0n7-l34k";

/// A `.pfx` of the test certificate and key with `PFX_PASSWORD`, written by the `openssl` CLI as
/// its defaults have it (AES-256-CBC, PBKDF2, a SHA-256 MAC on OpenSSL 3). Without `openssl` on
/// the machine, the committed fixture made the same way (password `dcrship-test`) is used.
fn pfx(dir: &Path) -> (PathBuf, &'static str) {
    let path = dir.join("sp.pfx");
    let cert = write_file(dir, "cert.pem", CERT_PEM);
    let key = write_file(dir, "key.pem", KEY_PKCS8_PEM);
    let made = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-out")
        .arg(&path)
        .arg("-passout")
        .arg(format!("pass:{PFX_PASSWORD}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        return (path, PFX_PASSWORD);
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-client-aes.pfx");
    std::fs::copy(fixture, &path).expect("copy the fixture");
    (path, "dcrship-test")
}

/// 4b. Client certificate as a PKCS#12 file in `AZURE_CLIENT_CERTIFICATE_PATH` with
///     `AZURE_CLIENT_CERTIFICATE_PASSWORD`, as every Azure SDK takes it: `auto` picks
///     `client-certificate`, the assertion carries the certificate's thumbprint, rows go with
///     Entra's token, and neither the password nor the key shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pfx_certificate_with_its_password_signs_the_assertion() {
    let token = jwt(OID, 3600);
    let fake = entra_fake(&token).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (path, password) = pfx(dir.path());
    let mut c = send(dir.path(), Some(&fake));
    c.env("AZURE_CLIENT_CERTIFICATE_PATH", &path)
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", password)
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_AUTHORITY_HOST", format!("{}/", fake.url()))
        .args(["--log-level", "trace,dcrship=trace"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_chose(&out, "client-certificate");
    let posts = entra_requests(&fake);
    assert_eq!(posts.len(), 1);
    let header = jwt_part(&posts[0].form()["client_assertion"], 0);
    let thumbprint = b64url().encode(ring::digest::digest(
        &ring::digest::SHA256,
        &cert_der(CERT_PEM),
    ));
    assert_eq!(header["x5t#S256"], thumbprint.as_str(), "{header}");
    assert_ingest_carried(&fake, &token, Some(posts[0].n));
    assert_all_rows_once(&fake, &out, ROWS);
    assert_no_leak(&out, &[password, &token]);

    // The wrong password: exit 2 (a configuration error), saying so, and nothing sent.
    let fake = entra_fake(&token).await;
    let mut c = send(dir.path(), Some(&fake));
    c.env("AZURE_CLIENT_CERTIFICATE_PATH", &path)
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", "wrong-d0n7-l34k")
        .env("AZURE_CLIENT_ID", APP)
        .env("AZURE_TENANT_ID", TENANT);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("password is wrong"),
        "{}",
        stderr(&out)
    );
    assert_no_leak(&out, &["wrong-d0n7-l34k"]);
    assert!(fake.requests().is_empty());
}
