//! `exclude_units`, applied to the entries read: journalctl has no negative match. An entry is
//! left out when its `_SYSTEMD_UNIT` matches one of the names (globs allowed, `getty@*`; a name
//! without a type is a service, as for `units`). Systemd's own messages about a unit (from
//! PID 1, with `UNIT=`) and entries without a unit are kept. Pure.

use super::entry::Entry;

#[derive(Debug, Clone, Default)]
pub struct UnitFilter {
    exact: Vec<String>,
    globs: Vec<glob::Pattern>,
}

impl UnitFilter {
    /// `units` as [`super::options::unit_name`] spells them; a glob that does not compile is
    /// taken as an exact name.
    pub fn new(units: &[String]) -> Self {
        let mut f = UnitFilter::default();
        for u in units {
            match u.contains(['*', '?', '[']).then(|| glob::Pattern::new(u)) {
                Some(Ok(p)) => f.globs.push(p),
                _ => f.exact.push(u.clone()),
            }
        }
        f
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    /// Whether the entry is left out.
    pub fn excludes(&self, e: &Entry) -> bool {
        if self.is_empty() {
            return false;
        }
        let Some(unit) = e.text("_SYSTEMD_UNIT") else {
            return false;
        };
        self.exact.iter().any(|u| u == unit) || self.globs.iter().any(|g| g.matches(unit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::journald::entry::parse;

    #[test]
    fn units_are_excluded_by_name_or_glob() {
        let f = UnitFilter::new(&["cron.service".into(), "getty@*.service".into()]);
        let unit = |u: &str| parse(format!(r#"{{"_SYSTEMD_UNIT":"{u}"}}"#).as_bytes()).expect("e");
        for (u, out) in [
            ("cron.service", true),
            ("getty@tty1.service", true),
            ("ssh.service", false),
            ("cron.service.d", false),
        ] {
            assert_eq!(f.excludes(&unit(u)), out, "{u}");
        }
        let no_unit = parse(br#"{"UNIT":"cron.service"}"#).expect("e");
        assert!(!f.excludes(&no_unit));
        assert!(!UnitFilter::new(&[]).excludes(&unit("cron.service")));
    }
}
