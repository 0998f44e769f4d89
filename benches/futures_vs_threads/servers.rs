//! The servers compared, each run in a process of its own.
//!
//! `futures` is the example's own binary, unchanged. The other two are built
//! here on the same stack (gotham 0.8, hyper 1, a tokio runtime with the same
//! worker threads, the same console lines), so that the only difference is
//! how a handler waits:
//!
//! - `thread-per-request` starts an OS thread that sleeps, and awaits a
//!   oneshot channel that the thread completes. A thread of its own per
//!   request, as in a server without futures; not `spawn_blocking`, whose
//!   pool stops at 512 threads and would measure queueing instead.
//! - `blocking` sleeps on the worker thread itself: the mistake the example
//!   warns against, measured at a small N only.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::hyper::{Response, StatusCode};
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::{StateData, StaticResponseExtender};
use serde_derive::Deserialize;

/// The example's binary, built by cargo beside this benchmark.
const EXAMPLE: &str = env!("CARGO_BIN_EXE_gotham_examples_handlers_simple_async_handlers");

/// Worker threads for every server: what the example gets on 2 cores.
pub const WORKER_THREADS: &str = "2";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Futures,
    ThreadPerRequest,
    Blocking,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Futures => "futures",
            Kind::ThreadPerRequest => "thread-per-request",
            Kind::Blocking => "blocking",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        [Kind::Futures, Kind::ThreadPerRequest, Kind::Blocking]
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

/// A server under test, running in its own process.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts a `kind` server on a free port and waits for its address.
    pub fn start(kind: Kind) -> ServerProcess {
        let mut command = match kind {
            Kind::Futures => Command::new(EXAMPLE),
            _ => {
                let mut itself = Command::new(std::env::current_exe().expect("own path"));
                itself.args(["--serve", kind.name()]);
                itself
            }
        };
        let mut child = command
            .arg("127.0.0.1:0")
            // tokio's default runtime reads this, so the example's binary
            // gets the same number of workers as the servers built here.
            .env("TOKIO_WORKER_THREADS", WORKER_THREADS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start the {} server: {error}", kind.name()));

        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("Listening for requests at http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the {} server printed {first:?}", kind.name()));
        // Every server prints two lines a request; reading them keeps the
        // pipe from filling up and stalling the server.
        std::thread::spawn(move || lines.for_each(drop));
        ServerProcess { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
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
    build_simple_router(|route| {
        let sleep = route
            .get("/sleep")
            .with_query_string_extractor::<SecondsQuery>();
        match kind {
            Kind::ThreadPerRequest => sleep.to(thread_per_request),
            Kind::Blocking => sleep.to(blocking),
            Kind::Futures => unreachable!("the futures server is the example's binary"),
        }
    })
}

/// The body of `--serve KIND ADDR`: serve until killed.
pub fn serve(kind: Kind, addr: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|error| panic!("cannot listen on {addr}: {error}"));
        let bound = listener.local_addr().expect("a bound address");
        println!("Listening for requests at http://{bound}");
        gotham::bind_server(listener, router(kind), futures::future::ok).await
    })
}
