//! The Prometheus text exposition format (0.0.4): `# HELP` / `# TYPE` lines, samples with
//! escaped label values, histograms as cumulative `_bucket{le}` series with `_sum` and `_count`.

use std::fmt::Write as _;

use super::histogram::Snapshot;
use super::Kind;

/// `# HELP` and `# TYPE` of one family. Help texts are ours and hold no backslash or newline.
pub fn header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

pub fn counter(out: &mut String, name: &str, labels: &[&str], values: &[String], v: u64) {
    out.push_str(name);
    write_labels(out, labels, values, None);
    let _ = writeln!(out, " {v}");
}

pub fn gauge(out: &mut String, name: &str, labels: &[&str], values: &[String], v: f64) {
    out.push_str(name);
    write_labels(out, labels, values, None);
    out.push(' ');
    write_float(out, v);
    out.push('\n');
}

/// `name_bucket{…,le="…"}` for each bound and `+Inf`, then `name_sum` and `name_count`.
pub fn histogram(out: &mut String, name: &str, labels: &[&str], values: &[String], h: &Snapshot) {
    let mut le = String::new();
    for (i, count) in h.cumulative.iter().enumerate() {
        le.clear();
        match h.bounds.get(i) {
            Some(b) => write_float(&mut le, *b),
            None => le.push_str("+Inf"),
        }
        let _ = write!(out, "{name}_bucket");
        write_labels(out, labels, values, Some(&le));
        let _ = writeln!(out, " {count}");
    }
    let _ = write!(out, "{name}_sum");
    write_labels(out, labels, values, None);
    out.push(' ');
    write_float(out, h.sum);
    out.push('\n');
    let _ = write!(out, "{name}_count");
    write_labels(out, labels, values, None);
    let _ = writeln!(out, " {}", h.count());
}

/// `{a="x",b="y"}` (with `le` last when given); nothing for a family without labels.
fn write_labels(out: &mut String, names: &[&str], values: &[String], le: Option<&str>) {
    if names.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    if let Some(le) = le {
        if !names.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

/// The format's three escapes in label values: backslash, double quote, line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Go's `ParseFloat` spellings for the special values; Rust's `Display` for the rest (it never
/// uses an exponent, which the format accepts as plain digits).
pub fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{v}");
    }
}
