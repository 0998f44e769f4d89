//! The next lesson: a handler whose wait is another server's answer.
//!
//! `src/main.rs` waits on a timer. Real handlers mostly wait on another
//! service: a database, an API. This program asks the example itself, over
//! real HTTP. Three terminals:
//!
//! ```text
//! $ cargo run                      # terminal 1: the example, on 7878
//! $ cargo run --example relay      # terminal 2: this relay, on 7879
//! $ curl 'http://127.0.0.1:7879/relay?seconds=2'    # terminal 3
//! slept for 2 seconds
//! $ curl 'http://127.0.0.1:7879/parallel?seconds=2&times=3'
//! slept for 2 seconds
//! slept for 2 seconds
//! slept for 2 seconds
//! ```
//!
//! `GET /relay?seconds=N` sends `GET /sleep?seconds=N` to the upstream (the
//! example, unless told otherwise) and answers with its body unchanged. The
//! handler's future waits on the HTTP client's future, which waits on a
//! socket: when the upstream's answer arrives, the operating system tells
//! tokio, and tokio wakes the task of the relay's connection, as the timer
//! does in `main.rs`. While the upstream is silent, nothing polls it.
//!
//! `GET /series?seconds=N&times=K` and `GET /parallel?seconds=N&times=K`
//! ask the same K times: one request after another (about K×N seconds), or
//! all at once (about N). Waiting on several things at once is where async
//! pays beyond cheap waiting: K requests in flight, one task, no thread
//! each.
//!
//! What this adds to `main.rs`, each where the code does it:
//!
//! - **one HTTP client, shared**, and a **bound** on how many requests are
//!   at the upstream at once: made once in `main`, they reach every
//!   request's `State` through gotham's `StateMiddleware` (`router`);
//! - **a deadline on the upstream**: 10 seconds, then `504`
//!   (`upstream.rs`, `Upstream::sleep`);
//! - **errors a client can read**: an upstream that cannot be reached,
//!   breaks off, or answers with an error gets a `502`, and the relay's own
//!   shortage (out of descriptors, or no turn in time) a `503`, each with
//!   one line saying why (`relay_handler`, `upstream.rs`);
//! - **several waits at once**, and one failure ending them all
//!   (`parallel_handler`);
//! - **a hang-up that travels**: a client that hangs up on the relay drops
//!   the relay's future, which drops its requests to the upstream, which
//!   close those connections, so the upstream drops *its* handlers' futures.
//!
//! Arguments: `[LISTEN [UPSTREAM]]`, both HOST:PORT, by default
//! `127.0.0.1:7879` and `127.0.0.1:7878`. The rest (query rules, `HEAD`,
//! 404 and 405, `Listening` line, Ctrl-C) is as in `main.rs`. docs/relay.md
//! has a walk through it.

use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::future::try_join_all;
use futures::FutureExt;
use gotham::bytes::Bytes;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::Body;
use gotham::hyper::{Response, StatusCode};
use gotham::middleware::state::StateMiddleware;
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;

use gotham_examples_handlers_simple_async_handlers::request_log::{self, RequestLog};
use gotham_examples_handlers_simple_async_handlers::{manners, serve};

mod upstream;

pub use upstream::{Failure, Turns, Upstream, TURNS};

/// Where the relay listens when no address is given.
const DEFAULT_ADDR: &str = "127.0.0.1:7879";
/// Whom it asks when no upstream is given: where `cargo run` listens.
const DEFAULT_UPSTREAM: &str = "127.0.0.1:7878";
/// How long the relay waits for the upstream's whole answer, and for a turn
/// to ask.
const DEADLINE: Duration = Duration::from_secs(10);
/// The most requests one `/series` or `/parallel` may make: enough to see
/// the difference, and a client cannot ask for a million with one request.
const MOST_TIMES: u64 = 10;

/// The paths `router` serves, which a 404 lists.
pub const PATHS: &[&str] = &["/relay", "/series", "/parallel"];

/// The same rules and the same words as `main.rs`'s 400; a test compares
/// the two programs' answers byte for byte.
const BAD_SECONDS_MESSAGE: &str = "the query string needs `seconds`, given once, as a whole \
number of seconds from 0 to 18446744073709551615, for example ?seconds=5\n";

/// `/series` and `/parallel`'s 400: one line for every way of getting
/// either value wrong, since gotham's extender is not told which it was.
const BAD_TIMES_MESSAGE: &str = "the query string needs `seconds`, a whole number of seconds \
from 0 to 18446744073709551615, and `times`, a whole number from 1 to 10, each given once, \
for example ?seconds=2&times=3\n";

/// `?seconds=N`, as in `main.rs`.
#[derive(Deserialize, StateData)]
pub struct QueryStringExtractor {
    seconds: u64,
}

impl StaticResponseExtender for QueryStringExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_SECONDS_MESSAGE,
        );
    }
}

/// `?seconds=N&times=K`, for `/series` and `/parallel`. serde checks that
/// both are whole numbers; the handlers check that `times` is 1 to 10.
#[derive(Deserialize, StateData)]
pub struct TimesQueryExtractor {
    seconds: u64,
    times: u64,
}

impl StaticResponseExtender for TimesQueryExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_TIMES_MESSAGE,
        );
    }
}

/// `GET /relay?seconds=N`: the upstream's `/sleep?seconds=N`, passed on.
///
/// A gotham handler can fail in two ways, and this one picks the second:
///
/// - return `Err((state, HandlerError))`, made with
///   `HandlerError::from(error).with_status(StatusCode::BAD_GATEWAY)`. gotham
///   answers it with that status and an *empty* body; the cause goes only
///   to the `log` crate, at debug level, where nothing shows it unless the
///   program installs a logger (this one does: see `main`). Fine for errors
///   a client cannot act on.
/// - return `Ok((state, response))` with an error response built here:
///   the status *and* a line the client can read. The relay's failures
///   are worth reading (which upstream, refused or too slow), so it answers
///   them itself (`respond`).
///
/// `tests/black_box/relay.rs` shows what each gives a client.
fn relay_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    // Clones of handles: the same pool, the same turns. The future must own
    // what it uses, since it runs after this function has returned.
    let upstream = Upstream::borrow_from(&state).clone();
    let turns = Turns::borrow_from(&state).clone();
    let what = format!("relay sleep for {seconds} seconds");
    println!("{what}: starting");

    async move {
        // If the client hangs up here, hyper drops this future, and the
        // upstream's request with it: nothing below runs.
        let answer = upstream.sleep(&turns, seconds).await;
        Ok(respond(state, &what, answer))
    }
    .boxed()
}

/// `GET /series?seconds=N&times=K`: the upstream's `/sleep?seconds=N`, K
/// times, one after another; the K bodies in order.
fn series_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let Some((seconds, times)) = seconds_and_times(&mut state) else {
        return bad_times(state);
    };
    let upstream = Upstream::borrow_from(&state).clone();
    let turns = Turns::borrow_from(&state).clone();
    let what = format!("relay sleep for {seconds} seconds, {times} times in series");
    println!("{what}: starting");

    async move {
        let in_turn = async {
            let mut bodies = Vec::new();
            for request in 1..=times {
                // This `.await` ends before the next request is made: the
                // second waits for the first, and so on. `?` ends the loop
                // at the first failure; the rest are never made.
                let body = upstream
                    .sleep(&turns, seconds)
                    .await
                    .map_err(|failure| failure.in_request(request, times))?;
                bodies.extend_from_slice(&body);
            }
            Ok(Bytes::from(bodies))
        };
        let answer = in_turn.await;
        Ok(respond(state, &what, answer))
    }
    .boxed()
}

/// `GET /parallel?seconds=N&times=K`: the same K requests, all at once.
///
/// Three ways to wait on several things, and why this is the second:
///
/// - **in turn**, one `.await` after another (`series_handler`): each waits
///   for the one before; K×N seconds.
/// - **joined**: `try_join_all` takes K futures and polls them all, in this
///   one task, so all K are at the upstream together; N seconds. (For a
///   fixed few of different types, `futures::join!` or `try_join!` do the
///   same.) The joined future owns the K, so whatever drops it drops them:
///   a hang-up, or the first failure.
/// - **spawned**: `tokio::spawn` makes each request a task of its own,
///   which the runtime owns. Dropping the handler's future drops only the
///   `JoinHandle`s, and the tasks run on: a client that hangs up still
///   costs the upstream K requests. Right for work that must finish
///   whoever waits for it (writing what was paid for), or that should run
///   on another worker thread; not for work whose only purpose is this
///   answer.
fn parallel_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let Some((seconds, times)) = seconds_and_times(&mut state) else {
        return bad_times(state);
    };
    let upstream = Upstream::borrow_from(&state).clone();
    let turns = Turns::borrow_from(&state).clone();
    let what = format!("relay sleep for {seconds} seconds, {times} times in parallel");
    println!("{what}: starting");

    async move {
        // K futures, none of them started: a future does nothing until it
        // is polled.
        let requests = (1..=times).map(|request| {
            let turns = &turns;
            let upstream = &upstream;
            async move {
                let answer = upstream.sleep(turns, seconds).await;
                answer.map_err(|failure| failure.in_request(request, times))
            }
        });
        // The bodies come back in the order of the requests, whichever
        // answered first. At the first failure, `try_join_all` returns it
        // and drops the others: their connections close, and the upstream
        // drops their sleeps.
        let answer = try_join_all(requests).await;
        let answer = answer.map(|bodies| Bytes::from(bodies.concat()));
        Ok(respond(state, &what, answer))
    }
    .boxed()
}

/// `seconds` and `times` from the query string, if `times` is 1 to 10.
fn seconds_and_times(state: &mut State) -> Option<(u64, u64)> {
    let query = TimesQueryExtractor::take_from(state);
    (1..=MOST_TIMES)
        .contains(&query.times)
        .then_some((query.seconds, query.times))
}

/// The 400 for a `times` that serde took but the rules do not.
fn bad_times(state: State) -> Pin<Box<HandlerFuture>> {
    let response = manners::response(
        &state,
        StatusCode::BAD_REQUEST,
        mime::TEXT_PLAIN,
        BAD_TIMES_MESSAGE,
    );
    futures::future::ready(Ok((state, response))).boxed()
}

/// The answer to a relayed request: the body, or the failure's status and
/// line; and the console's `finished` line, which says which.
fn respond(state: State, what: &str, answer: Result<Bytes, Failure>) -> (State, Response<Body>) {
    let (status, body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(failure) => (failure.status, Bytes::from(failure.line + "\n")),
    };
    let response = manners::response(&state, status, mime::TEXT_PLAIN, body);
    if status == StatusCode::OK {
        println!("{what}: finished");
    } else {
        println!("{what}: finished with {status}");
    }
    (state, response)
}

/// The three routes, behind a pipeline that puts the two shared things into
/// each request's `State`, where `borrow_from` finds them.
///
/// A pipeline is gotham's list of middleware run before a route's handler.
/// The first, `RequestLog`, logs each request's line when `RUST_LOG` asks
/// (as in `main.rs`; the router's own 404, 405 and 400 get none);
/// `StateMiddleware` is the one that shares a value. It stores the value
/// once and clones it into each request: a clone of `Upstream` is a handle
/// to the same client and pool, a clone of `Turns` one to the same
/// semaphore. Each shared value gets a middleware of its own, added in
/// turn (`single_middleware(m)` is short for a pipeline of just `m`).
/// (Not globals: a test can make a router with an upstream and turns of its
/// own, and two routers in one process never share them.)
///
/// As in `main.rs`, each route answers `HEAD` too (`get_or_head`), which
/// upstream's example does not: the handler runs and asks the upstream
/// with a `GET`, and the client gets the headers without the body. A 404
/// or 405 gets a line saying why (`manners`).
pub fn router(upstream: Upstream, turns: Turns) -> Router {
    let pipeline = new_pipeline()
        .add(RequestLog)
        .add(StateMiddleware::new(upstream))
        .add(StateMiddleware::new(turns))
        .build();
    let (chain, pipelines) = single_pipeline(pipeline);
    build_router(chain, pipelines, |route| {
        manners::explain_404_and_405(route, PATHS);
        route
            .get_or_head("/relay")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(relay_handler);
        route
            .get_or_head("/series")
            .with_query_string_extractor::<TimesQueryExtractor>()
            .to(series_handler);
        route
            .get_or_head("/parallel")
            .with_query_string_extractor::<TimesQueryExtractor>()
            .to(parallel_handler);
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    // gotham reports through the `log` crate: the cause a `HandlerError`
    // carries, a query string it could not parse, a handler's panic. No
    // line goes anywhere until a program sets up a logger. This one (the
    // library's, which every program calls) writes on stderr what
    // `RUST_LOG` asks for and nothing when it is unset: `RUST_LOG=info`
    // for each request's line, `RUST_LOG=gotham=debug,info` with gotham's.
    request_log::init_from_env();

    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let upstream_addr = args.next().unwrap_or_else(|| DEFAULT_UPSTREAM.to_string());

    let upstream = match Upstream::new(&upstream_addr, DEADLINE) {
        Ok(upstream) => upstream,
        Err(reason) => {
            eprintln!("error: cannot ask upstream {upstream_addr}: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let turns = Turns::new(TURNS, DEADLINE);
    serve::listen_and_serve(&listen, router(upstream, turns)).await
}
