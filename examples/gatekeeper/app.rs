//! The gatekeeper's routes, over whatever [`Stores`] it is given.
//!
//! | route | what |
//! |---|---|
//! | `POST /login` `{"user": …}` | starts a session (tower-sessions over the session cache); rate limit `login` |
//! | `GET /me`, `POST /logout` | the session's user; ends the session |
//! | `POST /inspect` `{"payload": …}` | a toy WAF: `403` and a `waf_block` security event for `<script` or `' or 1=1` |
//! | `POST /reputation` `{"kind", "id", "delta", "reason"}` | records a reputation event |
//! | `GET /leaderboard?kind=engine&period=all&limit=10` | the leaderboard (`period`: all, day, week, month) |
//! | `POST /analyses`, `GET /analyses/{id}`, `GET /analyses?verdict=…` | analysis results, held to a JSON schema |
//! | `GET /health` | every store's health (degraded state included), the events sink and rate limits |
//! | `GET /live` | the security-event tail as Server-Sent Events (`Last-Event-ID` or `?after=` resumes); needs `Authorization: Bearer <admin token>` |
//!
//! `/login` counts against the `login` limit; every other route but `/health`
//! and `/live` against `api`. `/live` streams attacker data and client
//! addresses, so it is an operator's endpoint: it answers only with the admin
//! token (off when none is set) and serves at most [`MAX_TAILS`] at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{TimeDelta, Utc};
use futures::{Stream, StreamExt};
use palisade::tower::{
    Blocked, ClientIp, ClientKey, PalisadeSessionStore, RateLimitLayer, RateLimitStats, Rule, SecurityEvents,
    SinkConfig, SinkStats,
};
use palisade::{
    CollectionSpec, Error, ErrorKind, Filter, FindOptions, Period, PeriodKind, ReputationEvent, StoreStatus, Stores,
    Subject, SubjectKind,
};
use palisade::{Cursor, EventFilter, Position, SubscriptionItem};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The analysis-results collection.
pub const ANALYSES: &str = "analyses";
/// Most `/live` streams served at once; more get `503`.
pub const MAX_TAILS: usize = 32;

/// Limits and trust settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `POST /login` attempts per client per window.
    pub login_limit: u32,
    /// Requests per client per window on every other limited route.
    pub api_limit: u32,
    /// The rate-limit window.
    pub window: TimeDelta,
    /// Where the client address comes from.
    pub client_ip: ClientIp,
    /// The bearer token `/live` requires; `None` turns `/live` off.
    pub admin_token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            login_limit: 5,
            api_limit: 600,
            window: TimeDelta::minutes(1),
            client_ip: ClientIp::peer(),
            admin_token: None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    stores: Stores,
    sink: SecurityEvents,
    limits: RateLimitLayer,
    /// SHA-256 of the admin token (compared digest to digest).
    admin: Option<[u8; 32]>,
    tails: Arc<Semaphore>,
}

/// The app and the events sink behind it (flush it on shutdown).
pub struct Gatekeeper {
    /// The routes with their layers.
    pub router: Router,
    /// The security-events sink the layers feed.
    pub sink: SecurityEvents,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The schema analysis results are held to.
pub fn analysis_schema() -> Value {
    json!({
        "type": "object",
        "required": ["sha256", "verdict"],
        "properties": {
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "verdict": {"enum": ["clean", "suspicious", "malicious"]},
            "engine": {"type": "string", "maxLength": 128},
            "score": {"type": "integer", "minimum": 0, "maximum": 100}
        }
    })
}

/// The app: creates the analyses collection, starts the events sink.
pub async fn build(stores: Stores, settings: Settings) -> palisade::Result<Gatekeeper> {
    stores.documents.ensure_collection(CollectionSpec::new(ANALYSES).with_schema(analysis_schema())).await?;
    let sink = SecurityEvents::spawn(
        stores.events.clone(),
        SinkConfig { source: "gatekeeper".into(), ..SinkConfig::default() },
    );
    let unlimited = |req: &palisade::tower::RequestView<'_>| matches!(req.uri.path(), "/health" | "/live");
    let limits = RateLimitLayer::builder(stores.sessions.clone())
        .key(ClientKey::ip(settings.client_ip.clone()))
        .rule(Rule::new("login", settings.login_limit, settings.window)?.path_prefix("/login"))
        .rule(Rule::new("api", settings.api_limit, settings.window)?.matching(move |req| !unlimited(req)))
        .build();
    let sessions = SessionManagerLayer::new(PalisadeSessionStore::new(stores.sessions.clone()))
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::days(1)));
    let state = AppState {
        stores,
        sink: sink.clone(),
        limits: limits.clone(),
        admin: settings.admin_token.as_deref().map(digest),
        tails: Arc::new(Semaphore::new(MAX_TAILS)),
    };
    let router = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .route("/inspect", post(inspect))
        .route("/reputation", post(record_reputation))
        .route("/leaderboard", get(leaderboard))
        .route("/analyses", post(add_analysis).get(find_analyses))
        .route("/analyses/{id}", get(get_analysis))
        .route("/health", get(health))
        .route("/live", get(live))
        .with_state(state)
        .layer(limits)
        .layer(sink.layer(settings.client_ip))
        .layer(sessions);
    Ok(Gatekeeper { router, sink })
}

/// Serves `app` on `listener` with the peer address known to the layers,
/// until `shutdown` completes (then lets requests in flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// A Palisade error as an HTTP answer: the kind decides the status; the
/// message names the kind and operation, never stored data.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.kind() {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::SchemaViolation => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable | ErrorKind::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({"error": self.0.kind().as_str(), "message": self.0.to_string()}))).into_response()
    }
}

fn bad(message: &'static str) -> ApiError {
    ApiError(Error::invalid(message))
}

fn session_failed(e: tower_sessions::session::Error) -> ApiError {
    ApiError(Error::new(ErrorKind::Unavailable, "session store failed").with_source(e))
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(session: Session, Json(body): Json<Login>) -> Result<Json<Value>, ApiError> {
    if body.user.is_empty() || body.user.len() > 64 || body.user.chars().any(char::is_control) {
        return Err(bad("user must be 1-64 bytes without control characters"));
    }
    // A new identity gets a new session id (no fixation).
    session.cycle_id().await.map_err(session_failed)?;
    session.insert("user", &body.user).await.map_err(session_failed)?;
    Ok(Json(json!({"user": body.user})))
}

async fn me(session: Session) -> Result<Json<Value>, ApiError> {
    match session.get::<String>("user").await.map_err(session_failed)? {
        Some(user) => Ok(Json(json!({"user": user}))),
        None => Err(ApiError(Error::new(ErrorKind::NotFound, "no session"))),
    }
}

async fn logout(session: Session) -> Result<StatusCode, ApiError> {
    session.flush().await.map_err(session_failed)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Inspect {
    payload: String,
}

/// A toy WAF rule set: enough to show a handler marking its own blocks.
async fn inspect(Json(body): Json<Inspect>) -> Response {
    let p = body.payload.to_ascii_lowercase();
    let rule = if p.contains("<script") {
        Some("xss")
    } else if p.contains("' or 1=1") {
        Some("sqli")
    } else {
        None
    };
    match rule {
        Some(rule) => {
            let mut res = (StatusCode::FORBIDDEN, Json(json!({"verdict": "blocked", "rule": rule}))).into_response();
            res.extensions_mut().insert(Blocked::new("waf_block").tag(format!("rule:{rule}")).tag("malicious"));
            res
        }
        None => Json(json!({"verdict": "clean"})).into_response(),
    }
}

fn subject_kind(kind: &str) -> Result<SubjectKind, ApiError> {
    match kind {
        "user" => Ok(SubjectKind::User),
        "engine" => Ok(SubjectKind::Engine),
        _ => Err(bad("kind must be `user` or `engine`")),
    }
}

#[derive(Deserialize)]
struct Reputation {
    kind: String,
    id: String,
    delta: i64,
    #[serde(default)]
    reason: String,
}

async fn record_reputation(State(s): State<AppState>, Json(body): Json<Reputation>) -> Result<Json<Value>, ApiError> {
    let subject = Subject { kind: subject_kind(&body.kind)?, id: body.id };
    let recorded = s.stores.reputation.record(ReputationEvent::new(subject, body.delta, body.reason)).await?;
    Ok(Json(json!({"score": recorded.score, "duplicate": recorded.duplicate})))
}

#[derive(Deserialize)]
struct Board {
    kind: Option<String>,
    period: Option<String>,
    limit: Option<usize>,
}

async fn leaderboard(State(s): State<AppState>, Query(q): Query<Board>) -> Result<Json<Value>, ApiError> {
    let kind = subject_kind(q.kind.as_deref().unwrap_or("engine"))?;
    let period = match q.period.as_deref().unwrap_or("all") {
        "all" => Period::AllTime,
        "day" => Period::containing(PeriodKind::Day, Utc::now()),
        "week" => Period::containing(PeriodKind::IsoWeek, Utc::now()),
        "month" => Period::containing(PeriodKind::Month, Utc::now()),
        _ => return Err(bad("period must be all, day, week or month")),
    };
    let ranked = s.stores.reputation.leaderboard(kind, period, 0, q.limit.unwrap_or(10)).await?;
    let rows: Vec<Value> =
        ranked.iter().map(|r| json!({"id": r.subject.id, "score": r.score, "rank": r.rank})).collect();
    Ok(Json(Value::Array(rows)))
}

async fn add_analysis(
    State(s): State<AppState>,
    Json(doc): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let stored = s.stores.documents.insert(ANALYSES, doc).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

async fn get_analysis(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match s.stores.documents.get(ANALYSES, &id).await? {
        Some(doc) => Ok(Json(doc)),
        None => Err(ApiError(Error::new(ErrorKind::NotFound, "no such analysis"))),
    }
}

#[derive(Deserialize)]
struct FindAnalyses {
    verdict: Option<String>,
}

async fn find_analyses(State(s): State<AppState>, Query(q): Query<FindAnalyses>) -> Result<Json<Value>, ApiError> {
    let filter = match q.verdict {
        Some(v) => Filter::eq("verdict", Value::String(v))?,
        None => Filter::all(),
    };
    let found: Vec<Value> = s.stores.documents.find(ANALYSES, FindOptions::new(filter).limit(100)).await?;
    Ok(Json(Value::Array(found)))
}

/// `/health`: the stores' health as `palisade health` reports it, the events
/// sink's counts and the rate limiter's; `503` when a store is down.
#[derive(Serialize)]
struct Health {
    status: &'static str,
    stores: Vec<StoreStatus>,
    security_events: SinkStats,
    rate_limit: RateLimitStats,
    warnings: Vec<String>,
}

async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let stores = s.stores.health().await;
    let status = if stores.iter().any(|st| !st.is_up()) {
        "down"
    } else if stores.iter().any(|st| st.status != "healthy") {
        "degraded"
    } else {
        "healthy"
    };
    let events = s.sink.stats();
    let mut warnings: Vec<String> = stores.iter().filter_map(StoreStatus::pressure).collect();
    if events.overflowed + events.failed > 0 {
        warnings.push(format!(
            "security events lost: {} refused (queue full), {} failed to append",
            events.overflowed, events.failed
        ));
    }
    let code = if status == "down" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(Health { status, stores, security_events: events, rate_limit: s.limits.stats(), warnings }))
}

#[derive(Deserialize)]
struct Live {
    after: Option<String>,
}

/// `/live`: catch-up from the cursor (the start by default), a `caught_up`
/// event, then live `security` events; each event's SSE id is its position,
/// so a reconnecting client resumes with `Last-Event-ID`.
async fn live(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<Live>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, Response> {
    let Some(admin) = s.admin else {
        return Err((StatusCode::FORBIDDEN, "the live tail is off: set an admin token").into_response());
    };
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if bearer.map(digest) != Some(admin) {
        return Err((StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, "Bearer")]).into_response());
    }
    let Ok(permit) = s.tails.clone().try_acquire_owned() else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "too many live tails").into_response());
    };
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned).or(q.after);
    let cursor = match resume {
        Some(p) => Cursor::After(Position::from_str(&p).map_err(|e| ApiError(e).into_response())?),
        None => Cursor::Start,
    };
    let tail = s.stores.events.subscribe(cursor, EventFilter::all()).await.map_err(|e| ApiError(e).into_response())?;
    let stream = tail.map(move |item| {
        // The permit is released when the client goes and the stream is dropped.
        let _held = &permit;
        Ok(match item {
            Ok(SubscriptionItem::Event(e)) => SseEvent::default()
                .id(e.position.to_string())
                .event("security")
                .json_data(&*e)
                .unwrap_or_else(|_| SseEvent::default().event("error").data("unencodable event")),
            Ok(SubscriptionItem::CaughtUp) => SseEvent::default().event("caught_up").data(""),
            Err(e) => SseEvent::default().event("error").data(e.kind().as_str()),
        })
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
