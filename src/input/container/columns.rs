//! The columns a container row gets, named as in Azure's `ContainerLogV2` table so a custom
//! table of that shape takes the rows as they are:
//!
//! | column | from |
//! |---|---|
//! | `TimeGenerated` | the runtime's timestamp (to the microsecond) |
//! | `LogSource` | `stdout` or `stderr` |
//! | `LogMessage` | the message text (or, with `json_fields = "log-message"`, the app's JSON object) |
//! | `Computer` | the node's host name |
//! | `PodName`, `PodNamespace`, `ContainerName`, `ContainerId` | the kubelet's file names |
//! | `KubernetesMetadata` | `{"podUid": …}` from `/var/log/pods/<namespace>_<pod>_<uid>` |
//!
//! A column whose source says nothing (a file name of another shape, a line with no runtime
//! envelope) is left out, and the row encoder fills `TimeGenerated` with the time read. These
//! columns are written after the app's own fields, so on a clash they win.

use serde_json::{Map, Value};

use super::kubelet::PodRef;
use super::Stream;
use crate::transform::row::write_json_string;

/// The columns every row of one file gets, written once per file.
#[derive(Debug, Clone)]
pub struct FileColumns {
    /// `,"Computer":…,"PodName":…` — each member with its leading comma.
    json: String,
    values: Vec<(&'static str, Value)>,
}

impl FileColumns {
    /// `computer_json` is the host name as a JSON string.
    pub fn new(computer_json: &str, pod: &PodRef) -> Self {
        let mut values: Vec<(&'static str, Value)> = Vec::with_capacity(6);
        if let Ok(v @ Value::String(_)) = serde_json::from_str::<Value>(computer_json) {
            values.push(("Computer", v));
        }
        let named = [
            ("PodName", &pod.pod),
            ("PodNamespace", &pod.namespace),
            ("ContainerName", &pod.container),
            ("ContainerId", &pod.container_id),
        ];
        for (name, v) in named {
            if let Some(v) = v {
                values.push((name, Value::String(v.clone())));
            }
        }
        if let Some(uid) = &pod.uid {
            let meta = Map::from_iter([("podUid".to_string(), Value::String(uid.clone()))]);
            values.push(("KubernetesMetadata", Value::Object(meta)));
        }
        let mut json = String::new();
        for (name, v) in &values {
            json.push_str(",\"");
            json.push_str(name);
            json.push_str("\":");
            json.push_str(&v.to_string());
        }
        FileColumns { json, values }
    }
}

/// What one message adds to its file's columns.
#[derive(Debug, Clone, Copy)]
pub struct Envelope {
    pub time: Option<[u8; 27]>,
    pub stream: Option<Stream>,
}

/// `"TimeGenerated":…,"LogSource":…` and the file's columns, each member after a comma.
fn write_columns(out: &mut Vec<u8>, env: &Envelope, cols: &FileColumns) {
    if let Some(t) = &env.time {
        out.extend_from_slice(b",\"TimeGenerated\":\"");
        out.extend_from_slice(t);
        out.push(b'"');
    }
    if let Some(s) = env.stream {
        out.extend_from_slice(b",\"LogSource\":\"");
        out.extend_from_slice(s.name().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(cols.json.as_bytes());
}

/// Closes a row opened with `{` and members after commas: the first comma goes.
fn close(out: &mut Vec<u8>, opened_at: usize) {
    if out.get(opened_at + 1) == Some(&b',') {
        out.remove(opened_at + 1);
    }
    out.push(b'}');
}

/// A text message: `{"LogMessage":"…", …}`.
pub fn text_row(out: &mut Vec<u8>, message: &str, env: &Envelope, cols: &FileColumns) {
    let at = out.len();
    out.extend_from_slice(b"{\"LogMessage\":");
    write_json_string(message, out);
    write_columns(out, env, cols);
    close(out, at);
}

/// A JSON object message (its text, checked to be an object): the app's fields, then ours.
pub fn fields_row(out: &mut Vec<u8>, object: &str, env: &Envelope, cols: &FileColumns) {
    let at = out.len();
    let inner = object
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_default();
    out.push(b'{');
    if !inner.trim().is_empty() {
        out.push(b',');
        out.extend_from_slice(inner.as_bytes());
    }
    write_columns(out, env, cols);
    close(out, at);
}

/// A JSON object message as the `LogMessage` value (a dynamic column, as in ContainerLogV2).
pub fn object_message_row(out: &mut Vec<u8>, object: &str, env: &Envelope, cols: &FileColumns) {
    let at = out.len();
    out.extend_from_slice(b"{\"LogMessage\":");
    out.extend_from_slice(object.trim().as_bytes());
    write_columns(out, env, cols);
    close(out, at);
}

/// Our columns added to an object a parser made (`regex`, `logfmt`, `syslog`).
pub fn add_to_object(map: &mut Map<String, Value>, env: &Envelope, cols: &FileColumns) {
    if let Some(t) = &env.time {
        let t = String::from_utf8_lossy(t).into_owned();
        map.insert("TimeGenerated".into(), Value::String(t));
    }
    if let Some(s) = env.stream {
        map.insert("LogSource".into(), Value::String(s.name().into()));
    }
    for (name, v) in &cols.values {
        map.insert((*name).to_string(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols() -> FileColumns {
        let pod = PodRef {
            namespace: Some("shop".into()),
            pod: Some("web-1".into()),
            uid: Some("u-1".into()),
            container: Some("app".into()),
            container_id: Some("abc".into()),
        };
        FileColumns::new("\"node-7\"", &pod)
    }

    const T: &[u8; 27] = b"2026-12-07T05:00:00.123456Z";

    fn env() -> Envelope {
        Envelope {
            time: Some(*T),
            stream: Some(Stream::Stderr),
        }
    }

    fn parsed(out: &[u8]) -> Value {
        serde_json::from_slice(out).expect("valid JSON")
    }

    fn ours() -> Value {
        json!({"TimeGenerated": "2026-12-07T05:00:00.123456Z", "LogSource": "stderr",
               "Computer": "node-7", "PodName": "web-1", "PodNamespace": "shop",
               "ContainerName": "app", "ContainerId": "abc",
               "KubernetesMetadata": {"podUid": "u-1"}})
    }

    fn with(extra: Value) -> Value {
        let mut v = ours();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v
    }

    #[test]
    fn rows_carry_the_container_log_v2_columns() {
        let mut out = Vec::new();
        text_row(&mut out, "a \"quoted\"\tline", &env(), &cols());
        assert_eq!(
            parsed(&out),
            with(json!({"LogMessage": "a \"quoted\"\tline"}))
        );

        out.clear();
        fields_row(&mut out, r#" {"level":"info","n":1} "#, &env(), &cols());
        assert_eq!(parsed(&out), with(json!({"level": "info", "n": 1})));

        out.clear();
        fields_row(&mut out, "{ }", &env(), &cols());
        assert_eq!(parsed(&out), ours());

        out.clear();
        object_message_row(&mut out, r#"{"level":"info"}"#, &env(), &cols());
        assert_eq!(parsed(&out), with(json!({"LogMessage": {"level": "info"}})));

        let mut map = Map::new();
        map.insert("Level".into(), json!("warn"));
        add_to_object(&mut map, &env(), &cols());
        assert_eq!(Value::Object(map), with(json!({"Level": "warn"})));
    }

    #[test]
    fn what_is_not_known_is_left_out() {
        let mut out = Vec::new();
        let none = Envelope {
            time: None,
            stream: None,
        };
        text_row(
            &mut out,
            "x",
            &none,
            &FileColumns::new("\"h\"", &PodRef::default()),
        );
        assert_eq!(parsed(&out), json!({"LogMessage": "x", "Computer": "h"}));
        out.clear();
        fields_row(
            &mut out,
            "{}",
            &none,
            &FileColumns::new("", &PodRef::default()),
        );
        assert_eq!(parsed(&out), json!({}));
    }

    #[test]
    fn our_columns_win_over_the_apps() {
        let mut out = Vec::new();
        fields_row(&mut out, r#"{"PodName":"lies","msg":"x"}"#, &env(), &cols());
        let row = String::from_utf8(out).expect("utf8");
        let obj = crate::transform::raw_object::parse(&row).expect("object");
        let pod: Vec<_> = obj.members.iter().filter(|(k, _)| k == "PodName").collect();
        assert_eq!(pod.len(), 1);
        assert_eq!(pod[0].1, "\"web-1\"");
    }
}
