//! The servers compared, each run in a process of its own, all served by
//! the example's own loop (`src/serve.rs`) with its default limits, on a
//! tokio runtime with the same number of worker threads.
//!
//! - `futures` is the example itself: its `router()` from `src/main.rs`,
//!   compiled into this benchmark so that the counting allocator sees it.
//! - `bare-hyper` answers `/sleep` with a plain hyper service and a tokio
//!   sleep, no gotham router or `State`: what hyper and the serve loop cost
//!   without gotham.
//! - `bare-hyper-holding-request` is the same, but its future keeps the
//!   request until it answers, as gotham's `State` does. The request's head
//!   is made of slices of hyper's read buffer, and holding it shows what
//!   that costs.
//! - `thread-per-request` starts an OS thread that sleeps, and awaits a
//!   oneshot channel that the thread completes. A thread of its own per
//!   request, as in a server without futures; not `spawn_blocking`, whose
//!   pool stops at 512 threads and would measure queueing instead.
//! - `blocking` sleeps on the worker thread itself: the mistake the example
//!   warns against, measured at a small N only.
//!
//! Each prints the example's console lines. A server also answers the line
//! `heap` on its stdin with `heap LIVE PEAK` on its stdout: its live heap
//! bytes and the most there were since the last question (see `heap.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;
use gotham::bytes::Bytes;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::http_body_util::Full;
use gotham::hyper::header::CONTENT_TYPE;
use gotham::hyper::service::service_fn;
use gotham::hyper::{Request, Response, StatusCode};
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::{StateData, StaticResponseExtender};
use serde_derive::Deserialize;

use crate::example::serve::{serve_with, GothamService, Limits};

/// Worker threads for every server: what the example gets on 2 cores.
pub const WORKER_THREADS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Futures,
    BareHyper,
    BareHyperHoldingRequest,
    ThreadPerRequest,
    Blocking,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Futures,
        Kind::BareHyper,
        Kind::BareHyperHoldingRequest,
        Kind::ThreadPerRequest,
        Kind::Blocking,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Futures => "futures",
            Kind::BareHyper => "bare-hyper",
            Kind::BareHyperHoldingRequest => "bare-hyper-holding-request",
            Kind::ThreadPerRequest => "thread-per-request",
            Kind::Blocking => "blocking",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// A server under test, running in its own process.
pub struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    heap_answers: mpsc::Receiver<String>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts a `kind` server on a free port and waits for its address.
    pub fn start(kind: Kind) -> ServerProcess {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--serve", kind.name(), "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the {} server: {error}", kind.name()));

        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("Listening for requests at http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the {} server printed {first:?}", kind.name()));
        // Every server prints two lines a request; reading them keeps the
        // pipe from filling up and stalling the server.
        let (answer, heap_answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.starts_with("heap ") {
                    let _ = answer.send(line);
                }
            }
        });
        ServerProcess {
            child,
            stdin,
            heap_answers,
            addr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's live heap bytes now, and the most there were since the
    /// last call; `None` if it does not answer (a server that ran out of
    /// threads may have died).
    pub fn heap(&mut self) -> Option<(u64, u64)> {
        writeln!(self.stdin, "heap").ok()?;
        let line = self
            .heap_answers
            .recv_timeout(Duration::from_secs(10))
            .ok()?;
        let mut numbers = line.split_whitespace().skip(1).map(|n| n.parse().ok());
        Some((numbers.next().flatten()?, numbers.next().flatten()?))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Deserialize, StateData, StaticResponseExtender)]
struct SecondsQuery {
    seconds: u64,
}

fn slept(state: &State, seconds: u64) -> Response<Body> {
    let body = format!("slept for {seconds} seconds\n");
    create_response(state, StatusCode::OK, mime::TEXT_PLAIN, body)
}

fn thread_per_request(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = SecondsQuery::take_from(&mut state).seconds;
    println!("sleep for {seconds} seconds once: starting");
    let (wake, woken) = oneshot::channel::<()>();
    let spawned = std::thread::Builder::new().spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        let _ = wake.send(());
    });
    async move {
        // A thread that could not start (too many threads) is an error the
        // benchmark counts, not a crash.
        let response = match spawned {
            Ok(_) if woken.await.is_ok() => {
                println!("sleep for {seconds} seconds once: finished");
                slept(&state, seconds)
            }
            _ => create_response(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                mime::TEXT_PLAIN,
                "no thread to sleep on\n",
            ),
        };
        Ok((state, response))
    }
    .boxed()
}

fn blocking(mut state: State) -> (State, Response<Body>) {
    let seconds = SecondsQuery::take_from(&mut state).seconds;
    println!("sleep for {seconds} seconds once: starting");
    std::thread::sleep(Duration::from_secs(seconds));
    println!("sleep for {seconds} seconds once: finished");
    let response = slept(&state, seconds);
    (state, response)
}

fn router(kind: Kind) -> Router {
    match kind {
        Kind::Futures => crate::example::router(),
        _ => build_simple_router(|route| {
            let sleep = route
                .get("/sleep")
                .with_query_string_extractor::<SecondsQuery>();
            match kind {
                Kind::ThreadPerRequest => sleep.to(thread_per_request),
                Kind::Blocking => sleep.to(blocking),
                _ => unreachable!("only gotham servers have a router"),
            }
        }),
    }
}

/// `/sleep?seconds=N` without gotham: the request is read by hand and
/// dropped, and the future holds nothing but the number and the timer.
pub fn bare_hyper_sleep<B>(
    request: Request<B>,
) -> impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> {
    answer_after_sleeping(seconds_asked(&request))
}

/// The same, but the future holds the request until it has answered.
fn bare_hyper_holding_request<B: Send>(
    request: Request<B>,
) -> impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> {
    let seconds = seconds_asked(&request);
    async move {
        let answer = answer_after_sleeping(seconds).await;
        drop(request);
        answer
    }
}

fn seconds_asked<B>(request: &Request<B>) -> Option<u64> {
    let query = request.uri().query()?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("seconds="))
        .and_then(|n| n.parse().ok())
}

async fn answer_after_sleeping(seconds: Option<u64>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(seconds) = seconds else {
        return Ok(plain_text(
            StatusCode::BAD_REQUEST,
            "seconds?\n".to_string(),
        ));
    };
    println!("sleep for {seconds} seconds once: starting");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!("sleep for {seconds} seconds once: finished");
    Ok(plain_text(
        StatusCode::OK,
        format!("slept for {seconds} seconds\n"),
    ))
}

fn plain_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "text/plain".parse().expect("a header value"));
    response
}

/// The body of `--serve KIND ADDR`: serve until killed.
pub fn serve(kind: Kind, addr: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    std::thread::spawn(answer_heap_questions);
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|error| panic!("cannot listen on {addr}: {error}"));
        let bound = listener.local_addr().expect("a bound address");
        println!("Listening for requests at http://{bound}");
        // The benchmark kills its servers, so they never need to stop.
        let never = futures::stream::pending();
        match kind {
            Kind::BareHyper => {
                let new_service = |_client| service_fn(bare_hyper_sleep);
                serve_with(listener, new_service, Limits::default(), never).await
            }
            Kind::BareHyperHoldingRequest => {
                let new_service = |_client| service_fn(bare_hyper_holding_request);
                serve_with(listener, new_service, Limits::default(), never).await
            }
            _ => {
                let router = router(kind);
                let new_service = move |client| GothamService {
                    router: router.clone(),
                    client,
                };
                serve_with(listener, new_service, Limits::default(), never).await
            }
        };
    });
    unreachable!("a server with no stop signal never stops")
}

fn answer_heap_questions() {
    for line in std::io::stdin().lines().map_while(Result::ok) {
        if line == "heap" {
            let (live, peak) = crate::heap::live_and_peak();
            println!("heap {live} {peak}");
        }
    }
}
