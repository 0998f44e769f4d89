//! The servers compared, each run in a process of its own.
//!
//! The Rust servers run on a tokio runtime with the same number of worker
//! threads and bind through the example's `serve::bind`, so that every one
//! has the same listen queue, as deep as the system allows (tokio's own
//! `TcpListener::bind` asks for 128; the Go peer asks for the system's
//! limit too, Node.js for 511). All but axum are served by the example's
//! own loop (`src/serve/`) with its default limits, but for a longer header
//! deadline (`benchmark_limits`):
//!
//! - `futures` is the example itself: its `router()` from `src/main.rs`,
//!   compiled into this benchmark so that the counting allocator sees it.
//! - `bare-hyper` answers `/sleep` with a plain hyper service and a tokio
//!   sleep, no gotham router or `State`: what hyper and the serve loop cost
//!   without gotham.
//! - `bare-hyper-holding-request` is the same, but its future keeps the
//!   request, whose head is slices of hyper's read buffer, until it
//!   answers: what gotham's `State` would cost without `detach_head`.
//! - `axum` is what a Rust reader would pick instead: a `Query` extractor
//!   and a tokio sleep, served by `axum::serve` as axum's docs serve it.
//! - `thread-per-request` starts an OS thread that sleeps, and awaits a
//!   oneshot channel that the thread completes. A thread of its own per
//!   request, as in a server without futures; not `spawn_blocking`, whose
//!   pool stops at 512 threads and would measure queueing instead.
//! - `blocking` sleeps on the worker thread itself: the mistake the example
//!   warns against, measured at a small N only.
//!
//! Two peers in other languages sit in `peers/`: `node` (Node.js, one event
//! loop and `setTimeout`) and `go` (net/http, a goroutine per connection and
//! `time.Sleep`). Each runs when its tool is on PATH, and is skipped, with
//! the reason in the report, when it is not.
//!
//! The relays answer `/relay?seconds=N` with an upstream's
//! `/sleep?seconds=N`; the upstream is a `futures` server (the example) of
//! its own, started for each run:
//!
//! - `gotham-relay` is the relay example's `router()` from
//!   `examples/relay/`, on the serve loop, with its bound on requests at
//!   the upstream raised past any N here (`RELAY_TURNS`);
//! - `bare-hyper-relay` answers with a plain hyper service that asks
//!   through hyper-util's pooled client, as the gotham relay does, with no
//!   gotham router, `State`, deadline or bound: the floor for Rust;
//! - `go-relay` (`peers/go_relay.go`): net/http's server and default client;
//! - `node-relay` (`peers/node_relay.js`): the `http` module, with a
//!   keep-alive agent.
//!
//! Every server prints the example's console lines; counting `starting`
//! against `finished` tells how many requests were in flight together. A
//! Rust server also answers the line `heap` on its stdin with
//! `heap LIVE PEAK` on its stdout: its live heap bytes and the most there
//! were since the last question (see `heap.rs`). Node and Go have their own
//! allocators, which this one cannot see.

use std::convert::Infallible;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;
use gotham::bytes::Bytes;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::http_body_util::{BodyExt, Empty, Full};
use gotham::hyper::header::CONTENT_TYPE;
use gotham::hyper::service::service_fn;
use gotham::hyper::{Request, Response, StatusCode};
use gotham::hyper_util::client::legacy::connect::HttpConnector;
use gotham::hyper_util::client::legacy::Client;
use gotham::hyper_util::rt::TokioExecutor;
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::{StateData, StaticResponseExtender};
use serde_derive::Deserialize;

use gotham_examples_handlers_simple_async_handlers::serve::{
    self, serve_with, GothamService, Limits,
};

/// The example's limits, but for a longer header deadline. The load
/// generator opens every connection before it sends the first request, and
/// at N = 19,500 on 2 cores the first ones sat idle for over 30 s, so the
/// example's 30 s deadline closed hundreds of them (373 and 2,165 requests
/// failed in two runs). The deadline is
/// not what is measured, so every server gets two minutes (the Node.js and
/// Go peers set the same; `axum::serve` has no header deadline).
fn benchmark_limits() -> Limits {
    Limits {
        header_deadline: Duration::from_secs(120),
        ..Limits::default()
    }
}

/// Worker threads for every server: what the example gets on 2 cores.
pub const WORKER_THREADS: usize = 2;

/// The gotham relay's bound on requests at the upstream, for the benchmark:
/// past every N it runs, so that it measures waiting, not the bound (the
/// relay's own is `TURNS`, 256).
const RELAY_TURNS: usize = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Futures,
    BareHyper,
    BareHyperHoldingRequest,
    Axum,
    Node,
    Go,
    ThreadPerRequest,
    Blocking,
    GothamRelay,
    BareHyperRelay,
    GoRelay,
    NodeRelay,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Futures,
        Kind::BareHyper,
        Kind::BareHyperHoldingRequest,
        Kind::Axum,
        Kind::Node,
        Kind::Go,
        Kind::ThreadPerRequest,
        Kind::Blocking,
        Kind::GothamRelay,
        Kind::BareHyperRelay,
        Kind::GoRelay,
        Kind::NodeRelay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Futures => "futures",
            Kind::BareHyper => "bare-hyper",
            Kind::BareHyperHoldingRequest => "bare-hyper-holding-request",
            Kind::Axum => "axum",
            Kind::Node => "node",
            Kind::Go => "go",
            Kind::ThreadPerRequest => "thread-per-request",
            Kind::Blocking => "blocking",
            Kind::GothamRelay => "gotham-relay",
            Kind::BareHyperRelay => "bare-hyper-relay",
            Kind::GoRelay => "go-relay",
            Kind::NodeRelay => "node-relay",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Whether the server runs in this benchmark's own binary, and so has
    /// the counting allocator and answers `heap`.
    pub fn is_rust(self) -> bool {
        !matches!(
            self,
            Kind::Node | Kind::Go | Kind::NodeRelay | Kind::GoRelay
        )
    }

    /// Whether it answers `/relay` by asking an upstream, rather than
    /// `/sleep` by itself.
    pub fn is_relay(self) -> bool {
        matches!(
            self,
            Kind::GothamRelay | Kind::BareHyperRelay | Kind::GoRelay | Kind::NodeRelay
        )
    }

    /// The command that runs this server on `addr` (a relay asking
    /// `upstream`), or why it cannot run on this machine.
    pub fn command(self, addr: &str, upstream: Option<SocketAddr>) -> Result<Command, String> {
        let node = |script: &str| {
            let version = Command::new("node").arg("--version").output();
            if !matches!(version, Ok(out) if out.status.success()) {
                return Err("`node` is not on PATH".to_string());
            }
            let mut command = Command::new("node");
            command.arg(peer_source(script));
            Ok(command)
        };
        let mut command = match self {
            Kind::Node => node("node_server.js")?,
            Kind::NodeRelay => node("node_relay.js")?,
            Kind::Go => Command::new(go_peer("go_server")?),
            Kind::GoRelay => Command::new(go_peer("go_relay")?),
            _ => {
                let mut command =
                    Command::new(std::env::current_exe().map_err(|error| error.to_string())?);
                command.args(["--serve", self.name()]);
                command
            }
        };
        command.arg(addr);
        if let Some(upstream) = upstream {
            command.arg(upstream.to_string());
        }
        Ok(command)
    }
}

fn peer_source(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/futures_vs_threads/peers")
        .join(file)
}

/// Builds the Go peer `name` (`peers/NAME.go`) once per benchmark process,
/// under the target folder.
fn go_peer(name: &'static str) -> Result<PathBuf, String> {
    type Built = Vec<(&'static str, Result<PathBuf, String>)>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    // A std mutex: held while `go build` runs, by one thread at a time.
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, result)) = built.iter().find(|(built, _)| *built == name) {
        return result.clone();
    }
    let out_dir = crate::target_dir().join("futures_vs_threads");
    let binary = out_dir.join(name);
    let output = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(peer_source(&format!("{name}.go")))
        // Go's build cache, kept with the rest of the build; and no
        // toolchain download, which this machine could not make.
        .env("GOCACHE", out_dir.join("go-cache"))
        .env("GOTOOLCHAIN", "local")
        .output();
    let result = match output {
        Err(error) => Err(format!("`go` is not on PATH ({error})")),
        Ok(out) if !out.status.success() => Err(format!(
            "`go build` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => Ok(binary),
    };
    built.push((name, result.clone()));
    result
}

/// Requests in flight as the server's own lines tell: `starting` lines
/// less `finished` lines, now and at most since the last look.
#[derive(Default)]
struct InFlight {
    now: usize,
    most: usize,
}

/// A server under test, running in its own process.
pub struct ServerProcess {
    kind: Kind,
    child: Child,
    stdin: ChildStdin,
    heap_answers: mpsc::Receiver<String>,
    in_flight: Arc<Mutex<InFlight>>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts a `kind` server on a free port (a relay asking `upstream`)
    /// and waits for its address.
    pub fn start(kind: Kind, upstream: Option<SocketAddr>) -> Result<ServerProcess, String> {
        let mut child = kind
            .command("127.0.0.1:0", upstream)?
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| format!("cannot start the {} server: {error}", kind.name()))?;

        let stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let addr = first
            .strip_prefix("Listening for requests at http://")
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("the {} server printed {first:?}", kind.name()))?;
        // Every server prints two lines a request; reading them keeps the
        // pipe from filling up and stalling the server, and counts them.
        let (answer, heap_answers) = mpsc::channel();
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let counts = Arc::clone(&in_flight);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.ends_with(": starting") {
                    // A std mutex: held for two additions, never across a wait.
                    let mut counts = counts.lock().expect("the count");
                    counts.now += 1;
                    counts.most = counts.most.max(counts.now);
                } else if line.ends_with(": finished") {
                    let mut counts = counts.lock().expect("the count");
                    counts.now = counts.now.saturating_sub(1);
                } else if line.starts_with("heap ") {
                    let _ = answer.send(line);
                }
            }
        });
        Ok(ServerProcess {
            kind,
            child,
            stdin,
            heap_answers,
            in_flight,
            addr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most requests in flight together since the last call, as the
    /// server's lines tell.
    ///
    /// Call it after `heap`: the answer to `heap` comes after every line
    /// printed before it, so once it is read, so are they. A server in
    /// another language has no such marker, and gets a moment instead.
    pub fn most_in_flight(&self) -> usize {
        if !self.kind.is_rust() {
            std::thread::sleep(Duration::from_millis(300));
        }
        let mut counts = self.in_flight.lock().expect("the count");
        let most = counts.most;
        counts.most = counts.now;
        most
    }

    /// The server's live heap bytes now, and the most there were since the
    /// last call; `None` for a server in another language, or one that
    /// does not answer (a server that ran out of threads may have died).
    pub fn heap(&mut self) -> Option<(u64, u64)> {
        if !self.kind.is_rust() {
            return None;
        }
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
                _ => unreachable!("only the gotham servers have a gotham router"),
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

/// axum's `/sleep`: the query parsed by its `Query` extractor, then an
/// `async fn` that awaits a tokio sleep.
async fn axum_sleep(
    axum::extract::Query(query): axum::extract::Query<SecondsQuery>,
) -> Response<Full<Bytes>> {
    let seconds = query.seconds;
    println!("sleep for {seconds} seconds once: starting");
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    println!("sleep for {seconds} seconds once: finished");
    plain_text(StatusCode::OK, format!("slept for {seconds} seconds\n"))
}

fn plain_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "text/plain".parse().expect("a header value"));
    response
}

/// The bare hyper relay's client: hyper-util's, pooled, as the gotham
/// relay's, shared by every connection.
type RelayClient = Client<HttpConnector, Empty<Bytes>>;

/// `/relay?seconds=N` without gotham: the upstream's `/sleep?seconds=N`
/// asked through the pooled client, and its body passed on.
async fn bare_hyper_relay<B>(
    client: RelayClient,
    upstream: Arc<str>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(seconds) = seconds_asked(&request) else {
        return Ok(plain_text(
            StatusCode::BAD_REQUEST,
            "seconds?\n".to_string(),
        ));
    };
    drop(request);
    println!("relay sleep for {seconds} seconds: starting");
    let asking = async {
        let uri = format!("http://{upstream}/sleep?seconds={seconds}")
            .parse()
            .map_err(|error| format!("{error}"))?;
        let response = client.get(uri).await.map_err(|error| error.to_string())?;
        let status = response.status();
        let body = response.into_body().collect().await;
        let body = body.map_err(|error| error.to_string())?.to_bytes();
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(format!("answered {status}"))
        }
    };
    Ok(match asking.await {
        Ok(body) => {
            println!("relay sleep for {seconds} seconds: finished");
            let mut response = plain_text(StatusCode::OK, String::new());
            *response.body_mut() = Full::new(body);
            response
        }
        Err(why) => {
            println!("relay sleep for {seconds} seconds: finished with 502 Bad Gateway");
            plain_text(
                StatusCode::BAD_GATEWAY,
                format!("upstream {upstream}: {why}\n"),
            )
        }
    })
}

/// The body of `--serve KIND ADDR [UPSTREAM]`: serve until killed.
pub fn serve(kind: Kind, addr: &str, upstream: Option<&str>) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    std::thread::spawn(answer_heap_questions);
    runtime.block_on(async {
        let listener = serve::bind(addr)
            .await
            .unwrap_or_else(|error| panic!("cannot listen on {addr}: {error}"));
        let bound = listener.local_addr().expect("a bound address");
        println!("Listening for requests at http://{bound}");
        // The benchmark kills its servers, so they never need to stop.
        let never = futures::stream::pending();
        match kind {
            Kind::BareHyper => {
                let new_service = |_client| service_fn(bare_hyper_sleep);
                serve_with(listener, new_service, benchmark_limits(), never).await
            }
            Kind::BareHyperHoldingRequest => {
                let new_service = |_client| service_fn(bare_hyper_holding_request);
                serve_with(listener, new_service, benchmark_limits(), never).await
            }
            Kind::BareHyperRelay => {
                let upstream: Arc<str> = upstream.expect("a relay's upstream").into();
                let client = Client::builder(TokioExecutor::new()).build_http();
                let new_service = move |_client| {
                    let (client, upstream) = (client.clone(), Arc::clone(&upstream));
                    service_fn(move |request| {
                        bare_hyper_relay(client.clone(), Arc::clone(&upstream), request)
                    })
                };
                serve_with(listener, new_service, benchmark_limits(), never).await
            }
            Kind::GothamRelay => {
                use crate::relay::{router, Turns, Upstream};
                let deadline = Duration::from_secs(10);
                let upstream = upstream.expect("a relay's upstream");
                let upstream = Upstream::new(upstream, deadline)
                    .unwrap_or_else(|why| panic!("cannot ask upstream {upstream}: {why}"));
                let router = router(upstream, Turns::new(RELAY_TURNS, deadline));
                let new_service = move |client| GothamService {
                    router: router.clone(),
                    client,
                };
                serve_with(listener, new_service, benchmark_limits(), never).await
            }
            Kind::Axum => {
                let app = axum::Router::new().route("/sleep", axum::routing::get(axum_sleep));
                // `axum::serve` has no header deadline of its own.
                axum::serve(listener, app)
                    .await
                    .expect("axum serves until killed");
                unreachable!("axum::serve returned")
            }
            _ => {
                let router = router(kind);
                let new_service = move |client| GothamService {
                    router: router.clone(),
                    client,
                };
                serve_with(listener, new_service, benchmark_limits(), never).await
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
