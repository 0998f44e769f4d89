//! A gotham middleware of the lessons' own: one line per request, saying how
//! long its future was busy and how long it waited.
//!
//! A *middleware* is a handler around the next handler. gotham calls its
//! `call` with the request's `State` and `chain`, a function that runs the
//! rest: the next middleware, and at the end the route's handler. `chain`
//! returns the handler's future, and the middleware returns a future of its
//! own, so it can work before the handler runs (read the `State`), while
//! its future runs (here: time each poll), and after it ends (see the
//! response). Middleware is put in a *pipeline* (`gotham::pipeline`), and
//! the pipeline in front of routes (`build_router`); every program's
//! `router` does so.
//!
//! The line, on stderr when `RUST_LOG` asks for it (`RUST_LOG=info`):
//!
//! ```text
//! 2026-12-05T16:15:51.735197Z  INFO request_log: GET /sleep?seconds=2 200 OK wall=2.002s busy=106.294µs waiting=2.002s
//! ```
//!
//! - **busy** is the time spent inside the handler's code: in `chain(state)`
//!   (a handler's synchronous part runs there, before its future exists)
//!   and in each poll of its future, on the real clock;
//! - **waiting** is the time between those polls, when the future was not
//!   running at all, on tokio's clock;
//! - **wall** is the whole, from `call` to the end, on tokio's clock.
//!
//! A sleeping request is polled twice or so, for microseconds each time,
//! whatever it sleeps: its busy time stays tiny and the rest is waiting. A
//! handler that blocks its thread (`std::thread::sleep`) is busy the whole
//! time it blocks, and that thread polls nothing else meanwhile.
//!
//! tokio's clock, not the real one, measures waiting and wall, so that a
//! test on tokio's paused clock sees a five-second sleep take exactly five
//! seconds (a paused clock moves only while every task waits). Busy time
//! is on the real clock, since a paused clock never moves inside a poll.
//! (`tracing-subscriber` can time spans too, busy and idle, but on the real
//! clock only: a test on the paused clock would see "idle 0".)
//!
//! Requests the router answers itself never reach a pipeline, so they get
//! no line: an unknown path (404), a method the route does not take (405),
//! and a query string the route's extractor refuses (400).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use gotham::handler::{HandlerFuture, HandlerResult};
use gotham::hyper::{Method, StatusCode, Uri};
use gotham::middleware::{Middleware, NewMiddleware};
use gotham::state::{FromState, State};
use tracing_subscriber::filter::{ParseError, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The `tracing` target of the lines, so `RUST_LOG=request_log=info` asks
/// for them alone.
pub const TARGET: &str = "request_log";

/// The middleware. It holds nothing: each request gets a copy of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestLog;

/// gotham makes one instance per request from what the pipeline holds;
/// `anyhow::Result` lets a middleware that needs a resource fail there.
impl NewMiddleware for RequestLog {
    type Instance = RequestLog;

    fn new_middleware(&self) -> gotham::anyhow::Result<RequestLog> {
        Ok(*self)
    }
}

impl Middleware for RequestLog {
    fn call<Chain>(self, state: State, chain: Chain) -> Pin<Box<HandlerFuture>>
    where
        Chain: FnOnce(State) -> Pin<Box<HandlerFuture>> + Send + 'static,
    {
        // With no one to read the line, the handler's future goes out as
        // it came: the middleware costs a check per request, not a box.
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return chain(state);
        }
        let request = (
            Method::borrow_from(&state).clone(),
            Uri::borrow_from(&state).clone(),
        );
        let started = tokio::time::Instant::now();
        let entered = std::time::Instant::now();
        let inner = chain(state);
        let busy = entered.elapsed();
        Timed {
            inner,
            request: Some(request),
            started,
            left_off: tokio::time::Instant::now(),
            busy,
            waiting: Duration::ZERO,
        }
        .boxed()
    }
}

/// The handler's future, timed: busy inside its polls, waiting between.
struct Timed {
    inner: Pin<Box<HandlerFuture>>,
    /// Taken when the line is written, so there is one line at most.
    request: Option<(Method, Uri)>,
    started: tokio::time::Instant,
    /// When `chain`, or the last poll, returned.
    left_off: tokio::time::Instant,
    busy: Duration,
    waiting: Duration,
}

impl Future for Timed {
    type Output = HandlerResult;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<HandlerResult> {
        // Every field is `Unpin` (the handler's future is pinned in its own
        // box), so `Timed` is too, and can be reached as `&mut`.
        let this = &mut *self;
        this.waiting += this.left_off.elapsed();
        let entered = std::time::Instant::now();
        let poll = this.inner.as_mut().poll(context);
        this.busy += entered.elapsed();
        this.left_off = tokio::time::Instant::now();
        if let Poll::Ready(result) = &poll {
            let status = match result {
                Ok((_, response)) => response.status(),
                Err((_, error)) => error.status(),
            };
            this.write_line(Some(status));
        }
        poll
    }
}

/// hyper drops the future unfinished when the client hangs up, and the
/// serve loop when the grace period after Ctrl-C ends: the line says so.
impl Drop for Timed {
    fn drop(&mut self) {
        if self.request.is_some() {
            self.waiting += self.left_off.elapsed();
            self.write_line(None);
        }
    }
}

impl Timed {
    /// The request's one line: its status, or `None` for a future dropped
    /// unfinished.
    fn write_line(&mut self, status: Option<StatusCode>) {
        let Some((method, uri)) = self.request.take() else {
            return;
        };
        let path = uri
            .path_and_query()
            .map_or(uri.path(), |path| path.as_str());
        let (wall, busy, waiting) = (
            Rounded(self.started.elapsed()),
            Rounded(self.busy),
            Rounded(self.waiting),
        );
        match status {
            Some(status) => tracing::info!(
                target: TARGET,
                wall = %wall, busy = %busy, waiting = %waiting,
                "{method} {path} {status}"
            ),
            None => tracing::info!(
                target: TARGET,
                wall = %wall, busy = %busy, waiting = %waiting,
                "{method} {path} dropped unfinished"
            ),
        }
    }
}

/// A duration to three decimals of its unit: `2.002s`, `106.294µs`.
struct Rounded(Duration);

impl fmt::Display for Rounded {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:.3?}", self.0)
    }
}

/// Sets up logging for a program, from `RUST_LOG`: every program calls it
/// first thing in `main`.
///
/// `RUST_LOG` is a list of `TARGET=LEVEL` (or a bare `LEVEL` for every
/// target): `info` shows each request's line, `gotham=debug,info` gotham's
/// own lines too. gotham writes through the `log` crate, which the
/// subscriber takes in as if they were `tracing` events. Unset (or empty)
/// means nothing at all, so the console is only the program's own lines.
/// A `RUST_LOG` this cannot read gets one line on stderr, and nothing is
/// logged.
///
/// The filter is `tracing_subscriber`'s `Targets`, which reads exactly that
/// list; its `EnvFilter` reads more (span and field filters), and brings
/// the regular-expression crates into the build for it.
pub fn init_from_env() {
    // A value that is not UTF-8 is refused, not read lossily: lossily,
    // `info\xff` would pass for the name of a target and log nothing.
    let read = match std::env::var("RUST_LOG") {
        Ok(asked) => filter_from(&asked).map_err(|reason| (asked, reason.to_string())),
        Err(std::env::VarError::NotPresent) => Ok(Targets::new()),
        Err(std::env::VarError::NotUnicode(raw)) => {
            Err((raw.to_string_lossy().into_owned(), "not UTF-8".to_string()))
        }
    };
    let filter = match read {
        Ok(filter) => filter,
        Err((asked, reason)) => {
            eprintln!(
                "warning: RUST_LOG={asked:?} is not a list of TARGET=LEVEL such as \
                 `info` or `gotham=debug,info` ({reason}): nothing is logged"
            );
            Targets::new()
        }
    };
    // `try_init` fails only if a program has set up logging already; that
    // one stays.
    let _ = tracing_subscriber::registry()
        .with(layer(std::io::stderr))
        .with(filter)
        .try_init();
}

/// `RUST_LOG` read as `Targets`; empty means nothing.
pub fn filter_from(asked: &str) -> Result<Targets, ParseError> {
    if asked.trim().is_empty() {
        return Ok(Targets::new());
    }
    asked.trim().parse::<Targets>()
}

/// How the lines look, written to `writer`: `init_from_env` writes to
/// stderr, the tests to a buffer of their own.
pub fn layer<S, W>(writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer)
}
