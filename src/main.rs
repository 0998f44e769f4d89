//! Request handlers that wait for seconds without holding a thread.
//!
//! Two routes sleep for as long as the query string asks:
//!
//! - `GET /sleep?seconds=N` waits N seconds in one go;
//! - `GET /loop?seconds=N` waits one second, N times in a row, adds a line
//!   to the body after each wait, and sends the lines together at the end.
//!
//! Each also answers `HEAD` (`curl -I`) with the headers its `GET` would
//! get and no body; the handler runs all the same, so a `HEAD` on
//! `/sleep?seconds=N` waits N seconds too (`router`).
//!
//! Neither handler waits itself. Each one returns a *future*: a value that
//! describes work still to do, "once this timer fires, build the response".
//! The serve loop runs one tokio *task* per connection; a worker thread
//! polls that task, which polls hyper, which polls the handler's future.
//! The timer is not due, so the poll returns "not ready" and the thread goes
//! on with other tasks. When the timer fires, tokio wakes the connection's
//! task, a worker polls it again, and gotham sends the response. In between
//! nothing polls the sleeping request: a test counts two polls for a
//! one-second sleep, and three for an hour's (the serve loop's 30 s timer
//! wakes the task once too). Ten thousand sleeping requests are ten
//! thousand small futures on a couple of threads, not ten thousand blocked
//! threads (the README's benchmark measures both).
//!
//! Run it with `cargo run` (or `cargo run -- localhost:9000` for another
//! address), then in a second terminal:
//!
//! ```text
//! $ curl 'http://127.0.0.1:7878/sleep?seconds=5'
//! slept for 5 seconds
//! $ curl 'http://127.0.0.1:7878/loop?seconds=5'
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! ```
//!
//! Ctrl-C stops it: requests in flight get up to 8 seconds to finish, and
//! any still running then are dropped (`src/serve/`).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::Body;
use gotham::hyper::{Response, StatusCode};
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;

use gotham_examples_handlers_simple_async_handlers::request_log::{self, RequestLog};
use gotham_examples_handlers_simple_async_handlers::{manners, serve};

#[cfg(test)]
mod beyond_timers;
#[cfg(test)]
mod with_await;

/// Where the server listens when no address is given on the command line.
const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The body of the 400 answer to a query string without a usable `seconds`.
///
/// gotham calls the extender below without the reason the query failed to
/// parse, so this one sentence has to cover every way of getting it wrong.
const BAD_SECONDS_MESSAGE: &str = "the query string needs `seconds`, given once, as a whole \
number of seconds from 0 to 18446744073709551615, for example ?seconds=5\n";

/// The paths `router` serves, which a 404 lists.
pub(crate) const PATHS: &[&str] = &["/sleep", "/loop"];

/// The query string both routes take, such as `?seconds=5`.
///
/// gotham deserializes it with serde before the handler runs and stores it in
/// the request's `State`. A query that does not fit (no `seconds`, or a value
/// that is not a `u64`) never reaches a handler: gotham answers it with the
/// response built by the `StaticResponseExtender` below.
#[derive(Deserialize, StateData)]
pub(crate) struct QueryStringExtractor {
    pub(crate) seconds: u64,
}

/// Turns gotham's bare 400 into one that says what went wrong.
///
/// `#[derive(StaticResponseExtender)]` would set the status to 400 and add
/// the `x-request-id` header, but leave the body empty, which tells a user
/// nothing; so this one is written by hand.
impl StaticResponseExtender for QueryStringExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        // A new response replaces gotham's empty one: `manners::response`,
        // like gotham's `create_response`, sets the same `x-request-id`
        // header, and a `content-type` for the body.
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_SECONDS_MESSAGE,
        );
    }
}

/// A future that completes `seconds` seconds from now with the line saying so.
///
/// Calling this does not wait: it only builds the future. The first time
/// the future is polled, `tokio::time::sleep` files its deadline with tokio's
/// timer together with a *waker*, a handle that says which task to run again:
/// here the task of the request's connection, which polls hyper, which polls
/// this future. When the deadline passes, the timer calls that waker and
/// tokio puts the task back in its run queue; polling it again finds the
/// sleep done. Until then nothing polls it: however long it sleeps, a
/// request whose client sends nothing more meanwhile is polled twice, or
/// three times if the serve loop's own 30 s timer for the connection wakes
/// the task too
/// (`tests::a_sleeping_request_is_polled_a_fixed_number_of_times_however_long_it_sleeps`).
/// Bytes from the client wake the task as well: hyper reads them, and the
/// poll that follows polls this future once more
/// (`tests::bytes_from_the_client_mid_sleep_poll_the_sleeping_future_once_more`).
/// Database queries and calls to other services are futures woken the same
/// way, by the socket instead of the timer (`examples/relay/` waits on
/// another server over HTTP).
///
/// `map` comes from `futures::FutureExt`, a trait that adds combinators to
/// every future. Unlike `Option::map` it runs nothing now: it wraps the sleep
/// in a new future that calls the closure *later*, with the sleep's output.
/// A sleep's output is `()`, hence the closure's `|()|` pattern.
fn sleep_for(seconds: u64) -> impl Future<Output = Vec<u8>> {
    tokio::time::sleep(Duration::from_secs(seconds))
        .map(move |()| format!("slept for {seconds} seconds\n").into_bytes())
}

/// `GET /sleep?seconds=N`: one sleep of N seconds, then the answer.
///
/// A gotham handler is a function from the request's `State` to something
/// gotham can turn into a response: a `(State, Response)` pair for an answer
/// that is ready at once, or, as here, a `Pin<Box<HandlerFuture>>`.
/// `HandlerFuture` is `dyn Future<Output = HandlerResult> + Send`, and a
/// `HandlerResult` is `Ok((State, Response))` or `Err((State, HandlerError))`:
/// the handler hands the `State` back with its answer because gotham still
/// needs it afterwards (middleware reads it on the way out, and an error
/// response is built from it). The future is boxed because every handler's
/// future has a type of its own and the router has to store them all behind
/// one type, and pinned because a boxed `dyn Future` may not be `Unpin`
/// (tokio's `Sleep`, inside this one, is not): whatever it is, it must not
/// move once polled (docs/questions.md says more).
pub(crate) fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for {seconds} seconds once: starting");

    // `map` runs only once the sleep has finished. `state` moves into the
    // closure because gotham wants it back beside the response. `.boxed()`,
    // also from `FutureExt`, makes the `Pin<Box<...>>`.
    //
    // If the client hangs up first, hyper drops this future: the timer is
    // cancelled, the closure never runs, and "finished" is never printed.
    sleep_for(seconds)
        .map(move |body| {
            let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
            println!("sleep for {seconds} seconds once: finished");
            Ok((state, response))
        })
        .boxed()
}

/// `GET /loop?seconds=N`: N sleeps of one second, one after another.
///
/// `stream::iter(0..N)` is a futures `Stream`: values that come one at a
/// time, each when asked for. (It has nothing to do with streaming the HTTP
/// answer, which is sent whole at the end.) `fold`, from
/// `futures::StreamExt`, carries a value (the body so far) through the
/// stream: for each item it builds a one-second sleep and waits for it before
/// asking for the next, so the sleeps run one after another. If the future is
/// dropped midway, the remaining sleeps are never even built. A `for` loop
/// with `.await` inside does the same (`with_await.rs`).
pub(crate) fn loop_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for one second {seconds} times: starting");

    stream::iter(0..seconds)
        .fold(Vec::new(), |mut body, _| {
            sleep_for(1).map(move |line| {
                body.extend(line);
                body
            })
        })
        .map(move |body| {
            let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
            println!("sleep for one second {seconds} times: finished");
            Ok((state, response))
        })
        .boxed()
}

/// The two routes, served by the handlers above, each reading its query
/// string into `QueryStringExtractor` before the handler runs.
///
/// Upstream's example routes `GET` only. `get_or_head` routes `HEAD` to
/// the same handler too, as HTTP asks of a server (RFC 9110, section 9.1):
/// `curl -I` and health checks send it. The handler runs as for a `GET`, so
/// a `HEAD` prints the same lines and waits as long; only the body is left
/// out (`manners::response` keeps its `content-length`). A path or method
/// the router does not serve gets a 404 or 405 with a line saying why: the
/// router makes those answers itself, and a response extender registered
/// for each status fills in the line (`manners::explain_404_and_405`).
///
/// Every request a route takes goes first through a pipeline of one
/// middleware, `RequestLog` (`src/request_log.rs`), which times the
/// handler's future: with `RUST_LOG=info` each request gets a line on
/// stderr saying how long it was busy and how long it waited. The router's
/// own answers (the 404, the 405, and the 400 for a query string the
/// extractor refuses) are made before any pipeline runs: no line for them.
///
/// Kept apart from `main` so that tests can serve it without a real address.
/// (This and the other `pub(crate)` items are also used by the benchmark,
/// which compiles this file into itself to measure it.)
pub(crate) fn router() -> Router {
    let (chain, pipelines) = single_pipeline(new_pipeline().add(RequestLog).build());
    build_router(chain, pipelines, |route| {
        manners::explain_404_and_405(route, PATHS);
        route
            .get_or_head("/sleep")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(sleep_handler);
        route
            .get_or_head("/loop")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(loop_handler);
    })
}

/// Listens on the address given as the first argument, or on `DEFAULT_ADDR`,
/// and serves the router until Ctrl-C or SIGTERM.
///
/// Everything around the handlers is the serve loop's business
/// (`src/serve/`, shared with the other lessons): binding the address,
/// printing `Listening for requests at http://ADDR` once it listens, how
/// long it waits for a client, and how it stops. The exit status says how
/// it ended: 0 after a graceful shutdown, 130 after a second Ctrl-C, 1 if
/// the address cannot be used. `RUST_LOG` (unset: nothing) says what is
/// logged on stderr besides (`request_log::init_from_env`).
#[tokio::main]
async fn main() -> ExitCode {
    request_log::init_from_env();
    let requested = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    serve::listen_and_serve(&requested, router()).await
}

#[cfg(test)]
mod tests;
