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
