//! The body lesson (`examples/body/`) as a user runs it: what its console
//! says when a client hangs up mid-body and after it, and a body sent with
//! a `GET`, to it and to the main program. (Its statuses are tested
//! in-process, on the paused clock, in `examples/body/tests.rs`.)

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gotham_examples_handlers_simple_async_handlers::serve;

use crate::body_example::router;
use crate::support::{raw_exchange, Server};

/// Set in a child run of this test binary that serves the body lesson.
const CHILD: &str = "BODY_LESSON_CHILD";

/// Not a test of its own: in a child run started by `start_body_lesson`,
/// serves the lesson's router as its `main` does, until killed. (cargo
/// tells integration tests no path to an example's binary.) In an
/// ordinary run it returns at once.
#[tokio::test]
async fn child_serves_the_body_lesson() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    serve::listen_and_serve("127.0.0.1:0", router()).await;
}

/// The body lesson in a process of its own, at most `descriptor_limit`
/// open files if given.
pub fn start_body_lesson(descriptor_limit: Option<u64>) -> Server {
    let mut this_binary = Command::new(std::env::current_exe().expect("the test binary's path"));
    this_binary.env(CHILD, "1");
    Server::start_program(
        this_binary,
        &[
            "--exact",
            "body::child_serves_the_body_lesson",
            "--nocapture",
        ],
        descriptor_limit,
    )
}

/// A `POST /sleep` head announcing a JSON body of `length` bytes.
fn sleep_head(length: usize) -> String {
    format!(
        "POST /sleep HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

const CUT_SHORT: &str = "POST /sleep: the body was cut short: the body ended after 10 bytes, \
                         before the end the request announced";

#[tokio::test]
async fn a_body_cut_short_by_a_half_close_gets_a_400_and_a_console_line() {
    let server = start_body_lesson(None);
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(format!("{}{{\"seconds\"", sleep_head(100)).as_bytes())
        .await
        .expect("sends 10 of 100 bytes");
    // Done sending, still listening: hyper reads the end of the stream
    // where the body's 90 other bytes should be.
    stream.shutdown().await.expect("half-closes");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("an answer within 5 s")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n")
            && answer.ends_with(
                "\r\n\r\nthe body ended after 10 bytes, before the end the request announced\n"
            ),
        "{answer}"
    );
    server
        .wait_for_count(CUT_SHORT, 1, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn a_body_cut_short_by_a_hang_up_gets_a_console_line_and_nothing_else_breaks() {
    let server = start_body_lesson(None);
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    stream
        .write_all(format!("{}{{\"seconds\"", sleep_head(100)).as_bytes())
        .await
        .expect("sends 10 of 100 bytes");
    // Let the handler read the 10 bytes and wait for more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    // Nobody to answer: the handler's answer goes nowhere, and the console
    // says what happened.
    server
        .wait_for_count(CUT_SHORT, 1, Duration::from_secs(5))
        .await;
    let json = r#"{"seconds":0}"#;
    let answer = raw_exchange(
        server.addr,
        format!("{}{json}", sleep_head(json.len())).as_bytes(),
    )
    .await;
    assert!(
        String::from_utf8_lossy(&answer).ends_with("\r\n\r\nslept for 0 seconds\n"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_hang_up_once_the_body_is_read_drops_the_sleep_as_everywhere() {
    let server = start_body_lesson(None);
    let mut stream = TcpStream::connect(server.addr).await.expect("connects");
    let json = r#"{"seconds":2}"#;
    stream
        .write_all(format!("{}{json}", sleep_head(json.len())).as_bytes())
        .await
        .expect("sends");
    server
        .wait_for_count(
            "sleep for 2 seconds once: starting",
            1,
            Duration::from_secs(5),
        )
        .await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.count_lines("sleep for 2 seconds once: finished"),
        0,
        "the sleep of a client that hung up ran to its end: {:?}",
        server.stdout_lines()
    );
    // No body was cut short: the client hung up after sending all of it.
    assert!(
        !server
            .stdout_lines()
            .iter()
            .any(|line| line.contains("cut short")),
        "{:?}",
        server.stdout_lines()
    );
}

/// A `GET /sleep?seconds=0` with a 5-byte body, then a second request on
/// the same connection.
const GET_WITH_A_BODY_THEN_ANOTHER: &[u8] = b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\n\
Content-Length: 5\r\n\r\nhello\
GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn the_main_program_ignores_a_gets_body_and_reads_the_next_request_after_it() {
    let server = Server::start();
    let answer = raw_exchange(server.addr, GET_WITH_A_BODY_THEN_ANOTHER).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(
        answer.matches("HTTP/1.1 200 OK\r\n").count(),
        2,
        "the body was not skipped as a body: {answer}"
    );
    assert_eq!(answer.matches("slept for 0 seconds\n").count(), 2);
}

#[tokio::test]
async fn the_relay_ignores_a_gets_body_and_reads_the_next_request_after_it() {
    let upstream = Server::start();
    let relay =
        crate::relay::start_relay(&upstream.addr.to_string(), Duration::from_secs(10)).await;
    let answer = raw_exchange(
        relay,
        b"GET /relay?seconds=0 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello\
GET /relay?seconds=0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(
        answer.matches("slept for 0 seconds\n").count(),
        2,
        "the body was not skipped as a body: {answer}"
    );
}

#[tokio::test]
async fn the_body_lesson_refuses_get_on_its_routes_body_or_not() {
    let server = start_body_lesson(None);
    let answer = raw_exchange(server.addr, GET_WITH_A_BODY_THEN_ANOTHER).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(
        answer
            .matches("HTTP/1.1 405 Method Not Allowed\r\n")
            .count(),
        2,
        "{answer}"
    );
}

/// Open files the lesson may have under pressure, as in `descriptors.rs`.
const DESCRIPTOR_LIMIT: u64 = 64;
/// Clients trickling a body in: more than the lesson can hold.
const TRICKLERS: usize = 120;

/// Sends a `/digest` head and one body byte, then another byte every
/// 500 ms, until the server closes or 30 s pass: a slow-body client.
async fn trickle(addr: std::net::SocketAddr) {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return;
    };
    let head = "POST /digest HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\nx";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if stream.write_all(b"x").await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn out_of_descriptors_requests_trickling_their_bodies_give_way_and_busy_handlers_stay() {
    let mut server = start_body_lesson(Some(DESCRIPTOR_LIMIT));
    // A handler doing its own waiting (a pause after each frame, its body
    // all sent) must not be taken for one waiting on its client.
    // It waits on its client first (its body comes 300 ms after its head),
    // then on itself.
    let mut pausing = TcpStream::connect(server.addr).await.expect("connects");
    pausing
        .write_all(
            b"POST /digest?pause_ms=1200 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .expect("sends the head");
    tokio::time::sleep(Duration::from_millis(300)).await;
    pausing
        .write_all(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n")
        .await
        .expect("sends the body");
    let pausing = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), pausing.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    // An honest upload, 100 bytes every 50 ms (2,000 a second, four times
    // the minimum rate): its handler waits on its client between frames,
    // but the body keeps ahead of the rate, so it is never taken for idle.
    let mut steady = TcpStream::connect(server.addr).await.expect("connects");
    steady
        .write_all(
            b"POST /digest HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .expect("sends the head");
    let steady = tokio::spawn(async move {
        for _ in 0..50 {
            let chunk = [b"64\r\n".as_slice(), &[b'x'; 100], b"\r\n"].concat();
            if steady.write_all(&chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = steady.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_secs(10), steady.read_to_end(&mut answer)).await;
        String::from_utf8_lossy(&answer).into_owned()
    });
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| tokio::spawn(trickle(server.addr)))
        .collect();
    // Every one accepted is a second behind its body's minimum rate.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let json = r#"{"seconds":0}"#;
    let asked = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        raw_exchange_owned(
            server.addr,
            format!(
                "POST /sleep HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )
            .into_bytes()
            .leak(),
        ),
    )
    .await;
    let waited = asked.elapsed();
    let answer = answer.unwrap_or_else(|_| {
        panic!("an honest client was not answered within 5 s (a body's 408 comes after 20 s)")
    });
    assert!(
        answer.ends_with("\r\n\r\nslept for 0 seconds\n"),
        "after {waited:?}: {answer}"
    );
    let paused = pausing.await.expect("the pausing client's task");
    assert!(
        paused.ends_with(
            "\r\n\r\n3 bytes, sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
        ),
        "the handler pausing between frames was not answered in full: {paused}"
    );
    let steady = steady.await.expect("the steady client's task");
    assert!(
        steady.starts_with("HTTP/1.1 200 OK\r\n") && steady.contains("\r\n\r\n5000 bytes, sha256 "),
        "an upload keeping ahead of the minimum rate was not answered in full: {steady}"
    );
    for trickler in tricklers {
        trickler.abort();
    }
    let stderr = server.stop_for_stderr().await;
    assert!(
        stderr.contains("out of descriptors: closed "),
        "no line about connections closed to make room (honest client waited {waited:?}): {stderr}"
    );
}

/// `raw_exchange` as text, for a spawned task.
async fn raw_exchange_owned(addr: std::net::SocketAddr, bytes: &'static [u8]) -> String {
    String::from_utf8_lossy(&raw_exchange(addr, bytes).await).into_owned()
}
