//! # palisade-conformance
//!
//! The conformance suite: public `async fn` cases over `&dyn Trait` that every
//! backend — ours or a third party's — must pass. Add it as a dev-dependency
//! of a backend crate, write a [`Harness`], and expand the cases.
//!
//! A backend provides a [`Harness`] (how to open a store in a fresh
//! [`Namespace`] and drop it afterwards) and expands the cases into one
//! `#[tokio::test]` each with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```text
//! palisade_conformance::conformance_tests!(memory, my_harness(), [event_store, session_cache]);
//! ```
//!
//! which yields tests named `memory::event_store::append_is_atomic` and so on.
//! Every case runs in its own random namespace, dropped afterwards (also when
//! the case fails). Cases consult [`Capabilities`](palisade_core::Capabilities) and
//! expect `Unsupported` — not silence — where a capability is off.
//!
//! Server-backed harnesses come from [`harness_from_env`]: without a URL the
//! cases are skipped with a printed notice, unless `PALISADE_REQUIRE` names the
//! server, in which case a missing or unreachable server fails every case.
//! (A server that answered and goes away during the run fails the cases
//! that then cannot open their stores, required or not.)
//! When `PALISADE_CONFORMANCE_LOG` names a file, each case appends
//! `pass|na|skip|fail <TAB> backend <TAB> trait <TAB> case <TAB> milliseconds`
//! to it (the time covers the whole test: building the harness, opening the
//! stores, the case, and releasing its namespaces), for the
//! summary printed by `scripts/test.sh`.
//!
//! A case whose capability the store lacks checks that the backend answers
//! `Unsupported` and then calls [`not_applicable`]: it is reported as **n/a**,
//! never counted as a pass.

#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod bench;
pub mod certs;
pub mod consumers;
pub mod document_store;
pub mod event_store;
pub mod flaky;
mod macros;
pub mod pg_server;
pub mod poisoned;
pub mod reputation_repo;
pub mod restart;
pub mod session_cache;
pub mod tower;

use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

pub use flaky::{Flaky, FlakyMode};
use palisade_core::error::{ErrorKind, Result};

/// The contract crate, for the macros (`$crate::__core::EventStore`).
#[doc(hidden)]
pub use palisade_core as __core;

use palisade_core::{DocumentStore, EventStore, Namespace, ReputationRepo, SessionCache};

/// The multi-threaded Tokio runtime every test of [`conformance_tests!`]
/// runs on. One for the whole process, so connection pools a harness keeps
/// (see `palisade::harness::ConfigHarness`) stay usable from case to case.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .thread_name("conformance")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("the conformance runtime cannot start: {e}"))
    })
}

/// How long one case may run before it fails, unless
/// `PALISADE_CASE_TIMEOUT_SECS` says otherwise (see [`case_timeout`]).
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long one case may run before it fails: `PALISADE_CASE_TIMEOUT_SECS`
/// when set to a positive number of seconds, else [`CASE_TIMEOUT`]. The
/// limit only catches hangs (no case asserts on time); a test server that
/// is slow at bulk work (the Python Mongo test server with the 70,000-event
/// batch) gets a longer one from `scripts/test.sh`.
pub fn case_timeout() -> Duration {
    std::env::var("PALISADE_CASE_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(CASE_TIMEOUT, Duration::from_secs)
}

/// A backend under test: opens stores in fresh namespaces and drops them.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// Backend id (`memory`, `pg_sqlx`, …).
    fn backend(&self) -> &'static str;
    /// An event store confined to `ns`.
    async fn event_store(&self, ns: &Namespace) -> Result<Arc<dyn EventStore>>;
    /// A session cache confined to `ns`.
    async fn session_cache(&self, ns: &Namespace) -> Result<Arc<dyn SessionCache>>;
    /// A document store confined to `ns`.
    async fn document_store(&self, ns: &Namespace) -> Result<Arc<dyn DocumentStore>>;
    /// A reputation repo confined to `ns`.
    async fn reputation_repo(&self, ns: &Namespace) -> Result<Arc<dyn ReputationRepo>>;
    /// Deletes everything stored under `ns`.
    async fn drop_namespace(&self, ns: &Namespace) -> Result<()>;
    /// A fresh, empty namespace for the next case: a new random one unless
    /// the harness recycles namespaces it emptied (see [`release`](Self::release)).
    async fn namespace(&self) -> Result<Namespace> {
        Namespace::random("conf")
    }
    /// Gives back the namespace of a finished case: dropped unless the
    /// harness can empty it for reuse more cheaply than creating a new one.
    /// `reusable` is false after a failed or timed-out case, whose namespace
    /// must be dropped whatever the harness could do.
    async fn release(&self, ns: &Namespace, reusable: bool) -> Result<()> {
        let _ = reusable;
        self.drop_namespace(ns).await
    }
}

/// How a case opens its store from a harness in a namespace.
pub type Opener<S> = for<'a> fn(&'a dyn Harness, &'a Namespace) -> BoxFuture<'a, Result<Arc<S>>>;

/// Opens an event store (for the macro).
pub fn open_event_store<'a>(h: &'a dyn Harness, ns: &'a Namespace) -> BoxFuture<'a, Result<Arc<dyn EventStore>>> {
    h.event_store(ns)
}
/// Opens an event store as the shared handle the `consumers` cases need (for the macro).
pub fn open_shared_event_store<'a>(
    h: &'a dyn Harness,
    ns: &'a Namespace,
) -> BoxFuture<'a, Result<Arc<Arc<dyn EventStore>>>> {
    Box::pin(async move { h.event_store(ns).await.map(Arc::new) })
}
/// Opens a session cache as the shared handle the `tower` cases need (for the macro).
pub fn open_shared_session_cache<'a>(
    h: &'a dyn Harness,
    ns: &'a Namespace,
) -> BoxFuture<'a, Result<Arc<Arc<dyn SessionCache>>>> {
    Box::pin(async move { h.session_cache(ns).await.map(Arc::new) })
}
/// Opens a session cache (for the macro).
pub fn open_session_cache<'a>(h: &'a dyn Harness, ns: &'a Namespace) -> BoxFuture<'a, Result<Arc<dyn SessionCache>>> {
    h.session_cache(ns)
}
/// Opens a document store (for the macro).
pub fn open_document_store<'a>(h: &'a dyn Harness, ns: &'a Namespace) -> BoxFuture<'a, Result<Arc<dyn DocumentStore>>> {
    h.document_store(ns)
}
/// Opens a reputation repo (for the macro).
pub fn open_reputation_repo<'a>(
    h: &'a dyn Harness,
    ns: &'a Namespace,
) -> BoxFuture<'a, Result<Arc<dyn ReputationRepo>>> {
    h.reputation_repo(ns)
}

/// Whether `PALISADE_REQUIRE` (comma-separated, e.g. `postgres,redis`) names `server`.
pub fn required(server: &str) -> bool {
    std::env::var("PALISADE_REQUIRE")
        .map(|v| v.split(',').any(|s| s.trim().eq_ignore_ascii_case(server)))
        .unwrap_or(false)
}

/// The URL of `server` from the environment variable `var`, for tests that
/// need a server: `None` (skip, with a notice) when it is not set — or a
/// panic if [`required`]`(server)`.
pub fn server_url(server: &str, var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(!required(server), "PALISADE_REQUIRE names {server} but {var} is not set");
            eprintln!("notice: {var} is not set; skipping a {server} test");
            None
        }
    }
}

/// Builds a harness from the URL in `var` with `connect`. Without the variable,
/// or when connecting fails, returns `None` (the case is skipped with a notice)
/// — or panics if [`required`]`(server)`.
pub async fn harness_from_env<F, Fut>(server: &str, var: &str, connect: F) -> Option<Arc<dyn Harness>>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Harness>>>,
{
    let url = server_url(server, var)?;
    match connect(url).await {
        Ok(h) => Some(h),
        Err(e) => {
            assert!(!required(server), "PALISADE_REQUIRE names {server} but it is unreachable: {e}");
            eprintln!("notice: {server} unreachable ({e}); skipping conformance case");
            None
        }
    }
}

fn log(outcome: &str, backend: &str, trait_id: &str, case: &str, took: std::time::Duration) {
    let Ok(path) = std::env::var("PALISADE_CONFORMANCE_LOG") else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let ms = took.as_millis();
        let _ = f.write_all(format!("{outcome}\t{backend}\t{trait_id}\t{case}\t{ms}\n").as_bytes());
    }
}

/// The body of one case, as the runtime registry ([`cases`]) holds it.
pub enum CaseBody<S: ?Sized> {
    /// A case over one store.
    Single(for<'a> fn(&'a S) -> BoxFuture<'a, ()>),
    /// A case over two stores in different namespaces.
    Pair(for<'a> fn(&'a S, &'a S) -> BoxFuture<'a, ()>),
}

/// One named case.
pub struct Case<S: ?Sized> {
    /// The case name, e.g. `append_is_atomic`.
    pub name: &'static str,
    /// What it runs.
    pub body: CaseBody<S>,
}

/// The runtime list of every case, per trait (the same lists the test macro expands).
pub mod cases {
    crate::__with_cases!(event_store, crate::__case_registry,);
    crate::__with_cases!(session_cache, crate::__case_registry,);
    crate::__with_cases!(document_store, crate::__case_registry,);
    crate::__with_cases!(reputation_repo, crate::__case_registry,);
    crate::__with_cases!(tower, crate::__case_registry,);
    crate::__with_cases!(consumers, crate::__case_registry,);
}

/// Why a case did not pass.
pub enum Failure {
    /// The store could not be opened.
    Open(palisade_core::Error),
    /// The case panicked (an assertion failed); the payload.
    Panic(Box<dyn std::any::Any + Send>),
    /// The case ran longer than [`CASE_TIMEOUT`].
    Timeout,
}

impl Failure {
    /// A one-line description.
    pub fn message(&self) -> String {
        match self {
            Failure::Open(e) => format!("opening the store failed: {e}"),
            Failure::Panic(p) => p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "case panicked".to_owned()),
            Failure::Timeout => format!("timed out after {:?}", case_timeout()),
        }
    }
}

tokio::task_local! {
    static NOT_APPLICABLE: std::cell::Cell<Option<&'static str>>;
}

/// Marks the running case as not applicable to this store because it lacks
/// `capability` (call it after checking that the store says `Unsupported`).
/// The case is then reported as n/a instead of passed.
pub fn not_applicable(capability: &'static str) {
    let _ = NOT_APPLICABLE.try_with(|c| c.set(Some(capability)));
}

/// How a case that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// The store lacks the capability the case is about (named).
    NotApplicable(&'static str),
}

/// Runs one case on `h`: opens the store in a fresh namespace (a second one for
/// pair cases), runs the body in its own task with [`case_timeout`], and
/// releases the namespaces afterwards, whatever happened.
pub async fn execute<S>(h: &dyn Harness, open: Opener<S>, body: CaseBody<S>) -> std::result::Result<Outcome, Failure>
where
    S: ?Sized + Send + Sync + 'static,
{
    let pair = matches!(body, CaseBody::Pair(_));
    let ns_a = h.namespace().await.map_err(Failure::Open)?;
    let ns_b = if pair { Some(h.namespace().await.map_err(Failure::Open)?) } else { None };
    let opened = async {
        let a = open(h, &ns_a).await?;
        let b = match &ns_b {
            Some(ns) => Some(open(h, ns).await?),
            None => None,
        };
        Ok::<_, palisade_core::Error>((a, b))
    }
    .await;
    let outcome = match opened {
        Err(e) => Err(Failure::Open(e)),
        Ok((a, b)) => {
            let task = tokio::spawn(NOT_APPLICABLE.scope(std::cell::Cell::new(None), async move {
                match (body, b) {
                    (CaseBody::Single(f), _) => f(&*a).await,
                    (CaseBody::Pair(f), Some(b)) => f(&*a, &*b).await,
                    (CaseBody::Pair(_), None) => unreachable!("pair cases open two stores"),
                }
                NOT_APPLICABLE.with(std::cell::Cell::get)
            }));
            let abort = task.abort_handle();
            match tokio::time::timeout(case_timeout(), task).await {
                Ok(Ok(None)) => Ok(Outcome::Passed),
                Ok(Ok(Some(capability))) => Ok(Outcome::NotApplicable(capability)),
                Ok(Err(join)) => Err(join.try_into_panic().map_or_else(
                    |e| {
                        Failure::Open(
                            palisade_core::Error::new(ErrorKind::Unexpected, "case task was cancelled").with_source(e),
                        )
                    },
                    Failure::Panic,
                )),
                Err(_) => {
                    // The runtime outlives the case: stop it before its namespace goes.
                    abort.abort();
                    Err(Failure::Timeout)
                }
            }
        }
    };
    let reusable = outcome.is_ok();
    for ns in std::iter::once(&ns_a).chain(ns_b.as_ref()) {
        if let Err(e) = h.release(ns, reusable).await {
            eprintln!("warning: releasing namespace {ns} failed: {e}");
        }
    }
    outcome
}

/// Runs one case as a test (what [`conformance_tests!`](crate::conformance_tests)
/// expands to): a missing harness is a logged skip; a failure panics with the
/// case's own message so the test output shows the failed assertion.
pub async fn run<S, H>(
    backend: &'static str,
    trait_id: &'static str,
    case: &'static str,
    harness: H,
    open: Opener<S>,
    body: CaseBody<S>,
) where
    S: ?Sized + Send + Sync + 'static,
    H: Future<Output = Option<Arc<dyn Harness>>>,
{
    let started = std::time::Instant::now();
    let Some(h) = harness.await else {
        log("skip", backend, trait_id, case, started.elapsed());
        return;
    };
    match execute(h.as_ref(), open, body).await {
        Ok(Outcome::Passed) => log("pass", backend, trait_id, case, started.elapsed()),
        Ok(Outcome::NotApplicable(capability)) => {
            eprintln!("n/a: {backend}::{trait_id}::{case} (no `{capability}` capability)");
            log("na", backend, trait_id, case, started.elapsed());
        }
        Err(failure) => {
            log("fail", backend, trait_id, case, started.elapsed());
            // Re-raised on the test's own thread, so the test output shows
            // the failed assertion (the case ran on a runtime worker).
            panic!("{backend}::{trait_id}::{case}: {}", failure.message())
        }
    }
}

/// `{"a": {"a": … 1}}` with `depth` objects (for the input-policy cases).
pub(crate) fn nested(depth: usize) -> serde_json::Value {
    (0..depth).fold(serde_json::json!(1), |v, _| serde_json::json!({ "a": v }))
}

/// Asserts that `r` failed with `kind`; `what` names the call in the message.
#[track_caller]
pub fn assert_kind<T: Debug>(r: Result<T>, kind: ErrorKind, what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected {kind} error, got Ok({v:?})"),
        Err(e) => assert_eq!(e.kind(), kind, "{what}: expected {kind}, got {e}"),
    }
}

/// Unwraps `r`, failing with the error and `what` otherwise.
#[track_caller]
pub fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e:?}"),
    }
}
