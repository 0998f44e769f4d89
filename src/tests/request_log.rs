//! The request log (`src/request_log.rs`) on the lesson's router: the line
//! a request gets, what its busy and waiting times say, and which requests
//! get none. Each test reads the lines as printed, into a buffer of its own
//! (a subscriber set for the test's thread: every test here runs on a
//! current-thread runtime, so the server's tasks run on that thread too).

use std::time::Duration;

use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::hyper::StatusCode;
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::plain::test::AsyncTestServer;
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;
use gotham::state::State;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tracing_subscriber::layer::SubscriberExt;

#[path = "../../tests/black_box/log_lines.rs"]
mod log_lines;
use log_lines::Written;

// `super::super`, not `crate`: the benchmark compiles `main.rs` as a module.
use super::super::request_log::{self, RequestLog};
use super::super::{manners, router, serve};

/// Logs as `RUST_LOG` asks, on this thread, until the guard is dropped.
fn logging(rust_log: &str) -> (tracing::subscriber::DefaultGuard, Written) {
    let written = Written::default();
    let filter = request_log::filter_from(rust_log).unwrap_or_else(|_| panic!("{rust_log}"));
    let subscriber = tracing_subscriber::registry()
        .with(request_log::layer(written.clone()))
        .with(filter);
    (tracing::subscriber::set_default(subscriber), written)
}

/// A line taken apart: its words before the times, and the three times.
#[derive(Debug)]
struct Line {
    what: String,
    wall: Duration,
    busy: Duration,
    waiting: Duration,
}

fn parse(line: &str) -> Line {
    let (what, times) = line
        .split_once(" wall=")
        .unwrap_or_else(|| panic!("no wall time in {line:?}"));
    let time = |name: &str| -> Duration {
        let value = format!("wall={times}")
            .split(' ')
            .find_map(|field| field.strip_prefix(&format!("{name}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"));
        duration(&value).unwrap_or_else(|| panic!("{name}={value} in {line:?}"))
    };
    Line {
        what: what.to_string(),
        wall: time("wall"),
        busy: time("busy"),
        waiting: time("waiting"),
    }
}

/// A duration as `Debug` writes it: `5.000s`, `12.345ms`, `60.192µs`.
fn duration(text: &str) -> Option<Duration> {
    let digits = text.trim_end_matches(|c: char| c.is_alphabetic() || c == 'µ');
    let number: f64 = digits.parse().ok()?;
    let seconds = match &text[digits.len()..] {
        "s" => number,
        "ms" => number / 1e3,
        "µs" => number / 1e6,
        "ns" => number / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

async fn get(server: &AsyncTestServer, path_and_query: &str) -> StatusCode {
    let response = server
        .client()
        .get(format!("http://localhost{path_and_query}"))
        .perform()
        .await
        .unwrap_or_else(|error| panic!("GET {path_and_query}: {error:#}"));
    let status = response.status();
    response.read_body().await.expect("a body");
    status
}

async fn serve(router: Router) -> AsyncTestServer {
    AsyncTestServer::new_with_timeout(router, Duration::from_secs(60))
        .await
        .expect("the test server starts")
}

/// The lesson in one line: a five-second sleep waits five seconds, exactly
/// on tokio's paused clock, and is busy for only the little real time its
/// two polls took.
#[tokio::test(start_paused = true)]
async fn a_five_second_sleep_logs_five_seconds_waiting() {
    let (_guard, written) = logging("info");
    let server = serve(router()).await;
    assert_eq!(get(&server, "/sleep?seconds=5").await, StatusCode::OK);

    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = parse(&lines[0]);
    assert_eq!(line.what, "GET /sleep?seconds=5 200 OK", "{line:?}");
    assert_eq!(line.wall, Duration::from_secs(5), "{line:?}");
    assert_eq!(line.waiting, Duration::from_secs(5), "{line:?}");
    assert!(line.busy < Duration::from_millis(50), "{line:?}");
}

/// `/loop` waits its five seconds one second at a time, and its line says
/// the same as `/sleep`'s: all of it waiting.
#[tokio::test(start_paused = true)]
async fn a_loop_of_five_seconds_logs_five_seconds_waiting() {
    let (_guard, written) = logging("info");
    let server = serve(router()).await;
    assert_eq!(get(&server, "/loop?seconds=5").await, StatusCode::OK);

    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = parse(&lines[0]);
    assert_eq!(line.what, "GET /loop?seconds=5 200 OK", "{line:?}");
    assert_eq!(line.waiting, Duration::from_secs(5), "{line:?}");
    assert!(line.busy < Duration::from_millis(50), "{line:?}");
}

/// A handler that blocks its thread, as the lesson says never to do: its
/// future is polled once, and that poll takes the whole 200 ms.
fn blocking_handler(state: State) -> std::pin::Pin<Box<HandlerFuture>> {
    async move {
        std::thread::sleep(Duration::from_millis(200));
        let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, "blocked\n");
        Ok((state, response))
    }
    .boxed()
}

/// The same mistake made before the future exists: the handler itself
/// blocks, inside the middleware's `chain(state)`, then returns a future
/// that is ready at once.
fn blocking_before_its_future(state: State) -> std::pin::Pin<Box<HandlerFuture>> {
    std::thread::sleep(Duration::from_millis(200));
    let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, "blocked\n");
    futures::future::ready(Ok((state, response))).boxed()
}

/// `/sleep` beside the blocking handlers, behind the same middleware.
fn router_with_a_blocking_route() -> Router {
    let (chain, pipelines) = single_pipeline(new_pipeline().add(RequestLog).build());
    build_router(chain, pipelines, |route| {
        route
            .get("/sleep")
            .with_query_string_extractor::<super::super::QueryStringExtractor>()
            .to(super::super::sleep_handler);
        route.get("/block").to(blocking_handler);
        route.get("/block-first").to(blocking_before_its_future);
    })
}

/// In real time, the line tells the two kinds of waiting apart. A sleep's
/// second is waiting, its busy time a few polls' worth; a blocking call's
/// 200 ms are busy, a thread held, whether the handler blocks in its
/// future or before it returns one.
#[tokio::test]
async fn the_line_tells_a_sleep_from_a_blocking_call() {
    let (_guard, written) = logging("info");
    let server = serve(router_with_a_blocking_route()).await;
    assert_eq!(get(&server, "/sleep?seconds=1").await, StatusCode::OK);
    assert_eq!(get(&server, "/block").await, StatusCode::OK);
    assert_eq!(get(&server, "/block-first").await, StatusCode::OK);

    let lines = written.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let sleep = parse(&lines[0]);
    assert_eq!(sleep.what, "GET /sleep?seconds=1 200 OK", "{sleep:?}");
    assert!(sleep.busy < Duration::from_millis(50), "{sleep:?}");
    assert!(sleep.waiting >= Duration::from_millis(950), "{sleep:?}");

    for (line, path) in lines[1..].iter().zip(["/block", "/block-first"]) {
        let block = parse(line);
        assert_eq!(block.what, format!("GET {path} 200 OK"), "{block:?}");
        assert!(block.busy >= Duration::from_millis(200), "{block:?}");
        assert!(block.busy > block.wall / 2, "most of it busy: {block:?}");
        assert!(block.waiting < block.busy, "{block:?}");
    }
}

/// A client that hangs up mid-sleep: hyper drops the handler's future, and
/// the line says it was dropped, and after how long.
#[tokio::test]
async fn a_hang_up_gets_a_line_saying_the_request_was_dropped() {
    let (_guard, written) = logging("info");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(serve::serve(listener, router(), futures::stream::pending()));

    let connecting = std::time::Instant::now();
    let mut client = TcpStream::connect(addr).await.expect("connects");
    let request = "GET /sleep?seconds=3600 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        written.lines(),
        Vec::<String>::new(),
        "no line before the end"
    );
    drop(client);

    let patience = std::time::Instant::now() + Duration::from_secs(5);
    while written.lines().is_empty() {
        assert!(
            std::time::Instant::now() < patience,
            "no line after a hang-up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seen = connecting.elapsed();
    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = parse(&lines[0]);
    assert_eq!(
        line.what, "GET /sleep?seconds=3600 dropped unfinished",
        "{line:?}"
    );
    // The request was in flight for most of the client's 300 ms (the
    // server starts timing it only once it has read it: a wide margin),
    // and for no longer than the test watched.
    assert!(line.wall >= Duration::from_millis(100), "{line:?}");
    assert!(line.wall <= seen, "{line:?}, seen after {seen:?}");
    assert!(line.busy < Duration::from_millis(50), "{line:?}");
}

/// The router answers a 404, a 405 and a refused query string itself,
/// before any pipeline: no line for them, while a request a route takes,
/// even a HEAD, gets one.
#[tokio::test(start_paused = true)]
async fn the_routers_own_answers_get_no_line() {
    let (_guard, written) = logging("info");
    let server = serve(router()).await;
    assert_eq!(get(&server, "/nowhere").await, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&server, "/sleep?seconds=-1").await,
        StatusCode::BAD_REQUEST
    );
    let post = server
        .client()
        .build_request()
        .method("POST")
        .uri("http://localhost/sleep?seconds=0")
        .perform()
        .await
        .expect("a POST");
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(written.lines(), Vec::<String>::new());

    let head = server
        .client()
        .head("http://localhost/sleep?seconds=0")
        .perform()
        .await
        .expect("a HEAD");
    assert_eq!(head.status(), StatusCode::OK);
    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(parse(&lines[0]).what, "HEAD /sleep?seconds=0 200 OK");
}

/// With nothing asked (`RUST_LOG` unset or empty), no line at all; and the
/// middleware hands the handler's future through untimed.
#[tokio::test(start_paused = true)]
async fn nothing_is_logged_unless_asked() {
    for rust_log in ["", "off", "gotham=debug"] {
        let (_guard, written) = logging(rust_log);
        let server = serve(router()).await;
        assert_eq!(get(&server, "/sleep?seconds=1").await, StatusCode::OK);
        assert_eq!(written.lines(), Vec::<String>::new(), "RUST_LOG={rust_log}");
    }
}

/// What `RUST_LOG` takes: `TARGET=LEVEL` lists; a level it cannot read is
/// refused (and `init_from_env` then says so in one line, logging nothing).
#[test]
fn rust_log_takes_lists_of_targets_and_levels() {
    for good in [
        "",
        "info",
        "request_log=info",
        "gotham=debug,info",
        " warn ",
    ] {
        assert!(request_log::filter_from(good).is_ok(), "{good:?}");
    }
    // A bare word that is not a level is a target's name, as for
    // env_logger: `loud` asks for everything of a target called `loud`.
    for bad in ["gotham=shouting", "gotham=debug=info"] {
        assert!(request_log::filter_from(bad).is_err(), "{bad:?}");
    }
}
