//! Per-input field edits: `drop`, `rename`, and static `fields`, applied in that order to a
//! record's members before the row is written.
//!
//! `drop` and `rename` name the record's own (source) fields; `fields` set columns to fixed
//! values and win over a same-named field of the record. Names that become columns (rename
//! targets, `fields` keys) are checked against Azure's column-name rules when the configuration
//! is loaded, so they can be written into rows without escaping.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::columns::Val;

/// One member of a row on its way out: the column name and its value.
pub type Member<'a> = (Cow<'a, str>, Val<'a>);

/// The edits of one input.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldOps {
    drop: Vec<String>,
    rename: Vec<(String, String)>,
    /// Column name and its value as JSON text.
    set: Vec<(String, String)>,
}

impl FieldOps {
    pub fn new(
        fields: &BTreeMap<String, Value>,
        rename: &BTreeMap<String, String>,
        drop: &[String],
    ) -> Self {
        FieldOps {
            drop: drop.to_vec(),
            rename: rename.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            set: fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.rename.is_empty() && self.set.is_empty()
    }

    /// Names `fields` sets.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.set.iter().map(|(k, _)| k.as_str())
    }

    /// The column a source field ends up in: `None` when it is dropped.
    pub fn target<'n>(&'n self, source: &'n str) -> Option<&'n str> {
        if self.drop.iter().any(|d| d == source) {
            return None;
        }
        Some(
            self.rename
                .iter()
                .find(|(from, _)| from == source)
                .map_or(source, |(_, to)| to.as_str()),
        )
    }

    /// The source field renamed to `column`, if a rename targets it.
    pub fn rename_source(&self, column: &str) -> Option<&str> {
        self.rename
            .iter()
            .find(|(_, to)| to == column)
            .map(|(from, _)| from.as_str())
    }

    /// Applies drop, rename, then fields to `members` (keys unique before and after).
    pub fn apply<'a>(&'a self, members: &mut Vec<Member<'a>>) {
        if !self.drop.is_empty() {
            members.retain(|(k, _)| !self.drop.iter().any(|d| d == k));
        }
        for (from, to) in &self.rename {
            let Some(mut i) = members.iter().position(|(k, _)| k == from) else {
                continue;
            };
            // The renamed field replaces one that already had the new name.
            if let Some(j) = members.iter().position(|(k, _)| k == to) {
                if j != i {
                    members.remove(j);
                    if j < i {
                        i -= 1;
                    }
                }
            }
            members[i].0 = Cow::Borrowed(to);
        }
        for (name, json) in &self.set {
            match members.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = Val::Json(json),
                None => members.push((Cow::Borrowed(name), Val::Json(json))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(ops: &FieldOps, input: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
        let mut members: Vec<Member<'_>> = input
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Val::Json(v)))
            .collect();
        ops.apply(&mut members);
        members
            .into_iter()
            .map(|(k, v)| {
                let Val::Json(t) = v else { panic!("json") };
                (k.into_owned(), t.to_string())
            })
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn drop_rename_then_set() {
        let ops = FieldOps::new(
            &BTreeMap::from([
                ("Env".to_string(), json!("prod")),
                ("Shard".to_string(), json!(3)),
                ("Level".to_string(), json!("fixed")),
            ]),
            &BTreeMap::from([
                ("msg".to_string(), "Message".to_string()),
                ("lvl".to_string(), "Level".to_string()),
                ("pid".to_string(), "Pid".to_string()),
            ]),
            &["pid".to_string(), "secret".to_string()],
        );
        let got = run(
            &ops,
            &[
                ("msg", "\"hi\""),
                ("pid", "7"),
                ("secret", "\"x\""),
                ("lvl", "\"warn\""),
                ("Env", "\"dev\""),
            ],
        );
        assert_eq!(
            got,
            pairs(&[
                ("Message", "\"hi\""),
                ("Level", "\"fixed\""),
                ("Env", "\"prod\""),
                ("Shard", "3"),
            ])
        );
        assert_eq!(ops.target("msg"), Some("Message"));
        assert_eq!(ops.target("pid"), None);
        assert_eq!(ops.target("other"), Some("other"));
        assert!(FieldOps::default().is_empty() && !ops.is_empty());
    }

    #[test]
    fn a_rename_onto_an_existing_name_replaces_it() {
        let ops = FieldOps::new(
            &BTreeMap::new(),
            &BTreeMap::from([("b".to_string(), "a".to_string())]),
            &[],
        );
        assert_eq!(
            run(&ops, &[("a", "1"), ("b", "2"), ("c", "3")]),
            pairs(&[("a", "2"), ("c", "3")])
        );
        assert_eq!(
            run(&ops, &[("c", "3"), ("b", "2"), ("a", "1")]),
            pairs(&[("c", "3"), ("a", "2")])
        );
    }
}
