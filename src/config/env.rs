//! `${VAR}` expansion.

use std::cell::RefCell;
use std::collections::HashMap;

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------
// `${VAR}` expansion.
// ---------------------------------------------------------------------------------------------

/// A `${…}` reference that could not be expanded. Names variables, never their values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("environment variable {0} is not set; set it, or give a default: ${{{0}:-value}}")]
    Undefined(String),
    #[error("\"${{\" without a closing \"}}\" (write $$ for a literal $)")]
    Unclosed,
    #[error(
        "\"${{{0}}}\" is not a variable reference: write ${{NAME}} or ${{NAME:-default}}, \
         NAME being letters, digits and _ (write $$ for a literal $)"
    )]
    BadName(String),
}

/// Expands `${VAR}` and `${VAR:-default}` (default used when VAR is unset or empty, as in a
/// shell); `$$` is a literal `$`, and a `$` followed by anything else is kept as is.
pub fn expand_env(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unclosed)?;
            out.push_str(&substitute(&body[..end], lookup)?);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${…}` body: `NAME` or `NAME:-default`.
pub(super) fn substitute(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    if !is_var_name(name) {
        return Err(ExpandError::BadName(body.to_string()));
    }
    match (lookup(name), default) {
        (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(ExpandError::Undefined(name.to_string())),
    }
}

pub(super) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

thread_local! {
    /// The environment `${VAR}` sees while [`parse_str`] deserializes: the variables the text
    /// mentions, taken from the caller's lookup. Serde's derived code cannot pass context to a
    /// field's deserializer, so it travels here, for the duration of one parse on this thread.
    pub(super) static ENV_SNAPSHOT: RefCell<Option<HashMap<String, String>>> = const { RefCell::new(None) };
}

/// Installs an environment snapshot for the current thread; the previous one returns on drop.
pub(super) struct EnvScope {
    previous: Option<HashMap<String, String>>,
}

impl EnvScope {
    pub(super) fn enter(snapshot: HashMap<String, String>) -> Self {
        let previous = ENV_SNAPSHOT.with(|cell| cell.replace(Some(snapshot)));
        EnvScope { previous }
    }
}

impl Drop for EnvScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ENV_SNAPSHOT.with(|cell| *cell.borrow_mut() = previous);
    }
}

/// Looks every `${NAME` in the text up once, so the lookup closure need not outlive the call.
pub(super) fn snapshot_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> HashMap<String, String> {
    text.match_indices("${")
        .map(|(at, _)| {
            let rest = &text[at + 2..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .filter_map(|name| {
            let value = env(name).or_else(|| hostname_fallback(name))?;
            Some((name.to_string(), value))
        })
        .collect()
}

/// `${HOSTNAME}` is the machine's host name when the variable is unset: shells set it but do
/// not export it, so a systemd service never sees it.
pub(super) fn hostname_fallback(name: &str) -> Option<String> {
    (name == "HOSTNAME").then(|| gethostname::gethostname().to_string_lossy().into_owned())
}

/// Expands with the snapshot of the parse in progress, or the process environment outside one.
pub(super) fn expand_in_scope(raw: &str) -> Result<String, ExpandError> {
    ENV_SNAPSHOT.with(|cell| match &*cell.borrow() {
        Some(vars) => expand_env(raw, &|name| vars.get(name).cloned()),
        None => expand_env(raw, &|name| {
            std::env::var(name).ok().or_else(|| hostname_fallback(name))
        }),
    })
}
