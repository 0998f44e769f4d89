//! Beyond timers: four handlers for waits a real service meets, written
//! like the ones in `main.rs` and served by the tests
//! (`src/tests/beyond_timers.rs`), not by the example, which keeps
//! upstream's two routes.
//!
//! - `ask_upstream` waits on a *socket* instead of a timer: it asks another
//!   server for a line and answers with it. Reading a socket that has no
//!   data yet is a future like a sleep: tokio files the socket with the
//!   operating system's readiness queue (epoll on Linux) and the waker is
//!   called when bytes arrive. A database client or an HTTP client to
//!   another service waits the same way.
//! - `blocking_call_on_a_worker` is the mistake: a call that blocks (a
//!   synchronous database driver, `std::fs`, a long computation) made
//!   inside the future. It holds the worker thread that polls it, and every
//!   other request that worker would have served waits too.
//! - `blocking_call_on_the_blocking_pool` is the way out: hand the call to
//!   `tokio::task::spawn_blocking`, which runs it on a thread of tokio's
//!   blocking pool and gives back a future of its result.
//! - `cpu_work_in_turns` is the way for work that keeps a CPU busy: the
//!   blocking pool, but only as many calls at once as there are cores.
//!
//! The blocking call is passed in as a function so that the tests can make
//! one whose end they decide.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::OnceLock;

use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::hyper::StatusCode;
use gotham::state::State;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Asks the server at `upstream` for one line and answers with it; a 502
/// if it cannot be reached or hangs up without a line.
///
/// Each `.await` here is a point where the future returns "not ready" and
/// the worker thread goes on to other requests, as at a sleep.
pub(crate) fn ask_upstream(state: State, upstream: SocketAddr) -> Pin<Box<HandlerFuture>> {
    async move {
        let (status, body) = match read_one_line_from(upstream).await {
            Ok(line) if !line.is_empty() => (StatusCode::OK, line),
            Ok(_) => (
                StatusCode::BAD_GATEWAY,
                "upstream sent nothing\n".to_string(),
            ),
            Err(error) => (StatusCode::BAD_GATEWAY, format!("upstream: {error}\n")),
        };
        let response = create_response(&state, status, mime::TEXT_PLAIN, body);
        Ok((state, response))
    }
    .boxed()
}

async fn read_one_line_from(upstream: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(upstream).await?;
    stream.write_all(b"hello\n").await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    Ok(line)
}

/// The mistake: `blocking_call` runs on the worker thread polling this
/// future, and that thread does nothing else until it returns.
pub(crate) fn blocking_call_on_a_worker(
    state: State,
    blocking_call: fn() -> String,
) -> Pin<Box<HandlerFuture>> {
    async move {
        let body = blocking_call();
        let response = create_response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
        Ok((state, response))
    }
    .boxed()
}

/// The fix: `blocking_call` runs on tokio's blocking pool, and this future
/// waits for it like for any other: the worker thread stays free.
///
/// What `spawn_blocking` does not do:
/// - it cannot stop the call. If the client hangs up, this future is
///   dropped, but the call runs to its end on its thread.
/// - it is not endless: the pool has at most 512 threads by default
///   (`tokio::runtime::Builder::max_blocking_threads`); calls beyond that
///   queue for a free one. Work that keeps a CPU busy gains nothing from
///   more threads than cores: `cpu_work_in_turns` gives it one per core.
pub(crate) fn blocking_call_on_the_blocking_pool(
    state: State,
    blocking_call: fn() -> String,
) -> Pin<Box<HandlerFuture>> {
    async move {
        let (status, body) = match tokio::task::spawn_blocking(blocking_call).await {
            Ok(body) => (StatusCode::OK, body),
            // The call panicked on its thread; the panic ends up here.
            Err(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the blocking call failed\n".to_string(),
            ),
        };
        let response = create_response(&state, status, mime::TEXT_PLAIN, body);
        Ok((state, response))
    }
    .boxed()
}

/// One turn per core, for the whole program.
pub(crate) fn cpu_turns() -> &'static Semaphore {
    static TURNS: OnceLock<Semaphore> = OnceLock::new();
    TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Semaphore::new(cores)
    })
}

/// CPU-heavy work (`work`: hashing a password, resizing an image) on the
/// blocking pool, at most one call per turn of `turns` at once.
///
/// Why turns, and not more threads: two cores finish four such calls no
/// sooner on four threads than on two, and each thread costs a stack. A
/// call past the turns waits as this future, a few hundred bytes, with the
/// worker free; and a client that hangs up while it waits drops it before
/// its work starts. The turn goes with the work onto its thread and comes
/// back when the work ends, even if nobody waits for the answer any more.
/// (rayon's pool, one thread per core, would bound the threads too, but it
/// queues every call it is given and cannot drop one whose client left.)
pub(crate) fn cpu_work_in_turns(
    state: State,
    turns: &'static Semaphore,
    work: fn() -> String,
) -> Pin<Box<HandlerFuture>> {
    async move {
        let done = match turns.acquire().await {
            Ok(turn) => tokio::task::spawn_blocking(move || {
                let _turn = turn;
                work()
            })
            .await
            .ok(),
            // Only a closed semaphore refuses a turn, and nothing closes it.
            Err(_) => None,
        };
        let (status, body) = match done {
            Some(body) => (StatusCode::OK, body),
            None => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CPU-heavy call failed\n".to_string(),
            ),
        };
        let response = create_response(&state, status, mime::TEXT_PLAIN, body);
        Ok((state, response))
    }
    .boxed()
}
