//! One connection's life, from its accepting to its end: waiting for the
//! client's first byte, handing the socket to hyper, and closing it when
//! the deadline passes, when it is picked to make room, or when the server
//! stops. Also the router as the hyper service each connection calls, and
//! the request body it hands the router, which tells the connection's place
//! when the handler waits on the client (`WatchedBody`).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use gotham::bytes::Bytes;
use gotham::hyper::body::{Body, Frame, Incoming, SizeHint};
use gotham::hyper::header::{HeaderMap, HeaderValue};
use gotham::hyper::server::conn::http1;
use gotham::hyper::service::Service;
use gotham::hyper::{Request, Response, Uri};
use gotham::hyper_util::rt::TokioIo;
use gotham::router::Router;
use gotham::service::call_handler;
use gotham::state::State;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::idle::{BodyWatch, IdlePlace, Tracked};

/// What hyper needs an error to be convertible into.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

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

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // The serve loop's `Tracked` puts the connection's place there.
        let watch = request.extensions_mut().remove::<BodyWatch>();
        let request = request.map(|body| WatchedBody::new(body, watch));
        let state = State::from_request(detach_head(request), self.client);
        // `call_handler` turns a handler's panic into a 500, which needs the
        // promise that `State` is fine to use after one.
        call_handler(self.router.clone(), AssertUnwindSafe(state)).boxed()
    }
}

/// The rate of body bytes at which a request waiting on its body stays
/// busy: Apache's `mod_reqtimeout` default (`MinRate=500`), also the body
/// lesson's.
const BODY_MIN_RATE: u64 = 500;

/// A request's body that tells the connection's place when the handler
/// waits for bytes the client has not sent, so that out of descriptors a
/// request trickling its body in can make room as an idle connection can.
///
/// The wait is seen where it happens: hyper's body answers `Pending` to a
/// handler that asks for a frame that has not come. Between frames, the
/// handler works or waits on something of its own (a timer, a database)
/// and is busy, as every request in flight is.
///
/// When the request counts as idle from: a byte at a time, each frame
/// would start a new idle spell, and a client that sends a byte every
/// 900 ms would never be idle for the second the rule asks. So the body
/// earns time instead: it is behind from its first poll, and each byte
/// moves that instant on by 1/500 s, never past now. A body that keeps
/// coming at 500 bytes a second or more is never a second behind; one
/// that trickles falls behind within a second, however it spaces its
/// bytes, as a head that trickles in does.
struct WatchedBody<B> {
    inner: B,
    watch: Option<BodyWatch>,
    /// The instant the body counts as idle from, once first polled.
    behind_since: Option<Instant>,
}

impl<B> WatchedBody<B> {
    fn new(inner: B, watch: Option<BodyWatch>) -> WatchedBody<B> {
        WatchedBody {
            inner,
            watch,
            behind_since: None,
        }
    }
}

impl<B> Body for WatchedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(context);
        let Some(BodyWatch(place)) = &this.watch else {
            return polled;
        };
        let now = Instant::now();
        let behind_since = *this.behind_since.get_or_insert(now);
        match &polled {
            Poll::Pending => place.body_wait_began(behind_since),
            Poll::Ready(Some(Ok(frame))) => {
                place.body_wait_ended();
                let bytes = frame.data_ref().map_or(0, Bytes::len) as u64;
                let earned = Duration::from_secs(bytes) / BODY_MIN_RATE as u32;
                this.behind_since = Some((behind_since + earned).min(now));
            }
            Poll::Ready(_) => place.body_wait_ended(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        if let Some(BodyWatch(place)) = &self.watch {
            place.body_wait_ended();
        }
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
///
/// A connection the server has accepted is served even if shutdown begins
/// before its request arrives: its client has done nothing wrong, and to
/// it a connection closed unanswered looks like a crash. So when shutdown
/// finds it silent, it still gets until `silent_at_shutdown_until` (one
/// `Limits::idle_before_shedding` after the accepting) to begin a request,
/// and that request is answered, within the grace period like any other.
pub(super) async fn serve_connection<S, B>(
    socket: TcpStream,
    http: http1::Builder,
    service: Tracked<S>,
    place: Arc<IdlePlace>,
    first_head_deadline: Instant,
    silent_at_shutdown_until: Instant,
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
    let shutdown_came_first = tokio::select! {
        sent = socket.peek(&mut first_byte) => match sent {
            Ok(bytes) if bytes > 0 => false,
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
            false
        }
        _ = shutdown_begun.wait_for(|begun| *begun) => true,
    };
    // A request may be waiting unread, as when shed (above); if not, one
    // may be on its way: a client sends its request as soon as it has
    // connected, so one accepted a moment ago has had no time to. A
    // connection silent for as long as the shedding rule calls idle is in
    // no hurry, and is closed.
    if shutdown_came_first && !has_unread_bytes(&socket) {
        let until = silent_at_shutdown_until.min(first_head_deadline);
        tokio::select! {
            sent = socket.peek(&mut first_byte) => match sent {
                Ok(bytes) if bytes > 0 => {}
                _ => return,
            },
            () = tokio::time::sleep_until(until) => return,
        }
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
                    // first byte, or its body's bytes came: it stays.
                } else if place.waiting_on_body() {
                    // A handler waiting on a body that does not come: the
                    // client is the one holding the descriptor. Dropping
                    // the connection drops the handler's future.
                    place.closed_to_make_room();
                    return;
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
            _ = async {
                let _ = shutdown_begun.wait_for(|begun| *begun).await;
                // Not before hyper has read a request head. Until it has
                // read a byte, hyper's `graceful_shutdown` takes the
                // connection for one that never will send anything, and
                // closes it at once, unread, although `peek` saw a byte
                // (tokio may not have seen it yet, so even a poll of the
                // connection may read nothing). Until the head is whole,
                // the header deadline (above) and the grace period bound
                // the wait.
                place.first_request().await;
            }, if !closing => {
                // Closes at once if idle, after its answer if one is in
                // flight, after its first request if it has read none. A
                // client that sends its next request on a kept-alive
                // connection just as it closes finds it closed, or reset,
                // with no answer. HTTP lets it send that request again on
                // a new connection if the method is idempotent, as GET is
                // (RFC 9112, section 9.3.1).
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
pub(super) fn has_unread_bytes(socket: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    matches!(socket2::SockRef::from(socket).peek(&mut byte), Ok(bytes) if bytes > 0)
}
