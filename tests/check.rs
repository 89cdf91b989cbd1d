//! `dcrship check [--live]` end to end: the real binary, a config file, a fake DCE.

mod common;

use common::*;

fn config(dir: &tempfile::TempDir, endpoint: &str) -> String {
    let text = format!(
        "[auth]\nmethod = \"static\"\n\n[outputs.app]\nendpoint = \"{endpoint}\"\ndcr = \"{DCR}\"\nstream = \"{STREAM}\"\n"
    );
    write_file(dir.path(), "agent.toml", &text)
        .display()
        .to_string()
}

async fn check_live(status: u16) -> (std::process::Output, Fake) {
    let fake = Fake::start(move |_| Reply::Status(status)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = config(&dir, &fake.url());
    let mut c = dcrship();
    c.args(["check", "--live", "-c", &cfg]).env(
        "DCRSHIP_ACCESS_TOKEN",
        fake_jwt("cccccccc-0000-0000-0000-000000000003"),
    );
    (run(c).await, fake)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_check_posts_an_empty_array_and_reports_ready() {
    let (out, fake) = check_live(204).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("identity: static"), "{text}");
    assert!(
        text.contains("cccccccc-0000-0000-0000-000000000003"),
        "{text}"
    );
    assert!(text.contains("output app: ok"), "{text}");
    let reqs = fake.ingest_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].raw_body(), b"[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_check_explains_401_403_and_404() {
    let cases = [
        (401, 3, "cloud"),
        (403, 4, "Monitoring Metrics Publisher"),
        (404, 4, "DCR immutable id"),
    ];
    for (status, code, words) in cases {
        let (out, _fake) = check_live(status).await;
        assert_eq!(
            out.status.code(),
            Some(code),
            "{status}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(
            text.contains("output app: FAILED") && text.contains(words),
            "{status}: {text}"
        );
        if status == 403 {
            assert!(text.contains("cccccccc-0000-0000-0000-000000000003") && text.contains(DCR));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_line_and_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write_file(
        dir.path(),
        "bad.toml",
        &format!("[outputs.app]\nendpoint = \"https://x.example\"\ndcr = \"{DCR}\"\nstream = \"{STREAM}\"\nconcurency = 4\n"),
    );
    let mut c = dcrship();
    c.args(["check", "-c", &cfg.display().to_string()]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("line 5")
            && err.contains("outputs.app.concurency")
            && err.contains("did you mean `concurrency`"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_config_is_valid() {
    let mut c = dcrship();
    c.args([
        "check",
        "-c",
        concat!(env!("CARGO_MANIFEST_DIR"), "/agent.toml.example"),
    ]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
