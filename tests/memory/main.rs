//! What a waiting client costs the serve loop in live heap, counted by the
//! allocator itself, for the two costs `src/serve/` keeps small:
//!
//! - a connection that has sent nothing holds no hyper buffers (hyper's
//!   connection would allocate 8 KiB to write and 8 KiB to read);
//! - a request waiting in gotham's handler does not keep hyper's 8 KiB read
//!   buffer alive through the request head in `State`, so a waiting client
//!   costs gotham about what it costs a bare hyper service on the same loop.
//!
//! A test crate of its own with no test harness, because the counting
//! allocator is global to the process: no other test may allocate meanwhile.
//! The clients are blocking std sockets on the main thread, which allocate
//! nothing per connection, so the heap that grows is the server's.

#[path = "../../benchmark/benches/futures_vs_threads/heap.rs"]
mod heap;

// The example's router and handlers, as the benchmark compiles them (the
// serve loop comes from the library). Its `main` and its tests go unused
// here.
#[allow(unused)]
#[path = "../../src/main.rs"]
mod example;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use gotham::bytes::Bytes;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::http_body_util::Full;
use gotham::hyper::body::{Body, Incoming};
use gotham::hyper::service::{service_fn, Service};
use gotham::hyper::{Request, Response, StatusCode};
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::state::State;
use gotham_examples_handlers_simple_async_handlers::serve::{serve_with, GothamService, Limits};

/// Clients per measurement: enough that a few stray allocations vanish in
/// the division.
const CLIENTS: usize = 200;
/// Above what a silent connection costs here (a task and a socket's
/// registration: about 2 KiB), far below the 16 KiB of hyper's two buffers.
const MOST_HEAP_PER_IDLE_CONNECTION: usize = 6 * 1024;
/// How much more heap gotham's waiting client may cost than bare hyper's.
/// Here, on a route that reads no query, that is its `State`, copied head
/// and boxed future: about half a KiB (513 bytes on 2026-12-02). The
/// benchmark measures gotham with the example's own router, query extractor
/// included, at 1.2 KiB per request above bare hyper. 4 KiB leaves room for
/// both; a head that pinned hyper's read buffer would add 8 KiB more.
const MOST_HEAP_ABOVE_BARE_HYPER: usize = 4 * 1024;

/// Requests that reached the handler, in the server measured now.
static REQUESTS_IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Waits an hour, like `/sleep?seconds=3600`, without printing a line per
/// request as the example's handler does.
fn quiet_sleep(state: State) -> Pin<Box<HandlerFuture>> {
    REQUESTS_IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3600))
        .map(move |()| {
            let response = create_response(&state, StatusCode::OK, mime::TEXT_PLAIN, "");
            Ok((state, response))
        })
        .boxed()
}

/// The same wait as a bare hyper service: the request is dropped at once.
/// Other paths are answered at once, as gotham's router does.
async fn bare_quiet_sleep(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/sleep" {
        return Ok(Response::new(Full::new(Bytes::new())));
    }
    drop(request);
    REQUESTS_IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    Ok(Response::new(Full::new(Bytes::new())))
}

/// Live heap per client, in bytes.
struct Cost {
    idle_connection: usize,
    waiting_client: usize,
}

fn main() {
    let router = build_simple_router(|route| route.get("/sleep").to(quiet_sleep));
    let gotham = measure("gotham", move |client| GothamService {
        router: router.clone(),
        client,
    });
    let bare_hyper = measure("bare hyper", |_client| service_fn(bare_quiet_sleep));

    assert!(
        gotham.idle_connection <= MOST_HEAP_PER_IDLE_CONNECTION,
        "a connection that sent nothing holds {} bytes of heap: \
         hyper's buffers were made before its first byte",
        gotham.idle_connection
    );
    assert!(
        gotham.waiting_client <= bare_hyper.waiting_client + MOST_HEAP_ABOVE_BARE_HYPER,
        "a waiting client costs gotham {} bytes of heap, bare hyper {}: \
         the request head in gotham's State keeps hyper's read buffer",
        gotham.waiting_client,
        bare_hyper.waiting_client
    );
    println!("ok: both within their bounds");
}

/// Serves `new_service` on the real serve loop, opens `CLIENTS` silent
/// connections, then sends a request on each, and reports what each step
/// added to the live heap per client.
fn measure<S, B>(name: &str, new_service: impl Fn(SocketAddr) -> S + Send + 'static) -> Cost
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    REQUESTS_IN_HANDLER.store(0, Ordering::SeqCst);
    // The server runs on a runtime of its own thread until the process
    // ends, counting the connections it accepts.
    let accepted = Arc::new(AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    let new_service = {
        let accepted = Arc::clone(&accepted);
        move |client| {
            accepted.fetch_add(1, Ordering::SeqCst);
            new_service(client)
        }
    };
    std::thread::spawn(move || {
        let never = futures::stream::pending();
        runtime.block_on(serve_with(listener, new_service, Limits::default(), never));
    });

    // One answered request first, so that what is allocated once (the
    // runtime's first connection, lazy statics) is not counted per client.
    let mut warm = TcpStream::connect(addr).expect("connects");
    warm.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("sends");
    let mut answer = Vec::new();
    warm.read_to_end(&mut answer).expect("reads the answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 "),
        "{name} warm-up: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let warm_requests = REQUESTS_IN_HANDLER.load(Ordering::SeqCst);
    settle();

    let mut clients = Vec::with_capacity(CLIENTS);
    let fresh = live_heap();
    for _ in 0..CLIENTS {
        clients.push(TcpStream::connect(addr).expect("connects"));
    }
    wait_until("every connection is accepted", || {
        accepted.load(Ordering::SeqCst) == CLIENTS + 1
    });
    settle();
    let idle = live_heap();

    for client in &mut clients {
        client
            .write_all(b"GET /sleep HTTP/1.1\r\nHost: localhost\r\nUser-Agent: memory-test\r\n\r\n")
            .expect("sends");
    }
    wait_until("every request is in the handler", || {
        REQUESTS_IN_HANDLER.load(Ordering::SeqCst) == warm_requests + CLIENTS
    });
    settle();
    let waiting = live_heap();

    let cost = Cost {
        idle_connection: idle.saturating_sub(fresh) / CLIENTS,
        waiting_client: waiting.saturating_sub(fresh) / CLIENTS,
    };
    println!(
        "{name}: {} bytes of live heap per idle connection, {} per client with a request waiting",
        cost.idle_connection, cost.waiting_client
    );
    cost
}

/// Lets the server's tasks finish what they were doing.
fn settle() {
    std::thread::sleep(Duration::from_millis(200));
}

fn live_heap() -> usize {
    heap::live_and_peak().0
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let patience = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < patience, "waited 10 s until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
