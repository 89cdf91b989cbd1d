//! `dcrship dcr infer` and `dcrship dcr template` through the real binary: inference on small
//! fixture files (NDJSON, CSV, text, syslog) and on the shared real samples when present; the
//! generated templates checked against the ARM resource schemas of their types (parts of the
//! public REST API specs in tests/fixtures/arm-schemas); and the round trip — the DCR the
//! template declares is read by `--schema`, and the rows `send` then delivers to a fake DCE on
//! 127.0.0.1 have exactly the declared columns, each value of its declared type.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const TOKEN: &str = "test-token-dcr";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `dcrship dcr infer --json ARGS…`: the report, after checking the exit code is 0.
async fn infer_json(args: &[&str]) -> Value {
    let mut c = dcrship();
    c.args(["dcr", "infer", "--json"]).args(args);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

/// The (name, type) of each column of a report.
fn types(report: &Value) -> Vec<(String, String)> {
    report["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The issues of a report about `column`: (severity, fix).
fn issues_of(report: &Value, column: &str) -> Vec<(String, String)> {
    report["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .filter(|i| i["column"] == column)
        .map(|i| {
            (
                i["severity"].as_str().unwrap_or_default().to_string(),
                i["fix"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_ndjson_types_every_column_and_names_the_fixes() {
    let file = fixture("dcr/shop.ndjson");
    let r = infer_json(&[file.to_str().expect("path")]).await;
    assert_eq!(r["rows"], 4);
    assert_eq!(
        types(&r),
        pairs(&[
            ("TimeGenerated", "datetime"),
            ("ts", "datetime"),
            ("order", "int"),
            ("amount", "real"),
            ("big", "long"),
            ("paid", "boolean"),
            ("customer", "dynamic"),
            ("items", "dynamic"),
            ("zip", "string"),
            ("note", "string"),
            ("TenantId", "string"),
            ("client-ip", "string"),
            ("status", "string"),
            ("shipped_at", "datetime"),
        ])
    );
    assert_eq!(
        issues_of(&r, "TenantId"),
        pairs(&[("error", "--rename TenantId=TenantId_")])
    );
    assert_eq!(
        issues_of(&r, "client-ip"),
        pairs(&[("error", "--rename client-ip=client_ip")])
    );
    let status = issues_of(&r, "status");
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].0, "warning");
    let status_col = &r["columns"][12];
    assert_eq!(status_col["values"], json!({"int": 3, "string": 1}));
    assert_eq!(status_col["examples"]["string"], "\"n/a\"");
    // no --time-field: the report points at the time columns
    let all = r["issues"].as_array().expect("issues");
    assert!(all
        .iter()
        .any(|i| i["fix"] == "--time-field ts takes the event's time from it"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_reads_csv_values_as_the_text_they_are() {
    let file = fixture("dcr/shop.csv");
    let r = infer_json(&[file.to_str().expect("path"), "--time-field", "When"]).await;
    assert_eq!(
        types(&r),
        pairs(&[
            ("TimeGenerated", "datetime"),
            ("Order", "int"),
            ("Amount", "real"),
            ("Big", "long"),
            ("Paid", "boolean"),
            ("Zip", "string"),
            ("Note", "string"),
            ("Shipped", "datetime"),
            ("Meta", "dynamic"),
        ])
    );
    assert_eq!(r["time_field"], "When");
    // "01234" keeps its zero: Zip is text, reported as a mix
    assert_eq!(r["columns"][5]["values"], json!({"int": 2, "string": 2}));
    assert_eq!(r["read"]["time_unparsable"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_text_lines_are_azure_monitor_agent_text_rows() {
    let file = fixture("dcr/app.log");
    let r = infer_json(&["--format", "text", file.to_str().expect("path")]).await;
    assert_eq!(
        types(&r),
        pairs(&[
            ("TimeGenerated", "datetime"),
            ("RawData", "string"),
            ("Computer", "string"),
            ("FilePath", "string"),
        ])
    );
    assert_eq!(r["read"]["time_from_read"], 4);
    // from stdin there is no FilePath
    let mut c = dcrship();
    c.args(["dcr", "infer", "--json", "--format", "text"])
        .stdin(std::fs::File::open(&file).expect("open"));
    let out = run(c).await;
    let r: Value = serde_json::from_str(&stdout(&out)).expect("report");
    assert_eq!(r["inputs"], json!(["<stdin>"]));
    assert!(!types(&r).iter().any(|(n, _)| n == "FilePath"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_syslog_lines_and_the_lines_that_do_not_parse() {
    let file = fixture("dcr/syslog.log");
    let r = infer_json(&["--format", "syslog", file.to_str().expect("path")]).await;
    let t = types(&r);
    for want in [
        ("TimeGenerated", "datetime"),
        ("Facility", "string"),
        ("SeverityLevel", "string"),
        ("EventTime", "datetime"),
        ("HostName", "string"),
        ("ProcessName", "string"),
        ("ProcessID", "int"),
        ("SyslogMessage", "string"),
        ("MsgId", "string"),
        ("StructuredData", "string"),
        ("RawData", "string"),
    ] {
        assert!(
            t.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {t:?}"
        );
    }
    assert_eq!(r["read"]["mismatched"], 1);
    let all = r["issues"].as_array().expect("issues");
    assert!(all.iter().any(|i| i["problem"]
        .as_str()
        .is_some_and(|p| p.starts_with("1 line did not match syslog"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_applies_send_s_field_edits() {
    let file = fixture("dcr/shop.ndjson");
    let r = infer_json(&[
        "--time-field",
        "ts",
        "--rename",
        "TenantId=Tenant",
        "--rename",
        "client-ip=ClientIp",
        "--drop",
        "customer",
        "--drop",
        "items",
        "--field",
        "Env=prod",
        file.to_str().expect("path"),
    ])
    .await;
    let names: Vec<String> = types(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "TimeGenerated",
            "order",
            "amount",
            "big",
            "paid",
            "zip",
            "note",
            "Tenant",
            "ClientIp",
            "status",
            "shipped_at",
            "Env"
        ]
    );
    assert!(r["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .all(|i| i["severity"] != "error"));
    assert_eq!(r["time_field"], "ts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_reads_no_more_than_the_sample() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = write_file(dir.path(), "big.ndjson", &ndjson(0..50_000, 0));
    let r = infer_json(&["--sample", "100", file.to_str().expect("path")]).await;
    assert_eq!(r["rows"], 100);
    assert_eq!(r["read"]["cut_at_sample"], true);
    // the read stops soon after the sample: one 256 KiB chunk, not 50,000 lines
    assert!(
        r["read"]["records"].as_u64().is_some_and(|n| n < 10_000),
        "{}",
        r["read"]
    );
    let r = infer_json(&[file.to_str().expect("path")]).await;
    assert_eq!(r["rows"], 10_000, "the default sample");
    assert_eq!(
        types(&r),
        pairs(&[
            ("TimeGenerated", "datetime"),
            ("id", "int"),
            ("msg", "string")
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_usage_error_that_names_it() {
    let dir = tempfile::tempdir().expect("tmp");
    for (args, says) in [
        (
            vec!["infer", "/nonexistent/x.ndjson"],
            "cannot read /nonexistent/x.ndjson",
        ),
        (
            vec!["infer", dir.path().to_str().expect("path")],
            "is a directory",
        ),
        (vec!["infer", "--format", "regex", "x"], "needs --pattern"),
        (
            vec!["template", "--table", "my-app", "x"],
            "--table: table name \"my-app\" has '-'",
        ),
        (
            vec![
                "template",
                "--table",
                "App",
                "--principal-id",
                "not-a-guid",
                "x",
            ],
            "--principal-id: expected a GUID",
        ),
        (
            vec![
                "template",
                "--table",
                "App",
                "--workspace-resource-id",
                "/subscriptions/s/resourceGroups/rg/providers/x/y/ws",
                "x",
            ],
            "--workspace-resource-id: expected",
        ),
    ] {
        let mut c = dcrship();
        c.arg("dcr").args(&args);
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
    // input that is not what --format auto took it for: every record refused, and the fix
    let lines = write_file(
        dir.path(),
        "apache.log",
        "[Sun Dec 04 04:47:44 2005] [notice] x\n",
    );
    let r = infer_json(&[lines.to_str().expect("path")]).await;
    assert_eq!(r["rows"], 0);
    assert!(r["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .any(|i| i["fix"]
            .as_str()
            .is_some_and(|f| f.contains("--format text"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_refuses_names_azure_refuses_and_takes_the_fix() {
    let file = fixture("dcr/shop.ndjson");
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("azure");
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Shop", "--out-dir"])
        .arg(&out_dir)
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("fix: --rename TenantId=TenantId_"), "{err}");
    assert!(err.contains("fix: --rename client-ip=client_ip"), "{err}");
    assert!(!out_dir.exists(), "nothing written");
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Shop", "--out-dir"])
        .arg(&out_dir)
        .args([
            "--rename",
            "TenantId=TenantId_",
            "--rename",
            "client-ip=client_ip",
        ])
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in [
        "template.json",
        "dcr-rule.json",
        "deploy-az.sh",
        "agent.toml",
    ] {
        assert!(out_dir.join(f).is_file(), "{f}");
    }
}

/// Checks `v` against definition `def` of a schema fixture: types, enums, required and
/// read-only properties, and no property the schema does not know. ARM expressions
/// (`"[…]"`) stand for strings.
fn validate(doc: &Value, def: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    if let Some(r) = def["$ref"].as_str() {
        let name = r.trim_start_matches("#/definitions/");
        return validate(doc, &doc["definitions"][name], v, path, errs);
    }
    if let Some(all) = def["allOf"].as_array() {
        for d in all {
            validate(doc, d, v, path, errs);
        }
    }
    let expression = v
        .as_str()
        .is_some_and(|s| s.starts_with('[') && s.ends_with(']') && !s.starts_with("[["));
    match def["type"].as_str() {
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return errs.push(format!("{path}: expected an object, found {v}"));
            };
            for r in def["required"].as_array().into_iter().flatten() {
                if let Some(r) = r.as_str() {
                    if !obj.contains_key(r) {
                        errs.push(format!("{path}: required property {r} is missing"));
                    }
                }
            }
            let props = def["properties"].as_object();
            let extra = &def["additionalProperties"];
            for (k, val) in obj {
                let at = format!("{path}.{k}");
                match props.and_then(|p| p.get(k)) {
                    Some(p) if p["readOnly"] == true => {
                        errs.push(format!("{at}: read-only, must not be sent"))
                    }
                    Some(p) => validate(doc, p, val, &at, errs),
                    None if extra.is_object() => validate(doc, extra, val, &at, errs),
                    None if props.is_some() => errs.push(format!("{at}: not in the schema")),
                    None => {}
                }
            }
        }
        Some("array") => match v.as_array() {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, &def["items"], item, &format!("{path}[{i}]"), errs);
                }
            }
            None => errs.push(format!("{path}: expected an array, found {v}")),
        },
        Some("string") => {
            let Some(s) = v.as_str() else {
                return errs.push(format!("{path}: expected a string, found {v}"));
            };
            if let Some(allowed) = def["enum"].as_array() {
                let open = def["x-dcrship-open"] == true;
                if !open && !expression && !allowed.iter().any(|a| a == s) {
                    errs.push(format!("{path}: {s:?} is not one of {allowed:?}"));
                }
            }
        }
        Some("integer") if !v.is_i64() => errs.push(format!("{path}: expected an integer")),
        Some("boolean") if !v.is_boolean() => errs.push(format!("{path}: expected a boolean")),
        _ => {}
    }
}

fn schema(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(&format!("arm-schemas/{name}"))).expect("schema");
    serde_json::from_str(&text).expect("schema JSON")
}

/// An ARM resource checked against its type's schema (the deployment keys — type, apiVersion,
/// name, dependsOn, condition, scope — are the template's, not the resource body's).
fn validate_resource(resource: &Value, schema: &Value, def: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if resource["type"] != schema["resourceType"] || resource["apiVersion"] != schema["apiVersion"]
    {
        errs.push(format!(
            "{} {} is not {} {}",
            resource["type"], resource["apiVersion"], schema["resourceType"], schema["apiVersion"]
        ));
    }
    let mut body = resource.clone();
    if let Some(o) = body.as_object_mut() {
        for k in [
            "type",
            "apiVersion",
            "name",
            "dependsOn",
            "condition",
            "scope",
        ] {
            o.remove(k);
        }
    }
    validate(
        schema,
        &schema["definitions"][def],
        &body,
        resource["type"].as_str().unwrap_or("resource"),
        &mut errs,
    );
    errs
}

/// Every `parameters('x')` and `variables('x')` a template uses is declared.
fn undeclared_references(template: &Value) -> Vec<String> {
    let text = template.to_string();
    let mut missing = Vec::new();
    for kind in ["parameters", "variables"] {
        let re = regex::Regex::new(&format!(r"{kind}\('([^']+)'\)")).expect("regex");
        for cap in re.captures_iter(&text) {
            if template[kind].get(&cap[1]).is_none() {
                missing.push(format!("{kind}('{}')", &cap[1]));
            }
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_match_the_arm_schemas_of_their_resource_types() {
    let dcr_schema = schema("dataCollectionRules-2023-03-11.json");
    let tables = schema("tables-2025-07-01.json");
    let roles = schema("roleAssignments-2022-04-01.json");
    let name_rule = regex::Regex::new(tables["tableName"]["pattern"].as_str().expect("pattern"))
        .expect("regex");
    let dir = tempfile::tempdir().expect("tmp");
    let variants: [&[&str]; 3] = [
        &[],
        &[
            "--plan",
            "auxiliary",
            "--workspace-resource-id",
            "/subscriptions/0000/resourceGroups/rg-1/providers/Microsoft.OperationalInsights/workspaces/ws",
            "--principal-id",
            "0a1b2c3d-0000-4000-8000-00000000abcd",
            "--location",
            "westeurope",
        ],
        &[
            "--plan",
            "basic",
            "--dce",
            "/subscriptions/0000/resourceGroups/rg-1/providers/Microsoft.Insights/dataCollectionEndpoints/dce-1",
            "--stream",
            "Custom-CsvRows",
            "--transform",
            "source | where Paid == true",
        ],
    ];
    for (n, extra) in variants.iter().enumerate() {
        let out_dir = dir.path().join(format!("v{n}"));
        let mut c = dcrship();
        c.args(["dcr", "template", "--table", "Shop", "--out-dir"])
            .arg(&out_dir)
            .args(*extra)
            .arg(fixture("dcr/shop.csv"));
        let out = run(c).await;
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
        let read = |f: &str| std::fs::read_to_string(out_dir.join(f)).expect(f);
        let template: Value = serde_json::from_str(&read("template.json")).expect("template");
        let resources = template["resources"].as_array().expect("resources");
        assert_eq!(resources.len(), 3);
        let mut errs = validate_resource(&resources[0], &tables, "Table");
        errs.extend(validate_resource(
            &resources[1],
            &dcr_schema,
            "DataCollectionRuleResource",
        ));
        errs.extend(validate_resource(
            &resources[2],
            &roles,
            "RoleAssignmentCreateParameters",
        ));
        // the az rule file is the DCR's REST body
        let rule: Value = serde_json::from_str(&read("dcr-rule.json")).expect("rule");
        let mut rule_errs = Vec::new();
        validate(
            &dcr_schema,
            &dcr_schema["definitions"]["DataCollectionRuleResource"],
            &rule,
            "dcr-rule.json",
            &mut rule_errs,
        );
        errs.extend(rule_errs);
        assert!(errs.is_empty(), "{extra:?}: {errs:#?}");
        assert!(undeclared_references(&template).is_empty(), "{extra:?}");
        let table = resources[0]["properties"]["schema"]["name"]
            .as_str()
            .expect("table name");
        assert!(name_rule.is_match(table) && (4..=63).contains(&table.len()));
        // the flow writes the table's own stream, whatever the stream declared is called
        let flow = &resources[1]["properties"]["dataFlows"][0];
        assert_eq!(flow["outputStream"], "Custom-Shop_CL");
        // the script is bash that parses
        let script = out_dir.join("deploy-az.sh");
        let check = std::process::Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .expect("bash");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stderr)
        );
        // the agent blocks load as a configuration
        let mut c = dcrship();
        c.args(["check", "--config"])
            .arg(out_dir.join("agent.toml"));
        let checked = run(c).await;
        if extra.contains(&"--dce") || extra.is_empty() {
            // CSV: no [inputs] block (the agent tails line formats), only the output
            assert!(read("agent.toml").contains("dcrship send --config"));
        }
        assert_eq!(checked.status.code(), Some(0), "{}", stderr(&checked));
        if extra.contains(&"auxiliary") {
            assert!(read("agent.toml").contains("max_time_span = \"30m\""));
            assert_eq!(resources[0]["properties"]["plan"], "Auxiliary");
            let body = read("deploy-az.sh");
            let body = body
                .split("--body '")
                .nth(1)
                .and_then(|b| b.split('\'').next())
                .expect("table body in the script");
            let body: Value = serde_json::from_str(body).expect("body JSON");
            let mut errs = Vec::new();
            validate(
                &tables,
                &tables["definitions"]["Table"],
                &body,
                "body",
                &mut errs,
            );
            assert!(errs.is_empty(), "{errs:#?}");
        }
    }
}

/// The validator itself refuses what the schemas forbid (so the test above can fail).
#[test]
fn the_schema_check_finds_what_is_wrong() {
    let dcr_schema = schema("dataCollectionRules-2023-03-11.json");
    let bad = json!({
        "kind": "Sideways",
        "properties": {
            "immutableId": "dcr-1",
            "streamDeclarations": {"Custom-X": {"columns": [{"name": "Id", "type": "guid"}]}},
            "dataFlows": [{"streams": ["Custom-X"], "transformKql": 1, "bogus": true}],
        }
    });
    let mut errs = Vec::new();
    validate(
        &dcr_schema,
        &dcr_schema["definitions"]["DataCollectionRuleResource"],
        &bad,
        "dcr",
        &mut errs,
    );
    let all = errs.join("\n");
    for want in [
        "required property location",
        "\"Sideways\" is not one of",
        "immutableId: read-only",
        "\"guid\" is not one of",
        "transformKql: expected a string",
        "bogus: not in the schema",
    ] {
        assert!(all.contains(want), "{want} in\n{all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_s_stream_takes_send_s_rows_as_they_are() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    // The fake knows only the streams its DCR declares, as Azure does.
    fake.declare(DCR, "Custom-Shop_CL");
    let dir = tempfile::tempdir().expect("tmp");
    let file = fixture("dcr/shop.ndjson");
    let edits = [
        "--time-field",
        "ts",
        "--rename",
        "TenantId=Tenant",
        "--rename",
        "client-ip=ClientIp",
    ];
    let out_dir = dir.path().join("azure");
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Shop", "--out-dir"])
        .arg(&out_dir)
        .args(edits)
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let template_path = out_dir.join("template.json");
    let template: Value =
        serde_json::from_str(&std::fs::read_to_string(&template_path).expect("read"))
            .expect("template");
    let declared = stream_columns(&template["resources"][1], "Custom-Shop_CL");

    // send, reading the stream's columns from the template (--schema)
    let mut c = dcrship();
    c.arg("send")
        .args([
            "--endpoint",
            &fake.url(),
            "--dcr",
            DCR,
            "--stream",
            "Custom-Shop_CL",
        ])
        .args(["--auth", "static", "--no-progress", "--summary", "json"])
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN)
        .arg("--schema")
        .arg(&template_path)
        .args(edits)
        .arg(&file);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        (s["rows_read"].as_u64(), s["rows_sent"].as_u64()),
        (Some(4), Some(4))
    );
    assert_eq!(s["values_uncoercible"], 0);
    assert_eq!(s["fields_undeclared"], 0);
    let rows: Vec<Value> = fake.accepted().iter().flat_map(|r| r.rows()).collect();
    assert_rows_fit(&rows, &declared);
    assert_eq!(rows[0]["TimeGenerated"], "2026-05-01T12:00:00.000000Z");
    assert_eq!(rows[0]["big"], 5_000_000_000i64);
    assert_eq!(rows[0]["customer"], json!({"id": 7, "tier": "gold"}));
    assert_eq!(rows[2]["status"], "n/a");
    assert_eq!(rows[0]["status"], "200");
    assert_eq!(rows[0]["Tenant"], "t1");
    assert!(
        rows[0].get("ts").is_none(),
        "the time field became TimeGenerated"
    );
}

/// The (name, type) columns a DCR resource declares for `stream`.
fn stream_columns(dcr: &Value, stream: &str) -> Vec<(String, String)> {
    dcr["properties"]["streamDeclarations"][stream]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c["type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The four rows of shop.ndjson arrived, with only declared columns, each value of its type.
fn assert_rows_fit(rows: &[Value], declared: &[(String, String)]) {
    assert_eq!(rows.len(), 4);
    for row in rows {
        let obj = row.as_object().expect("row");
        for k in obj.keys() {
            assert!(declared.iter().any(|(n, _)| n == k), "{k} undeclared");
        }
        for (name, ty) in declared {
            let Some(v) = obj.get(name) else { continue };
            let fits = match ty.as_str() {
                _ if v.is_null() => true,
                "string" => v.is_string(),
                "int" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "long" => v.is_i64(),
                "real" => v.is_number(),
                "boolean" => v.is_boolean(),
                "datetime" => v
                    .as_str()
                    .is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
                "dynamic" => true,
                other => panic!("type {other}"),
            };
            assert!(fits, "{name}: {v} is not {ty}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_toml_blocks_run_the_agent_into_the_template_s_stream() {
    let fake = Fake::start(|_| Reply::Status(204)).await;
    // The fake knows only the streams its DCR declares, as Azure does.
    fake.declare(DCR, "Custom-Shop_CL");
    let dir = tempfile::tempdir().expect("tmp");
    let file = fixture("dcr/shop.ndjson");
    // the sample on stdin: the blocks read stdin, and the agent ends when it does
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Shop", "--print", "agent"])
        .args(["--time-field", "ts", "--rename", "TenantId=Tenant"])
        .args(["--rename", "client-ip=ClientIp", "--drop", "items"])
        .stdin(std::fs::File::open(&file).expect("open"));
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let blocks = stdout(&out);
    assert!(blocks.contains("type = \"stdin\""), "{blocks}");
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Shop", "--print", "arm"])
        .args(["--time-field", "ts", "--rename", "TenantId=Tenant"])
        .args(["--rename", "client-ip=ClientIp", "--drop", "items"])
        .arg(&file);
    let out = run(c).await;
    let template: Value = serde_json::from_str(&stdout(&out)).expect("template");
    let declared = stream_columns(&template["resources"][1], "Custom-Shop_CL");
    assert!(!declared.iter().any(|(n, _)| n == "items"));

    let state = dir.path().join("state");
    let config = format!(
        "[agent]\nstate_dir = {:?}\nhttp_listen = \"\"\n\n[auth]\nmethod = \"static\"\n\n{}",
        state.display(),
        blocks
            .replace(
                "https://REPLACE-WITH-LOGS-INGESTION-ENDPOINT.ingest.monitor.azure.com",
                &fake.url()
            )
            .replace("dcr-00000000000000000000000000000000", DCR)
    );
    let path = write_file(dir.path(), "agent.toml", &config);
    let mut c = dcrship();
    c.args(["run", "--config"])
        .arg(&path)
        .env("DCRSHIP_ACCESS_TOKEN", TOKEN)
        .stdin(std::fs::File::open(&file).expect("open"));
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows: Vec<Value> = fake.accepted().iter().flat_map(|r| r.rows()).collect();
    assert_rows_fit(&rows, &declared);
    assert_eq!(rows[0]["TimeGenerated"], "2026-05-01T12:00:00.000000Z");
    assert_eq!(rows[0]["ClientIp"], "10.0.0.1");
    assert!(rows.iter().all(|r| r.get("items").is_none()));
}

/// The shared real samples (loghub, an Apache access log), when present: CI runs on a clean
/// clone without them, so the test says it skipped. `DCRSHIP_REALDATA` names another place.
fn realdata() -> Option<PathBuf> {
    let root = std::env::var("DCRSHIP_REALDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/work/shared/realdata"));
    if root.join("loghub").is_dir() {
        Some(root)
    } else {
        eprintln!(
            "skipped: no real samples at {} (set DCRSHIP_REALDATA)",
            root.display()
        );
        None
    }
}

fn gunzip(from: &Path, to: &Path) -> PathBuf {
    use std::io::Read;
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(from).expect("sample"))
        .read_to_end(&mut text)
        .expect("gunzip");
    std::fs::write(to, text).expect("write");
    to.to_path_buf()
}

fn type_of<'a>(r: &'a Value, column: &str) -> &'a str {
    r["columns"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == column))
        .and_then(|c| c["type"].as_str())
        .unwrap_or("absent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_on_the_shared_real_samples() {
    let Some(root) = realdata() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let mut sets: Vec<String> = std::fs::read_dir(root.join("loghub"))
        .expect("loghub")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    sets.sort();
    assert_eq!(sets.len(), 16, "{sets:?}");
    for set in &sets {
        let csv = gunzip(
            &root.join(format!("loghub/{set}/{set}_2k.log_structured.csv.gz")),
            &dir.path().join(format!("{set}.csv")),
        );
        let r = infer_json(&[csv.to_str().expect("path")]).await;
        eprintln!(
            "{set}.csv: {}",
            types(&r)
                .iter()
                .map(|(n, t)| format!("{n}:{t}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(r["rows"], 2000, "{set}");
        assert_eq!(type_of(&r, "LineId"), "int", "{set}");
        assert_eq!(type_of(&r, "EventId"), "string", "{set}");
        assert_eq!(type_of(&r, "Content"), "string", "{set}");
        let errors: Vec<(String, String)> = r["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .filter(|i| i["severity"] == "error")
            .map(|i| {
                (
                    i["column"].as_str().unwrap_or_default().to_string(),
                    i["fix"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        // BGL's "Type" column is one of Azure's reserved names; no other set has a refused one
        let want = if set == "BGL" {
            pairs(&[("Type", "--rename Type=Type_")])
        } else {
            Vec::new()
        };
        assert_eq!(errors, want, "{set}");
    }
    // raw syslog files (RFC 3164 lines without PRI, as rsyslog writes them)
    for set in ["Linux", "OpenSSH", "Mac"] {
        let log = gunzip(
            &root.join(format!("loghub/{set}/{set}_2k.log.gz")),
            &dir.path().join(format!("{set}.log")),
        );
        let r = infer_json(&["--format", "syslog", log.to_str().expect("path")]).await;
        eprintln!(
            "{set}.log (syslog): {}",
            types(&r)
                .iter()
                .map(|(n, t)| format!("{n}:{t}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(r["rows"], 2000, "{set}");
        for (col, ty) in [
            ("EventTime", "datetime"),
            ("HostName", "string"),
            ("ProcessID", "int"),
            ("SyslogMessage", "string"),
        ] {
            assert_eq!(type_of(&r, col), ty, "{set} {col}");
        }
    }
    // the Apache access log through a regex, its time read with a strftime format
    let log = gunzip(
        &root.join("access/apache_logs.gz"),
        &dir.path().join("access.log"),
    );
    let pattern = r#"^(?P<ClientIp>\S+) \S+ (?P<RemoteUser>\S+) \[(?P<Time>[^\]]+)\] "(?P<Method>\S+) (?P<Path>\S+) (?P<Protocol>[^"]*)" (?P<Status>\d{3}) (?P<Bytes>\S+) "(?P<Referrer>[^"]*)" "(?P<UserAgent>[^"]*)"$"#;
    let r = infer_json(&[
        "--format",
        "regex",
        "--pattern",
        pattern,
        "--time-field",
        "Time",
        "--time-format",
        "%d/%b/%Y:%H:%M:%S %z",
        log.to_str().expect("path"),
    ])
    .await;
    eprintln!(
        "apache_logs (regex): {}",
        types(&r)
            .iter()
            .map(|(n, t)| format!("{n}:{t}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(r["rows"], 10_000);
    assert_eq!(r["read"]["time_unparsable"], 0);
    assert_eq!(type_of(&r, "Status"), "int");
    // "-" for no body: a mix, declared string and reported
    assert_eq!(type_of(&r, "Bytes"), "string");
    assert!(!issues_of(&r, "Bytes").is_empty());
    assert_eq!(
        type_of(&r, "Time"),
        "absent",
        "the time field became TimeGenerated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_from_an_exported_dcr_declares_its_columns_again() {
    let export = fixture("dcr-arm-export.json");
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Test", "--schema"])
        .arg(&export)
        .args(["--print", "rule"]);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rule: Value = serde_json::from_str(&stdout(&out)).expect("rule");
    let mut got = stream_columns(&rule, "Custom-Test_CL");
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&export).expect("export")).expect("json");
    let mut want: Vec<(String, String)> =
        stream_columns(&original["resources"][0], "Custom-Test_CL")
            .into_iter()
            .map(|(n, t)| (n, t.to_ascii_lowercase()))
            .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // a stream the export does not declare is an error naming the ones it does
    let mut c = dcrship();
    c.args(["dcr", "template", "--table", "Nope", "--schema"])
        .arg(&export);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Custom-Other_CL, Custom-Test_CL"),
        "{}",
        stderr(&out)
    );
}

const SUB: &str = "00000000-0000-0000-0000-0000000000s1";
const WS: &str = "/subscriptions/00000000-0000-0000-0000-0000000000s1/resourceGroups/rg-logs/providers/Microsoft.OperationalInsights/workspaces/ws";
const OID: &str = "0a1b2c3d-0000-4000-8000-00000000abcd";

/// A fake of Resource Manager and of the new DCR's ingestion endpoint, on one port: the
/// workspace, the table (a long-running operation polled twice), the DCR, the role assignment
/// (`role` answers), and the stream (403 `forbidden_posts` times, then 204).
async fn fake_azure(role: Reply, forbidden_posts: usize, dcr_put: Option<Reply>) -> Fake {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, OnceLock};
    let url: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
    let u = url.clone();
    let polls = AtomicUsize::new(0);
    let posts = AtomicUsize::new(0);
    let fake = Fake::start(move |r| {
        let base = u.get().cloned().unwrap_or_default();
        let p = r.path.as_str();
        match r.method.as_str() {
            "GET" if p == WS => Reply::json(200, json!({"id": WS, "location": "West Europe"})),
            "PUT" if p == format!("{WS}/tables/Shop_CL") => Reply::Full {
                status: 202,
                headers: vec![
                    ("azure-asyncoperation".into(), format!("{base}/operations/t1")),
                    ("retry-after".into(), "0".into()),
                ],
                body: String::new(),
            },
            "GET" if p == "/operations/t1" => {
                let status = if polls.fetch_add(1, Ordering::SeqCst) == 0 {
                    "InProgress"
                } else {
                    "Succeeded"
                };
                Reply::json(200, json!({ "status": status }))
            }
            "GET" if p == format!("{WS}/tables/Shop_CL") => {
                Reply::json(200, json!({"properties": {"provisioningState": "Succeeded"}}))
            }
            "PUT" if p.contains("/roleAssignments/") => role.clone(),
            "PUT" if p.ends_with("/dataCollectionRules/dcr-shop") => {
                dcr_put.clone().unwrap_or_else(|| {
                    Reply::json(
                        200,
                        json!({"properties": {"immutableId": DCR, "endpoints": {"logsIngestion": base}}}),
                    )
                })
            }
            "POST" if p.contains("/streams/Custom-Shop_CL") => {
                if posts.fetch_add(1, Ordering::SeqCst) < forbidden_posts {
                    Reply::json(403, json!({"error": {"code": "OperationFailed", "message": "no role"}}))
                } else {
                    Reply::Status(204)
                }
            }
            _ => Reply::Status(404),
        }
    })
    .await;
    // The fake knows only the streams its DCR declares, as Azure does.
    fake.declare(DCR, "Custom-Shop_CL");
    let _ = url.set(fake.url());
    fake
}

fn create_cmd(fake: &Fake, token: &str, extra: &[&str]) -> tokio::process::Command {
    let mut c = dcrship();
    c.args([
        "dcr",
        "create",
        "--table",
        "Shop",
        "--workspace-resource-id",
        WS,
    ])
    .args(["--arm-endpoint", &fake.url(), "--auth", "static"])
    .args(["--time-field", "ts", "--rename", "TenantId=Tenant"])
    .args(["--rename", "client-ip=ClientIp"])
    .args(extra)
    .arg(fixture("dcr/shop.ndjson"))
    .env("DCRSHIP_ACCESS_TOKEN", token);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_makes_the_table_the_dcr_and_the_role_then_waits_for_the_stream() {
    let role = Reply::json(201, json!({"properties": {}}));
    let fake = fake_azure(role, 2, None).await;
    let jwt = fake_jwt(OID);
    let out = run(create_cmd(&fake, &jwt, &[])).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let reqs = fake.requests();
    let steps: Vec<String> = reqs
        .iter()
        .map(|r| {
            let what = if r.path.contains("/roleAssignments/") {
                "role"
            } else if r.path.contains("/streams/") {
                "stream"
            } else if r.path.contains("/dataCollectionRules/") {
                "dcr"
            } else if r.path.contains("/tables/") {
                "table"
            } else if r.path.starts_with("/operations/") {
                "operation"
            } else {
                "workspace"
            };
            format!("{} {what}", r.method)
        })
        .collect();
    assert_eq!(
        steps,
        [
            "GET workspace",
            "PUT table",
            "GET operation",
            "GET operation",
            "GET table",
            "PUT dcr",
            "PUT role",
            "POST stream",
            "POST stream",
            "POST stream"
        ]
    );
    let token = format!("Bearer {jwt}");
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(token.as_str()),
            "{}",
            r.path
        );
    }
    let api = |r: &Req| {
        r.query_map()
            .get("api-version")
            .cloned()
            .unwrap_or_default()
    };
    let body = |r: &Req| -> Value { serde_json::from_slice(&r.body).expect("JSON body") };

    let table = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.path.contains("/tables/"))
        .expect("table");
    assert_eq!(api(table), "2025-07-01");
    let tables = schema("tables-2025-07-01.json");
    let mut errs = Vec::new();
    validate(
        &tables,
        &tables["definitions"]["Table"],
        &body(table),
        "table",
        &mut errs,
    );

    let dcr = reqs
        .iter()
        .find(|r| r.method == "PUT" && r.path.ends_with("/dataCollectionRules/dcr-shop"))
        .expect("dcr");
    assert_eq!(api(dcr), "2023-03-11");
    assert_eq!(
        dcr.path,
        format!("/subscriptions/{SUB}/resourceGroups/rg-logs/providers/Microsoft.Insights/dataCollectionRules/dcr-shop")
    );
    let dcr_body = body(dcr);
    let dcrs = schema("dataCollectionRules-2023-03-11.json");
    validate(
        &dcrs,
        &dcrs["definitions"]["DataCollectionRuleResource"],
        &dcr_body,
        "dcr",
        &mut errs,
    );
    assert_eq!(dcr_body["location"], "westeurope", "the workspace's region");
    assert_eq!(dcr_body["kind"], "Direct");
    assert_eq!(
        dcr_body["properties"]["destinations"]["logAnalytics"][0]["workspaceResourceId"],
        WS
    );

    let role = reqs
        .iter()
        .find(|r| r.path.contains("/roleAssignments/"))
        .expect("role");
    assert_eq!(api(role), "2022-04-01");
    assert!(role.path.starts_with(&format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/",
        dcr.path
    )));
    let role_body = body(role);
    let roles = schema("roleAssignments-2022-04-01.json");
    validate(
        &roles,
        &roles["definitions"]["RoleAssignmentCreateParameters"],
        &role_body,
        "role",
        &mut errs,
    );
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(
        role_body["properties"]["principalId"], OID,
        "the identity running create"
    );
    assert_eq!(
        role_body["properties"]["roleDefinitionId"],
        format!("/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/3913510d-42f4-4e42-8a64-420c390055eb")
    );

    // the stream was asked with [] until it accepted, at the DCR's own endpoint
    let post = reqs.iter().rfind(|r| r.method == "POST").expect("post");
    assert_eq!(
        post.path,
        format!("/dataCollectionRules/{DCR}/streams/Custom-Shop_CL")
    );
    assert_eq!(post.raw_body(), b"[]");
    // the agent blocks carry the real endpoint and DCR id
    let blocks = stdout(&out);
    assert!(
        blocks.contains(&format!("endpoint = \"{}\"", fake.url())),
        "{blocks}"
    );
    assert!(blocks.contains(&format!("dcr = \"{DCR}\"")), "{blocks}");
    assert!(
        stderr(&out).contains("the stream accepts rows"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_says_what_is_missing_and_does_not_wait_for_another_identity() {
    // a role granted before is fine; the principal is another identity: no waiting
    let exists = Reply::json(
        409,
        json!({"error": {"code": "RoleAssignmentExists", "message": "The role assignment already exists."}}),
    );
    let fake = fake_azure(exists, 0, None).await;
    let other = "11111111-2222-4333-8444-555555555555";
    let dir = tempfile::tempdir().expect("tmp");
    let out_dir = dir.path().join("made");
    let mut c = create_cmd(
        &fake,
        &fake_jwt(OID),
        &["--principal-id", other, "--location", "northeurope"],
    );
    c.arg("--out-dir").arg(&out_dir);
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("the role was granted before"), "{err}");
    assert!(err.contains("granted to another identity"), "{err}");
    let reqs = fake.requests();
    assert!(!reqs.iter().any(|r| r.method == "POST"), "no probe");
    assert!(!reqs.iter().any(|r| r.path == WS), "the location was given");
    let role = reqs
        .iter()
        .find(|r| r.path.contains("/roleAssignments/"))
        .expect("role");
    let role_body: Value = serde_json::from_slice(&role.body).expect("json");
    assert_eq!(role_body["properties"]["principalId"], other);
    let toml = std::fs::read_to_string(out_dir.join("agent.toml")).expect("agent.toml");
    assert!(toml.contains(&format!("dcr = \"{DCR}\"")), "{toml}");

    // Resource Manager refuses the DCR: exit 4 with what the identity needs
    let refused = Reply::json(
        403,
        json!({"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}}),
    );
    let fake = fake_azure(Reply::Status(201), 0, Some(refused)).await;
    let out = run(create_cmd(&fake, &fake_jwt(OID), &[])).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("data collection rule dcr-shop: HTTP 403 AuthorizationFailed"),
        "{err}"
    );
    assert!(err.contains("Contributor"), "{err}");
    assert!(!fake
        .requests()
        .iter()
        .any(|r| r.path.contains("/roleAssignments/")));

    // the stream still refuses when the wait is over: exit 4
    let fake = fake_azure(Reply::Status(201), 1000, None).await;
    let out = run(create_cmd(&fake, &fake_jwt(OID), &["--wait", "2s"])).await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("still answers 403"),
        "{}",
        stderr(&out)
    );

    // no workspace: a usage error before anything is sent
    let mut c = dcrship();
    c.args(["dcr", "create", "--table", "Shop"])
        .arg(fixture("dcr/shop.ndjson"));
    let out = run(c).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--workspace-resource-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_never_sends_the_token_to_a_poll_url_elsewhere() {
    let seen_elsewhere = Fake::start(|_| Reply::json(200, json!({"status": "Succeeded"}))).await;
    let elsewhere = format!("{}/operations/x", seen_elsewhere.url());
    let fake = Fake::start(move |r| {
        if r.method == "PUT" && r.path.contains("/tables/") {
            Reply::Full {
                status: 202,
                headers: vec![("azure-asyncoperation".into(), elsewhere.clone())],
                body: String::new(),
            }
        } else {
            Reply::json(200, json!({"location": "westeurope"}))
        }
    })
    .await;
    // The fake knows only the streams its DCR declares, as Azure does.
    fake.declare(DCR, "Custom-Shop_CL");
    let out = run(create_cmd(&fake, &fake_jwt(OID), &[])).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not sending the token there"),
        "{}",
        stderr(&out)
    );
    assert!(seen_elsewhere.requests().is_empty());
}
