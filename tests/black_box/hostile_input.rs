//! Whatever arrives on the socket, the server answers the next request.

use std::time::Duration;

use gotham::hyper::StatusCode;
use tokio::io::AsyncWriteExt;

use crate::support::{get, raw_exchange, Server};

/// `count` bytes that are not HTTP, the same every run (a linear
/// congruential generator: no randomness, so a failure can be replayed).
fn garbage(count: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

fn status_line(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn garbage_bytes_get_a_400_and_the_server_carries_on() {
    let server = Server::start();
    let answer = raw_exchange(server.addr, &garbage(1024)).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request");
    server.assert_still_answers("1 KiB of garbage").await;
}

#[tokio::test]
async fn a_first_line_that_is_not_http_gets_a_400_and_the_server_carries_on() {
    let server = Server::start();
    let answer = raw_exchange(server.addr, b"HELLO THERE\r\n\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request");
    server.assert_still_answers("a non-HTTP first line").await;
}

#[tokio::test]
async fn a_request_cut_off_mid_headers_never_reaches_a_handler() {
    let server = Server::start();
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connects");
    stream
        .write_all(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nX-Cut-Off-He")
        .await
        .expect("sends half a request");
    // Give the server time to read the half it got before the line drops.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);

    server
        .assert_still_answers("a request cut off mid-headers")
        .await;
    // Only the health check's request reached the handler. Its "finished"
    // line is printed before it answers, and stdout is read in order: once
    // that line is read, every line printed before it has been too.
    server
        .wait_for_count(
            "sleep for 0 seconds once: finished",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(server.count_lines("sleep for 0 seconds once: starting"), 1);
}

#[tokio::test]
async fn a_64_kib_query_string_is_refused_as_too_long() {
    let server = Server::start();
    let padding = "a".repeat(64 * 1024);
    let request =
        format!("GET /sleep?seconds=0&padding={padding} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let answer = raw_exchange(server.addr, request.as_bytes()).await;
    assert_eq!(status_line(&answer), "HTTP/1.1 414 URI Too Long");
    server.assert_still_answers("a 64 KiB query string").await;
}

#[tokio::test]
async fn a_32_kib_query_string_is_served_and_its_padding_ignored() {
    let server = Server::start();
    let padding = "a".repeat(32 * 1024);
    let answer = get(&server.url(&format!("/sleep?seconds=0&padding={padding}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "slept for 0 seconds\n");
}

#[tokio::test]
async fn a_sleep_too_long_to_ever_finish_lasts_until_the_client_gives_up() {
    let server = Server::start();
    let endless_url = server.url("/sleep?seconds=18446744073709551615");
    let endless = get(&endless_url);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), endless)
            .await
            .is_err(),
        "an 18446744073709551615-second sleep was answered"
    );
    server
        .assert_still_answers("a client gave up on an endless sleep")
        .await;
    server
        .wait_for_count(
            "sleep for 0 seconds once: finished",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        server.count_lines("sleep for 18446744073709551615 seconds once: starting"),
        1
    );
    assert_eq!(
        server.count_lines("sleep for 18446744073709551615 seconds once: finished"),
        0
    );
}
