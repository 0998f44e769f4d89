//! The relay's side of the conversation with its upstream: one pooled HTTP
//! client, a deadline, a bound on how many requests are at the upstream at
//! once, and failures a client can read. `main.rs` holds the handlers that
//! use it.

use std::error::Error;
use std::io;
use std::panic::RefUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use gotham::bytes::Bytes;
use gotham::http_body_util::{BodyExt, Empty};
use gotham::hyper::http::uri::Authority;
use gotham::hyper::{StatusCode, Uri};
use gotham::hyper_util::client::legacy::connect::HttpConnector;
use gotham::hyper_util::client::legacy::Client;
use gotham::hyper_util::rt::{TokioExecutor, TokioTimer};
use gotham_derive::StateData;
use tokio::sync::{Semaphore, SemaphorePermit};

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
            // At most as many idle connections as requests may be at the
            // upstream at once (`Turns`); past that, each returned one is
            // closed instead of kept.
            .pool_max_idle_per_host(TURNS)
            .build_http();
        Ok(Upstream {
            client,
            authority,
            deadline,
        })
    }

    /// Asks the upstream for `GET /sleep?seconds=N`, once one of `turns` is
    /// free, and returns its body, or why there is none.
    ///
    /// The deadline covers the whole answer, body included. When it passes,
    /// `timeout` drops the future it wraps, and with it the request: the
    /// client closes that connection (it cannot be reused with an answer
    /// still owed), and the upstream sees the hang-up. The turn is given
    /// back when this function returns, or when its future is dropped.
    pub async fn sleep(&self, turns: &Turns, seconds: u64) -> Result<Bytes, Failure> {
        let _turn = turns.take(&self.authority).await?;
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
                    line: format!("upstream {} answered {status}", self.authority),
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
                    "upstream {} did not answer within {} seconds",
                    self.authority,
                    self.deadline.as_secs_f64()
                ),
            }),
        }
    }

    /// A 502 that names this upstream, what went wrong, and the innermost
    /// cause: hyper-util's own message ("client error (Connect)") says less
    /// than the system's ("Connection refused (os error 111)").
    ///
    /// Unless the cause is the relay's own: out of descriptors, it cannot
    /// open a connection to anyone, and the upstream is not to blame. That
    /// is a 503, the relay's "I cannot serve this now".
    fn failed(&self, what: &str, error: &(dyn Error + 'static)) -> Failure {
        let mut cause = error;
        while let Some(deeper) = cause.source() {
            cause = deeper;
        }
        let out_of_descriptors = cause
            .downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .is_some_and(|errno| errno == ENFILE || errno == EMFILE);
        if out_of_descriptors {
            return Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                line: format!(
                    "the relay is out of descriptors and cannot open a connection to upstream {}: {cause}",
                    self.authority
                ),
            };
        }
        Failure {
            status: StatusCode::BAD_GATEWAY,
            line: format!("upstream {} {what}: {cause}", self.authority),
        }
    }
}

/// The process (EMFILE) or the whole system (ENFILE) has no descriptor left;
/// the numbers are the same on Linux and the BSDs.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// How many requests the relay has at the upstream at once, at most.
///
/// Each one holds two descriptors in the relay (its client's connection and
/// its own to the upstream), and where a process's hard descriptor limit
/// is 1,024 (the start-up raise cannot pass it), that is all it has. These
/// 256 and as many kept idle in the pool make at most 512 upstream
/// connections, half of those; the other half is for the relay's clients,
/// who wait for a turn at the cost of a small future each. It also
/// bounds what one relay can ask of its upstream, whatever its clients ask:
/// without it, 2,000 clients waiting on `/relay` make 2,000 upstream
/// connections (docs/relay.md has the figures).
pub const TURNS: usize = 256;

/// The bound on requests at the upstream: a semaphore with one permit per
/// request allowed at once, shared by every request of the program.
///
/// The `Arc` is the point. `StateMiddleware` *clones* what it shares into
/// each request's `State`; a clone of `Turns` clones the `Arc`, a handle to
/// the same semaphore, so every request takes its turns from one count. A
/// `Semaphore` (or a plain counter) held by value would be copied into each
/// request, and each would count alone. The same goes for anything shared
/// that changes: a counter is an `Arc<AtomicUsize>`, a cache an
/// `Arc<Mutex<...>>`.
///
/// A request past the bound waits for a turn, for at most the upstream's
/// deadline, and then gets a 503 that says why: the relay's clients asked
/// to wait anyway, so a turn a moment later costs them a moment, while
/// refusing at once would cost them the request. (Envoy, a proxy that sits
/// in front of many upstreams, refuses at once by default, and Go's
/// `http.Transport` with `MaxConnsPerHost` makes requests wait without
/// limit: either is a choice, and a bounded wait sits between them.)
///
/// Unlike `Upstream`, `Turns` needs no `RefUnwindSafe` promise by hand:
/// tokio's semaphore is made of a std `Mutex` and atomics, which std marks
/// `RefUnwindSafe` itself, and an `Arc` of such a thing is too (so is an
/// `Arc<AtomicUsize>`, for a counter). The compiler says when it is not.
#[derive(Clone, StateData)]
pub struct Turns {
    semaphore: Arc<Semaphore>,
    wait: Duration,
}

impl Turns {
    /// `at_once` requests at a time, each waiting at most `wait` for a turn.
    pub fn new(at_once: usize, wait: Duration) -> Turns {
        Turns {
            semaphore: Arc::new(Semaphore::new(at_once)),
            wait,
        }
    }

    /// Waits for a turn to ask `upstream`; the turn is given back when the
    /// permit is dropped. tokio's semaphore is fair: turns go to requests in
    /// the order they began to wait.
    async fn take(&self, upstream: &Authority) -> Result<SemaphorePermit<'_>, Failure> {
        let too_long = || Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            line: format!(
                "the relay already has as many requests at upstream {upstream} as it allows, \
                 and none ended within {} seconds",
                self.wait.as_secs_f64()
            ),
        };
        match tokio::time::timeout(self.wait, self.semaphore.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            // Only a closed semaphore fails, and nothing closes this one.
            Ok(Err(_closed)) => Err(too_long()),
            Err(_elapsed) => Err(too_long()),
        }
    }
}

/// Why the relay has no body to pass on: the status to answer, and one
/// line for the client (without its newline).
pub struct Failure {
    pub status: StatusCode,
    pub line: String,
}

impl Failure {
    /// The same failure, saying which of several requests it ended:
    /// `request 3 of 5: upstream ... answered 503 Service Unavailable`.
    pub fn in_request(self, request: u64, of: u64) -> Failure {
        Failure {
            status: self.status,
            line: format!("request {request} of {of}: {}", self.line),
        }
    }
}
