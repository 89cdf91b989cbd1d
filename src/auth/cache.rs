//! The token cache in front of the chosen [`TokenSource`].
//!
//! Senders ask it for a token before each request. It answers from memory until the refresh
//! point ([`refresh_after`]: 5 minutes before expiry, or half-way for short and very long tokens),
//! then fetches anew. One fetch serves every caller waiting at that moment. When a refresh fails
//! while the old token still has more than [`MIN_REMAINING`] left, the old token is used and the
//! refresh is tried again after [`RETRY_DELAY`]: an identity endpoint's hiccup must not stop
//! delivery. A token with less than [`MIN_REMAINING`] left is never handed out from the cache, so
//! no request is sent with a token that may expire on the way (a token just fetched is handed out
//! whatever its lifetime: it is the best there is).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{jwt, refresh_after, AccessToken, AuthError, TokenSource};
use crate::secret::Secret;

/// The least lifetime a cached token must have left to be handed out.
pub const MIN_REMAINING: Duration = Duration::from_secs(30);
/// How long to wait before trying again after a failed refresh (as the .NET SDK does).
pub const RETRY_DELAY: Duration = Duration::from_secs(30);

/// Caches one source's token. Shared as `Arc<TokenCache>` by every sender.
pub struct TokenCache {
    source: Box<dyn TokenSource>,
    state: Mutex<State>,
    /// Set by [`TokenCache::invalidate`], which must not wait for a fetch in progress.
    invalidated: AtomicBool,
    /// The `oid` of the current token, readable without awaiting.
    principal: StdMutex<Option<String>>,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// After a failed refresh: no new attempt before this, while the current token lasts.
    next_attempt: Option<Instant>,
    /// Whether a token was ever fetched, to log the first one at info.
    fetched_once: bool,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Cached {
    /// Times are taken on tokio's clock (so tests can pause it); the lifetime is Entra's
    /// expiry minus the wall clock now, taken at the moment the token arrives.
    fn new(token: AccessToken) -> Self {
        let now = Instant::now();
        let lifetime = lifetime(&token);
        Cached {
            token: token.token,
            refresh_at: now + refresh_after(lifetime),
            expires_at: now + lifetime,
        }
    }

    fn remaining(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }

    fn usable(&self, now: Instant) -> bool {
        self.remaining(now) > MIN_REMAINING
    }
}

/// How long a token has left, from now; zero when already expired.
fn lifetime(token: &AccessToken) -> Duration {
    let left = token.expires_at.duration_since(jiff::Timestamp::now());
    Duration::try_from(left).unwrap_or(Duration::ZERO)
}

impl TokenCache {
    /// A cache that fetches on first use.
    pub fn new(source: Box<dyn TokenSource>) -> Arc<TokenCache> {
        Arc::new(TokenCache::with_state(source, State::default(), None))
    }

    /// A cache holding a token already fetched from `source` (by `auto`'s probe).
    pub fn primed(source: Box<dyn TokenSource>, token: AccessToken) -> Arc<TokenCache> {
        let principal = jwt::object_id(token.token.expose());
        let state = State {
            current: Some(Cached::new(token)),
            next_attempt: None,
            fetched_once: true,
        };
        Arc::new(TokenCache::with_state(source, state, principal))
    }

    fn with_state(source: Box<dyn TokenSource>, state: State, principal: Option<String>) -> Self {
        TokenCache {
            source,
            state: Mutex::new(state),
            invalidated: AtomicBool::new(false),
            principal: StdMutex::new(principal),
        }
    }

    /// The source's short name (`managed-identity`, `client-secret`, `static`).
    pub fn source_name(&self) -> &'static str {
        self.source.name()
    }

    /// The bearer token to send now: cached, or fetched when due.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut state = self.state.lock().await;
        if self.invalidated.swap(false, Ordering::SeqCst) {
            state.current = None;
            state.next_attempt = None;
        }
        let now = Instant::now();
        if let Some(cached) = &state.current {
            let backing_off = state.next_attempt.is_some_and(|t| now < t);
            if now < cached.refresh_at || (backing_off && cached.usable(now)) {
                return Ok(cached.token.clone());
            }
        }
        self.refresh(&mut state).await
    }

    /// Fetches a token into `state`; on failure falls back to a still-usable cached token.
    async fn refresh(&self, state: &mut State) -> Result<Secret, AuthError> {
        let now = Instant::now();
        // A slow refresh must not outlast the token we could fall back to: give it half of the
        // time that token stays usable.
        let deadline = state
            .current
            .as_ref()
            .filter(|c| c.usable(now))
            .map(|c| now + (c.remaining(now) - MIN_REMAINING) / 2);
        let fetched = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, self.source.fetch())
                .await
                .unwrap_or_else(|_| {
                    Err(AuthError::Failed {
                        source_name: self.source.name(),
                        reason: "token refresh timed out".into(),
                    })
                }),
            None => self.source.fetch().await,
        };
        match fetched {
            Ok(token) => {
                let principal = jwt::object_id(token.token.expose());
                let cached = Cached::new(token);
                let expires_in = cached.remaining(Instant::now()).as_secs();
                if state.fetched_once {
                    tracing::debug!(source = self.source.name(), expires_in, "token refreshed");
                } else {
                    tracing::info!(
                        source = self.source.name(),
                        principal = principal.as_deref().unwrap_or("unknown"),
                        expires_in,
                        "token acquired"
                    );
                }
                self.set_principal(principal);
                let token = cached.token.clone();
                *state = State {
                    current: Some(cached),
                    next_attempt: None,
                    fetched_once: true,
                };
                Ok(token)
            }
            Err(error) => {
                let now = Instant::now();
                match &state.current {
                    Some(cached) if cached.usable(now) => {
                        tracing::warn!(
                            source = self.source.name(),
                            %error,
                            remaining_secs = cached.remaining(now).as_secs(),
                            "token refresh failed; using the cached token while it lasts"
                        );
                        state.next_attempt = Some(now + RETRY_DELAY);
                        Ok(cached.token.clone())
                    }
                    _ => {
                        state.current = None;
                        state.next_attempt = None;
                        Err(error)
                    }
                }
            }
        }
    }

    /// Drops the cached token (the service answered 401): the next [`TokenCache::token`] fetches.
    pub fn invalidate(&self) {
        self.invalidated.store(true, Ordering::SeqCst);
    }

    /// The object id (`oid`) of the principal the current token belongs to, for messages such as
    /// "grant Monitoring Metrics Publisher to `<oid>`". `None` before the first token or when the
    /// token is not a JWT.
    pub fn principal_id(&self) -> Option<String> {
        self.principal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_principal(&self, principal: Option<String>) {
        *self
            .principal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = principal;
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("source", &self.source)
            .field("principal", &self.principal_id())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::tests::make_jwt;
    use crate::auth::test_support::{token_for, Scripted};

    fn oid_token(oid: &str, secs: u64) -> AccessToken {
        let jwt = make_jwt(&serde_json::json!({ "oid": oid }));
        AccessToken {
            token: Secret::new(jwt),
            expires_at: jiff::Timestamp::now()
                .checked_add(Duration::from_secs(secs))
                .unwrap(),
        }
    }

    fn failure() -> AuthError {
        AuthError::Failed {
            source_name: "scripted",
            reason: "down".into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn short_token_is_refreshed_before_expiry() {
        let source = Scripted::new(vec![Ok(token_for("a", 10)), Ok(token_for("b", 10))]);
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert_eq!(calls.get(), 1);
        // Half of a 10 s lifetime has passed: refresh, though the token has not expired.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hour_token_refreshes_five_minutes_early() {
        let source = Scripted::new(vec![Ok(token_for("a", 3600)), Ok(token_for("b", 3600))]);
        let cache = TokenCache::new(Box::new(source));
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        tokio::time::advance(Duration::from_secs(3600 - 301)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_the_valid_token_then_retries() {
        let source = Scripted::new(vec![
            Ok(token_for("a", 3600)),
            Err(failure()),
            Ok(token_for("b", 3600)),
        ]);
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        tokio::time::advance(Duration::from_secs(3400)).await;
        // Due for refresh; the source fails; 200 s are left, so the old token is still good.
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert_eq!(calls.get(), 2);
        // No new attempt until the retry delay has passed.
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert_eq!(calls.get(), 2);
        tokio::time::advance(RETRY_DELAY).await;
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_hands_out_a_token_about_to_expire() {
        let source = Scripted::new(vec![
            Ok(token_for("a", 3600)),
            Err(failure()),
            Err(failure()),
        ]);
        let cache = TokenCache::new(Box::new(source));
        cache.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(3600 - 40)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "a", "40 s left");
        tokio::time::advance(RETRY_DELAY).await;
        let err = cache.token().await.unwrap_err();
        assert!(err.to_string().contains("down"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_refresh_does_not_outlast_the_cached_token() {
        let source = Scripted::new(vec![Ok(token_for("a", 3600)), Ok(token_for("b", 3600))])
            .with_delay(Duration::from_secs(3600));
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        cache.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(3400)).await;
        let started = Instant::now();
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert!(started.elapsed() <= Duration::from_secs(200 - 30));
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_forces_a_fetch_and_drops_the_old_token() {
        let source = Scripted::new(vec![Ok(token_for("a", 3600)), Err(failure())]);
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        cache.token().await.unwrap();
        cache.invalidate();
        // The rejected token is not a fallback.
        assert!(cache.token().await.is_err());
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_then_new_token() {
        let source = Scripted::new(vec![Ok(token_for("a", 3600)), Ok(token_for("b", 3600))]);
        let cache = TokenCache::new(Box::new(source));
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        cache.invalidate();
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(cache.token().await.unwrap().expose(), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let source =
            Scripted::new(vec![Ok(token_for("a", 3600))]).with_delay(Duration::from_millis(100));
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move { cache.token().await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().expose(), "a");
        }
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn principal_follows_the_token() {
        let source = Scripted::new(vec![
            Ok(oid_token("first", 3600)),
            Ok(oid_token("second", 3600)),
        ]);
        let cache = TokenCache::new(Box::new(source));
        assert_eq!(cache.principal_id(), None);
        cache.token().await.unwrap();
        assert_eq!(cache.principal_id().as_deref(), Some("first"));
        cache.invalidate();
        cache.token().await.unwrap();
        assert_eq!(cache.principal_id().as_deref(), Some("second"));
        assert_eq!(cache.source_name(), "scripted");
    }

    #[tokio::test(start_paused = true)]
    async fn primed_cache_needs_no_fetch() {
        let source = Scripted::new(vec![Err(failure())]);
        let calls = source.calls();
        let cache = TokenCache::primed(Box::new(source), oid_token("p", 3600));
        assert_eq!(cache.principal_id().as_deref(), Some("p"));
        cache.token().await.unwrap();
        assert_eq!(calls.get(), 0);
    }
}
