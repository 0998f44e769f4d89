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
//! ```
//!
//! `GET /relay?seconds=N` sends `GET /sleep?seconds=N` to the upstream (the
//! example, unless told otherwise) and answers with its body unchanged. The
//! handler's future waits on the HTTP client's future, which waits on a
//! socket: when the upstream's answer arrives, the operating system tells
//! tokio, and tokio wakes the task of the relay's connection, as the timer
//! does in `main.rs`. While the upstream is silent, nothing polls it.
//!
//! What this adds to `main.rs`, each where the code does it:
//!
//! - **one HTTP client, shared**: made once in `main`, it reaches every
//!   request's `State` through gotham's `StateMiddleware` (`router`);
//! - **a deadline on the upstream**: 10 seconds, then `504` (`Upstream::sleep`);
//! - **errors a client can read**: an upstream that cannot be reached,
//!   breaks off, or answers with an error gets a `502` and one line saying
//!   which upstream and why (`relay_handler`);
//! - **a hang-up that travels**: a client that hangs up on the relay drops
//!   the relay's future, which drops its request to the upstream, which
//!   closes that connection, so the upstream drops *its* handler's future.
//!
//! Arguments: `[LISTEN [UPSTREAM]]`, both HOST:PORT, by default
//! `127.0.0.1:7879` and `127.0.0.1:7878`. The rest (query rules, `Listening`
//! line, Ctrl-C) is as in `main.rs`. docs/relay.md has a walk through it.

use std::error::Error;
use std::panic::RefUnwindSafe;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::FutureExt;
use gotham::bytes::Bytes;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::http_body_util::{BodyExt, Empty};
use gotham::hyper::http::uri::Authority;
use gotham::hyper::{Response, StatusCode, Uri};
use gotham::hyper_util::client::legacy::connect::HttpConnector;
use gotham::hyper_util::client::legacy::Client;
use gotham::hyper_util::rt::{TokioExecutor, TokioTimer};
use gotham::middleware::state::StateMiddleware;
use gotham::pipeline::{single_middleware, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;

use gotham_examples_handlers_simple_async_handlers::serve;

/// Where the relay listens when no address is given.
const DEFAULT_ADDR: &str = "127.0.0.1:7879";
/// Whom it asks when no upstream is given: where `cargo run` listens.
const DEFAULT_UPSTREAM: &str = "127.0.0.1:7878";
/// How long the relay waits for the upstream's whole answer.
const DEADLINE: Duration = Duration::from_secs(10);

/// The same rules and the same words as `main.rs`'s 400; a test compares
/// the two programs' answers byte for byte.
const BAD_SECONDS_MESSAGE: &str = "the query string needs `seconds`, given once, as a whole \
number of seconds from 0 to 18446744073709551615, for example ?seconds=5\n";

/// `?seconds=N`, as in `main.rs`.
#[derive(Deserialize, StateData)]
pub struct QueryStringExtractor {
    seconds: u64,
}

impl StaticResponseExtender for QueryStringExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = create_response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_SECONDS_MESSAGE,
        );
    }
}

/// The upstream server, and the one HTTP client that talks to it.
///
/// hyper-util's `Client` keeps a pool of open connections: a request takes
/// an idle one if there is one, so a second request to the same upstream
/// skips the TCP handshake. Cloning it clones a handle to the same pool,
/// which is why the client is made once and shared, not made per request.
///
/// `StateMiddleware` puts a clone of this into every request's `State`, and
/// gotham asks that it be `RefUnwindSafe`: gotham catches a handler's panic
/// and turns it into a 500, then goes on using what the handler could see,
/// so it wants a promise that nothing seen was left half-changed by the
/// panic. hyper-util's client does not make that promise by itself (it has
/// locks and cells inside: error E0277 without the `impl` below), so this
/// program makes it, by implementing the marker trait by hand. (std's
/// `AssertUnwindSafe(value)` makes the same promise for one value, and is
/// what gotham's own `call_handler` takes; it is not `Clone`, which
/// `StateMiddleware` also needs.) The promise is true: the pool is changed
/// only inside the client's own code, under the client's own locks, never
/// by the handler, so a panic in a handler cannot stop a change halfway;
/// a handler that panics leaves the client as usable as it found it.
#[derive(Clone, StateData)]
pub struct Upstream {
    client: Client<HttpConnector, Empty<Bytes>>,
    authority: Authority,
    deadline: Duration,
}

impl RefUnwindSafe for Upstream {}

impl Upstream {
    /// A client for the server at `addr` (HOST:PORT), giving it `deadline`
    /// to answer each request in full.
    pub fn new(addr: &str, deadline: Duration) -> Result<Upstream, String> {
        let authority = match addr.parse::<Authority>() {
            Ok(authority) if authority.port_u16().is_some() => authority,
            _ => return Err("not HOST:PORT, such as 127.0.0.1:7878".to_string()),
        };
        let client = Client::builder(TokioExecutor::new())
            // A pooled connection unused this long is closed by the client.
            // Shorter than the 30 s the example's serve loop gives a kept-
            // alive connection: the client lets go of it before the server
            // does, instead of sending a request into a closing connection.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_timer(TokioTimer::new())
            .build_http();
        Ok(Upstream {
            client,
            authority,
            deadline,
        })
    }

    /// Asks the upstream for `GET /sleep?seconds=N` and returns its body,
    /// or why there is none.
    ///
    /// The deadline covers the whole answer, body included. When it passes,
    /// `timeout` drops the future it wraps, and with it the request: the
    /// client closes that connection (it cannot be reused with an answer
    /// still owed), and the upstream sees the hang-up.
    async fn sleep(&self, seconds: u64) -> Result<Bytes, Failure> {
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(format!("/sleep?seconds={seconds}"))
            .build()
            .map_err(|error| self.failed("cannot make the request", &error))?;
        let asking = async {
            let response = self.client.get(uri).await.map_err(|error| {
                if error.is_connect() {
                    self.failed("cannot be reached", &error)
                } else {
                    self.failed("broke off", &error)
                }
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(Failure {
                    status: StatusCode::BAD_GATEWAY,
                    line: format!("upstream {} answered {status}\n", self.authority),
                });
            }
            let body = response.into_body().collect().await;
            Ok(body
                .map_err(|error| self.failed("broke off", &error))?
                .to_bytes())
        };
        match tokio::time::timeout(self.deadline, asking).await {
            Ok(answer) => answer,
            Err(_elapsed) => Err(Failure {
                status: StatusCode::GATEWAY_TIMEOUT,
                line: format!(
                    "upstream {} did not answer within {} seconds\n",
                    self.authority,
                    self.deadline.as_secs_f64()
                ),
            }),
        }
    }

    /// A 502 that names this upstream, what went wrong, and the innermost
    /// cause: hyper-util's own message ("client error (Connect)") says less
    /// than the system's ("Connection refused (os error 111)").
    fn failed(&self, what: &str, error: &(dyn Error + 'static)) -> Failure {
        let mut cause = error;
        while let Some(deeper) = cause.source() {
            cause = deeper;
        }
        Failure {
            status: StatusCode::BAD_GATEWAY,
            line: format!("upstream {} {what}: {cause}\n", self.authority),
        }
    }
}

/// Why the relay has no body to pass on: the status to answer, and one
/// line for the client.
struct Failure {
    status: StatusCode,
    line: String,
}

/// `GET /relay?seconds=N`: the upstream's `/sleep?seconds=N`, passed on.
///
/// A gotham handler can fail in two ways, and this one picks the second:
///
/// - return `Err((state, HandlerError))`, made with
///   `HandlerError::from(error).with_status(StatusCode::BAD_GATEWAY)`. gotham
///   answers it with that status and an *empty* body; the cause goes only
///   to the `log` crate, at debug level, where nothing shows it unless the
///   program installs a logger. Fine for errors a client cannot act on.
/// - return `Ok((state, response))` with an error response built here:
///   the status *and* a line the client can read. The relay's failures
///   are worth reading (which upstream, refused or too slow), so it answers
///   them itself.
///
/// `tests/black_box/relay.rs` shows what each gives a client.
fn relay_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    // A clone shares the client's pool; the future must own what it uses.
    let upstream = Upstream::borrow_from(&state).clone();
    println!("relay sleep for {seconds} seconds: starting");

    async move {
        // If the client hangs up here, hyper drops this future, and the
        // upstream's request with it: nothing below runs.
        let (status, body) = match upstream.sleep(seconds).await {
            Ok(body) => (StatusCode::OK, body),
            Err(failure) => (failure.status, Bytes::from(failure.line)),
        };
        let response = create_response(&state, status, mime::TEXT_PLAIN, body);
        if status == StatusCode::OK {
            println!("relay sleep for {seconds} seconds: finished");
        } else {
            println!("relay sleep for {seconds} seconds: finished with {status}");
        }
        Ok((state, response))
    }
    .boxed()
}

/// The one route, behind a pipeline whose only middleware puts `upstream`
/// into each request's `State`, where `Upstream::borrow_from` finds it.
///
/// A pipeline is gotham's list of middleware run before a route's handler;
/// `StateMiddleware` is the one that shares a value. It stores `upstream`
/// once and clones it into each request, so every request uses the same
/// client and pool. (Not a global: a test can make a router with an
/// upstream of its own, and two routers in one process never share one.)
pub fn router(upstream: Upstream) -> Router {
    let (chain, pipelines) = single_pipeline(single_middleware(StateMiddleware::new(upstream)));
    build_router(chain, pipelines, |route| {
        route
            .get("/relay")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(relay_handler);
    })
}

#[tokio::main]
async fn main() -> ExitCode {
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
    serve::listen_and_serve(&listen, router(upstream)).await
}
