//! The conformance suite: public `async fn` cases over `&dyn Trait` that every
//! backend — ours or a third party's — must pass.
//!
//! A backend provides a [`Harness`] (how to open a store in a fresh
//! [`Namespace`] and drop it afterwards) and expands the cases into one
//! `#[tokio::test]` each with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! palisade_core::conformance_tests!(memory, my_harness(), [event_store, session_cache]);
//! ```
//!
//! which yields tests named `memory::event_store::append_is_atomic` and so on.
//! Every case runs in its own random namespace, dropped afterwards (also when
//! the case fails). Cases consult [`Capabilities`](crate::Capabilities) and
//! expect `Unsupported` — not silence — where a capability is off.
//!
//! Server-backed harnesses come from [`harness_from_env`]: without a URL the
//! cases are skipped with a printed notice, unless `PALISADE_REQUIRE` names the
//! server, in which case a missing or unreachable server fails every case.
//! When `PALISADE_CONFORMANCE_LOG` names a file, each case appends
//! `pass|skip|fail <TAB> backend <TAB> trait <TAB> case` to it, for the summary
//! printed by `scripts/test.sh`.

pub mod document_store;
pub mod event_store;
pub mod reputation_repo;
pub mod session_cache;
mod macros;

use std::fmt::Debug;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::error::{ErrorKind, Result};
use crate::{DocumentStore, EventStore, Namespace, ReputationRepo, SessionCache};

/// How long one case may run before it fails.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(120);

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
}

/// Opens an event store (for the macro).
pub fn open_event_store<'a>(h: &'a dyn Harness, ns: &'a Namespace) -> BoxFuture<'a, Result<Arc<dyn EventStore>>> {
    h.event_store(ns)
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
pub fn open_reputation_repo<'a>(h: &'a dyn Harness, ns: &'a Namespace) -> BoxFuture<'a, Result<Arc<dyn ReputationRepo>>> {
    h.reputation_repo(ns)
}

/// Whether `PALISADE_REQUIRE` (comma-separated, e.g. `postgres,redis`) names `server`.
pub fn required(server: &str) -> bool {
    std::env::var("PALISADE_REQUIRE")
        .map(|v| v.split(',').any(|s| s.trim().eq_ignore_ascii_case(server)))
        .unwrap_or(false)
}

/// Builds a harness from the URL in `var` with `connect`. Without the variable,
/// or when connecting fails, returns `None` (the case is skipped with a notice)
/// — or panics if [`required`]`(server)`.
pub async fn harness_from_env<F, Fut>(server: &str, var: &str, connect: F) -> Option<Arc<dyn Harness>>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<Arc<dyn Harness>>>,
{
    let Ok(url) = std::env::var(var) else {
        assert!(!required(server), "PALISADE_REQUIRE names {server} but {var} is not set");
        eprintln!("notice: {var} is not set; skipping {server} conformance case");
        return None;
    };
    match connect(url).await {
        Ok(h) => Some(h),
        Err(e) => {
            assert!(!required(server), "PALISADE_REQUIRE names {server} but it is unreachable: {e}");
            eprintln!("notice: {server} unreachable ({e}); skipping conformance case");
            None
        }
    }
}

fn log(outcome: &str, backend: &str, trait_id: &str, case: &str) {
    let Ok(path) = std::env::var("PALISADE_CONFORMANCE_LOG") else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = f.write_all(format!("{outcome}\t{backend}\t{trait_id}\t{case}\n").as_bytes());
    }
}

/// Runs one case: gets the harness, opens a store in a fresh namespace (and,
/// for `pair` cases, a second one in another namespace), runs `body` (with
/// [`CASE_TIMEOUT`]), drops the namespaces, and re-raises a failure.
pub async fn run<S, H, B, BF>(
    backend: &'static str,
    trait_id: &'static str,
    case: &'static str,
    harness: H,
    pair: bool,
    open: for<'a> fn(&'a dyn Harness, &'a Namespace) -> BoxFuture<'a, Result<Arc<S>>>,
    body: B,
) where
    S: ?Sized + Send + Sync + 'static,
    H: Future<Output = Option<Arc<dyn Harness>>>,
    B: FnOnce(Arc<S>, Option<Arc<S>>) -> BF,
    BF: Future<Output = ()> + Send + 'static,
{
    let Some(h) = harness.await else {
        log("skip", backend, trait_id, case);
        return;
    };
    let fresh = |tag: &str| Namespace::random(tag).unwrap_or_else(|e| panic!("namespace: {e}"));
    let (ns_a, ns_b) = (fresh("conf"), fresh("conf"));
    let opened = async {
        let a = open(h.as_ref(), &ns_a).await?;
        let b = if pair { Some(open(h.as_ref(), &ns_b).await?) } else { None };
        Ok::<_, crate::Error>((a, b))
    }
    .await;
    let (a, b) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            log("fail", backend, trait_id, case);
            panic!("{backend}: opening the store failed: {e}");
        }
    };
    let outcome = tokio::time::timeout(CASE_TIMEOUT, tokio::spawn(body(a, b))).await;
    for ns in [&ns_a, &ns_b] {
        if let Err(e) = h.drop_namespace(ns).await {
            eprintln!("warning: dropping namespace {ns} failed: {e}");
        }
    }
    match outcome {
        Ok(Ok(())) => log("pass", backend, trait_id, case),
        Ok(Err(join)) => {
            log("fail", backend, trait_id, case);
            match join.try_into_panic() {
                Ok(payload) => std::panic::resume_unwind(payload),
                Err(e) => panic!("case task failed: {e}"),
            }
        }
        Err(_) => {
            log("fail", backend, trait_id, case);
            panic!("case timed out after {CASE_TIMEOUT:?}");
        }
    }
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
