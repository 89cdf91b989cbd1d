//! The environment as the token sources see it.
//!
//! Sources read `AZURE_*` variables through [`Env`] rather than `std::env`, so tests can hand each
//! source its own variables without racing other tests on the process environment.

use std::fmt;
use std::sync::Arc;

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A way to look up environment variables. Cheap to clone. Its `Debug` shows no values, since
/// some variables (`AZURE_CLIENT_SECRET`, `DCRSHIP_ACCESS_TOKEN`) are secrets.
#[derive(Clone)]
pub struct Env {
    lookup: Arc<Lookup>,
}

impl Env {
    /// The real process environment, read at each lookup.
    pub fn process() -> Self {
        Env {
            lookup: Arc::new(|name| std::env::var(name).ok()),
        }
    }

    /// A fixed set of variables (tests, or a snapshot).
    #[cfg(test)]
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Env {
            lookup: Arc::new(move |name| map.get(name).cloned()),
        }
    }

    /// The variable's value; unset and empty are the same thing, as for the Azure SDKs.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_counts_as_unset() {
        let env = Env::from_pairs([("A", "1"), ("B", ""), ("C", "  ")]);
        assert_eq!(env.get("A").as_deref(), Some("1"));
        assert_eq!(env.get("B"), None);
        assert_eq!(env.get("C"), None);
        assert_eq!(env.get("D"), None);
    }

    #[test]
    fn debug_shows_no_values() {
        let env = Env::from_pairs([("AZURE_CLIENT_SECRET", "s3cr3t-value")]);
        assert!(!format!("{env:?}").contains("s3cr3t"));
    }
}
