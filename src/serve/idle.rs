//! The idle bookkeeping: which connections have no request in flight, or
//! one whose handler waits for body bytes that have not come, and since
//! when, so that out of descriptors the accept loop can close the one idle
//! the longest; and the count of requests in flight, which keeps each
//! connection's place right and feeds the shutdown lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use gotham::hyper::service::Service;
use gotham::hyper::Request;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The connections with no request in flight, longest idle first.
///
/// A connection takes a turn each time its idle second starts anew (when
/// it is accepted, at its first byte, and when an answer is done), and
/// when its handler starts waiting for body bytes that have not come. A
/// turn is the instant it counts as idle from, then a number, so the
/// smallest turn is the one idle the longest; the number sets apart two
/// that became idle at the same instant. (A body's instant may lie in the
/// past: `connection.rs`, `WatchedBody`, says why.) A `BTreeMap` finds it
/// without a scan and forgets a connection as soon as it is busy or gone,
/// so it holds only idle ones.
///
/// A `std` mutex, not a tokio one: it is held for a map operation, never
/// across an `.await`, and it is taken from hyper's `Service::call`, which
/// is not async.
#[derive(Default)]
pub(super) struct IdleConnections {
    queue: Mutex<IdleQueue>,
    /// How many connections closed when asked to, since the last report.
    pub(super) closed_to_make_room: AtomicUsize,
}

/// Since when a connection counts as idle, and a number of its own.
type Turn = (Instant, u64);

#[derive(Default)]
struct IdleQueue {
    next_number: u64,
    /// How to tell each idle connection to close.
    longest_idle_first: BTreeMap<Turn, Arc<Notify>>,
}

impl IdleConnections {
    fn queue(&self) -> MutexGuard<'_, IdleQueue> {
        // Nothing panics while holding it; if something did, the map is
        // still whole.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enter(&self, shed: &Arc<Notify>, since: Instant) -> Turn {
        let mut queue = self.queue();
        let turn = (since, queue.next_number);
        queue.next_number += 1;
        queue.longest_idle_first.insert(turn, Arc::clone(shed));
        turn
    }

    fn leave(&self, turn: Turn) {
        self.queue().longest_idle_first.remove(&turn);
    }

    /// Tells the connection idle the longest to close, if it has been idle
    /// for at least `at_least`; false if none has. The longest idle is the
    /// first in the map, so if it is too new, so is every other.
    /// `notify_one` keeps the message if the connection's task is busy
    /// elsewhere, so it is never lost.
    pub(super) fn shed_longest_idle(&self, at_least: Duration) -> bool {
        let mut queue = self.queue();
        let Some(entry) = queue.longest_idle_first.first_entry() else {
            return false;
        };
        if entry.key().0.elapsed() < at_least {
            return false;
        }
        entry.remove().notify_one();
        true
    }
}

/// One connection's place among the idle ones, and whether it is busy.
pub(super) struct IdlePlace {
    idle: Arc<IdleConnections>,
    pub(super) shed: Arc<Notify>,
    /// Told when a request begins, for `first_request`.
    request_came: Notify,
    state: Mutex<PlaceState>,
}

#[derive(Default)]
struct PlaceState {
    /// Its turn while it is idle.
    turn: Option<Turn>,
    requests_in_flight: usize,
    had_request: bool,
    /// Whether its turn is that of a request waiting on its body.
    waiting_on_body: bool,
}

impl IdlePlace {
    /// A new connection: idle until its first request.
    pub(super) fn new(idle: &Arc<IdleConnections>) -> Arc<IdlePlace> {
        let shed = Arc::new(Notify::new());
        let turn = idle.enter(&shed, Instant::now());
        Arc::new(IdlePlace {
            idle: Arc::clone(idle),
            shed,
            request_came: Notify::new(),
            state: Mutex::new(PlaceState {
                turn: Some(turn),
                ..PlaceState::default()
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, PlaceState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request_began(&self) {
        let mut state = self.state();
        state.requests_in_flight += 1;
        state.had_request = true;
        if let Some(turn) = state.turn.take() {
            self.idle.leave(turn);
        }
        // `notify_one` keeps the news for a task that has looked at
        // `had_request` but not started waiting yet.
        self.request_came.notify_one();
    }

    /// Waits until the connection has had a request (at once if it has).
    pub(super) async fn first_request(&self) {
        while !self.had_request() {
            self.request_came.notified().await;
        }
    }

    fn request_ended(&self) {
        let mut state = self.state();
        state.requests_in_flight -= 1;
        // A body still waited on when its request ends has no reader left.
        if std::mem::take(&mut state.waiting_on_body) {
            if let Some(turn) = state.turn.take() {
                self.idle.leave(turn);
            }
        }
        // `request_began` took the connection's turn, so it has none now.
        // (HTTP/1.1 serves one request at a time on a connection, so the
        // count goes from 1 to 0 here; counting keeps the place right
        // whatever the protocol.)
        if state.requests_in_flight == 0 {
            state.turn = Some(self.idle.enter(&self.shed, Instant::now()));
        }
    }

    /// The handler asked for body bytes that have not come: the request
    /// counts as idle, as since `since`, until they come.
    ///
    /// A request in flight is never closed to make room, because its
    /// handler is doing what it was asked; a handler waiting on its body
    /// is doing nothing but wait on the client, as a connection that has
    /// not finished its head is. Counted in flight, 400 clients that each
    /// send a byte a second would hold every descriptor until their 408.
    pub(super) fn body_wait_began(&self, since: Instant) {
        let mut state = self.state();
        if state.requests_in_flight == 0 || state.turn.is_some() {
            return;
        }
        state.turn = Some(self.idle.enter(&self.shed, since));
        state.waiting_on_body = true;
    }

    /// Body bytes came, or the body ended: the request is busy again.
    pub(super) fn body_wait_ended(&self) {
        let mut state = self.state();
        if std::mem::take(&mut state.waiting_on_body) {
            if let Some(turn) = state.turn.take() {
                self.idle.leave(turn);
            }
        }
    }

    /// Whether its turn is that of a request waiting on its body.
    pub(super) fn waiting_on_body(&self) -> bool {
        self.state().waiting_on_body
    }

    #[cfg(test)]
    pub(super) fn is_busy(&self) -> bool {
        self.state().requests_in_flight > 0
    }

    /// A request's first byte arrived: the connection is still idle, as
    /// since now.
    pub(super) fn first_byte_came(&self) {
        let mut state = self.state();
        if let Some(turn) = state.turn.take() {
            self.idle.leave(turn);
            state.turn = Some(self.idle.enter(&self.shed, Instant::now()));
        }
    }

    /// Whether the serve loop took this connection's current turn to close
    /// it. A message to close that finds it busy, or idle again under a new
    /// turn, is about a spell that has ended.
    pub(super) fn picked_for_shedding(&self) -> bool {
        match self.state().turn {
            Some(turn) => !self.idle.queue().longest_idle_first.contains_key(&turn),
            None => false,
        }
    }

    /// Counts this connection among those closed to make room.
    pub(super) fn closed_to_make_room(&self) {
        self.idle.closed_to_make_room.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn had_request(&self) -> bool {
        self.state().had_request
    }
}

impl Drop for IdlePlace {
    fn drop(&mut self) {
        if let Some(turn) = self.state().turn.take() {
            self.idle.leave(turn);
        }
    }
}

/// A service that keeps count of its requests in flight, for the shutdown
/// lines and for its connection's place among the idle: a request is in
/// flight from the moment hyper hands it over until its future is done or
/// dropped.
pub(super) struct Tracked<S> {
    pub(super) inner: S,
    pub(super) in_flight: Arc<AtomicUsize>,
    pub(super) place: Arc<IdlePlace>,
}

/// The connection's place, in each request's extensions, for the service
/// to watch the request's body with (`GothamService` does: `WatchedBody`).
#[derive(Clone)]
pub(super) struct BodyWatch(pub(super) Arc<IdlePlace>);

impl<S, B> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn call(&self, mut request: Request<B>) -> Self::Future {
        let in_flight = InFlight::enter(&self.in_flight, &self.place);
        request
            .extensions_mut()
            .insert(BodyWatch(Arc::clone(&self.place)));
        let response = self.inner.call(request);
        async move {
            let _in_flight = in_flight;
            response.await
        }
        .boxed()
    }
}

/// One request in flight; leaving is counted in `drop`, so a request whose
/// future is dropped unfinished leaves too.
struct InFlight {
    counter: Arc<AtomicUsize>,
    place: Arc<IdlePlace>,
}

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>, place: &Arc<IdlePlace>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        place.request_began();
        InFlight {
            counter: Arc::clone(counter),
            place: Arc::clone(place),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
        self.place.request_ended();
    }
}
