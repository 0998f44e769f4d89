//! `RUST_LOG` and the request log, seen from outside: unset, the binary
//! prints only its own lines; `RUST_LOG=info` adds one line per request on
//! stderr, a hang-up's too, and gotham's own lines through the `log` bridge.
//! And the relay's and the body lesson's routers log their requests as the
//! example's does.

use std::process::Command;
use std::time::Duration;

use gotham::hyper::StatusCode;
use gotham_examples_handlers_simple_async_handlers::request_log;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;

use crate::log_lines::Written;
use crate::relay::{serve_router, start_relay};
use crate::support::{get, raw_exchange, Server, BINARY};

/// The binary on port 0 with `RUST_LOG` as given, or unset.
fn start(rust_log: Option<&str>) -> Server {
    let mut command = Command::new(BINARY);
    match rust_log {
        Some(value) => command.env("RUST_LOG", value),
        None => command.env_remove("RUST_LOG"),
    };
    Server::start_program(command, &["127.0.0.1:0"], None)
}

/// The same requests to each server: a sleep, a refused query string, an
/// unknown path, and a client that hangs up mid-sleep. Then SIGTERM; what
/// the server printed on stderr.
async fn requests_then_stop(mut server: Server) -> (Server, String) {
    assert_eq!(
        get(&server.url("/sleep?seconds=1")).await.status,
        StatusCode::OK
    );
    let refused = get(&server.url("/sleep?seconds=x")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        get(&server.url("/nowhere")).await.status,
        StatusCode::NOT_FOUND
    );

    let mut client = TcpStream::connect(server.addr).await.expect("connects");
    let request = "GET /sleep?seconds=60 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    server
        .wait_for_count(
            "sleep for 60 seconds once: starting",
            1,
            Duration::from_secs(5),
        )
        .await;
    drop(client);
    // Time for the hang-up to be seen; the shutdown line below checks it
    // was (no request in flight when SIGTERM comes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stderr = server.stop_for_stderr().await;
    (server, stderr)
}

/// What stdout must be, with or without `RUST_LOG`: the program's lines.
fn assert_stdout_is_the_programs_own(server: &Server) {
    let lines = server.stdout_lines();
    assert_eq!(
        lines[1..],
        [
            "sleep for 1 seconds once: starting",
            "sleep for 1 seconds once: finished",
            "sleep for 60 seconds once: starting",
            "Shutting down: 0 requests in flight, waiting up to 8 seconds for them to finish",
            "Shut down: 0 unfinished requests dropped",
        ],
        "{lines:?}"
    );
}

#[tokio::test]
async fn with_rust_log_unset_stderr_stays_empty() {
    let (server, stderr) = requests_then_stop(start(None)).await;
    assert_eq!(stderr, "");
    assert_stdout_is_the_programs_own(&server);
}

#[tokio::test]
async fn rust_log_info_adds_a_line_per_request_on_stderr_and_one_for_a_hang_up() {
    let (server, stderr) = requests_then_stop(start(Some("info"))).await;
    assert_stdout_is_the_programs_own(&server);

    let request_lines: Vec<&str> = stderr
        .lines()
        .filter_map(|line| line.split_once(" INFO request_log: ").map(|(_, rest)| rest))
        .collect();
    assert_eq!(request_lines.len(), 2, "{stderr}");
    assert!(
        request_lines[0].starts_with("GET /sleep?seconds=1 200 OK wall=1."),
        "{stderr}"
    );
    assert!(
        request_lines[1].starts_with("GET /sleep?seconds=60 dropped unfinished wall="),
        "{stderr}"
    );
    // gotham's own line for the refused query string, through the bridge
    // from the `log` crate (the request log has no line for it).
    let gotham_lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains(" ERROR gotham::router: "))
        .collect();
    assert_eq!(gotham_lines.len(), 1, "{stderr}");
    assert!(
        gotham_lines[0].ends_with("client error within the query string"),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        3,
        "nothing else on stderr: {stderr}"
    );
}

/// A `RUST_LOG` that cannot be read: one line saying so, then nothing.
#[tokio::test]
async fn an_unreadable_rust_log_gets_one_line_and_no_logging() {
    let (_server, stderr) = requests_then_stop(start(Some("gotham=shouting"))).await;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("warning: RUST_LOG=\"gotham=shouting\" is not a list of"),
        "{stderr}"
    );
}

/// Nor does a `RUST_LOG` that is not UTF-8 pass unnoticed.
#[tokio::test]
async fn a_rust_log_that_is_not_utf8_gets_one_line_and_no_logging() {
    use std::os::unix::ffi::OsStrExt;

    let mut command = Command::new(BINARY);
    command.env("RUST_LOG", std::ffi::OsStr::from_bytes(b"info\xff"));
    let server = Server::start_program(command, &["127.0.0.1:0"], None);
    let (_server, stderr) = requests_then_stop(server).await;
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].ends_with("(not UTF-8): nothing is logged"),
        "{stderr}"
    );
}

/// The relay's router, served in this test's thread (a current-thread
/// runtime) with `RUST_LOG=info`'s subscriber set for that thread, in
/// front of the real example: the relay's line for `/relay?seconds=1` is
/// all waiting, on the upstream's answer.
#[tokio::test]
async fn the_relays_router_logs_each_request() {
    let written = Written::default();
    let subscriber = tracing_subscriber::registry()
        .with(request_log::layer(written.clone()))
        .with(request_log::filter_from("info").expect("info"));
    let _guard = tracing::subscriber::set_default(subscriber);
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;

    let answer = get(&format!("http://{relay}/relay?seconds=1")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with("GET /relay?seconds=1 200 OK wall=1."),
        "{line}"
    );
    // Busy: microseconds, or a few milliseconds on a loaded machine.
    let busy = line
        .split(' ')
        .find_map(|field| field.strip_prefix("busy="))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(busy.ends_with("µs") || busy.ends_with("ms"), "{line}");
    if let Some(milliseconds) = busy.strip_suffix("ms") {
        let milliseconds: f64 = milliseconds.parse().expect("a number");
        assert!(milliseconds < 50.0, "{line}");
    }
}

#[tokio::test]
async fn the_body_lessons_router_logs_each_request_with_its_wait() {
    let written = Written::default();
    let subscriber = tracing_subscriber::registry()
        .with(request_log::layer(written.clone()))
        .with(request_log::filter_from("info").expect("info"));
    let _guard = tracing::subscriber::set_default(subscriber);
    let lesson = serve_router(crate::body_example::router()).await;

    let request = "POST /sleep HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                   Content-Length: 14\r\nConnection: close\r\n\r\n{\"seconds\": 1}";
    let answer = String::from_utf8(raw_exchange(lesson, request.as_bytes()).await).expect("UTF-8");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(line.starts_with("POST /sleep 200 OK wall=1."), "{line}");
}
