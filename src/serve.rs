//! How the server takes in connections, bounds its wait for clients, and
//! stops: everything around the handlers that `main.rs` and the relay
//! example teach, shared by both through the library target (`lib.rs`).
//!
//! A handler may wait as long as its request asks. The server must not wait
//! on a *client* the same way, and `gotham::bind_server` (gotham 0.8.1) does:
//!
//! - it gives hyper no timer, so hyper's deadline for reading a request head
//!   is off. A connection that never sends a complete request is kept
//!   forever, holding a descriptor and hyper's buffers, and enough of them
//!   shut everybody else out (`docs/serving.md` has what was measured);
//! - its accept loop retries at once after any error. Out of descriptors the
//!   listener stays readable, so the loop spins: 100% of a core for as long
//!   as the idle connections stay.
//!
//! So this file has its own accept loop, built on gotham's public API
//! (`State::from_request` and `call_handler`, as gotham's own
//! `custom_service` example does) and on hyper's HTTP/1 connection with a
//! timer. What it does, each for a reason given where it is done:
//!
//! - a connection must send a complete request head within a deadline;
//! - hyper's buffers are made only once a client has sent a byte, and a
//!   waiting request does not keep them (`detach_head`), so what a waiting
//!   client costs is close to what bare hyper's costs;
//! - out of descriptors, it closes the connection idle the longest to make
//!   room for a new client, but never a request in flight, nor a connection
//!   idle for under a second or with a request waiting unread; with none to
//!   close it pauses instead of spinning;
//! - it shuts down gracefully on Ctrl-C or SIGTERM.
//!
//! It speaks HTTP/1.1 only. hyper-util's automatic builder, which
//! `bind_server` uses, first sniffs for HTTP/2's preface, and that step has
//! no deadline: a client that sends nothing would hold it forever. HTTP/2
//! without TLS ("prior knowledge") is what it would add, and browsers never
//! use it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, Stream, StreamExt};
use gotham::hyper::body::{Body, Incoming};
use gotham::hyper::header::{HeaderMap, HeaderValue};
use gotham::hyper::server::conn::http1;
use gotham::hyper::service::Service;
use gotham::hyper::{Request, Response, Uri};
use gotham::hyper_util::rt::{TokioIo, TokioTimer};
use gotham::router::Router;
use gotham::service::call_handler;
use gotham::state::State;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What hyper needs an error to be convertible into.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the server waits for clients, and for itself when it stops.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a connection may take to deliver a complete request head,
    /// counted from when the server starts waiting for one: from when the
    /// connection is accepted, and again after each answer on a kept-alive
    /// one. It never cuts a request that has reached its handler.
    pub header_deadline: Duration,
    /// How long to stop accepting after `accept()` fails for a reason that
    /// is not one connection's fault and that closing an idle connection
    /// cannot mend.
    pub accept_pause: Duration,
    /// How long requests in flight may go on once shutdown begins.
    pub grace_period: Duration,
    /// How long a connection must have been idle before it may be closed to
    /// make room for a new client when descriptors run out.
    pub idle_before_shedding: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // hyper's default for `header_read_timeout`. (axum's `serve`
            // sets none, and neither does Go's `http.Server` unless its
            // `ReadHeaderTimeout` is set.)
            header_deadline: Duration::from_secs(30),
            // Short enough that the server answers again at once when
            // descriptors free up; long enough that a server out of them
            // sleeps instead of spinning (ten tries a second cost nothing).
            accept_pause: Duration::from_millis(100),
            // Longer than the README's own 5-second requests, so a Ctrl-C
            // during them lets them finish; shorter than the 10 s `docker
            // stop` waits before it kills, so the server gets to finish
            // itself and say so. A request that would take longer is dropped.
            grace_period: Duration::from_secs(8),
            // A client sends its request the moment its connection is
            // made, and the next one on a kept-alive connection a round
            // trip after its answer; a round trip across the world takes
            // about 0.3 s. A second leaves room for two slow round trips
            // and a busy client, while a connection that has said nothing
            // for a second has shown it is in no hurry. Longer would make
            // a new client wait longer when every idle connection is new.
            idle_before_shedding: Duration::from_secs(1),
        }
    }
}

/// How `serve` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// On the first signal: every request in flight finished or the grace
    /// period ran out.
    Gracefully,
    /// A second signal came during the grace period.
    AtOnce,
}

/// Binds `requested`, says where it listens, and serves `router` there
/// until Ctrl-C or SIGTERM: what each program's `main` does.
///
/// The order matters. The socket is bound before anything is printed, so
/// `Listening` appears only once the server really listens, and shows the
/// port the system chose when asked for port 0. The signal handlers are in
/// place before that line: whoever sees it may press Ctrl-C at once, and
/// should get a graceful shutdown, not the default sudden death.
///
/// An address that cannot be used gets one line on stderr and exit status
/// 1; a second Ctrl-C during the grace period, 130 (128 + SIGINT, what a
/// shell reports for a program ended by Ctrl-C).
pub async fn listen_and_serve(requested: &str, router: Router) -> ExitCode {
    let listener = match bind(requested).await {
        Ok(listener) => listener,
        Err(reason) => {
            eprintln!("error: cannot listen on {requested}: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(reason) => {
            eprintln!("error: cannot tell which address {requested} was bound to: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let stop_signals = match stop_signals() {
        Ok(stop_signals) => stop_signals,
        Err(reason) => {
            eprintln!("error: cannot watch for Ctrl-C: {reason}");
            return ExitCode::FAILURE;
        }
    };
    println!("Listening for requests at http://{addr}");

    match serve(listener, router, stop_signals).await {
        Stopped::Gracefully => ExitCode::SUCCESS,
        Stopped::AtOnce => ExitCode::from(130),
    }
}

/// Binds a TCP listener to `requested`: HOST:PORT, where HOST is an IP
/// address or a name the system resolves, such as `localhost`.
///
/// A name may resolve to several addresses (`localhost` to 127.0.0.1 and
/// ::1); the first one that binds is used.
pub async fn bind(requested: &str) -> Result<TcpListener, String> {
    let addrs = tokio::net::lookup_host(requested)
        .await
        .map_err(|error| match error.kind() {
            // What the standard library says of a missing or bad port.
            std::io::ErrorKind::InvalidInput => {
                "not HOST:PORT, such as 127.0.0.1:7878 or localhost:9000".to_string()
            }
            _ => format!("cannot resolve the host name: {error}"),
        })?;
    let mut last_error = "the host name resolved to no address".to_string();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

/// Serves `router` on `listener` with the default limits until `stop`
/// yields (see `stop_signals`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Stream<Item = ()> + Unpin,
) -> Stopped {
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    serve_with(listener, new_service, Limits::default(), stop).await
}

/// The router as a hyper service for one connection, from `client`.
///
/// gotham keeps the client's address in each request's `State`, and hyper
/// does not pass it along, so each connection gets a service of its own.
pub struct GothamService {
    pub router: Router,
    pub client: SocketAddr,
}

impl Service<Request<Incoming>> for GothamService {
    type Response = Response<gotham::helpers::http::Body>;
    type Error = gotham::anyhow::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let state = State::from_request(detach_head(request), self.client);
        // `call_handler` turns a handler's panic into a 500, which needs the
        // promise that `State` is fine to use after one.
        call_handler(self.router.clone(), AssertUnwindSafe(state)).boxed()
    }
}

/// The same request, with a URI and header values that own their bytes.
///
/// hyper reads a request head into an 8 KiB buffer and hands out the URI
/// and header values as slices of it, sharing the allocation. gotham keeps
/// the head in `State` for as long as the handler runs, so a request that
/// sleeps for an hour would keep the whole buffer for an hour, and hyper
/// would allocate another to go on reading the connection. Copying the
/// parts that point into it costs the head's own size (a few hundred bytes
/// for a usual request) and lets hyper reuse its buffer at once.
///
/// Header *names* need no copy: hyper makes them from static names or fresh
/// copies, never from its buffer.
pub fn detach_head<B>(request: Request<B>) -> Request<B> {
    let (mut head, body) = request.into_parts();
    // A URI that was parsed once parses again; if it somehow did not, the
    // request keeps the shared one, which is only a cost.
    if let Ok(uri) = Uri::try_from(head.uri.to_string()) {
        head.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(head.headers.len());
    for (name, value) in &head.headers {
        let mut owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), owned);
    }
    head.headers = headers;
    Request::from_parts(head, body)
}

/// SIGINT (Ctrl-C) and SIGTERM, as one stream of stop requests.
///
/// The handlers are installed when this is called, not when the stream is
/// first polled, so `listen_and_serve` calls it before it says it is
/// listening: from then on, Ctrl-C asks for a graceful shutdown instead of
/// killing the process.
pub fn stop_signals() -> io::Result<impl Stream<Item = ()> + Unpin> {
    let interrupt = signal(SignalKind::interrupt())?;
    let terminate = signal(SignalKind::terminate())?;
    Ok(Box::pin(stream::unfold(
        (interrupt, terminate),
        |(mut interrupt, mut terminate)| async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            Some(((), (interrupt, terminate)))
        },
    )))
}

/// Where connections come from: a `TcpListener`, or in tests, one that can
/// be made to run out of descriptors on demand.
pub trait Accept {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// How long the accept loop goes without closing an idle connection before
/// it reports how many it closed.
const SHEDDING_REPORT_AFTER: Duration = Duration::from_secs(1);

/// Serves connections from `listener` until `stop` yields, then shuts down.
///
/// `new_service` makes the service for each connection from the client's
/// address. The first item of `stop` begins a graceful shutdown; a second
/// one, during the grace period, ends it at once.
pub async fn serve_with<S, B>(
    mut listener: impl Accept,
    new_service: impl Fn(SocketAddr) -> S,
    limits: Limits,
    stop: impl Stream<Item = ()> + Unpin,
) -> Stopped
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut http = http1::Builder::new();
    // The timer is the line `bind_server` lacks: without one, hyper cannot
    // time anything and quietly skips its default 30 s header deadline (a
    // deadline set by hand without a timer would make it panic instead).
    // hyper's deadline covers the heads after the first; `serve_connection`
    // below times the first one from the moment of accepting.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_deadline);

    let mut stop = stop;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(IdleConnections::default());
    // A watch channel, not a `Notify`: a connection that starts waiting
    // after the value changed still sees the change.
    let (begin_shutdown, shutdown_begun) = watch::channel(false);
    // Every connection's task. Aborting them drops their connections, and
    // with them the futures of the requests still in flight.
    let mut connections = JoinSet::new();
    let mut failing_since_last_accept = false;
    // Whether idle connections were asked to close since the last report.
    let mut asked_in_streak = false;
    let mut last_shed = Instant::now();

    loop {
        tokio::select! {
            () = next_stop(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, client)) => {
                    failing_since_last_accept = false;
                    let place = IdlePlace::new(&idle);
                    let service = Tracked {
                        inner: new_service(client),
                        in_flight: Arc::clone(&in_flight),
                        place: Arc::clone(&place),
                    };
                    connections.spawn(serve_connection(
                        socket,
                        http.clone(),
                        service,
                        place,
                        Instant::now() + limits.header_deadline,
                        shutdown_begun.clone(),
                    ));
                }
                // The client gave up before we took its connection: nothing
                // is short, so accept the next one at once.
                Err(error) if belongs_to_one_connection(&error) => {}
                // Out of descriptors, a connection that sends nothing and
                // one that waits for a second request hold a descriptor for
                // nobody's benefit, while the new client waiting in the
                // queue may have a request ready. Closing the connection
                // idle the longest is what a client can best afford: one
                // that has waited that long is the least likely to send
                // anything soon. Requests in flight are never shed, since
                // their handlers are doing what they were asked, and
                // neither is a connection idle for less than
                // `idle_before_shedding`: one just accepted has had no time
                // to send its request, and may have sent it already, unread
                // (`serve_connection` also looks for that before closing).
                // With none old enough, the last arm pauses instead.
                Err(error)
                    if out_of_descriptors(&error)
                        && idle.shed_longest_idle(limits.idle_before_shedding) =>
                {
                    asked_in_streak = true;
                    last_shed = Instant::now();
                    // Its descriptor is free once its task has ended. If the
                    // connection took a request meanwhile it stays, and the
                    // pause bounds the wait before the next try.
                    tokio::select! {
                        () = next_stop(&mut stop) => break,
                        Some(_) = connections.join_next() => {}
                        () = tokio::time::sleep(limits.accept_pause) => {}
                    }
                }
                Err(error) => {
                    if !failing_since_last_accept {
                        eprintln!(
                            "cannot accept connections: {error}; trying again every {:?}",
                            limits.accept_pause
                        );
                        failing_since_last_accept = true;
                    }
                    tokio::select! {
                        () = next_stop(&mut stop) => break,
                        () = tokio::time::sleep(limits.accept_pause) => {}
                    }
                }
            },
            // One line per streak, not one per connection: a flood of
            // clients can make the loop shed thousands a second.
            () = tokio::time::sleep_until(last_shed + SHEDDING_REPORT_AFTER), if asked_in_streak => {
                report_shedding(&idle);
                asked_in_streak = false;
            }
            // Collect finished connections as they end, or the set keeps
            // every one that ever was.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    if asked_in_streak {
        report_shedding(&idle);
    }

    // Closing the listener makes new clients' connects fail at once.
    drop(listener);
    let waiting_for = in_flight.load(Ordering::SeqCst);
    println!(
        "Shutting down: {}, waiting up to {} seconds for {} to finish",
        count(waiting_for, "request in flight", "requests in flight"),
        limits.grace_period.as_secs(),
        if waiting_for == 1 { "it" } else { "them" },
    );
    // Each connection closes once idle: at once if it is between requests,
    // after its answer if one is in flight.
    let _ = begin_shutdown.send(true);

    let all_closed = async { while connections.join_next().await.is_some() {} };
    let stopped = tokio::select! {
        () = all_closed => Stopped::Gracefully,
        () = tokio::time::sleep(limits.grace_period) => Stopped::Gracefully,
        () = next_stop(&mut stop) => Stopped::AtOnce,
    };
    let unfinished = in_flight.load(Ordering::SeqCst);
    connections.shutdown().await;
    let dropped = count(unfinished, "unfinished request", "unfinished requests");
    match stopped {
        Stopped::Gracefully => println!("Shut down: {dropped} dropped"),
        Stopped::AtOnce => println!("Stopped at once: {dropped} dropped"),
    }
    stopped
}

/// Says on stderr how many idle connections were closed to make room since
/// the last report, if any were.
fn report_shedding(idle: &IdleConnections) {
    if let Some(line) = shedding_report(idle) {
        eprintln!("{line}");
    }
}

/// The line `report_shedding` prints, and counts afresh. The connections
/// count themselves as they close, since one asked to close may have found
/// its request arriving instead (`serve_connection`).
fn shedding_report(idle: &IdleConnections) -> Option<String> {
    let closed = idle.closed_to_make_room.swap(0, Ordering::SeqCst);
    (closed > 0).then(|| {
        format!(
            "out of descriptors: closed {}, longest idle first, to make room for new clients",
            count(closed, "idle connection", "idle connections")
        )
    })
}

/// Drives one connection from its accepting to its end.
///
/// Until the client sends its first byte, the connection is only a socket:
/// hyper allocates an 8 KiB write buffer when its connection is built and
/// an 8 KiB read buffer when it is first polled, and a client that has sent
/// nothing, or never will, need not cost them. `peek` waits for a byte
/// without taking it, so hyper still reads the whole request. (tokio's
/// `readable()` would not do: it may report a silent socket ready.)
///
/// hyper times a request head only from its first read of it, which here is
/// the first byte, so this task keeps the deadline for the first head
/// itself: `first_head_deadline`, one header deadline after the accepting.
async fn serve_connection<S, B>(
    socket: TcpStream,
    http: http1::Builder,
    service: Tracked<S>,
    place: Arc<IdlePlace>,
    first_head_deadline: Instant,
    mut shutdown_begun: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut first_byte = [0u8; 1];
    tokio::select! {
        sent = socket.peek(&mut first_byte) => match sent {
            Ok(bytes) if bytes > 0 => {}
            // Closed before sending anything, or broken.
            _ => return,
        },
        () = tokio::time::sleep_until(first_head_deadline) => return,
        () = place.shed.notified() => {
            // `peek` above learns of bytes only once tokio has seen the
            // socket become readable, which on a busy server can come
            // after the bytes did. Closing a socket with a request unread
            // in it would lose that request (the client sees a reset), so
            // ask the system itself, without waiting.
            if !has_unread_bytes(&socket) {
                place.closed_to_make_room();
                return;
            }
        }
        _ = shutdown_begun.wait_for(|begun| *begun) => return,
    }
    // A request is coming: its first byte starts a new idle spell, so the
    // connection cannot be shed before it has had time to send the rest.
    place.first_byte_came();

    let mut connection = pin!(http.serve_connection(TokioIo::new(socket), service));
    let mut closing = false;
    loop {
        tokio::select! {
            // In this order, not at random: every branch polled polls its
            // future, and polling the connection polls the handler's future
            // under it. Checked first, a timer or message that woke the task
            // ends this round before the connection is polled, so the next
            // round polls it once, instead of twice when the connection
            // happens to come first (the example's test
            // `a_sleeping_request_is_polled_a_fixed_number_of_times_however_long_it_sleeps`
            // counts the polls).
            biased;
            () = tokio::time::sleep_until(first_head_deadline), if !place.had_request() => {
                // A request may have come while this sleep was armed.
                if !place.had_request() {
                    return;
                }
            }
            () = place.shed.notified(), if !closing => {
                if !place.picked_for_shedding() {
                    // Since it was picked, it has taken a request or its
                    // first byte: it stays.
                } else if !place.had_request() {
                    // Part of a head, and nothing to finish.
                    place.closed_to_make_room();
                    return;
                } else {
                    // Between requests: hyper closes it at once, after
                    // flushing the end of its last answer.
                    place.closed_to_make_room();
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = shutdown_begun.wait_for(|begun| *begun), if !closing => {
                // Closes at once if idle, after its answer if one is in
                // flight.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            // A client that went away or broke the protocol, or hyper's
            // header deadline that passed: the connection is over.
            _ = connection.as_mut() => return,
        }
    }
}

/// Whether bytes are waiting in `socket` that nobody has read yet, asked of
/// the system directly: a `peek` that does not wait (the socket is in
/// non-blocking mode, as tokio keeps it) and takes nothing. A socket the
/// client has closed, or one that fails, has nothing worth keeping.
fn has_unread_bytes(socket: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(socket).peek(&mut byte), Ok(bytes) if bytes > 0)
}

/// The next stop request; a stream that has ended never asks again.
async fn next_stop(stop: &mut (impl Stream<Item = ()> + Unpin)) {
    if stop.next().await.is_none() {
        std::future::pending::<()>().await;
    }
}

/// Whether `accept()` failed because of one connection only (the client
/// reset or abandoned it while it waited in the queue), rather than because
/// the process or system is short of something, such as descriptors.
fn belongs_to_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Whether `accept()` failed because the process (EMFILE) or the whole
/// system (ENFILE) has no descriptor left: what closing a connection mends.
/// The numbers are the same on Linux and the BSDs; std has no `ErrorKind`
/// for them.
fn out_of_descriptors(error: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The connections with no request in flight, longest idle first.
///
/// A connection takes a turn number each time it becomes idle (when it is
/// accepted, and when an answer is done), so the smallest number is the one
/// idle the longest. A `BTreeMap` finds it without a scan and forgets a
/// connection as soon as it is busy or gone, so it holds only idle ones.
///
/// A `std` mutex, not a tokio one: it is held for a map operation, never
/// across an `.await`, and it is taken from hyper's `Service::call`, which
/// is not async.
#[derive(Default)]
struct IdleConnections {
    queue: Mutex<IdleQueue>,
    /// How many connections closed when asked to, since the last report.
    closed_to_make_room: AtomicUsize,
}

#[derive(Default)]
struct IdleQueue {
    next_turn: u64,
    longest_idle_first: BTreeMap<u64, Idle>,
}

/// One idle connection: how to tell it to close, and since when it is idle.
struct Idle {
    shed: Arc<Notify>,
    since: Instant,
}

impl IdleConnections {
    fn queue(&self) -> MutexGuard<'_, IdleQueue> {
        // Nothing panics while holding it; if something did, the map is
        // still whole.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enter(&self, shed: &Arc<Notify>) -> u64 {
        let mut queue = self.queue();
        let turn = queue.next_turn;
        queue.next_turn += 1;
        let idle = Idle {
            shed: Arc::clone(shed),
            since: Instant::now(),
        };
        queue.longest_idle_first.insert(turn, idle);
        turn
    }

    fn leave(&self, turn: u64) {
        self.queue().longest_idle_first.remove(&turn);
    }

    /// Tells the connection idle the longest to close, if it has been idle
    /// for at least `at_least`; false if none has. The longest idle is the
    /// first in the map, so if it is too new, so is every other.
    /// `notify_one` keeps the message if the connection's task is busy
    /// elsewhere, so it is never lost.
    fn shed_longest_idle(&self, at_least: Duration) -> bool {
        let mut queue = self.queue();
        let Some(entry) = queue.longest_idle_first.first_entry() else {
            return false;
        };
        if entry.get().since.elapsed() < at_least {
            return false;
        }
        entry.remove().shed.notify_one();
        true
    }
}

/// One connection's place among the idle ones, and whether it is busy.
struct IdlePlace {
    idle: Arc<IdleConnections>,
    shed: Arc<Notify>,
    state: Mutex<PlaceState>,
}

#[derive(Default)]
struct PlaceState {
    /// Its turn while it is idle.
    turn: Option<u64>,
    requests_in_flight: usize,
    had_request: bool,
}

impl IdlePlace {
    /// A new connection: idle until its first request.
    fn new(idle: &Arc<IdleConnections>) -> Arc<IdlePlace> {
        let shed = Arc::new(Notify::new());
        let turn = idle.enter(&shed);
        Arc::new(IdlePlace {
            idle: Arc::clone(idle),
            shed,
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
    }

    fn request_ended(&self) {
        let mut state = self.state();
        state.requests_in_flight -= 1;
        // `request_began` took the connection's turn, so it has none now.
        // (HTTP/1.1 serves one request at a time on a connection, so the
        // count goes from 1 to 0 here; counting keeps the place right
        // whatever the protocol.)
        if state.requests_in_flight == 0 {
            state.turn = Some(self.idle.enter(&self.shed));
        }
    }

    #[cfg(test)]
    fn is_busy(&self) -> bool {
        self.state().requests_in_flight > 0
    }

    /// A request's first byte arrived: the connection is still idle, as
    /// since now.
    fn first_byte_came(&self) {
        let mut state = self.state();
        if let Some(turn) = state.turn.take() {
            self.idle.leave(turn);
            state.turn = Some(self.idle.enter(&self.shed));
        }
    }

    /// Whether the serve loop took this connection's current turn to close
    /// it. A message to close that finds it busy, or idle again under a new
    /// turn, is about a spell that has ended.
    fn picked_for_shedding(&self) -> bool {
        match self.state().turn {
            Some(turn) => !self.idle.queue().longest_idle_first.contains_key(&turn),
            None => false,
        }
    }

    /// Counts this connection among those closed to make room.
    fn closed_to_make_room(&self) {
        self.idle.closed_to_make_room.fetch_add(1, Ordering::SeqCst);
    }

    fn had_request(&self) -> bool {
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
struct Tracked<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    place: Arc<IdlePlace>,
}

impl<S, R> Service<R> for Tracked<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn call(&self, request: R) -> Self::Future {
        let in_flight = InFlight::enter(&self.in_flight, &self.place);
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

#[cfg(test)]
mod tests;
