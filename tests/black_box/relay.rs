//! The relay (`examples/relay/main.rs`) with real servers on both ends: its
//! router on the shared serve loop, in this process, and as its upstream the
//! real example binary, or a stand-in that misbehaves on purpose. Real time
//! throughout: a paused clock would jump to the relay's deadline while the
//! upstream, another process, still had the request on its way.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use gotham::handler::{HandlerError, HandlerFuture};
use gotham::hyper::StatusCode;
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::state::State;
use gotham_examples_handlers_simple_async_handlers::serve::{
    self, serve_with, Accept, GothamService, Limits,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::relay_example::{router, Turns, Upstream, TURNS};
use crate::support::{client, get, get_with, Server};

/// Far more than any answer here needs; the margin is wide on purpose.
pub(crate) const PATIENCE: Duration = Duration::from_secs(5);

/// Serves a gotham router on the shared serve loop, on a free port.
pub(crate) async fn serve_router(router: gotham::router::Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(serve::serve(listener, router, futures::stream::pending()));
    addr
}

/// Starts the relay, asking `upstream` with `deadline`, at most as many
/// requests at once as the real one; returns its address.
pub(crate) async fn start_relay(upstream: &str, deadline: Duration) -> SocketAddr {
    start_relay_with_turns(upstream, deadline, TURNS).await
}

/// Starts the relay with at most `turns` requests at the upstream at once.
pub(crate) async fn start_relay_with_turns(
    upstream: &str,
    deadline: Duration,
    turns: usize,
) -> SocketAddr {
    let upstream = Upstream::new(upstream, deadline).expect("a usable upstream address");
    serve_router(router(upstream, Turns::new(turns, deadline))).await
}

fn relay_url(relay: SocketAddr, seconds: &str) -> String {
    format!("http://{relay}/relay?seconds={seconds}")
}

/// Stops `upstream` with Ctrl-C, and checks it had nothing left in flight.
/// (A request still in flight would make the line say 1, and the wait fail
/// with the lines printed so far.)
pub(crate) async fn assert_upstream_has_nothing_in_flight(mut upstream: Server) {
    upstream.send_signal(libc::SIGINT);
    let shutting_down =
        "Shutting down: 0 requests in flight, waiting up to 8 seconds for them to finish";
    upstream.wait_for_count(shutting_down, 1, PATIENCE).await;
    upstream.wait_for_exit(PATIENCE).await;
}

/// Waits until the upstream has closed every connection it had beyond
/// `baseline` descriptors: closing the connection is what drops its
/// request's future.
pub(crate) async fn wait_for_descriptors(upstream: &Server, baseline: usize, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while upstream.open_descriptors() > baseline {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_relay_answers_what_the_upstream_said_in_the_upstreams_time() {
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;

    let started = Instant::now();
    let answer = get(&relay_url(relay, "1")).await;
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    assert_eq!(answer.body, "slept for 1 seconds\n");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(1) + PATIENCE,
        "a one-second sleep was relayed in {took:?}"
    );
    // Printed before the upstream answered, but read from its pipe by a
    // thread of the test's that may not have got to it yet.
    upstream
        .wait_for_count("sleep for 1 seconds once: finished", 1, PATIENCE)
        .await;
    assert_eq!(
        upstream.stdout_lines()[1..],
        [
            "sleep for 1 seconds once: starting",
            "sleep for 1 seconds once: finished"
        ]
    );
}

#[tokio::test]
async fn an_upstream_slower_than_the_deadline_gets_a_504_at_the_deadline_and_is_hung_up_on() {
    let upstream = Server::start();
    let baseline = upstream.open_descriptors();
    let deadline = Duration::from_secs(1);
    let relay = start_relay(&upstream.addr.to_string(), deadline).await;

    let started = Instant::now();
    let answer = tokio::time::timeout(deadline + PATIENCE, get(&relay_url(relay, "3600")))
        .await
        .expect("no answer long after the deadline");
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    assert_eq!(
        answer.body,
        format!(
            "upstream {} did not answer within 1 seconds\n",
            upstream.addr
        )
    );
    assert!(
        took >= deadline && took < deadline + PATIENCE,
        "the 504 came after {took:?}, for a deadline of {deadline:?}"
    );
    assert_eq!(
        upstream.count_lines("sleep for 3600 seconds once: starting"),
        1
    );

    // The relay dropped its request: the upstream's connection closes, and
    // the upstream drops the handler's future, which never finishes.
    wait_for_descriptors(&upstream, baseline, "the relay kept its request open").await;
    assert_upstream_has_nothing_in_flight(upstream).await;
}

#[tokio::test]
async fn a_client_that_hangs_up_on_the_relay_makes_the_upstream_drop_its_sleep() {
    let upstream = Server::start();
    let baseline = upstream.open_descriptors();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;

    let mut client = TcpStream::connect(relay).await.expect("connects");
    let request = "GET /relay?seconds=3600 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    upstream
        .wait_for_count("sleep for 3600 seconds once: starting", 1, PATIENCE)
        .await;
    drop(client);

    wait_for_descriptors(
        &upstream,
        baseline,
        "the hang-up did not reach the upstream",
    )
    .await;
    assert_eq!(
        upstream.count_lines("sleep for 3600 seconds once: finished"),
        0
    );
    assert_upstream_has_nothing_in_flight(upstream).await;
}

#[tokio::test]
async fn an_unreachable_upstream_gets_a_502_that_names_it_and_why() {
    // A port that was free a moment ago: nothing listens there now.
    let vacated = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let nobody = vacated.local_addr().expect("an address");
    drop(vacated);
    let relay = start_relay(&nobody.to_string(), Duration::from_secs(10)).await;

    let answer = get(&relay_url(relay, "1")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    let expected_start = format!("upstream {nobody} cannot be reached: ");
    assert!(
        answer.body.starts_with(&expected_start) && answer.body.contains("refused"),
        "{:?}",
        answer.body
    );
    assert_eq!(answer.body.lines().count(), 1, "{:?}", answer.body);
}

/// An upstream that reads one request and then does `misbehave` to it.
async fn stand_in_upstream<F, Fut>(misbehave: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            // The whole head, up to its blank line.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte).await {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            misbehave(stream).await;
        }
    });
    addr
}

#[tokio::test]
async fn an_upstream_that_answers_an_error_status_gets_a_502_that_names_it() {
    let upstream = stand_in_upstream(|mut stream| async move {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        let _ = stream.write_all(answer).await;
    })
    .await;
    let relay = start_relay(&upstream.to_string(), Duration::from_secs(10)).await;

    let answer = get(&relay_url(relay, "1")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        answer.body,
        format!("upstream {upstream} answered 503 Service Unavailable\n")
    );
}

#[tokio::test]
async fn an_upstream_that_closes_or_resets_without_answering_gets_a_502_that_says_so() {
    let closing = stand_in_upstream(|stream| async move { drop(stream) }).await;
    let resetting = stand_in_upstream(|stream| async move {
        // A zero linger makes closing send a reset (RST), not an orderly end.
        let _ = stream.set_zero_linger();
        drop(stream);
    })
    .await;
    for upstream in [closing, resetting] {
        let relay = start_relay(&upstream.to_string(), Duration::from_secs(10)).await;
        let answer = get(&relay_url(relay, "1")).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
        let expected_start = format!("upstream {upstream} broke off: ");
        assert!(
            answer.body.starts_with(&expected_start),
            "{:?}",
            answer.body
        );
        assert_eq!(answer.body.lines().count(), 1, "{:?}", answer.body);
    }
}

/// A listener that counts the connections it accepts.
struct Counting {
    listener: TcpListener,
    accepted: Arc<AtomicUsize>,
}

impl Accept for Counting {
    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let connection = self.listener.accept().await?;
        self.accepted.fetch_add(1, Ordering::SeqCst);
        Ok(connection)
    }
}

#[tokio::test]
async fn requests_in_a_row_reach_the_upstream_over_one_connection() {
    // An upstream on the shared serve loop that answers at once, and counts.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let upstream = listener.local_addr().expect("an address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = Counting {
        listener,
        accepted: Arc::clone(&accepted),
    };
    let instant_sleep = build_simple_router(|route| {
        route.get("/sleep").to(|state| {
            let body = "slept for 0 seconds\n";
            (state, body)
        });
    });
    let new_service = move |client| GothamService {
        router: instant_sleep.clone(),
        client,
    };
    tokio::spawn(serve_with(
        listener,
        new_service,
        Limits::default(),
        futures::stream::pending(),
    ));
    let relay = start_relay(&upstream.to_string(), Duration::from_secs(10)).await;

    for _ in 0..3 {
        let answer = get(&relay_url(relay, "0")).await;
        assert_eq!(answer.body, "slept for 0 seconds\n");
        // hyper-util gives a connection back to its pool from a task of its
        // own, once the answer has been read: a moment after the relay has
        // answered. A request sent sooner than that would find no idle
        // connection and open a second one, which is right, but not this
        // test's question.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the relay's client opened a connection per request instead of reusing one"
    );
}

#[tokio::test]
async fn bad_input_to_the_relay_gets_the_same_400_as_the_main_program() {
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;
    let client = client();
    for query in ["", "?seconds=", "?seconds=-1", "?seconds=1.5", "?second=1"] {
        let url = format!("http://{relay}/relay{query}");
        let relayed = get_with(&client, &url).await.expect("the relay answers");
        let direct = get(&upstream.url(&format!("/sleep{query}"))).await;
        assert_eq!(relayed.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(relayed.content_type, direct.content_type, "{query}");
        assert_eq!(relayed.body, direct.body, "{query}");
    }
    // The relay refused them itself: the upstream saw only the direct ones,
    // and none of those reached a handler either.
    assert_eq!(
        upstream.stdout_lines().len(),
        1,
        "{:?}",
        upstream.stdout_lines()
    );
}

/// The other way a gotham handler can fail, for comparison with the relay's
/// readable 502s above: `Err((state, HandlerError))`.
fn fails_with_a_handler_error(state: State) -> std::pin::Pin<Box<HandlerFuture>> {
    let cause = io::Error::new(io::ErrorKind::ConnectionRefused, "upstream refused");
    let error = HandlerError::from(cause).with_status(StatusCode::BAD_GATEWAY);
    futures::future::ready(Err((state, error))).boxed()
}

#[tokio::test]
async fn a_handler_error_reaches_the_client_as_its_status_and_an_empty_body() {
    let failing = serve_router(build_simple_router(|route| {
        route.get("/fail").to(fails_with_a_handler_error);
    }))
    .await;
    let answer = get(&format!("http://{failing}/fail")).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    // The cause went to the `log` crate, not to the client.
    assert_eq!(answer.body, "");
}

/// `?` in a handler, which must hand its `State` back with any answer.
///
/// `?` cannot return `Err(error)` from the handler's future: gotham wants
/// `Err((state, error))`. So the steps that can fail go in an inner `async`
/// block whose error type is `HandlerError`, where gotham's
/// `MapHandlerError::map_err_with_status` turns any error into one with a
/// status; the outer block then pairs the result with the `State`. The
/// inner block takes what it needs from the `State` first: a `State` is
/// not `Sync`, so a future that held a borrow of it across an `.await`
/// could not move between worker threads.
fn doubles_the_count_header(state: State) -> std::pin::Pin<Box<HandlerFuture>> {
    use gotham::handler::MapHandlerError;
    use gotham::helpers::http::response::create_response;
    use gotham::hyper::HeaderMap;
    use gotham::state::FromState;

    let count = HeaderMap::borrow_from(&state).get("x-count").cloned();
    async move {
        let steps = async move {
            // A real handler would `.await` here too, an upstream's answer
            // say, with `?` after it in the same way.
            let count = count
                .ok_or_else(|| gotham::anyhow::anyhow!("no x-count header"))
                .map_err_with_status(StatusCode::BAD_REQUEST)?;
            let count: u32 = count
                .to_str()
                .map_err_with_status(StatusCode::BAD_REQUEST)?
                .parse()
                .map_err_with_status(StatusCode::BAD_REQUEST)?;
            Ok::<_, HandlerError>(format!("{}\n", u64::from(count) * 2))
        };
        match steps.await {
            Ok(body) => {
                let response = create_response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
                Ok((state, response))
            }
            Err(error) => Err((state, error)),
        }
    }
    .boxed()
}

#[tokio::test]
async fn question_marks_in_a_handler_answer_the_first_failure_with_its_status() {
    use gotham::bytes::Bytes;
    use gotham::http_body_util::{BodyExt, Empty};
    use gotham::hyper::Request;

    let server = serve_router(build_simple_router(|route| {
        route.get("/double").to(doubles_the_count_header);
    }))
    .await;
    let client = client();
    for (count, expected) in [
        (Some("21"), (StatusCode::OK, "42\n")),
        (Some("twenty"), (StatusCode::BAD_REQUEST, "")),
        (None, (StatusCode::BAD_REQUEST, "")),
    ] {
        let mut request = Request::get(format!("http://{server}/double"));
        if let Some(count) = count {
            request = request.header("x-count", count);
        }
        let request = request.body(Empty::<Bytes>::new()).expect("a request");
        let response = client.request(request).await.expect("an answer");
        let status = response.status();
        let body = response.into_body().collect().await.expect("a body");
        let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
        assert_eq!((status, body.as_str()), expected, "x-count: {count:?}");
    }
}

#[test]
fn an_upstream_address_that_is_not_host_and_port_is_refused_with_an_example() {
    for unusable in ["nonsense", "127.0.0.1", "http://127.0.0.1:7878/", ""] {
        let reason = Upstream::new(unusable, Duration::from_secs(10))
            .err()
            .unwrap_or_else(|| panic!("{unusable:?} was taken for an upstream"));
        assert!(reason.contains("127.0.0.1:7878"), "{unusable:?}: {reason}");
    }
}
