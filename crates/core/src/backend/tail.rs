//! A live tail for backends that read events by position and can be woken
//! by a notification (Postgres `LISTEN/NOTIFY`, for instance): catch up page
//! by page, report [`SubscriptionItem::CaughtUp`] once, then wait for a
//! notification — or a poll interval, whichever comes first — and read
//! again after the last position seen.
//!
//! A notification only prompts a re-read, so a lost notification, a killed
//! listener or a dropped connection loses nothing: the tail keeps its
//! cursor, drops the listener, retries reads that fail with a temporary
//! error (backing off up to 5 s) and listens again. A non-temporary read
//! error is yielded to the subscriber. The listener is set up before the
//! first catch-up read, so nothing committed in between is missed.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

use crate::events::{Cursor, Event, EventFilter, EventSubscription, SubscriptionItem};
use crate::Result;

/// Events a live tail reads per catch-up query.
pub const TAIL_PAGE: usize = 1_000;
/// How long a live tail waits for a notification before polling anyway.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// What [`follow`] needs from a backend: reads by position, and a
/// best-effort notification listener of its own.
#[async_trait]
pub trait TailSource: Send + 'static {
    /// Up to `limit` events after `after`, in position order.
    async fn read_after(&self, after: Cursor, limit: usize) -> Result<Vec<Event>>;
    /// Sets up the listener unless it is up (a failure only means polling).
    async fn listen(&mut self);
    /// Returns when notified or after `timeout`; drops a broken listener.
    async fn wait(&mut self, timeout: Duration);
    /// Drops the listener (a read just failed: it is likely broken too).
    fn drop_listener(&mut self);
}

struct Tail<S> {
    source: S,
    filter: EventFilter,
    cursor: Cursor,
    caught_up: bool,
    pending: VecDeque<SubscriptionItem>,
    backoff: Duration,
}

impl<S: TailSource> Tail<S> {
    async fn next_item(mut self) -> Option<(Result<SubscriptionItem>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some((Ok(item), self));
            }
            if self.caught_up {
                self.source.listen().await;
                self.source.wait(POLL_EVERY).await;
            }
            match self.source.read_after(self.cursor, TAIL_PAGE).await {
                Ok(page) => {
                    self.backoff = Duration::from_millis(50);
                    if page.is_empty() && !self.caught_up {
                        self.caught_up = true;
                        self.pending.push_back(SubscriptionItem::CaughtUp);
                    }
                    for e in page {
                        self.cursor = Cursor::After(e.position);
                        if self.filter.matches(&e) {
                            self.pending.push_back(SubscriptionItem::Event(Box::new(e)));
                        }
                    }
                }
                Err(e) if e.is_temporary() => {
                    // Dropped connection or restart: keep the cursor, retry with backoff.
                    tracing::warn!(error = %e, "palisade: live tail read failed; retrying");
                    self.source.drop_listener();
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Some((Err(e), self)),
            }
        }
    }
}

/// The live tail of `source` after `after`, yielding the events `filter`
/// matches. Listens before returning, so nothing committed after this call
/// is missed.
pub async fn follow<S: TailSource>(mut source: S, after: Cursor, filter: EventFilter) -> EventSubscription {
    source.listen().await;
    let tail = Tail {
        source,
        filter,
        cursor: after,
        caught_up: false,
        pending: VecDeque::new(),
        backoff: Duration::from_millis(50),
    };
    stream::unfold(tail, Tail::next_item).boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use chrono::Utc;

    use super::*;
    use crate::events::{NewEvent, Position};
    use crate::{Error, ErrorKind};

    fn event(n: u64, kind: &str) -> Event {
        Event::from_new(NewEvent::new("t", kind), Position::new(n, 0), None, Utc::now())
    }

    /// Reads come from a script (then nothing new); counts listens and drops.
    struct Scripted {
        reads: Arc<Mutex<VecDeque<Result<Vec<Event>>>>>,
        seen: Arc<Mutex<Vec<Cursor>>>,
        listens: Arc<AtomicUsize>,
        drops: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl TailSource for Scripted {
        async fn read_after(&self, after: Cursor, _: usize) -> Result<Vec<Event>> {
            self.seen.lock().unwrap().push(after);
            self.reads.lock().unwrap().pop_front().unwrap_or(Ok(Vec::new()))
        }
        async fn listen(&mut self) {
            self.listens.fetch_add(1, Ordering::SeqCst);
        }
        async fn wait(&mut self, _: Duration) {
            tokio::task::yield_now().await;
        }
        fn drop_listener(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn catches_up_then_follows_and_survives_temporary_read_failures() {
        let down = Error::new(ErrorKind::Unavailable, "down").set_temporary(true);
        let reads = VecDeque::from([
            Ok(vec![event(1, "blocked"), event(2, "allowed")]),
            Ok(Vec::new()),
            Err(down),
            Ok(vec![event(3, "blocked")]),
            Err(Error::new(ErrorKind::Config, "schema gone")),
        ]);
        let (listens, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let source = Scripted {
            reads: Arc::new(Mutex::new(reads)),
            seen: Arc::clone(&seen),
            listens: Arc::clone(&listens),
            drops: Arc::clone(&drops),
        };
        let mut tail = follow(source, Cursor::Start, EventFilter::all().kind("blocked")).await;
        assert_eq!(listens.load(Ordering::SeqCst), 1, "listening before the first read");
        let mut items = Vec::new();
        for _ in 0..4 {
            items.push(tail.next().await.expect("open"));
        }
        let shown: Vec<String> = items
            .iter()
            .map(|i| match i {
                Ok(SubscriptionItem::Event(e)) => format!("event {}", e.position.major),
                Ok(SubscriptionItem::CaughtUp) => "caught up".to_owned(),
                Err(e) => format!("error {:?}", e.kind()),
            })
            .collect();
        assert_eq!(shown, ["event 1", "caught up", "event 3", "error Config"], "filtered, temporary error retried");
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the listener was dropped after the failed read");
        let seen = seen.lock().unwrap().clone();
        let after_two = Cursor::After(Position::new(2, 0));
        assert_eq!(&seen[1..4], &[after_two, after_two, after_two], "the cursor passed filtered events and held");
    }
}
