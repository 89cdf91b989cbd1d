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
//!
//! Every fetch has a deadline ([`TokenCache::with_fetch_timeout`], `send`'s `--retry-timeout`):
//! the source's retries and each attempt end by then, so a hanging identity endpoint costs that
//! long and no more. A token that arrives already expired, or about to (a skewed clock, a broken
//! endpoint), is logged at WARN once per run of such tokens; one with less than
//! [`EXPIRED_FLOOR`] left is kept at least that long before the next fetch, doubling while such
//! tokens keep coming (to a minute), so the endpoint is not asked once per request; a 401 for it
//! still drops it at once.
//!
//! A long-running agent also starts [`TokenCache::spawn_refresher`]: a background task that
//! renews the token at its refresh point (and retries with backoff when that fails), fetching
//! without holding the cache's lock, so senders keep getting the current token and never wait
//! on a refresh. While it runs, senders fetch themselves only when no usable token is left.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
/// The background refresher's first retry delay after a failed refresh; it doubles from here.
pub const BACKGROUND_RETRY_FIRST: Duration = Duration::from_secs(5);
/// The background refresher's longest retry delay.
pub const BACKGROUND_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a token that arrived (nearly) expired is kept at least before the next fetch; it
/// doubles with each such token in a row, up to [`BACKGROUND_RETRY_MAX`].
pub const EXPIRED_FLOOR: Duration = Duration::from_secs(5);

/// Caches one source's token. Shared as `Arc<TokenCache>` by every sender.
pub struct TokenCache {
    source: Box<dyn TokenSource>,
    state: Mutex<State>,
    /// Set by [`TokenCache::invalidate`], which must not wait for a fetch in progress.
    invalidated: AtomicBool,
    /// A hash of the current token, so a 401 for an older token does not drop a newer one.
    current_hash: StdMutex<Option<u64>>,
    /// Told of every fetch (source name, success), for `dcrship_token_refresh_total`.
    observer: std::sync::OnceLock<FetchObserver>,
    /// The `oid` of the current token, readable without awaiting.
    principal: StdMutex<Option<String>>,
    /// Background refreshers running: while there is one, senders leave refreshing to it as
    /// long as a token lasts.
    background: AtomicUsize,
    /// The longest one fetch may take, retries included.
    fetch_timeout: Duration,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// After a failed refresh: no new attempt before this, while the current token lasts.
    next_attempt: Option<Instant>,
    /// Whether a token was ever fetched, to log the first one at info.
    fetched_once: bool,
    /// Tokens with [`MIN_REMAINING`] or less on arrival received in a row: warned about at the
    /// first; those already expired are each kept longer than the last.
    expired_streak: u32,
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Told of each token fetch: the source's name and whether it succeeded.
pub type FetchObserver = Box<dyn Fn(&'static str, bool) + Send + Sync>;

/// An in-process hash of a token (never printed or stored).
fn token_hash(token: &Secret) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    token.expose().hash(&mut h);
    h.finish()
}

impl Cached {
    /// Times are taken on tokio's clock (so tests can pause it); the lifetime is Entra's
    /// expiry minus the wall clock now, taken at the moment the token arrives.
    /// `expired_streak` counts the (nearly) expired tokens received just before this one.
    fn new(token: AccessToken, expired_streak: u32) -> Self {
        let now = Instant::now();
        let lifetime = lifetime(&token);
        Cached {
            token: token.token,
            refresh_at: now + refresh_after(lifetime).max(floor(lifetime, expired_streak)),
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

/// Whether a token of this lifetime is (nearly) expired on arrival: too short-lived to be handed
/// out from the cache.
fn arrives_expired(lifetime: Duration) -> bool {
    lifetime <= MIN_REMAINING
}

/// The least time before a token of this lifetime is fetched again. A token with a lifetime of
/// seconds is refreshed at its half-life as any other; one that arrives with less than
/// [`EXPIRED_FLOOR`] left (already expired, most likely) is kept for that floor, doubled for
/// each short-lived token before it in a row, so the endpoint is not asked once per request.
fn floor(lifetime: Duration, short_streak: u32) -> Duration {
    if lifetime < EXPIRED_FLOOR {
        EXPIRED_FLOOR
            .saturating_mul(1 << short_streak.min(16))
            .min(BACKGROUND_RETRY_MAX)
    } else {
        Duration::ZERO
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
        Self::with_fetch_timeout(source, super::DEFAULT_FETCH_TIMEOUT)
    }

    /// A cache that fetches on first use, each fetch given at most `fetch_timeout`.
    pub fn with_fetch_timeout(
        source: Box<dyn TokenSource>,
        fetch_timeout: Duration,
    ) -> Arc<TokenCache> {
        Arc::new(TokenCache::with_state(
            source,
            State::default(),
            None,
            fetch_timeout,
        ))
    }

    /// A cache holding a token already fetched from `source` (by `auto`'s probe).
    pub fn primed(
        source: Box<dyn TokenSource>,
        token: AccessToken,
        fetch_timeout: Duration,
    ) -> Arc<TokenCache> {
        let principal = jwt::object_id(token.token.expose());
        let expired = arrives_expired(lifetime(&token));
        let cached = Cached::new(token, 0);
        if expired {
            warn_expired(source.name(), &cached);
        }
        let state = State {
            current: Some(cached),
            next_attempt: None,
            fetched_once: true,
            expired_streak: u32::from(expired),
        };
        Arc::new(TokenCache::with_state(
            source,
            state,
            principal,
            fetch_timeout,
        ))
    }

    fn with_state(
        source: Box<dyn TokenSource>,
        state: State,
        principal: Option<String>,
        fetch_timeout: Duration,
    ) -> Self {
        TokenCache {
            source,
            state: Mutex::new(state),
            invalidated: AtomicBool::new(false),
            current_hash: StdMutex::new(None),
            observer: std::sync::OnceLock::new(),
            principal: StdMutex::new(principal),
            background: AtomicUsize::new(0),
            fetch_timeout,
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
            let refresher = self.background.load(Ordering::SeqCst) > 0;
            if now < cached.refresh_at || ((backing_off || refresher) && cached.usable(now)) {
                return Ok(cached.token.clone());
            }
        }
        self.refresh(&mut state).await
    }

    /// Fetches a token into `state`; on failure falls back to a still-usable cached token.
    async fn refresh(&self, state: &mut State) -> Result<Secret, AuthError> {
        let now = Instant::now();
        let deadline = state
            .current
            .as_ref()
            .filter(|c| c.usable(now))
            .map(|c| fallback_deadline(c, now));
        match self.fetch_by(deadline).await {
            Ok(token) => Ok(self.store(state, token)),
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

    /// One fetch from the source, given up at `deadline` (that of a fallback token, when there
    /// is one) or when the fetch timeout ends, whichever comes first.
    async fn fetch_by(&self, deadline: Option<Instant>) -> Result<AccessToken, AuthError> {
        let limit = Instant::now() + self.fetch_timeout;
        let deadline = deadline.map_or(limit, |d| d.min(limit));
        let result = tokio::time::timeout_at(deadline, self.source.fetch_by(Some(deadline)))
            .await
            .unwrap_or_else(|_| {
                Err(AuthError::Failed {
                    source_name: self.source.name(),
                    reason: format!(
                        "no token within the time allowed ({}s)",
                        self.fetch_timeout.as_secs()
                    ),
                })
            });
        if let Some(observe) = self.observer.get() {
            observe(self.source.name(), result.is_ok());
        }
        result
    }

    /// Makes `token` the current one; returns its value.
    fn store(&self, state: &mut State, token: AccessToken) -> Secret {
        {
            // Under the hash's lock: an invalidation pending now was for an older token (a 401
            // that raced this fetch) and must not drop this one.
            let mut current = self
                .current_hash
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            *current = Some(token_hash(&token.token));
            self.invalidated.store(false, Ordering::SeqCst);
        }
        let principal = jwt::object_id(token.token.expose());
        let expired = arrives_expired(lifetime(&token));
        let cached = Cached::new(token, state.expired_streak);
        let expires_in = cached.remaining(Instant::now()).as_secs();
        if expired && state.expired_streak == 0 {
            warn_expired(self.source.name(), &cached);
        }
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
        let value = cached.token.clone();
        *state = State {
            current: Some(cached),
            next_attempt: None,
            fetched_once: true,
            // A good token ends the streak: the next bad one is warned about again.
            expired_streak: if expired {
                state.expired_streak.saturating_add(1)
            } else {
                0
            },
        };
        value
    }

    /// Starts renewing the token in the background: at each refresh point the task fetches a
    /// new token without holding the cache's lock, so [`TokenCache::token`] keeps answering
    /// from memory meanwhile; a failed refresh is retried after 5 s, doubling up to a minute,
    /// while the old token stays in use as long as it is usable. With no usable token (at
    /// start, after [`TokenCache::invalidate`]) it fetches as a sender would.
    ///
    /// The task holds the cache only weakly and ends when the last `Arc` is dropped; aborting
    /// the handle stops it too, and senders then refresh on their own again.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let Some(cache) = weak.upgrade() else { return };
            let _running = Running::start(&cache);
            drop(cache);
            let mut failures = 0u32;
            // After a refresh, wait at least this long, even if the new token is due at once
            // (an endpoint handing out nearly expired tokens must not be asked in a loop).
            let mut floor = Duration::ZERO;
            loop {
                let wait = match weak.upgrade() {
                    None => return,
                    Some(_) if failures > 0 => background_backoff(failures),
                    Some(cache) => cache.until_refresh().await.max(floor),
                };
                tokio::time::sleep(wait).await;
                let Some(cache) = weak.upgrade() else { return };
                match cache.refresh_in_background().await {
                    Ok(()) => {
                        failures = 0;
                        floor = BACKGROUND_RETRY_FIRST;
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            source = cache.source_name(),
                            %error,
                            retry_in_secs = background_backoff(failures).as_secs(),
                            "background token refresh failed; the current token stays in use \
                             while it lasts"
                        );
                    }
                }
            }
        })
    }

    /// How long until the current token is due for refresh; zero when there is none.
    async fn until_refresh(&self) -> Duration {
        let state = self.state.lock().await;
        match &state.current {
            Some(cached) if !self.invalidated.load(Ordering::SeqCst) => {
                cached.refresh_at.saturating_duration_since(Instant::now())
            }
            _ => Duration::ZERO,
        }
    }

    /// One background refresh. With a usable token the fetch runs outside the lock; without
    /// one, senders are waiting anyway, so it runs under the lock and serves them all.
    async fn refresh_in_background(&self) -> Result<(), AuthError> {
        let deadline = {
            let mut state = self.state.lock().await;
            if self.invalidated.swap(false, Ordering::SeqCst) {
                state.current = None;
                state.next_attempt = None;
            }
            let now = Instant::now();
            match state.current.as_ref().filter(|c| c.usable(now)) {
                Some(cached) => fallback_deadline(cached, now),
                None => return self.refresh(&mut state).await.map(drop),
            }
        };
        let fetched = self.fetch_by(Some(deadline)).await;
        let mut state = self.state.lock().await;
        fetched.map(|token| drop(self.store(&mut state, token)))
    }

    /// Drops the cached token (the service answered 401): the next [`TokenCache::token`] fetches.
    pub fn invalidate(&self) {
        self.invalidated.store(true, Ordering::SeqCst);
    }

    /// Has every later fetch reported to `observe(source name, succeeded)` (metrics). Only the
    /// first observer set is kept.
    pub fn observe_fetches(&self, observe: FetchObserver) {
        let _ = self.observer.set(observe);
    }

    /// Drops the cached token only if it is `refused` (the token a 401 answered). When several
    /// requests in flight with one token all get 401, the first drop fetches a new token and the
    /// others must not drop that one too: the service is asked for a token once, not N times.
    pub fn invalidate_if(&self, refused: &Secret) {
        let current = self
            .current_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.is_none_or(|h| h == token_hash(refused)) {
            self.invalidate();
        }
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

/// Once per run of bad tokens: the endpoint handed out a token with (almost) no life left.
fn warn_expired(source: &'static str, cached: &Cached) {
    let now = Instant::now();
    tracing::warn!(
        source,
        expires_in = cached.remaining(now).as_secs(),
        next_fetch_in = cached.refresh_at.saturating_duration_since(now).as_secs(),
        "the identity endpoint handed out a token that is expired or about to expire (is this \
         machine's clock right?); using it, and asking again after a pause that grows while \
         such tokens keep coming"
    );
}

/// A slow refresh must not outlast the token we could fall back to: it gets half of the time
/// that token stays usable.
fn fallback_deadline(cached: &Cached, now: Instant) -> Instant {
    now + (cached.remaining(now) - MIN_REMAINING) / 2
}

/// The background refresher's delay after `failures` failed refreshes in a row.
fn background_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKGROUND_RETRY_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKGROUND_RETRY_MAX)
}

/// Counts a background refresher on its cache for as long as the task lives (dropped when the
/// task ends or is aborted).
struct Running(std::sync::Weak<TokenCache>);

impl Running {
    fn start(cache: &Arc<TokenCache>) -> Self {
        cache.background.fetch_add(1, Ordering::SeqCst);
        Running(Arc::downgrade(cache))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(cache) = self.0.upgrade() {
            cache.background.fetch_sub(1, Ordering::SeqCst);
        }
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
        // Fetches may take that long here; the point is the fallback deadline.
        let cache = TokenCache::with_fetch_timeout(Box::new(source), Duration::from_secs(7200));
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
        let cache = TokenCache::primed(
            Box::new(source),
            oid_token("p", 3600),
            crate::auth::DEFAULT_FETCH_TIMEOUT,
        );
        assert_eq!(cache.principal_id().as_deref(), Some("p"));
        cache.token().await.unwrap();
        assert_eq!(calls.get(), 0);
    }

    /// Sleeps on tokio's (paused) clock, letting every other task run meanwhile.
    async fn pass(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn refresher_renews_in_the_background_and_senders_never_wait() {
        // Each fetch takes 10 s: a sender caught behind it would notice.
        let source = Scripted::new(vec![Ok(token_for("b", 3600)), Ok(token_for("c", 3600))])
            .with_delay(Duration::from_secs(10));
        let calls = source.calls();
        let cache = TokenCache::primed(
            Box::new(source),
            token_for("a", 3600),
            crate::auth::DEFAULT_FETCH_TIMEOUT,
        );
        let refresher = cache.spawn_refresher();

        pass(3300 - 1).await;
        assert_eq!(calls.get(), 0, "not before the refresh point");
        pass(2).await;
        assert_eq!(calls.get(), 1, "the refresher is fetching");
        let started = Instant::now();
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert_eq!(started.elapsed(), Duration::ZERO, "the sender did not wait");

        pass(10).await;
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 1, "senders never fetched");

        // And again at the new token's refresh point (plus the fetch's 10 s).
        pass(3300 + 10).await;
        assert_eq!(cache.token().await.unwrap().expose(), "c");
        assert_eq!(calls.get(), 2);
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn refresher_retries_with_backoff_while_the_old_token_lasts() {
        let source = Scripted::new(vec![
            Err(failure()),
            Err(failure()),
            Err(failure()),
            Ok(token_for("b", 3600)),
        ]);
        let calls = source.calls();
        let cache = TokenCache::primed(
            Box::new(source),
            token_for("a", 3600),
            crate::auth::DEFAULT_FETCH_TIMEOUT,
        );
        let _refresher = cache.spawn_refresher();

        pass(3301).await;
        assert_eq!(calls.get(), 1, "first try at the refresh point failed");
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        pass(5).await;
        assert_eq!(calls.get(), 2, "retried after 5 s");
        pass(10).await;
        assert_eq!(calls.get(), 3, "then after 10 s");
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        pass(20).await;
        assert_eq!(calls.get(), 4, "then after 20 s, and it worked");
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 4, "senders never fetched");
    }

    #[test]
    fn background_backoff_doubles_to_a_minute() {
        let secs: Vec<u64> = (1..=6).map(|n| background_backoff(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(background_backoff(u32::MAX), BACKGROUND_RETRY_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn refresher_fetches_the_first_token_and_ends_with_the_cache() {
        let source = Scripted::new(vec![Ok(token_for("a", 3600))]);
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        let refresher = cache.spawn_refresher();
        pass(1).await;
        assert_eq!(calls.get(), 1);
        assert_eq!(cache.token().await.unwrap().expose(), "a");
        assert_eq!(calls.get(), 1);
        drop(cache);
        // The task holds the cache weakly: it notices at its next wake-up and ends.
        refresher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_refresher_stops_senders_refresh_again() {
        let source = Scripted::new(vec![Ok(token_for("b", 3600))]);
        let calls = source.calls();
        let cache = TokenCache::primed(
            Box::new(source),
            token_for("a", 3600),
            crate::auth::DEFAULT_FETCH_TIMEOUT,
        );
        let refresher = cache.spawn_refresher();
        pass(1).await;
        refresher.abort();
        let _ = refresher.await;
        pass(3300).await;
        assert_eq!(calls.get(), 0);
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_401_for_an_older_token_does_not_drop_the_new_one() {
        let source = Scripted::new(vec![
            Ok(token_for("a", 3600)),
            Ok(token_for("b", 3600)),
            Ok(token_for("c", 3600)),
        ]);
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        let first = cache.token().await.unwrap();
        cache.invalidate_if(&first);
        let second = cache.token().await.unwrap();
        assert_eq!(second.expose(), "b");
        // a late 401 for the first token: the second stays
        cache.invalidate_if(&first);
        assert_eq!(cache.token().await.unwrap().expose(), "b");
        assert_eq!(calls.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_invalidated_token_is_replaced_while_a_refresher_runs() {
        let source = Scripted::new(vec![Ok(token_for("b", 3600))]);
        let cache = TokenCache::primed(
            Box::new(source),
            token_for("a", 3600),
            crate::auth::DEFAULT_FETCH_TIMEOUT,
        );
        let _refresher = cache.spawn_refresher();
        pass(1).await;
        cache.invalidate();
        // A sender asks first: it fetches (there is nothing valid to hand out).
        assert_eq!(cache.token().await.unwrap().expose(), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_token_is_not_fetched_once_per_request() {
        // An endpoint whose tokens are all expired on arrival (a clock hours off).
        let source = Scripted::new((0..100).map(|_| Ok(token_for("x", 0))).collect());
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        // 1000 requests over 30 s: one every 30 ms.
        for _ in 0..1000 {
            assert_eq!(cache.token().await.unwrap().expose(), "x");
            tokio::time::advance(Duration::from_millis(30)).await;
        }
        // Kept 5 s, then 10, then 20: three fetches, not a thousand.
        assert_eq!(calls.get(), 3);
        // A 401 still drops it at once.
        cache.invalidate();
        cache.token().await.unwrap();
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn the_expired_floor_doubles_to_a_minute_and_spares_good_tokens() {
        let s = Duration::from_secs;
        let floors: Vec<u64> = (0..6).map(|n| floor(Duration::ZERO, n).as_secs()).collect();
        assert_eq!(floors, [5, 10, 20, 40, 60, 60]);
        assert_eq!(floor(s(4), 1), s(10));
        // A short but live token is refreshed at its half-life, with no floor.
        assert_eq!(floor(s(8), 3), Duration::ZERO);
        assert_eq!(floor(s(30), 0), Duration::ZERO);
        assert_eq!(floor(s(3600), 0), Duration::ZERO);
        assert_eq!(floor(Duration::ZERO, u32::MAX), BACKGROUND_RETRY_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_is_given_up_at_the_fetch_timeout() {
        // A source that never answers (a hanging endpoint).
        let source =
            Scripted::new(vec![Ok(token_for("a", 3600))]).with_delay(Duration::from_secs(100_000));
        let cache = TokenCache::with_fetch_timeout(Box::new(source), Duration::from_secs(30));
        let started = Instant::now();
        let err = cache.token().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(
            err.to_string()
                .contains("no token within the time allowed (30s)"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refresher_does_not_spin_on_tokens_that_are_due_at_once() {
        // An endpoint whose tokens are already expired on arrival (a skewed clock).
        let source = Scripted::new((0..100).map(|_| Ok(token_for("x", 0))).collect());
        let calls = source.calls();
        let cache = TokenCache::new(Box::new(source));
        let _refresher = cache.spawn_refresher();
        pass(12).await;
        assert!(calls.get() <= 4, "{} fetches in 12 s", calls.get());
    }
}
