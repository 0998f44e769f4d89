//! The body lesson in-process, on real TCP with raw bytes (the statuses,
//! and what goes on the wire before them), on tokio's paused clock where
//! time matters: a 10 s deadline then passes at once, and its length can be
//! asserted exactly.

use std::net::SocketAddr;
use std::time::Duration;

use gotham_examples_handlers_simple_async_handlers::serve::{serve_with, GothamService, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::router;

/// Serves the lesson's router on a port of its own.
async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("has an address");
    let new_service = |client| GothamService {
        router: router(),
        client,
    };
    tokio::spawn(serve_with(
        listener,
        new_service,
        Limits::default(),
        futures::stream::pending(),
    ));
    addr
}

/// Sends `bytes` and reads until the server closes (or a minute passes).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(bytes).await.expect("sends");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request for `path` with `headers` (each ending in CRLF) and `body`,
/// asking the server to close after its answer.
fn post(path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut request =
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n")
            .into_bytes();
    request.extend_from_slice(body);
    request
}

fn json_post(body: &str) -> Vec<u8> {
    let headers = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    post("/sleep", &headers, body.as_bytes())
}

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test(start_paused = true)]
async fn post_sleep_with_json_sleeps_as_get_sleep_does() {
    let addr = start().await;
    let began = Instant::now();
    let answer = exchange(addr, &json_post(r#"{"seconds": 5}"#)).await;
    assert_eq!(status(&answer), "HTTP/1.1 200 OK", "{answer}");
    assert!(answer.contains("content-type: text/plain\r\n"), "{answer}");
    assert_eq!(body(&answer), "slept for 5 seconds\n");
    let slept = began.elapsed();
    assert!(
        slept >= Duration::from_secs(5) && slept < Duration::from_millis(5100),
        "slept {slept:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn json_with_a_charset_is_json_too() {
    let addr = start().await;
    let json = r#"{"seconds":0}"#;
    let headers = format!(
        "Content-Type: Application/JSON; charset=utf-8\r\nContent-Length: {}\r\n",
        json.len()
    );
    let answer = exchange(addr, &post("/sleep", &headers, json.as_bytes())).await;
    assert_eq!(body(&answer), "slept for 0 seconds\n", "{answer}");
}

#[tokio::test(start_paused = true)]
async fn another_content_type_gets_a_415_naming_both() {
    let addr = start().await;
    let answer = exchange(
        addr,
        &post(
            "/sleep",
            "Content-Type: text/plain\r\nContent-Length: 1\r\n",
            b"5",
        ),
    )
    .await;
    assert_eq!(status(&answer), "HTTP/1.1 415 Unsupported Media Type");
    assert_eq!(
        body(&answer),
        "this route takes `content-type: application/json`; the request's is `text/plain`\n"
    );
    let answer = exchange(addr, &post("/sleep", "Content-Length: 1\r\n", b"5")).await;
    assert_eq!(
        body(&answer),
        "this route takes `content-type: application/json`; the request's is none\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_that_is_not_the_json_gets_serde_jsons_own_line() {
    let addr = start().await;
    let cases = [
        (
            r#"{"secnods": 5}"#,
            "unknown field `secnods`, expected `seconds` at line 1 column 10",
        ),
        (
            r#"{"seconds": -1}"#,
            "invalid value: integer `-1`, expected u64 at line 1 column 14",
        ),
        (
            "{\"seconds\":\n 5",
            "EOF while parsing an object at line 2 column 2",
        ),
        ("", "EOF while parsing a value at line 1 column 0"),
    ];
    for (sent, said) in cases {
        let answer = exchange(addr, &json_post(sent)).await;
        assert_eq!(status(&answer), "HTTP/1.1 400 Bad Request", "{sent}");
        assert_eq!(
            body(&answer),
            format!("the body must be JSON such as {{\"seconds\": 5}}: {said}\n"),
            "{sent}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_utf8_inside_a_json_string_gets_a_400_with_serde_jsons_line() {
    let addr = start().await;
    let sent = b"{\"seconds\": 1, \"\xff\": 2}";
    let headers = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n",
        sent.len()
    );
    let answer = exchange(addr, &post("/sleep", &headers, sent)).await;
    assert_eq!(status(&answer), "HTTP/1.1 400 Bad Request");
    assert_eq!(
        body(&answer),
        "the body must be JSON such as {\"seconds\": 5}: invalid unicode code point at line 1 column 17\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_content_length_over_the_bound_gets_a_413_before_any_body_is_sent() {
    let addr = start().await;
    // 10 GB announced, nothing sent: the answer cannot come from counting.
    let answer = exchange(
        addr,
        &post(
            "/sleep",
            "Content-Type: application/json\r\nContent-Length: 10000000000\r\n",
            b"",
        ),
    )
    .await;
    assert_eq!(
        status(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    assert_eq!(
        body(&answer),
        "the body is 10000000000 bytes; this route takes at most 1024\n"
    );
    let answer = exchange(
        addr,
        &post("/digest", "Content-Length: 10000000000\r\n", b""),
    )
    .await;
    assert_eq!(
        body(&answer),
        "the body is 10000000000 bytes; this route takes at most 1073741824\n"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_still_uploading_when_the_413_comes_can_read_it_after_its_send_fails() {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = "POST /sleep HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 4000000\r\n\r\n";
    stream
        .write_all(head.as_bytes())
        .await
        .expect("sends the head");
    // The server answers from the head and closes with the body unread:
    // the kernel resets the connection, and this send fails part way
    // (or, with buffers large enough, succeeds).
    let _ = stream.write_all(&vec![b' '; 4_000_000]).await;
    // On Linux the answer that arrived before the reset can still be read.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
}

/// `count` chunks of `size` bytes each, then the last chunk.
fn chunked(count: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..count {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b' ', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

#[tokio::test(start_paused = true)]
async fn a_chunked_body_over_the_bound_gets_a_413_when_counted() {
    let addr = start().await;
    let headers = "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n";
    let answer = exchange(addr, &post("/sleep", headers, &chunked(4, 300))).await;
    assert_eq!(
        status(&answer),
        "HTTP/1.1 413 Payload Too Large",
        "{answer}"
    );
    assert_eq!(
        body(&answer),
        "the body is over 1024 bytes; this route takes at most 1024\n"
    );
    // Within the bound, the same way of sending is read to its end.
    let answer = exchange(addr, &post("/sleep", headers, &chunked(3, 300))).await;
    assert!(
        body(&answer).starts_with("the body must be JSON"),
        "{answer}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_chunk_size_gets_a_400() {
    let addr = start().await;
    let answer = exchange(
        addr,
        &post(
            "/digest",
            "Transfer-Encoding: chunked\r\n",
            b"3\r\nabc\r\nzz\r\n",
        ),
    )
    .await;
    assert_eq!(status(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
    assert!(
        body(&answer).starts_with("the body is not valid HTTP after 3 bytes: "),
        "{answer}"
    );
}

#[tokio::test(start_paused = true)]
async fn expect_100_continue_with_too_large_a_body_gets_the_413_and_no_continue() {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = "POST /sleep HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("sends");
    // The client sends no body: it waits for `100 Continue`, which never
    // comes; the 413 does, and the server closes.
    let answer = read_to_close(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("100 Continue"), "{answer}");
}

#[tokio::test(start_paused = true)]
async fn expect_100_continue_within_the_bound_gets_continue_then_the_answer() {
    let addr = start().await;
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let json = r#"{"seconds": 1}"#;
    let head = format!(
        "POST /sleep HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        json.len()
    );
    stream.write_all(head.as_bytes()).await.expect("sends");
    let mut first = [0u8; 25];
    stream.read_exact(&mut first).await.expect("reads");
    assert_eq!(&first, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(json.as_bytes()).await.expect("sends");
    let answer = read_to_close(&mut stream).await;
    assert_eq!(body(&answer), "slept for 1 seconds\n", "{answer}");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stops_coming_gets_a_408_after_10_seconds() {
    let addr = start().await;
    let began = Instant::now();
    // 100 bytes announced, 3 sent, then silence with the connection open,
    // and no `Connection: close`: the server closes it of itself.
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = "POST /sleep HTTP/1.1\r\nHost: localhost\r\n\
                   Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"s";
    stream.write_all(request.as_bytes()).await.expect("sends");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), "HTTP/1.1 408 Request Timeout", "{answer}");
    assert_eq!(
        body(&answer),
        "the body came too slowly: 3 bytes in the time allowed (10 s)\n"
    );
    assert!(answer.contains("connection: close\r\n"), "{answer}");
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn digest_earns_a_second_for_each_500_bytes_received() {
    let addr = start().await;
    let began = Instant::now();
    // 1,000 bytes of 2,000 announced: 20 s, and 2 more.
    let answer = exchange(
        addr,
        &post("/digest", "Content-Length: 2000\r\n", &[b'x'; 1000]),
    )
    .await;
    assert_eq!(
        body(&answer),
        "the body came too slowly: 1000 bytes in the time allowed \
         (20 s, and a second more for each 500 bytes)\n",
        "{answer}"
    );
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(22) && waited < Duration::from_millis(22_100),
        "waited {waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn digests_own_pauses_do_not_count_against_the_body() {
    let addr = start().await;
    let began = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let head = "POST /digest?pause_ms=10000 HTTP/1.1\r\nHost: localhost\r\n\
                Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("sends");
    // A frame every 15 s, and the handler pauses 10 s after each: it
    // waits 5 s for each of the next three (15 s of the 20 s a body gets),
    // and 45 s go by in all.
    for part in ["1\r\na\r\n", "1\r\nb\r\n", "1\r\nc\r\n", "0\r\n\r\n"] {
        if part != "1\r\na\r\n" {
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
        stream.write_all(part.as_bytes()).await.expect("sends");
    }
    let answer = read_to_close(&mut stream).await;
    assert_eq!(
        body(&answer),
        "3 bytes, sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
        "{answer}"
    );
    assert!(began.elapsed() >= Duration::from_secs(45));
}

#[tokio::test(start_paused = true)]
async fn digest_answers_a_bodys_size_and_sha256() {
    let addr = start().await;
    // The standard test vector: a million `a`s, sent in one go.
    let answer = exchange(
        addr,
        &post("/digest", "Content-Length: 1000000\r\n", &[b'a'; 1_000_000]),
    )
    .await;
    assert_eq!(
        body(&answer),
        "1000000 bytes, sha256 cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0\n"
    );
    let answer = exchange(addr, &post("/digest?pause_ms=10001", "", b"")).await;
    assert_eq!(status(&answer), "HTTP/1.1 400 Bad Request");
    assert_eq!(body(&answer), super::BAD_PAUSE_MESSAGE);
}

#[tokio::test(start_paused = true)]
async fn get_and_other_paths_get_the_manners_405_and_404() {
    let addr = start().await;
    let answer = exchange(
        addr,
        b"GET /sleep HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(
        body(&answer),
        "GET is not allowed on /sleep: it takes POST\n"
    );
    let answer = exchange(addr, &post("/nowhere", "Content-Length: 0\r\n", b"")).await;
    assert_eq!(status(&answer), "HTTP/1.1 404 Not Found");
    assert_eq!(
        body(&answer),
        "there is nothing at /nowhere: the paths here are /sleep and /digest\n"
    );
}

/// The kernel's smallest socket buffers, asked for on both ends (Linux
/// doubles the figure and keeps a floor of a few KiB).
const SMALL_BUFFER: usize = 4096;

#[tokio::test]
async fn a_slow_reader_makes_the_clients_sends_wait() {
    // The lesson's accepted sockets inherit the listener's receive buffer.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    listener
        .set_recv_buffer_size(SMALL_BUFFER)
        .expect("a small receive buffer");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    listener.bind(&addr.into()).expect("binds");
    listener.listen(16).expect("listens");
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = TcpListener::from_std(listener.into()).expect("a tokio listener");
    let addr = listener.local_addr().expect("has an address");
    let new_service = |client| GothamService {
        router: router(),
        client,
    };
    tokio::spawn(serve_with(
        listener,
        new_service,
        Limits::default(),
        futures::stream::pending(),
    ));

    let client = tokio::net::TcpSocket::new_v4().expect("a socket");
    client
        .set_send_buffer_size(SMALL_BUFFER as u32)
        .expect("a small send buffer");
    let mut stream = client.connect(addr).await.expect("connects");
    const OFFERED: usize = 64 << 20;
    let head = format!(
        "POST /digest?pause_ms=10000 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {OFFERED}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("sends");
    // The handler takes a frame and pauses 10 s: from then on nothing reads
    // the socket, and the client can send only what the buffers hold.
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0;
    while sent < OFFERED {
        match tokio::time::timeout(Duration::from_millis(500), stream.write(&chunk)).await {
            Ok(Ok(written)) => sent += written,
            Ok(Err(error)) => panic!("the send failed after {sent} bytes: {error}"),
            // Half a second without room for a byte: the sends wait.
            Err(_) => break,
        }
    }
    // The two kernel buffers, hyper's read buffer (at most 128 KiB here)
    // and the frame the handler holds: well under a MiB.
    assert!(
        sent < 1 << 20,
        "{sent} of {OFFERED} bytes went through while the handler paused"
    );
}
