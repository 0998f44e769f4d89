//! HTTP's manners seen on the wire, as `curl -I` and a mistyping user see
//! them: the real binary, and the relay in front of it, asked in raw bytes
//! so that a body sent in answer to `HEAD` would show.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::relay::{start_relay, PATIENCE};
use crate::support::{raw_exchange, Server};

/// One answer as it came off the socket.
#[derive(Debug)]
struct Wire {
    status_line: String,
    /// Each header (name in lower case) with its values, in order; without
    /// `date` and `x-request-id`, which differ from one answer to the next.
    headers: BTreeMap<String, Vec<String>>,
    /// Every byte after the blank line that ends the head.
    body: Vec<u8>,
}

/// Sends `method path` on a connection of its own, asks the server to
/// close it after the answer, and reads all it sends until then.
async fn ask(addr: SocketAddr, method: &str, path: &str) -> Wire {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let bytes = raw_exchange(addr, request.as_bytes()).await;
    let end_of_head = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no complete head in {bytes:?}"));
    let head = String::from_utf8_lossy(&bytes[..end_of_head]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_string();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("{method} {path}: a header without a colon: {line:?}"));
        let name = name.to_ascii_lowercase();
        if name != "date" && name != "x-request-id" {
            headers
                .entry(name)
                .or_default()
                .push(value.trim().to_string());
        }
    }
    Wire {
        status_line,
        headers,
        body: bytes[end_of_head + 4..].to_vec(),
    }
}

/// Asks `GET` and then `HEAD` for `path` and checks the `HEAD` got the same
/// status line and headers, `content-length` among them, and no body.
async fn assert_head_is_get_without_the_body(addr: SocketAddr, path: &str) {
    let get = ask(addr, "GET", path).await;
    let head = ask(addr, "HEAD", path).await;
    let length = get.body.len().to_string();
    assert_eq!(
        get.headers.get("content-length"),
        Some(&vec![length]),
        "GET {path}: {get:?}"
    );
    assert_eq!(head.status_line, get.status_line, "HEAD {path}");
    assert_eq!(head.headers, get.headers, "HEAD {path}");
    assert_eq!(
        String::from_utf8_lossy(&head.body),
        "",
        "HEAD {path} sent body bytes"
    );
}

#[tokio::test]
async fn head_on_the_example_sends_gets_headers_and_not_one_body_byte() {
    let server = Server::start();
    // `/loop` is compared in-process (`src/tests.rs`), on the paused clock.
    for path in ["/sleep?seconds=0", "/sleep?seconds=-1", "/sleeep?seconds=1"] {
        assert_head_is_get_without_the_body(server.addr, path).await;
    }
    let get = ask(server.addr, "GET", "/sleep?seconds=0").await;
    assert_eq!(get.status_line, "HTTP/1.1 200 OK");
    assert_eq!(get.headers["content-type"], ["text/plain"]);
}

#[tokio::test]
async fn head_prints_the_console_lines_get_prints() {
    let server = Server::start();
    let head = ask(server.addr, "HEAD", "/sleep?seconds=1").await;
    assert_eq!(head.status_line, "HTTP/1.1 200 OK");
    server
        .wait_for_count("sleep for 1 seconds once: finished", 1, PATIENCE)
        .await;
    assert_eq!(
        server.stdout_lines()[1..],
        [
            "sleep for 1 seconds once: starting",
            "sleep for 1 seconds once: finished"
        ]
    );
}

#[tokio::test]
async fn head_on_the_relay_sends_gets_headers_and_not_one_body_byte() {
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;
    for path in [
        "/relay?seconds=0",
        "/series?seconds=0&times=2",
        "/parallel?seconds=0&times=2",
        "/parallel?seconds=0&times=11",
        "/relay?seconds=x",
        "/rely?seconds=0",
    ] {
        assert_head_is_get_without_the_body(relay, path).await;
    }
    // The relay's HEADs asked the upstream as its GETs did: one sleep for
    // `/relay` and two each for `/series` and `/parallel`, twice over.
    let finished = "sleep for 0 seconds once: finished";
    upstream.wait_for_count(finished, 10, PATIENCE).await;
    assert_eq!(upstream.count_lines(finished), 10);
}

#[tokio::test]
async fn the_examples_404_and_405_say_why_in_one_line_and_405_keeps_allow() {
    let server = Server::start();
    let not_found = ask(server.addr, "GET", "/sleeep?seconds=1").await;
    assert_eq!(not_found.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(not_found.headers["content-type"], ["text/plain"]);
    assert_eq!(
        String::from_utf8_lossy(&not_found.body),
        "there is nothing at /sleeep: the paths here are /sleep and /loop\n"
    );
    let not_allowed = ask(server.addr, "POST", "/sleep?seconds=1").await;
    assert_eq!(not_allowed.status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(not_allowed.headers["allow"], ["GET", "HEAD"]);
    assert_eq!(not_allowed.headers["content-type"], ["text/plain"]);
    assert_eq!(
        String::from_utf8_lossy(&not_allowed.body),
        "POST is not allowed on /sleep: it takes GET or HEAD\n"
    );
}

#[tokio::test]
async fn the_relays_404_and_405_say_why_in_one_line_and_405_keeps_allow() {
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;
    let not_found = ask(relay, "GET", "/sleep?seconds=1").await;
    assert_eq!(not_found.status_line, "HTTP/1.1 404 Not Found");
    assert_eq!(
        String::from_utf8_lossy(&not_found.body),
        "there is nothing at /sleep: the paths here are /relay, /series and /parallel\n"
    );
    let not_allowed = ask(relay, "DELETE", "/parallel?seconds=1&times=2").await;
    assert_eq!(not_allowed.status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(not_allowed.headers["allow"], ["GET", "HEAD"]);
    assert_eq!(
        String::from_utf8_lossy(&not_allowed.body),
        "DELETE is not allowed on /parallel: it takes GET or HEAD\n"
    );
    // Every path the 404 lists is served.
    for path in crate::relay_example::PATHS {
        let answer = ask(relay, "GET", &format!("{path}?seconds=0&times=1")).await;
        assert_eq!(answer.status_line, "HTTP/1.1 200 OK", "{path}");
    }
}
