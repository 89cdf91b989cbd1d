//! Azure's rules for the names a custom table needs — columns, the table, its stream, the DCR —
//! and, for a column name Azure refuses, a name it accepts.
//!
//! Column rules (Azure Monitor docs, "Add or delete tables and columns", column name rules): a
//! letter first, then letters, digits and `_`; 2 to 45 characters; not one of the system or
//! reserved columns. The syntax check is [`validate_column_name`], the one `send` and the
//! config file use.

use crate::azure::validate_stream;
use crate::transform::columns::{validate_column_name, MAX_COLUMN_NAME};

/// The system and reserved column names a custom table may not declare (the documented list).
pub const RESERVED: [&str; 13] = [
    "id",
    "BilledSize",
    "IsBillable",
    "InvalidTimeGenerated",
    "TenantId",
    "Title",
    "Type",
    "UniqueId",
    "_ItemId",
    "_ResourceGroup",
    "_ResourceId",
    "_SubscriptionId",
    "_TimeReceived",
];

/// The suffix of a custom table's name.
pub const TABLE_SUFFIX: &str = "_CL";
/// A table resource name's length (the Tables API: 4 to 63 characters).
const MAX_TABLE_NAME: usize = 63;
/// A data collection rule's name.
const MAX_DCR_NAME: usize = 64;

/// What is wrong with a column name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameProblem {
    /// Azure refuses the name: why.
    Invalid(String),
    /// One of [`RESERVED`], exactly: Azure refuses it.
    Reserved,
    /// A reserved name in other letter case (`type`, `ID`): the service's check is not
    /// documented as case-sensitive, and Auxiliary tables treat names that differ only in case
    /// as the same column.
    ReservedCase(&'static str),
}

impl NameProblem {
    /// Azure will refuse a table or DCR with this name.
    pub fn refused(&self) -> bool {
        !matches!(self, NameProblem::ReservedCase(_))
    }

    pub fn describe(&self, name: &str) -> String {
        match self {
            NameProblem::Invalid(why) => why.clone(),
            NameProblem::Reserved => {
                format!("column name {name:?} is reserved by Azure Monitor (a system column)")
            }
            NameProblem::ReservedCase(r) => format!(
                "column name {name:?} differs only in case from the reserved column {r:?}; \
                 Azure may refuse it, and Auxiliary tables take it for the same column"
            ),
        }
    }
}

/// What Azure thinks of `name` as a custom table column; `None`: it is fine.
pub fn column_problem(name: &str) -> Option<NameProblem> {
    if let Some(r) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(name)) {
        return Some(if *r == name {
            NameProblem::Reserved
        } else {
            NameProblem::ReservedCase(r)
        });
    }
    if let Err(why) = validate_column_name(name) {
        return Some(NameProblem::Invalid(why));
    }
    if name.len() < 2 {
        return Some(NameProblem::Invalid(format!(
            "column name {name:?} is 1 character; Azure wants 2 to {MAX_COLUMN_NAME}"
        )));
    }
    None
}

/// A column name Azure accepts, made from `name`, that `taken` does not hold: other characters
/// become `_`, a name must start with a letter, a reserved name gets a `_` after it, and a
/// number is added until the name is free.
pub fn suggest(name: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let letter = s.find(|c: char| c.is_ascii_alphabetic());
    s = match letter {
        // Leading underscores carry no meaning (`_ResourceId` → `ResourceId`); a leading digit
        // does (`2xx`), so it is kept behind a letter.
        Some(i) if s[..i].bytes().all(|b| b == b'_') => s[i..].to_string(),
        _ => format!("F{}", s.trim_start_matches('_')),
    };
    if s.len() < 2 {
        s.push('_');
    }
    s.truncate(MAX_COLUMN_NAME);
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&s)) {
        s.push('_');
    }
    if !taken(&s) {
        return s;
    }
    for n in 2u32.. {
        let suffix = n.to_string();
        let mut t = s.clone();
        t.truncate(MAX_COLUMN_NAME - suffix.len());
        t.push_str(&suffix);
        if !taken(&t) {
            return t;
        }
    }
    s // unreachable: some number is free
}

/// The custom table's name from `--table`: `MyApp` or `MyApp_CL` → `MyApp_CL`. A letter first,
/// then letters, digits and `_` (hyphens, allowed in the resource name, would need quoting in
/// every query), 4 to 63 characters with the suffix.
pub fn table_name(given: &str) -> Result<String, String> {
    let base = given.strip_suffix(TABLE_SUFFIX).unwrap_or(given);
    let full = format!("{base}{TABLE_SUFFIX}");
    if !base.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("table name {given:?} must start with a letter"));
    }
    if let Some(c) = base
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "table name {given:?} has {c:?}; use letters, digits and _"
        ));
    }
    if full.len() < 4 || full.len() > MAX_TABLE_NAME {
        return Err(format!(
            "table name {full:?} is {} characters; Azure wants 4 to {MAX_TABLE_NAME} (with {TABLE_SUFFIX})",
            full.len()
        ));
    }
    Ok(full)
}

/// The stream a table's rows are declared as, and its DCR's output stream.
pub fn stream_for_table(table: &str) -> String {
    format!("Custom-{table}")
}

/// A stream name of our own choosing: a custom stream.
pub fn check_stream(stream: &str) -> Result<(), String> {
    validate_stream(stream)?;
    if !stream.starts_with("Custom-") {
        return Err(format!(
            "the stream a DCR declares for its own rows starts with Custom-, found {stream:?}"
        ));
    }
    let rest = &stream["Custom-".len()..];
    if let Some(c) = rest
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "stream name {stream:?} has {c:?}; use letters, digits and _ after Custom-"
        ));
    }
    Ok(())
}

/// The DCR's name from the table's: `MyApp_CL` → `dcr-myapp`.
pub fn default_dcr_name(table: &str) -> String {
    let base = table.strip_suffix(TABLE_SUFFIX).unwrap_or(table);
    format!("dcr-{}", base.to_ascii_lowercase().replace('_', "-"))
}

/// A DCR name: 1 to 64 letters, digits, `-`, `_`, `.`, starting and ending with a letter or
/// digit.
pub fn check_dcr_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_DCR_NAME || !ends_ok || !name.chars().all(ok_char) {
        return Err(format!(
            "DCR name {name:?}: use 1 to {MAX_DCR_NAME} letters, digits, '-', '_' or '.', \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// An ARM resource id of `provider_type` (`Microsoft.OperationalInsights/workspaces`):
/// `/subscriptions/SUB/resourceGroups/RG/providers/TYPE/NAME`, each part letters, digits and
/// `.` `_` `-` `(` `)` — what Azure allows, and nothing a shell script would read as code.
pub fn check_resource_id(what: &str, id: &str, provider_type: &str) -> Result<(), String> {
    let parts: Vec<&str> = id.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '(' | ')'))
    };
    let typed: Vec<&str> = provider_type.split('/').collect();
    let shape = parts.len() == 7 + typed.len()
        && parts[0].is_empty()
        && parts[1].eq_ignore_ascii_case("subscriptions")
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && parts[5].eq_ignore_ascii_case("providers")
        && parts[6..6 + typed.len()]
            .iter()
            .zip(&typed)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
        && [parts[2], parts[4], parts[parts.len() - 1]]
            .into_iter()
            .all(ok_part);
    if shape {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected /subscriptions/SUB/resourceGroups/RG/providers/{provider_type}/NAME, \
             found {id:?}"
        ))
    }
}

/// A principal (object) id: a GUID.
pub fn check_guid(what: &str, id: &str) -> Result<(), String> {
    let groups: Vec<&str> = id.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: expected a GUID like 00000000-0000-0000-0000-000000000000, found {id:?}"
        ))
    }
}

/// A region's name as ARM writes it: `westeurope`, `eastus2`.
pub fn check_location(location: &str) -> Result<(), String> {
    if !location.is_empty()
        && location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(format!(
            "--location: expected a region name like westeurope or eastus2, found {location:?}"
        ))
    }
}

/// A resource group's name: letters, digits, `.` `_` `-` `(` `)`, not ending in `.`.
pub fn check_resource_group(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '(' | ')'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--resource-group: use up to 90 letters, digits, '.', '_', '-', '(' or ')', found {name:?}"
        ))
    }
}

/// A name for `[outputs.NAME]`: a TOML bare key.
pub fn check_output_name(name: &str) -> Result<(), String> {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        Ok(())
    } else {
        Err(format!(
            "--output-name: use letters, digits, '_' and '-', found {name:?}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_judged_as_azure_does() {
        use NameProblem::*;
        let cases: &[(&str, Option<&str>)] = &[
            ("Message", None),
            ("Level_2", None),
            ("TimeGenerated", None),
            ("ab", None),
            ("a", Some("invalid")),
            ("my-field", Some("invalid")),
            ("1st", Some("invalid")),
            ("naïve", Some("invalid")),
            ("TenantId", Some("reserved")),
            ("Type", Some("reserved")),
            ("id", Some("reserved")),
            ("_ResourceId", Some("reserved")),
            ("_TimeReceived", Some("reserved")),
            ("type", Some("case")),
            ("ID", Some("case")),
            ("tenantid", Some("case")),
            ("Types", None),
        ];
        for (name, want) in cases {
            let got = column_problem(name);
            let kind = got.as_ref().map(|p| match p {
                Invalid(_) => "invalid",
                Reserved => "reserved",
                ReservedCase(_) => "case",
            });
            assert_eq!(kind, *want, "{name}: {got:?}");
            if let Some(p) = got {
                assert_eq!(p.refused(), *want != Some("case"), "{name}");
                assert!(p.describe(name).contains(name), "{name}");
            }
        }
        let long = "x".repeat(46);
        assert!(matches!(column_problem(&long), Some(Invalid(m)) if m.contains("at most 45")));
    }

    #[test]
    fn suggestions_are_names_azure_accepts() {
        let none = |_: &str| false;
        let cases = [
            ("my-field", "my_field"),
            ("a.b.c", "a_b_c"),
            ("_ResourceId", "ResourceId"),
            ("__x", "x_"),
            ("1st", "F1st"),
            ("_2xx", "F2xx"),
            ("Type", "Type_"),
            ("id", "id_"),
            ("tenantId", "tenantId_"),
            ("a", "a_"),
            ("", "F_"),
            ("-", "F_"),
            ("naïve", "na_ve"),
        ];
        for (from, want) in cases {
            let got = suggest(from, &none);
            assert_eq!(got, want, "{from}");
            assert_eq!(column_problem(&got), None, "{from} -> {got}");
        }
        let long = suggest(&"y".repeat(60), &none);
        assert_eq!(long.len(), 45);
        // taken names get a number, still within 45 characters
        let taken = |s: &str| s == "my_field" || s == "my_field2";
        assert_eq!(suggest("my-field", &taken), "my_field3");
        let full = "z".repeat(45);
        let taken_full = |s: &str| s == full;
        let got = suggest(&full, &taken_full);
        assert_eq!((got.len(), got.ends_with('2')), (45, true));
    }

    #[test]
    fn table_stream_and_dcr_names() {
        assert_eq!(table_name("MyApp"), Ok("MyApp_CL".into()));
        assert_eq!(table_name("MyApp_CL"), Ok("MyApp_CL".into()));
        assert_eq!(table_name("a"), Ok("a_CL".into()));
        for bad in ["", "_CL", "1App", "my-app", "my app", &"t".repeat(61)] {
            assert!(table_name(bad).is_err(), "{bad}");
        }
        assert_eq!(stream_for_table("MyApp_CL"), "Custom-MyApp_CL");
        assert!(check_stream("Custom-MyApp_CL").is_ok());
        assert!(check_stream("Custom-Mine").is_ok());
        for bad in ["MyApp_CL", "Microsoft-Syslog", "Custom-my-app", "Custom-"] {
            assert!(check_stream(bad).is_err(), "{bad}");
        }
        assert_eq!(default_dcr_name("My_App_CL"), "dcr-my-app");
        assert!(check_dcr_name("dcr-my-app").is_ok());
        assert!(check_dcr_name(&default_dcr_name(&"T".repeat(60))).is_ok());
        for bad in ["", "-dcr", "dcr-", "dcr app", &"d".repeat(65)] {
            assert!(check_dcr_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_checked_for_their_shape() {
        let ws = "Microsoft.OperationalInsights/workspaces";
        let ok = "/subscriptions/0000-aa/resourceGroups/my-rg(1)/providers/Microsoft.OperationalInsights/workspaces/ws.1";
        assert!(check_resource_id("w", ok, ws).is_ok());
        assert!(check_resource_id("w", &ok.to_ascii_lowercase(), ws).is_ok());
        for bad in [
            "",
            "ws",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionEndpoints/d",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/w/x",
            "/subscriptions/s/resourceGroups/r$g/providers/Microsoft.OperationalInsights/workspaces/w",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/w\"x",
        ] {
            let e = check_resource_id("--workspace-resource-id", bad, ws).expect_err(bad);
            assert!(e.contains("--workspace-resource-id"), "{e}");
        }
        assert!(check_resource_id(
            "d",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionEndpoints/dce-1",
            "Microsoft.Insights/dataCollectionEndpoints"
        )
        .is_ok());
        assert!(check_guid("p", "0a1b2c3d-0000-4000-8000-00000000abcd").is_ok());
        for bad in [
            "",
            "0a1b2c3d00004000800000000000abcd",
            "0a1b2c3d-0000-4000-8000-00000000abcg",
            "0a1b2c3d-0000-4000-8000-00000000abcd0",
        ] {
            assert!(check_guid("p", bad).is_err(), "{bad}");
        }
        assert!(check_location("westeurope").is_ok());
        for bad in ["", "West Europe", "west-europe", "$(x)"] {
            assert!(check_location(bad).is_err(), "{bad}");
        }
        assert!(check_resource_group("rg-1.(a)_b").is_ok());
        for bad in ["", "rg.", "r g", "r/g", &"r".repeat(91)] {
            assert!(check_resource_group(bad).is_err(), "{bad}");
        }
        assert!(check_output_name("my-app_2").is_ok());
        for bad in ["", "my app", "a.b", "ä"] {
            assert!(check_output_name(bad).is_err(), "{bad}");
        }
    }
}
