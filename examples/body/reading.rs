//! Reading a request's body with bounds on its size and on the time spent
//! waiting for it, and the one-line answers when a bound is passed or the
//! body breaks: the few lines gotham leaves to each handler.
//!
//! gotham has no body extractor, as it has one for the query string: the
//! body stays in the request's `State` as a stream of frames
//! (`gotham::helpers::http::Body`), and the handler takes it out and reads
//! it. What a handler must decide about a body (how large, how slow, what
//! to do with each frame) differs from route to route, so the lesson
//! writes it here, once, for both of its routes.

use std::error::Error;
use std::io;
use std::time::Duration;

use gotham::bytes::Bytes;
use gotham::helpers::http::Body;
use gotham::http_body_util::BodyExt;
use gotham::hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use gotham::hyper::{HeaderMap, Response, StatusCode};
use gotham::state::{FromState, State};
use tokio::time::Instant;

use gotham_examples_handlers_simple_async_handlers::manners;

/// How a route bounds its body.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// The most bytes it takes; past them, 413.
    pub size: u64,
    /// How long it waits for the body when nothing has arrived.
    pub time: Duration,
    /// If set, each this many bytes received buy one more second (Apache's
    /// `MinRate`): a large body may take long, as long as it keeps coming.
    pub bytes_per_extra_second: Option<u64>,
}

/// Why a body was not read to its end: the answer's status and line.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub line: String,
    /// The client stopped sending before the end its request announced:
    /// a hang-up, or a `Content-Length` that lied.
    pub cut_short: bool,
}

impl Refusal {
    fn new(status: StatusCode, line: String) -> Refusal {
        Refusal {
            status,
            line,
            cut_short: false,
        }
    }

    /// The answer, and for a body cut short the console line that says so
    /// (`what` names the route). The connection closes after it: what is
    /// left of the body, unread, would otherwise be taken for the next
    /// request.
    pub fn respond(self, state: State, what: &str) -> (State, Response<Body>) {
        if self.cut_short {
            println!("{what}: the body was cut short: {}", self.line);
        }
        let mut response = manners::response(
            &state,
            self.status,
            mime::TEXT_PLAIN,
            format!("{}\n", self.line),
        );
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        (state, response)
    }
}

/// Refuses a body whose `Content-Length` is over the bound, before a byte
/// of it is read.
///
/// This must come before anything polls the body. A client that sends
/// `Expect: 100-continue` waits for hyper's `100 Continue` before it sends
/// the body, and hyper sends it only when the handler first asks for a
/// frame. An answer that comes first goes out instead, and the body is
/// never sent.
pub fn check_announced_size(state: &State, bounds: &Bounds) -> Result<(), Refusal> {
    let announced = HeaderMap::borrow_from(state)
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match announced {
        Some(length) if length > bounds.size => Err(too_large(bounds, &format!("{length} bytes"))),
        _ => Ok(()),
    }
}

fn too_large(bounds: &Bounds, what: &str) -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is {what}; this route takes at most {}",
            bounds.size
        ),
    )
}

/// A body being read frame by frame, within its bounds.
pub struct Reading {
    body: Body,
    bounds: Bounds,
    received: u64,
    /// Time spent waiting for frames. Only this counts against the time
    /// bound: whatever the handler does between two frames (hashing, or
    /// `/digest`'s pause) is its own business, not the client's.
    waited: Duration,
}

impl Reading {
    /// Takes the body out of `state`.
    pub fn take_from(state: &mut State, bounds: Bounds) -> Reading {
        Reading {
            body: Body::take_from(state),
            bounds,
            received: 0,
            waited: Duration::ZERO,
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// How long the body may still keep the handler waiting.
    fn allowance(&self) -> Duration {
        let earned = match self.bounds.bytes_per_extra_second {
            Some(rate) => Duration::from_secs(self.received / rate.max(1)),
            None => Duration::ZERO,
        };
        (self.bounds.time + earned).saturating_sub(self.waited)
    }

    /// The next piece of the body, `None` at its end.
    ///
    /// Asking for a frame is what makes hyper read the socket: until it is
    /// asked again, hyper reads no more, the kernel's buffers fill, and the
    /// client's sends wait. That is backpressure, and it takes no code.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Refusal> {
        loop {
            let asked = Instant::now();
            let frame = tokio::time::timeout(self.allowance(), self.body.frame()).await;
            self.waited += asked.elapsed();
            let frame = match frame {
                Err(_) => return Err(self.too_slow()),
                Ok(None) => return Ok(None),
                Ok(Some(Err(error))) => return Err(self.broken(&error)),
                Ok(Some(Ok(frame))) => frame,
            };
            // A frame holds data or, at the end of a chunked body,
            // trailers, which neither route uses.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.received += data.len() as u64;
            if self.received > self.bounds.size {
                return Err(too_large(
                    &self.bounds,
                    &format!("over {} bytes", self.bounds.size),
                ));
            }
            return Ok(Some(data));
        }
    }

    /// The whole body, for a route that needs all of it at once.
    pub async fn whole(mut self) -> Result<Vec<u8>, Refusal> {
        let mut whole = Vec::new();
        while let Some(data) = self.next().await? {
            whole.extend_from_slice(&data);
        }
        Ok(whole)
    }

    fn too_slow(&self) -> Refusal {
        let rule = match self.bounds.bytes_per_extra_second {
            Some(rate) => format!(
                "{} s, and a second more for each {rate} bytes",
                self.bounds.time.as_secs()
            ),
            None => format!("{} s", self.bounds.time.as_secs()),
        };
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body came too slowly: {} bytes in the time allowed ({rule})",
                self.received
            ),
        )
    }

    /// What a read error means. gotham hands the handler hyper's error
    /// wrapped in an `io::Error` of its own; the kind that tells what
    /// happened is that of the `io::Error` hyper met, further down.
    fn broken(&self, error: &io::Error) -> Refusal {
        let received = self.received;
        let cause = first_io_cause(error);
        match cause.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => Refusal {
                status: StatusCode::BAD_REQUEST,
                line: format!(
                    "the body ended after {received} bytes, before the end the request announced"
                ),
                cut_short: true,
            },
            // A bad chunk size line and the like: the client's mistake.
            _ => Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid HTTP after {received} bytes: {cause}"),
            ),
        }
    }
}

/// The first `io::Error` under `error`'s own, or `error` if none is.
fn first_io_cause(error: &io::Error) -> &io::Error {
    let mut cause: Option<&(dyn Error + 'static)> = match error.get_ref() {
        Some(inner) => Some(inner),
        None => return error,
    };
    while let Some(current) = cause {
        if let Some(io_error) = current.downcast_ref::<io::Error>() {
            return io_error;
        }
        cause = current.source();
    }
    error
}
