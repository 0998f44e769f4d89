//! How the server takes in connections, bounds its wait for clients, and
//! stops: everything around the handlers that `main.rs` teaches.
//!
//! A handler may wait as long as its request asks. The server must not wait
//! on a *client* the same way, and `gotham::bind_server` (gotham 0.8.1) does:
//!
//! - it gives hyper no timer, so hyper's deadline for reading a request head
//!   is off. A connection that never sends a complete request is kept
//!   forever. Each one costs a descriptor and about 10 KiB there; 19,990
//!   of them left a new `GET /sleep?seconds=0` unanswered for the 60 s it was
//!   tried (descriptor limit 20,000);
//! - its accept loop retries at once after any error. Out of descriptors the
//!   listener stays readable, so the loop spins: 100% of a core for as long
//!   as the idle connections stay.
//!
//! So this file has its own accept loop, built on gotham's public API
//! (`State::from_request` and `call_handler`, as gotham's own
//! `custom_service` example does) and on hyper's HTTP/1 connection with a
//! timer. It bounds what a client can hold, pauses instead of spinning, and
//! shuts down gracefully on Ctrl-C or SIGTERM.
//!
//! It speaks HTTP/1.1 only. hyper-util's automatic builder, which
//! `bind_server` uses, first sniffs for HTTP/2's preface, and that step has
//! no deadline: a client that sends nothing would hold it forever. HTTP/2
//! without TLS ("prior knowledge") is what it would add, and browsers never
//! use it.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, Stream, StreamExt};
use gotham::hyper::body::{Body, Incoming};
use gotham::hyper::server::conn::http1;
use gotham::hyper::service::Service;
use gotham::hyper::{Request, Response};
use gotham::hyper_util::rt::{TokioIo, TokioTimer};
use gotham::router::Router;
use gotham::service::call_handler;
use gotham::state::State;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What hyper needs an error to be convertible into.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the server waits for clients, and for itself when it stops.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a connection may take to deliver a complete request head,
    /// counted from when the server starts waiting for one: on a new
    /// connection, and again after each answer on a kept-alive one. It never
    /// cuts a request that has reached its handler.
    pub header_deadline: Duration,
    /// How long to stop accepting after `accept()` fails for a reason that
    /// is not one connection's fault (most often: out of descriptors).
    pub accept_pause: Duration,
    /// How long requests in flight may go on once shutdown begins.
    pub grace_period: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // hyper's own default, and axum's and Go's usual choice.
            header_deadline: Duration::from_secs(30),
            // Short enough that the server answers again at once when
            // descriptors free up; long enough that a server out of them
            // sleeps instead of spinning (ten tries a second cost nothing).
            accept_pause: Duration::from_millis(100),
            // Longer than the README's own 5-second requests, so a Ctrl-C
            // during them lets them finish; shorter than the 10 s `docker
            // stop` waits before it kills, so the server gets to finish
            // itself and say so.
            grace_period: Duration::from_secs(8),
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

/// Serves `router` on `listener` with the default limits until Ctrl-C or
/// SIGTERM. Fails only if it cannot watch for those signals.
pub async fn serve(listener: TcpListener, router: Router) -> io::Result<Stopped> {
    let stop_signals = stop_signals()?;
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    Ok(serve_with(listener, new_service, Limits::default(), stop_signals).await)
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
        let state = State::from_request(request, self.client);
        // `call_handler` turns a handler's panic into a 500, which needs the
        // promise that `State` is fine to use after one.
        call_handler(self.router.clone(), AssertUnwindSafe(state)).boxed()
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, as one stream of stop requests.
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

/// Serves connections from `listener` until `stop` yields, then shuts down.
///
/// `new_service` makes the service for each connection from the client's
/// address. The first item of `stop` begins a graceful shutdown; a second
/// one, during the grace period, ends it at once.
pub async fn serve_with<S, B>(
    listener: TcpListener,
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
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_deadline);

    let mut stop = stop;
    let in_flight = Arc::new(AtomicUsize::new(0));
    // A watch channel, not a `Notify`: a connection that starts waiting
    // after the value changed still sees the change.
    let (begin_shutdown, shutdown_begun) = watch::channel(false);
    // Every connection's task. Aborting them drops their connections, and
    // with them the futures of the requests still in flight.
    let mut connections = JoinSet::new();
    let mut failing_since_last_accept = false;

    loop {
        tokio::select! {
            () = next_stop(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, client)) => {
                    failing_since_last_accept = false;
                    let service = Counted {
                        inner: new_service(client),
                        in_flight: Arc::clone(&in_flight),
                    };
                    let connection = http.serve_connection(TokioIo::new(socket), service);
                    connections.spawn(serve_connection(connection, shutdown_begun.clone()));
                }
                // The client gave up before we took its connection: nothing
                // is short, so accept the next one at once.
                Err(error) if belongs_to_one_connection(&error) => {}
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
            // Collect finished connections as they end, or the set keeps
            // every one that ever was.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
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

/// Drives one connection; once shutdown begins, asks it to close when idle.
async fn serve_connection<I, S, B>(
    connection: http1::Connection<I, S>,
    mut shutdown_begun: watch::Receiver<bool>,
) where
    I: gotham::hyper::rt::Read + gotham::hyper::rt::Write + Unpin,
    S: gotham::hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    let mut connection = pin!(connection);
    tokio::select! {
        // A client that went away or broke the protocol, or a header
        // deadline that passed: the connection is over either way.
        _ = connection.as_mut() => return,
        _ = shutdown_begun.wait_for(|begun| *begun) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
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

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A service that counts its requests in flight: from the moment hyper
/// hands it a request until its future is done or dropped.
struct Counted<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
}

impl<S, R> Service<R> for Counted<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn call(&self, request: R) -> Self::Future {
        let in_flight = InFlight::enter(&self.in_flight);
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
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The serve loop over real TCP, on tokio's paused clock: when every task
/// waits, the clock jumps to the next timer, so a deadline passes in no real
/// time and its virtual length is exact. Socket events are taken in before
/// the clock moves, so a deadline never fires ahead of bytes already sent.
///
/// The limits differ from the defaults, to show that the ones passed in are
/// the ones obeyed.
#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc;
    use gotham::bytes::Bytes;
    use gotham::http_body_util::{BodyExt, Empty};
    use gotham::hyper::client::conn::http1 as client;
    use std::future::Future;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    const DEADLINE: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(3);

    struct TestServer {
        addr: SocketAddr,
        stop: mpsc::UnboundedSender<()>,
        serving: JoinHandle<Stopped>,
    }

    async fn start(limits: Limits) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("an address");
        let (stop, stops) = mpsc::unbounded();
        let router = super::super::router();
        let new_service = move |client| GothamService {
            router: router.clone(),
            client,
        };
        let serving = tokio::spawn(serve_with(listener, new_service, limits, stops));
        TestServer {
            addr,
            stop,
            serving,
        }
    }

    fn limits() -> Limits {
        Limits {
            header_deadline: DEADLINE,
            grace_period: GRACE,
            ..Limits::default()
        }
    }

    impl TestServer {
        /// What Ctrl-C or SIGTERM does to the real server.
        fn stop(&self) {
            self.stop
                .unbounded_send(())
                .expect("the server listens for stops");
        }
    }

    /// Reads until the server closes `stream`; returns how long that took
    /// on tokio's clock, or `None` if it was still open after `patience`.
    async fn closed_after(stream: &mut TcpStream, patience: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut answer = Vec::new();
        match tokio::time::timeout(patience, stream.read_to_end(&mut answer)).await {
            Ok(_) => Some(started.elapsed()),
            Err(_) => None,
        }
    }

    /// Asserts that a connection that sent `bytes` is closed exactly at the
    /// header deadline.
    async fn assert_closed_at_the_deadline(bytes: &[u8]) {
        let server = start(limits()).await;
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        stream.write_all(bytes).await.expect("sends");
        let closed = closed_after(&mut stream, DEADLINE * 4).await;
        assert_eq!(
            closed,
            Some(DEADLINE),
            "after sending {:?}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_nothing_is_closed_at_the_header_deadline() {
        assert_closed_at_the_deadline(b"").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_a_few_bytes_and_stops_is_closed_at_the_header_deadline() {
        assert_closed_at_the_deadline(b"GE").await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_mid_headers_is_closed_at_the_header_deadline() {
        assert_closed_at_the_deadline(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nX-Ha")
            .await;
    }

    /// Opens a connection and sends one `GET path_and_query` on it.
    async fn request(
        addr: SocketAddr,
        path_and_query: &str,
    ) -> (
        client::SendRequest<Empty<Bytes>>,
        JoinHandle<Result<(), gotham::hyper::Error>>,
        impl Future<Output = Result<String, String>>,
    ) {
        let stream = TcpStream::connect(addr).await.expect("connects");
        let (mut sender, connection) = client::handshake(TokioIo::new(stream))
            .await
            .expect("an HTTP/1 handshake");
        let connection = tokio::spawn(connection);
        let request = Request::get(path_and_query)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("a valid request");
        let response = sender.send_request(request);
        let body = async move {
            let response = response.await.map_err(|error| error.to_string())?;
            let body = response.into_body().collect().await;
            let body = body.map_err(|error| error.to_string())?.to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        };
        (sender, connection, body)
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_alive_connection_is_closed_a_header_deadline_after_its_last_answer() {
        let server = start(limits()).await;
        let (_sender, connection, body) = request(server.addr, "/sleep?seconds=2").await;
        assert_eq!(body.await.as_deref(), Ok("slept for 2 seconds\n"));
        let answered = Instant::now();
        // The client keeps its side open; only the server can end it.
        let ended = tokio::time::timeout(DEADLINE * 4, connection).await;
        assert!(
            ended.is_ok(),
            "still open {:?} after the answer",
            DEADLINE * 4
        );
        assert_eq!(answered.elapsed(), DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_its_handler_is_never_cut_by_the_header_deadline() {
        let server = start(limits()).await;
        let started = Instant::now();
        let (_sender, _connection, body) = request(server.addr, "/sleep?seconds=3600").await;
        assert_eq!(body.await.as_deref(), Ok("slept for 3600 seconds\n"));
        assert_eq!(started.elapsed(), Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_finishes_short_requests_closes_idle_connections_and_drops_the_rest() {
        let server = start(limits()).await;
        let (_a, _short_connection, short) = request(server.addr, "/sleep?seconds=2").await;
        let (_b, _long_connection, long) = request(server.addr, "/sleep?seconds=3600").await;
        let short = tokio::spawn(short);
        let long = tokio::spawn(long);
        let mut idle = TcpStream::connect(server.addr).await.expect("connects");
        // Every request above reaches its handler before the clock moves.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let stopping = Instant::now();
        server.stop();
        assert_eq!(
            closed_after(&mut idle, Duration::from_secs(1)).await,
            Some(Duration::ZERO),
            "an idle connection should be closed as soon as shutdown begins"
        );
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "a new connection was accepted after shutdown began"
        );
        assert_eq!(
            short.await.expect("the short request's task").as_deref(),
            Ok("slept for 2 seconds\n")
        );
        let long = long.await.expect("the long request's task");
        assert!(long.is_err(), "the hour-long sleep was answered: {long:?}");
        assert_eq!(stopping.elapsed(), GRACE);
        assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_as_soon_as_the_last_request_finishes() {
        let server = start(limits()).await;
        let (_a, _connection, short) = request(server.addr, "/sleep?seconds=2").await;
        let short = tokio::spawn(short);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stopping = Instant::now();
        server.stop();
        assert_eq!(server.serving.await.expect("serve"), Stopped::Gracefully);
        // The request had one second left, far less than the grace period.
        assert_eq!(stopping.elapsed(), Duration::from_secs(1));
        assert_eq!(
            short.await.expect("the request's task").as_deref(),
            Ok("slept for 2 seconds\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_stop_during_the_grace_period_ends_at_once() {
        let server = start(limits()).await;
        let (_a, _connection, long) = request(server.addr, "/sleep?seconds=3600").await;
        let long = tokio::spawn(long);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = Instant::now();
        server.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        server.stop();
        assert_eq!(server.serving.await.expect("serve"), Stopped::AtOnce);
        assert_eq!(stopping.elapsed(), Duration::from_secs(1));
        assert!(long.await.expect("the request's task").is_err());
    }

    #[test]
    fn only_errors_of_one_connection_are_retried_at_once() {
        use io::ErrorKind::*;
        for kind in [ConnectionAborted, ConnectionReset, ConnectionRefused] {
            assert!(
                belongs_to_one_connection(&io::Error::from(kind)),
                "{kind:?}"
            );
        }
        // EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or system is short.
        for errno in [24, 23, 105, 12] {
            let error = io::Error::from_raw_os_error(errno);
            assert!(!belongs_to_one_connection(&error), "{error}");
        }
    }
}
