//! The command line a new user meets: versions, the shipped sample's first dry run.

mod common;

use common::*;

/// `dcrship --version` and every command's `--version` (the container's entrypoint is
/// `dcrship run`, so `docker run image --version` asks `run`) name the program, not
/// `dcrship-run`.
#[tokio::test]
async fn every_command_says_its_version_as_dcrship() {
    let want = format!("dcrship {}\n", env!("CARGO_PKG_VERSION"));
    for cmd in [&[][..], &["run"], &["send"], &["check"]] {
        let mut c = dcrship();
        c.args(cmd).arg("--version");
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{cmd:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want, "{cmd:?}");
    }
}

/// The README's first command, on the shipped sample: exit 0, every row would be sent, and not
/// one warning, whatever today's date (the sample's rows carry no TimeGenerated of their own).
#[tokio::test]
async fn the_quick_start_dry_run_is_clean() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/app.ndjson");
    let mut c = dcrship();
    c.args(["send", "--dry-run", sample]);
    let out = run(c).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("20 rows read, 20 would be sent, 0 rejected"),
        "{err}"
    );
    assert!(!err.contains("WARN") && !err.contains("ERROR"), "{err}");
}

/// `--help` is grouped under headings, in this order (a snapshot: a flag that moves or a
/// heading that goes away shows here); `-h` is the short form.
#[tokio::test]
async fn help_is_grouped_under_headings_and_h_is_shorter() {
    let wants: [(&str, &[&str]); 2] = [
        (
            "send",
            &[
                "Arguments:",
                "Options:",
                "Destination:",
                "Authentication:",
                "Delivery:",
                "Input:",
                "Shaping:",
                "Parsing:",
                "Output:",
                "Logging:",
                "Examples:",
            ],
        ),
        (
            "run",
            &[
                "Options:",
                "Destination:",
                "Authentication:",
                "Delivery:",
                "Input:",
                "Journal:",
                "Shaping:",
                "Parsing:",
                "Agent:",
                "Logging:",
            ],
        ),
    ];
    for (cmd, want) in wants {
        let help = |flag: &'static str| async move {
            let mut c = dcrship();
            c.args([cmd, flag]);
            let out = run(c).await;
            assert_eq!(out.status.code(), Some(0), "{cmd} {flag}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let long = help("--help").await;
        let short = help("-h").await;
        let headings: Vec<&str> = long
            .lines()
            .filter(|l| {
                l.ends_with(':') && l.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            })
            .filter(|l| !l.contains(' ') || l.split(' ').count() == 1)
            .collect();
        assert_eq!(headings, want, "{cmd} --help:\n{long}");
        assert!(
            short.lines().count() < long.lines().count(),
            "{cmd}: -h is not shorter"
        );
        assert!(
            !short.contains("--multiline-max-bytes"),
            "{cmd} -h shows a rare flag"
        );
        assert!(
            long.contains("--multiline-max-bytes"),
            "{cmd} --help hides a flag"
        );
    }
}
