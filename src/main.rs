//! Request handlers that wait for seconds without holding a thread.
//!
//! Two routes sleep for as long as the query string asks:
//!
//! - `GET /sleep?seconds=N` waits N seconds in one go;
//! - `GET /loop?seconds=N` waits one second, N times in a row, and writes a line
//!   after each wait.
//!
//! Neither handler waits itself. Each one returns a *future*: a value that says
//! "this response will be ready once the timer fires". Its deadline goes into
//! tokio's timer, and the server's few worker threads go on serving other
//! requests; when the timer fires, tokio polls the future again and gotham
//! sends the response. Ten thousand sleeping requests are ten thousand small futures, not
//! ten thousand blocked threads (the README's benchmark measures both).
//!
//! Run it with `cargo run` (or `cargo run -- 127.0.0.1:9000` for another
//! address), then in a second terminal:
//!
//! ```text
//! $ curl 'http://127.0.0.1:7878/sleep?seconds=5'
//! slept for 5 seconds
//! $ curl 'http://127.0.0.1:7878/loop?seconds=5'
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! slept for 1 seconds
//! ```

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::helpers::http::Body;
use gotham::hyper::{Response, StatusCode};
use gotham::router::builder::{build_simple_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;
use tokio::net::TcpListener;

use serve::Stopped;

mod serve;

/// Where the server listens when no address is given on the command line.
const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The body of the 400 answer to a query string without a usable `seconds`.
///
/// gotham calls the extender below without the reason the query failed to
/// parse, so this one sentence has to cover every way of getting it wrong.
const BAD_SECONDS_MESSAGE: &str = "the query string needs `seconds`, given once, as a whole \
number of seconds from 0 to 18446744073709551615, for example ?seconds=5\n";

/// The query string both routes take, such as `?seconds=5`.
///
/// gotham deserializes it with serde before the handler runs and stores it in
/// the request's `State`. A query that does not fit (no `seconds`, or a value
/// that is not a `u64`) never reaches a handler: gotham answers it with the
/// response built by the `StaticResponseExtender` below.
#[derive(Deserialize, StateData)]
struct QueryStringExtractor {
    seconds: u64,
}

/// Turns gotham's bare 400 into one that says what went wrong.
///
/// `#[derive(StaticResponseExtender)]` would only set the status, leaving the
/// user with an empty answer, so this is written by hand.
impl StaticResponseExtender for QueryStringExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        // `create_response` adds the `x-request-id` header, as the derived
        // extender would, and a `content-type` to go with the body.
        *response = create_response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_SECONDS_MESSAGE,
        );
    }
}

/// A future that completes `seconds` seconds from now with the line saying so.
///
/// Calling this does not wait: it only builds the future. `tokio::time::sleep`
/// registers a deadline with tokio's timer; until the deadline passes, polling
/// the future answers "not ready" and the worker thread moves on to other work.
/// Database queries and calls to other services look the same from here: a
/// future that a runtime drives, so what this example shows carries over.
fn sleep_for(seconds: u64) -> impl Future<Output = Vec<u8>> {
    tokio::time::sleep(Duration::from_secs(seconds))
        .map(move |()| format!("slept for {seconds} seconds\n").into_bytes())
}

/// `GET /sleep?seconds=N`: one sleep of N seconds, then the answer.
///
/// A gotham handler may return `Pin<Box<HandlerFuture>>`: a future, boxed
/// because every handler's future has its own type and the router has to store
/// them all behind one, and pinned because a future may hold references into
/// itself while it waits, so it must not move once polled.
fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for {seconds} seconds once: starting");

    // `map` runs only once the sleep has finished. `state` moves into the
    // closure because gotham wants it back beside the response.
    //
    // If the client hangs up first, hyper drops this future: the timer is
    // cancelled, the closure never runs, and "finished" is never printed.
    sleep_for(seconds)
        .map(move |body| {
            let response = create_response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
            println!("sleep for {seconds} seconds once: finished");
            Ok((state, response))
        })
        .boxed()
}

/// `GET /loop?seconds=N`: N sleeps of one second, one after another.
///
/// A `for` loop over futures is a stream folded into one value: the stream
/// yields N items, and `fold` starts each one-second sleep only after the
/// previous one has finished, adding its line to the body it carries along.
fn loop_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for one second {seconds} times: starting");

    stream::iter(0..seconds)
        .fold(Vec::new(), |mut body, _| {
            sleep_for(1).map(move |line| {
                body.extend(line);
                body
            })
        })
        .map(move |body| {
            let response = create_response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
            println!("sleep for one second {seconds} times: finished");
            Ok((state, response))
        })
        .boxed()
}

/// The two routes, each reading its query string into `QueryStringExtractor`.
///
/// Kept apart from `main` so that tests can serve it without a real address.
fn router() -> Router {
    build_simple_router(|route| {
        route
            .get("/sleep")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(sleep_handler);
        route
            .get("/loop")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(loop_handler);
    })
}

/// Listens on the address given as the first argument, or on `DEFAULT_ADDR`,
/// and serves until Ctrl-C or SIGTERM.
///
/// The socket is bound before anything is printed, so "Listening" appears
/// only once the server really listens, and shows the port the system chose
/// when asked for port 0. How connections are then taken in, how long the
/// server waits for a client, and how it stops, is `serve.rs`'s business.
#[tokio::main]
async fn main() -> ExitCode {
    let requested = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());

    let listener = match bind(&requested).await {
        Ok(listener) => listener,
        Err(reason) => {
            eprintln!("error: cannot listen on {requested}: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(reason) => {
            eprintln!("error: cannot tell which address {requested} was bound to: {reason}");
            return ExitCode::FAILURE;
        }
    };
    println!("Listening for requests at http://{addr}");

    match serve::serve(listener, router()).await {
        Ok(Stopped::Gracefully) => ExitCode::SUCCESS,
        // What a shell reports for a program ended by Ctrl-C (128 + SIGINT).
        Ok(Stopped::AtOnce) => ExitCode::from(130),
        Err(reason) => {
            eprintln!("error: cannot watch for Ctrl-C: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// Binds a TCP listener to `requested`: HOST:PORT, where HOST is an IP
/// address or a name the system resolves, such as `localhost`.
///
/// A name may resolve to several addresses (`localhost` to 127.0.0.1 and
/// ::1); the first one that binds is used.
async fn bind(requested: &str) -> Result<TcpListener, String> {
    let addrs = tokio::net::lookup_host(requested)
        .await
        .map_err(|error| match error.kind() {
            // What the standard library says of a missing or bad port.
            std::io::ErrorKind::InvalidInput => {
                "not HOST:PORT, such as 127.0.0.1:7878 or localhost:9000".to_string()
            }
            _ => format!("cannot resolve the host name: {error}"),
        })?;
    let mut last_error = "the host name resolved to no address".to_string();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

/// In-process tests: the router served by gotham's `AsyncTestServer` on the
/// test's own runtime, with tokio's clock paused.
///
/// On a paused clock, when every task is waiting, tokio jumps the clock
/// straight to the next timer. A five-second sleep then takes no real time,
/// yet the handler runs exactly the code that ships, and the test can check
/// that it waited exactly five (virtual) seconds.
#[cfg(test)]
mod tests {
    use super::*;
    use gotham::helpers::http::header::X_REQUEST_ID;
    use gotham::hyper::header::CONTENT_TYPE;
    use gotham::plain::test::AsyncTestServer;
    use tokio::time::Instant;

    /// What a test needs to know about one answer.
    struct Answer {
        status: StatusCode,
        content_type: Option<String>,
        has_request_id: bool,
        body: String,
        /// How far tokio's clock moved while the request was in flight.
        virtual_time: Duration,
        /// How much wall-clock time the request took.
        real_time: Duration,
    }

    async fn server() -> AsyncTestServer {
        // Longer than any sleep the tests ask for, so the client's timeout
        // (which runs on the same paused clock) never cuts an answer short.
        AsyncTestServer::new_with_timeout(router(), Duration::from_secs(60))
            .await
            .expect("the test server starts")
    }

    async fn send(server: &AsyncTestServer, method: &str, path_and_query: &str) -> Answer {
        let uri = format!("http://localhost{path_and_query}");
        let started_virtual = Instant::now();
        let started_real = std::time::Instant::now();
        let response = server
            .client()
            .build_request()
            .method(method)
            .uri(uri.as_str())
            .perform()
            .await
            .unwrap_or_else(|error| panic!("{method} {uri} failed: {error:#}"));
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().expect("ASCII content-type").to_string());
        let has_request_id = response.headers().contains_key(X_REQUEST_ID);
        let body = response
            .read_utf8_body()
            .await
            .unwrap_or_else(|error| panic!("{method} {uri}: unreadable body: {error:#}"));
        Answer {
            status,
            content_type,
            has_request_id,
            body,
            virtual_time: started_virtual.elapsed(),
            real_time: started_real.elapsed(),
        }
    }

    async fn get(path_and_query: &str) -> Answer {
        send(&server().await, "GET", path_and_query).await
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_says_how_long_it_slept_for() {
        let answer = get("/sleep?seconds=2").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.body, "slept for 2 seconds\n");
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_exactly_the_seconds_asked_for_on_tokios_clock() {
        let answer = get("/sleep?seconds=5").await;
        assert_eq!(answer.body, "slept for 5 seconds\n");
        assert_eq!(answer.virtual_time, Duration::from_secs(5));
        // Paused time costs no real time; the margin is wide on purpose.
        assert!(
            answer.real_time < Duration::from_secs(2),
            "5 virtual seconds took {:?} of real time",
            answer.real_time
        );
    }

    #[tokio::test(start_paused = true)]
    async fn loop_breaks_the_time_into_one_second_sleeps() {
        let answer = get("/loop?seconds=3").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.body, "slept for 1 seconds\n".repeat(3));
        assert_eq!(answer.virtual_time, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_for_zero_seconds_answers_at_once() {
        let answer = get("/sleep?seconds=0").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "slept for 0 seconds\n");
        assert_eq!(answer.virtual_time, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn loop_for_zero_seconds_answers_an_empty_body_at_once() {
        let answer = get("/loop?seconds=0").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.body, "");
        assert_eq!(answer.virtual_time, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn two_sleeps_at_once_overlap_instead_of_queueing() {
        let server = server().await;
        let started = Instant::now();
        let (first, second) = tokio::join!(
            send(&server, "GET", "/sleep?seconds=4"),
            send(&server, "GET", "/loop?seconds=4"),
        );
        assert_eq!(first.body, "slept for 4 seconds\n");
        assert_eq!(second.body, "slept for 1 seconds\n".repeat(4));
        // One after the other would take 8 s.
        assert_eq!(started.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn every_unusable_seconds_gets_a_400_that_explains_it() {
        let server = server().await;
        let unusable = [
            ("missing", ""),
            ("empty", "?seconds="),
            ("negative", "?seconds=-1"),
            ("fractional", "?seconds=1.5"),
            ("not a number", "?seconds=abc"),
            ("one more than u64::MAX", "?seconds=18446744073709551616"),
            ("misspelled key", "?second=1"),
            ("given twice", "?seconds=1&seconds=2"),
        ];
        for route in ["/sleep", "/loop"] {
            for (what, query) in unusable {
                let answer = send(&server, "GET", &format!("{route}{query}")).await;
                let case = format!("{route}{query} ({what})");
                assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{case}");
                assert_eq!(answer.content_type.as_deref(), Some("text/plain"), "{case}");
                assert_eq!(answer.body, BAD_SECONDS_MESSAGE, "{case}");
                assert!(answer.has_request_id, "{case}: x-request-id is missing");
            }
        }
    }

    #[test]
    fn the_400_explanation_is_one_line_that_names_seconds() {
        assert!(BAD_SECONDS_MESSAGE.contains("`seconds`"));
        assert!(BAD_SECONDS_MESSAGE.contains("18446744073709551615"));
        assert_eq!(BAD_SECONDS_MESSAGE.lines().count(), 1);
        assert!(BAD_SECONDS_MESSAGE.ends_with('\n'));
    }

    #[tokio::test(start_paused = true)]
    async fn the_largest_seconds_is_accepted_and_the_client_decides_when_to_stop() {
        let server = server().await;
        let client_patience = Duration::from_secs(30);
        let endless = send(&server, "GET", "/sleep?seconds=18446744073709551615");
        assert!(
            tokio::time::timeout(client_patience, endless)
                .await
                .is_err(),
            "an 18446744073709551615-second sleep answered within 30 s"
        );
        // The server is still there for everyone else.
        let answer = send(&server, "GET", "/sleep?seconds=1").await;
        assert_eq!(answer.body, "slept for 1 seconds\n");
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_extra_parameters_are_ignored() {
        let answer = get("/sleep?seconds=1&colour=blue").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "slept for 1 seconds\n");
    }

    #[tokio::test(start_paused = true)]
    async fn other_paths_are_not_found() {
        let server = server().await;
        for path in [
            "/",
            "/sleeps?seconds=1",
            "/sleep/1",
            "/loop/extra?seconds=1",
        ] {
            let answer = send(&server, "GET", path).await;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "GET {path}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_methods_are_not_allowed() {
        let server = server().await;
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            for path in ["/sleep?seconds=1", "/loop?seconds=1"] {
                let answer = send(&server, method, path).await;
                assert_eq!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_address_without_a_usable_port_is_refused_with_an_example() {
        for requested in ["nonsense", "localhost", "127.0.0.1", "127.0.0.1:99999"] {
            let reason = bind(requested)
                .await
                .expect_err("a port is needed, from 0 to 65535");
            assert!(reason.contains("127.0.0.1:7878"), "{requested}: {reason}");
        }
    }

    #[tokio::test]
    async fn a_host_name_is_resolved_and_bound() {
        let listener = bind("localhost:0").await.expect("localhost:0 binds");
        let addr = listener.local_addr().expect("a bound address");
        assert!(addr.ip().is_loopback(), "localhost bound {addr}");
    }

    #[tokio::test]
    async fn a_host_name_that_does_not_resolve_is_refused_as_such() {
        // `.invalid` is reserved: it never resolves (RFC 2606).
        let reason = bind("no-such-host.invalid:7878")
            .await
            .expect_err("an unknown name cannot be bound");
        assert!(reason.contains("cannot resolve"), "{reason}");
    }

    #[tokio::test]
    async fn port_zero_binds_a_free_port() {
        let listener = bind("127.0.0.1:0").await.expect("port 0 binds");
        let port = listener.local_addr().expect("a bound address").port();
        assert_ne!(port, 0);
    }
}
