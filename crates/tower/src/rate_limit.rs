//! [`RateLimitLayer`]: fixed-window rate limits shared by every instance of
//! a service through [`SessionCache::hit`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use chrono::TimeDelta;
use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use palisade_core::sessions::Decision;
use palisade_core::{Error, SessionCache};
use tower_layer::Layer;
use tower_service::Service;

use crate::client::{ClientKey, RequestView};
use crate::Blocked;

/// `RateLimit` (IETF httpapi draft): the live counters of a policy.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `RateLimit-Policy` (IETF httpapi draft): the quota and window of a policy.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

type Matcher = dyn Fn(&RequestView<'_>) -> bool + Send + Sync;

/// One limit: `limit` requests per `window` for each client key, on the
/// requests it matches.
#[derive(Clone)]
pub struct Rule {
    name: String,
    limit: u32,
    window: TimeDelta,
    matches: Arc<Matcher>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .finish()
    }
}

impl Rule {
    /// A rule named `name` (a token: ASCII letters, digits, `_`, `-`, `.`;
    /// it names the policy in the headers and the counter's key), matching
    /// every request until narrowed.
    ///
    /// # Errors
    /// `InvalidInput` for a bad name, a zero limit or a window that is not
    /// a whole number of seconds between 1 s and 1 day (the headers count
    /// in seconds).
    pub fn new(name: &str, limit: u32, window: TimeDelta) -> palisade_core::Result<Self> {
        let token = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !token {
            return Err(Error::invalid("rule name must be 1-64 of [A-Za-z0-9_.-]"));
        }
        if limit == 0 {
            return Err(Error::invalid("rule limit must be at least 1"));
        }
        let secs = window.num_seconds();
        if !(1..=86_400).contains(&secs) || window != TimeDelta::seconds(secs) {
            return Err(Error::invalid("rule window must be whole seconds, 1 s to 1 day"));
        }
        Ok(Rule { name: name.to_owned(), limit, window, matches: Arc::new(|_| true) })
    }

    /// Only requests whose path starts with `prefix` (segment-wise: `/login`
    /// matches `/login` and `/login/x`, not `/loginx`).
    pub fn path_prefix(self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        self.matching(move |req| {
            let path = req.uri.path();
            prefix.is_empty()
                || path == prefix
                || path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Only requests `f` accepts (method, route, header, …).
    pub fn matching(mut self, f: impl Fn(&RequestView<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.matches = Arc::new(f);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn policy_header(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("\"{}\";q={};w={}", self.name, self.limit, self.window.num_seconds())).ok()
    }
}

/// What happens to a request when the store cannot count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStoreError {
    /// Let it through (logged and counted): availability over the limit.
    #[default]
    Open,
    /// Answer `503 Service Unavailable` with `Retry-After: 1`.
    Closed,
}

/// What the limiter has done, for health reports.
#[derive(Debug, Default)]
struct Counters {
    limited: AtomicU64,
    store_errors: AtomicU64,
}

/// Counts of a [`RateLimitLayer`]'s decisions since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct RateLimitStats {
    /// Requests answered 429.
    pub limited: u64,
    /// Requests the store could not count (let through or refused per [`OnStoreError`]).
    pub store_errors: u64,
}

struct Limiter {
    cache: Arc<dyn SessionCache>,
    prefix: String,
    key: ClientKey,
    rules: Vec<Rule>,
    on_error: OnStoreError,
    counters: Counters,
}

/// A tower layer that counts each request against the first [`Rule`] that
/// matches it, per client key, in a [`SessionCache`] — so all instances of a
/// service that share the cache (Redis, Postgres, Mongo) share the limit.
///
/// # Contract
/// - The counter of rule `r` for client key `k` lives under
///   `{prefix}{r}:{k}` (default prefix `ratelimit:`) as a fixed window that
///   starts with the first hit ([`SessionCache::hit`]); denied hits count too.
/// - Allowed responses carry `RateLimit-Policy: "r";q=LIMIT;w=SECONDS` and
///   `RateLimit: "r";r=REMAINING;t=SECONDS_TO_RESET` (IETF httpapi draft).
///   A denied request gets `429 Too Many Requests` with the same headers,
///   `Retry-After` in whole seconds (rounded up), and a [`Blocked`]
///   extension (`rate_limited`, tag `rule:r`) for the events layer; the
///   inner service is not called.
/// - When the store fails, [`OnStoreError`] decides: `Open` calls the inner
///   service without headers, `Closed` answers 503. Either way it is logged
///   and counted ([`stats`](Self::stats)); it never panics.
/// - Requests no rule matches pass untouched.
/// - **Degraded mode**: over a `Degradable` cache whose server is down, hits
///   count in each instance's memory fallback, so the limit holds per
///   instance (not globally) until the server is back, and `Closed` does
///   not apply (the cache answers). Health shows the cache as degraded.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("prefix", &self.limiter.prefix)
            .field("rules", &self.limiter.rules)
            .field("on_error", &self.limiter.on_error)
            .finish()
    }
}

/// Builds a [`RateLimitLayer`].
pub struct RateLimitBuilder {
    cache: Arc<dyn SessionCache>,
    prefix: String,
    key: ClientKey,
    rules: Vec<Rule>,
    on_error: OnStoreError,
}

impl RateLimitBuilder {
    /// Counts by `key` (default: the TCP peer's address).
    pub fn key(mut self, key: ClientKey) -> Self {
        self.key = key;
        self
    }

    /// Adds a rule; rules are tried in the order added.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Counter keys under `prefix` (default `ratelimit:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// What to do when the store fails (default [`OnStoreError::Open`]).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_error = policy;
        self
    }

    /// The layer.
    pub fn build(self) -> RateLimitLayer {
        RateLimitLayer {
            limiter: Arc::new(Limiter {
                cache: self.cache,
                prefix: self.prefix,
                key: self.key,
                rules: self.rules,
                on_error: self.on_error,
                counters: Counters::default(),
            }),
        }
    }
}

impl RateLimitLayer {
    /// A builder counting in `cache`.
    pub fn builder(cache: Arc<dyn SessionCache>) -> RateLimitBuilder {
        RateLimitBuilder {
            cache,
            prefix: "ratelimit:".to_owned(),
            key: ClientKey::ip(crate::ClientIp::peer()),
            rules: Vec::new(),
            on_error: OnStoreError::default(),
        }
    }

    /// What the layer has decided so far.
    pub fn stats(&self) -> RateLimitStats {
        RateLimitStats {
            limited: self.limiter.counters.limited.load(Ordering::Relaxed),
            store_errors: self.limiter.counters.store_errors.load(Ordering::Relaxed),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit { inner, limiter: self.limiter.clone() }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").field("inner", &self.inner).finish()
    }
}

fn seconds_up(d: TimeDelta) -> i64 {
    let ms = d.num_milliseconds().max(0);
    (ms + 999) / 1000
}

fn set_headers(headers: &mut http::HeaderMap, rule: &Rule, d: &Decision) {
    if let Some(policy) = rule.policy_header() {
        headers.insert(RATELIMIT_POLICY, policy);
    }
    let live = format!("\"{}\";r={};t={}", rule.name, d.remaining, seconds_up(d.reset_after));
    if let Ok(v) = HeaderValue::from_str(&live) {
        headers.insert(RATELIMIT, v);
    }
}

fn refusal<B: Default>(status: StatusCode, retry_after: i64) -> Response<B> {
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    res
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let mut inner = crate::take_ready(&mut self.inner);
        let limiter = self.limiter.clone();
        let view = RequestView::of(&req);
        let Some(rule) = limiter.rules.iter().find(|r| (r.matches)(&view)).cloned() else {
            return Box::pin(inner.call(req));
        };
        let key = format!("{}{}:{}", limiter.prefix, rule.name, limiter.key.of(&view));
        Box::pin(async move {
            match limiter.cache.hit(&key, rule.limit, rule.window).await {
                Ok(d) if d.allowed => {
                    let mut res = inner.call(req).await?;
                    set_headers(res.headers_mut(), &rule, &d);
                    Ok(res)
                }
                Ok(d) => {
                    limiter.counters.limited.fetch_add(1, Ordering::Relaxed);
                    let mut res =
                        refusal(StatusCode::TOO_MANY_REQUESTS, seconds_up(d.retry_after.unwrap_or(d.reset_after)));
                    set_headers(res.headers_mut(), &rule, &d);
                    res.extensions_mut().insert(Blocked::new("rate_limited").tag(format!("rule:{}", rule.name)));
                    Ok(res)
                }
                Err(e) => {
                    limiter.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, rule = %rule.name, policy = ?limiter.on_error, "rate limit store failed");
                    match limiter.on_error {
                        OnStoreError::Open => inner.call(req).await,
                        OnStoreError::Closed => {
                            let mut res = refusal(StatusCode::SERVICE_UNAVAILABLE, 1);
                            res.extensions_mut()
                                .insert(Blocked::new("rate_limit_unavailable").tag(format!("rule:{}", rule.name)));
                            Ok(res)
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_refuse_bad_names_limits_and_windows() {
        assert!(Rule::new("login", 5, TimeDelta::seconds(60)).is_ok());
        assert!(Rule::new("lo\"gin", 5, TimeDelta::seconds(60)).is_err());
        assert!(Rule::new("", 5, TimeDelta::seconds(60)).is_err());
        assert!(Rule::new("login", 0, TimeDelta::seconds(60)).is_err());
        assert!(Rule::new("login", 5, TimeDelta::milliseconds(1500)).is_err());
        assert!(Rule::new("login", 5, TimeDelta::days(2)).is_err());
    }

    #[test]
    fn path_prefixes_match_whole_segments() {
        let rule = Rule::new("login", 1, TimeDelta::seconds(1)).expect("a valid rule").path_prefix("/login/");
        let check = |path: &str| {
            let req = Request::get(path).body(()).unwrap_or_default();
            (rule.matches)(&RequestView::of(&req))
        };
        assert!(check("/login") && check("/login/x"));
        assert!(!check("/loginx") && !check("/"));
    }

    #[test]
    fn reset_and_retry_after_round_up_to_whole_seconds() {
        assert_eq!(seconds_up(TimeDelta::milliseconds(1)), 1);
        assert_eq!(seconds_up(TimeDelta::milliseconds(1000)), 1);
        assert_eq!(seconds_up(TimeDelta::milliseconds(1001)), 2);
    }
}
