//! What ships beside the binary for operators: the Grafana dashboard loads (JSON with the
//! panels the README promises, laid out on Grafana's 24-column grid), and every metric name the
//! dashboard, the Prometheus alert rules and the README use is one dcrship exports — a renamed
//! metric would otherwise leave an empty panel or an alert that never fires. The alert rules
//! themselves are tested by `promtool test rules` in .ci/run.

use std::collections::HashSet;

use dcrship::metrics::{Family, Kind};
use serde_json::Value;

fn root(path: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every sample name dcrship's `/metrics` can show.
fn exported() -> HashSet<String> {
    let mut names: HashSet<String> = HashSet::new();
    for f in Family::ALL {
        names.insert(f.name().to_string());
        if f.kind() == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{}{suffix}", f.name()));
            }
        }
    }
    for p in dcrship::metrics::process::NAMES {
        names.insert(p.to_string());
    }
    names
}

/// The `dcrship_…` and `process_…` words of `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["dcrship_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().next_back();
            let word: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + word.len().max(1)..];
            // Not part of a longer word (a file name like dcrship_ci, a Rust path).
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/') {
                continue;
            }
            out.push(word);
        }
    }
    out
}

#[test]
fn the_dashboard_is_json_with_the_expected_panels_on_the_grid() {
    let dash: Value = serde_json::from_str(&root("deploy/grafana/dcrship.json")).expect("JSON");
    assert_eq!(dash["uid"], "dcrship");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus");
    let panels = dash["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Output state",
        "Rows delivered per second",
        "Backlog: bytes waiting in the spool",
        "Oldest row not yet accepted",
        "Time since the last accepted request",
        "Requests per second by status",
        "Retries per second by reason",
        "Request latency",
        "Rows and bytes per accepted request (median)",
        "Rows dropped by reason",
        "Spool use",
        "CPU",
        "Resident memory",
        "Open file descriptors",
    ] {
        assert!(titles.contains(&want), "panel {want:?} in {titles:?}");
    }
    let mut ids = HashSet::new();
    let mut cells = HashSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "unique id: {title}"
        );
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().expect("x"),
            g["y"].as_u64().expect("y"),
            g["w"].as_u64().expect("w"),
            g["h"].as_u64().expect("h"),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(
                    cells.insert((cx, cy)),
                    "{title} overlaps another panel at {cx},{cy}"
                );
            }
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}");
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            assert!(!metric_names(expr).is_empty(), "{title}: {expr}");
        }
    }
    let names = exported();
    let text = root("deploy/grafana/dcrship.json");
    for n in metric_names(&text) {
        assert!(
            names.contains(&n),
            "the dashboard uses {n}, which dcrship does not export"
        );
    }
}

#[test]
fn alerts_and_the_readme_use_only_exported_metric_names() {
    let names = exported();
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts.test.yml",
        "README.md",
    ] {
        let text = root(file);
        let used = metric_names(&text);
        assert!(!used.is_empty(), "{file}");
        for n in used {
            assert!(
                names.contains(&n),
                "{file} names {n}, which dcrship does not export"
            );
        }
    }
    // The four alerts the issue asks for are there.
    let alerts = root("deploy/prometheus/alerts.yml");
    for a in [
        "DcrshipDeliveryStalled",
        "DcrshipPermissionDenied",
        "DcrshipSpoolNearlyFull",
        "DcrshipRowsDropped",
    ] {
        assert!(alerts.contains(&format!("alert: {a}")), "{a}");
    }
}

#[test]
fn metric_names_are_found_as_whole_words() {
    assert_eq!(
        metric_names("rate(dcrship_requests_total{x=\"1\"}[5m]) / process_open_fds"),
        vec!["dcrship_requests_total", "process_open_fds"]
    );
    assert!(metric_names("src/dcrship_x.rs my_dcrship_y").is_empty());
}
