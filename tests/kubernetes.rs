//! Kubernetes nodes end to end: the real agent tails a fake `/var/log/containers` tree (in a
//! tempdir) whose symlinks lead into a fake `/var/log/pods`, as the kubelet lays them out, and
//! ships to a fake DCE on 127.0.0.1. Every app line written is accounted: it arrives exactly
//! once, with its pod's columns, across the kubelet's log rotation.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::agent::Agent;
use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "k8s-token-0123456789";
const CID: &str = "4f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e";
const UID: &str = "5b1e8c4a-9d2f-4e3b-8a7c-6d5e4f3a2b1c";
const CID2: &str = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990";

/// A pod's container as the kubelet lays it out: `pods/<ns>_<pod>_<uid>/<container>/0.log`
/// and the symlink `containers/<pod>_<ns>_<container>-<id>.log` to it.
struct PodLog {
    file: PathBuf,
}

impl PodLog {
    fn new(root: &Path, ns: &str, pod: &str, uid: &str, container: &str, id: &str) -> PodLog {
        let dir = root.join(format!("pods/{ns}_{pod}_{uid}/{container}"));
        std::fs::create_dir_all(&dir).expect("mkdir pods");
        std::fs::create_dir_all(root.join("containers")).expect("mkdir containers");
        let file = dir.join("0.log");
        std::fs::write(&file, b"").expect("create 0.log");
        let link = root.join(format!("containers/{pod}_{ns}_{container}-{id}.log"));
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        PodLog { file }
    }

    fn append(&self, path: &Path, lines: &[Vec<u8>]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        for l in lines {
            f.write_all(l).expect("write");
            f.write_all(b"\n").expect("write");
        }
    }

    fn write(&self, lines: &[Vec<u8>]) {
        self.append(&self.file, lines);
    }

    /// The kubelet's rotation: rename `0.log` to `0.log.<time>`; the runtime, not yet told,
    /// writes `late` to the renamed file; then it reopens a new `0.log` and writes `next`.
    /// Finally the rotated file is compressed as the kubelet does (`.gz`, original removed).
    fn rotate(&self, late: &[Vec<u8>], next: &[Vec<u8>]) -> PathBuf {
        let rotated = self.file.with_file_name("0.log.20261207-050000");
        std::fs::rename(&self.file, &rotated).expect("rename");
        self.append(&rotated, late);
        std::fs::write(&self.file, b"").expect("reopen");
        self.write(next);
        rotated
    }
}

/// Compresses `path` to `path.gz` and removes it (the kubelet's rotation of older files).
fn gzip(path: &Path) {
    use flate2::write::GzEncoder;
    let data = std::fs::read(path).expect("read rotated");
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let mut enc = GzEncoder::new(
        std::fs::File::create(&gz).expect("gz"),
        flate2::Compression::fast(),
    );
    enc.write_all(&data).expect("compress");
    enc.finish().expect("finish");
    std::fs::remove_file(path).expect("rm rotated");
}

fn cri(time: &str, stream: &str, tag: &str, msg: &str) -> Vec<u8> {
    format!("{time} {stream} {tag} {msg}").into_bytes()
}

const T: &str = "2026-12-07T05:00:00.123456789Z";
const TG: &str = "2026-12-07T05:00:00.123456Z";

/// App JSON lines `{"id":"<tag>-<i>",…}` on stdout, each a whole CRI line.
fn json_lines(tag: &str, ids: std::ops::Range<usize>) -> (Vec<Vec<u8>>, Vec<String>) {
    let ids: Vec<String> = ids.map(|i| format!("{tag}-{i}")).collect();
    let lines = ids
        .iter()
        .map(|id| {
            cri(
                T,
                "stdout",
                "F",
                &format!(r#"{{"id":"{id}","level":"info","n":7}}"#),
            )
        })
        .collect();
    (lines, ids)
}

/// A JSON line of about `size` bytes in 16 KiB CRI parts on `stream`, with stderr text lines
/// between its parts (the runtime interleaves streams).
fn split_json(id: &str, size: usize, noise: &mut Vec<String>) -> Vec<Vec<u8>> {
    let app = format!(r#"{{"id":"{id}","pad":"{}"}}"#, "é".repeat(size / 2));
    let bytes = app.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + 16 * 1024).min(bytes.len());
        let tag = if end < bytes.len() { "P" } else { "F" };
        // Raw bytes: a part may end inside 'é'; the line is not valid UTF-8 on its own.
        let mut line = format!("{T} stdout {tag} ").into_bytes();
        line.extend_from_slice(&bytes[at..end]);
        out.push(line);
        let n = format!("{id}-noise-{}", out.len());
        out.push(cri(T, "stderr", "F", &n));
        noise.push(n);
        at = end;
    }
    out
}

/// Each accepted row's id (`id` for JSON rows, `LogMessage` for text rows), counted.
fn ids(fake: &Fake) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in fake.accepted() {
        for row in r.rows() {
            let id = row["id"]
                .as_str()
                .or(row["LogMessage"].as_str())
                .unwrap_or("?");
            *m.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    m
}

fn rows_by_id(fake: &Fake) -> HashMap<String, Value> {
    let mut m = HashMap::new();
    for r in fake.accepted() {
        for row in r.rows() {
            let id = row["id"]
                .as_str()
                .or(row["LogMessage"].as_str())
                .unwrap_or("?");
            m.insert(id.to_string(), row.clone());
        }
    }
    m
}

fn assert_exactly_once(fake: &Fake, want: &[String]) {
    assert_each_once(&ids(fake), want);
}

fn config(fake: &Fake, state: &Path, root: &Path, http: SocketAddr) -> String {
    format!(
        "[agent]\nstate_dir = {state:?}\nhttp_listen = \"{http}\"\nshutdown_timeout = \"2s\"\n\
         [auth]\nmethod = \"static\"\n\
         [outputs.pods]\nendpoint = {url:?}\ndcr = {DCR:?}\nstream = {STREAM:?}\nbatch_timeout = \"200ms\"\n\
         [inputs.pods]\ntype = \"file\"\npaths = [{glob:?}]\nformat = \"json\"\nstart_at = \"beginning\"\n\
         [inputs.pods.container]\nruntime = \"auto\"\n",
        state = state.display().to_string(),
        url = fake.url(),
        glob = root.join("containers/*.log").display().to_string(),
    )
}

/// The DaemonSet's case: two pods (JSON app logs on stdout, text on stderr, a long JSON line
/// split into 16 KiB parts with stderr lines between them, a character split across parts),
/// then the kubelet rotates one pod's log (rename, late writes to the renamed file, a new
/// file, the rotated one compressed). Every line arrives once, with its pod's columns and the
/// app's fields as columns; `/live` says the pipeline beats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_arrive_once_with_pod_columns_across_kubelet_rotation() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let root = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let web = PodLog::new(root.path(), "shop", "web-7d4b9c-x2x", UID, "app", CID);
    let db = PodLog::new(
        root.path(),
        "data",
        "db-0",
        "9f8e7d6c-5b4a-4938-8271-605f4e3d2c1b",
        "pg",
        CID2,
    );

    let mut want = Vec::new();
    let (first, ids1) = json_lines("web", 0..300);
    web.write(&first);
    want.extend(ids1);
    let mut noise = Vec::new();
    web.write(&split_json("web-big", 60_000, &mut noise));
    want.push("web-big".into());
    let errors: Vec<String> = (0..50).map(|i| format!("db-error-{i}")).collect();
    db.write(
        &errors
            .iter()
            .map(|e| cri(T, "stderr", "F", e))
            .collect::<Vec<_>>(),
    );
    want.extend(errors.iter().cloned());
    want.extend(noise.iter().cloned());

    let http = free_addr();
    let cfg = state.path().join("agent.toml");
    std::fs::write(&cfg, config(&fake, state.path(), root.path(), http)).expect("config");
    let mut agent = Agent::spawn(run_config(&cfg, TOKEN)).with_http(http);
    agent
        .wait_for("the first lines", Duration::from_secs(15), || {
            let got = ids(&fake);
            want.iter().all(|w| got.contains_key(w))
        })
        .await;
    assert_eq!(agent.get("/live").await.map(|r| r.0), Some(200));

    // kubelet rotation of web's log, with the runtime's late writes to the renamed file
    let (late, late_ids) = json_lines("web-late", 0..100);
    let (next, next_ids) = json_lines("web-next", 0..200);
    let rotated = web.rotate(&late, &next);
    want.extend(late_ids.iter().cloned());
    want.extend(next_ids.iter().cloned());
    agent
        .wait_for(
            "the late lines of the rotated file",
            Duration::from_secs(15),
            || {
                let got = ids(&fake);
                late_ids.iter().all(|w| got.contains_key(w))
            },
        )
        .await;
    // The kubelet compresses rotated files at its next rotation: the agent has read this one
    // by then (it holds it open until it was idle for rotate_wait), and *.gz is not tailed.
    gzip(&rotated);
    let (after, after_ids) = json_lines("web-after", 0..100);
    web.write(&after);
    want.extend(after_ids);
    agent
        .wait_for("every line", Duration::from_secs(15), || {
            let got = ids(&fake);
            want.iter().all(|w| got.contains_key(w))
        })
        .await;
    agent.stop(secs(15)).await;
    assert_exactly_once(&fake, &want);

    let rows = rows_by_id(&fake);
    assert_eq!(
        rows["web-0"],
        json!({"TimeGenerated": TG, "id": "web-0", "level": "info", "n": 7,
               "LogSource": "stdout", "Computer": rows["web-0"]["Computer"],
               "PodName": "web-7d4b9c-x2x", "PodNamespace": "shop", "ContainerName": "app",
               "ContainerId": CID, "KubernetesMetadata": {"podUid": UID}})
    );
    assert!(rows["web-0"]["Computer"]
        .as_str()
        .is_some_and(|c| !c.is_empty()));
    let big = &rows["web-big"];
    assert_eq!(big["pad"].as_str().map(|p| p.chars().count()), Some(30_000));
    assert!(big["pad"]
        .as_str()
        .is_some_and(|p| p.chars().all(|c| c == 'é')));
    let e = &rows["db-error-3"];
    assert_eq!(
        (
            &e["LogSource"],
            &e["PodName"],
            &e["PodNamespace"],
            &e["ContainerName"]
        ),
        (
            &json!("stderr"),
            &json!("db-0"),
            &json!("data"),
            &json!("pg")
        )
    );
    assert_eq!(
        rows["web-next-5"]["PodName"], "web-7d4b9c-x2x",
        "the new file, same pod"
    );
    assert_eq!(
        rows["web-late-5"]["ContainerId"], CID,
        "the rotated file, same container"
    );
}

/// Flag mode on a Docker host: `--container docker` tails json-file logs, joins a line Docker
/// split (no `\n` at the end of a part), keeps stderr apart, and sends a last line without a
/// newline once it has waited for its rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_json_file_logs_from_flags() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    let root = tempfile::tempdir().expect("tmp");
    let state = tempfile::tempdir().expect("state");
    let dir = root.path().join(CID);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join(format!("{CID}-json.log"));
    let line = |log: &str, stream: &str| {
        serde_json::to_string(&json!({"log": log, "stream": stream, "time": T})).expect("json")
    };
    let long = "x".repeat(20_000);
    let text = [
        line("hello\n", "stdout"),
        line(&long[..16_384], "stdout"),
        line("warning: disk\n", "stderr"),
        line(&format!("{}\n", &long[16_384..]), "stdout"),
        line("exiting without a newline", "stdout"),
    ]
    .join("\n")
        + "\n";
    std::fs::write(&file, text).expect("write");
    let mut c = run_to(&fake, state.path(), None, TOKEN);
    c.arg("--path").arg(root.path().join("*/*-json.log")).args([
        "--container",
        "docker",
        "--start-at",
        "beginning",
    ]);
    let mut agent = Agent::spawn(c);
    let want: Vec<String> = [
        "hello",
        long.as_str(),
        "warning: disk",
        "exiting without a newline",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    agent
        .wait_for("every message", Duration::from_secs(15), || {
            let got = ids(&fake);
            want.iter().all(|w| got.contains_key(w))
        })
        .await;
    agent.stop(secs(15)).await;
    assert_exactly_once(&fake, &want);
    let rows = rows_by_id(&fake);
    assert_eq!(rows["warning: disk"]["LogSource"], "stderr");
    assert_eq!(rows["hello"]["ContainerId"], CID);
    assert_eq!(rows["hello"]["TimeGenerated"], TG);
    assert!(
        rows["hello"].get("PodName").is_none(),
        "no pod on a Docker host"
    );
}

/// `--container` reads files: alone with `--stdin` it is a usage error, said at once.
#[tokio::test]
async fn container_without_files_is_a_usage_error() {
    let state = tempfile::tempdir().expect("state");
    let mut c = dcrship();
    c.arg("run")
        .args([
            "--endpoint",
            "http://127.0.0.1:9",
            "--dcr",
            DCR,
            "--stream",
            STREAM,
        ])
        .args(["--auth", "static", "--stdin", "--container", "cri"])
        .arg("--state-dir")
        .arg(state.path())
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("give them with --path"),
        "{}",
        stderr(&out)
    );
}
