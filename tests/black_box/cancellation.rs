//! A client that hangs up takes its request's future with it.
//!
//! These clients speak HTTP through hyper's connection-level client, which
//! hands the test the connection itself: dropping it is a real hang-up (the
//! socket closes), not just a response nobody reads.

use std::time::Duration;

use gotham::bytes::Bytes;
use gotham::http_body_util::Empty;
use gotham::hyper::client::conn::http1;
use gotham::hyper::Request;
use gotham::hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::{get, Server};

/// Opens a connection, sends `GET path_and_query` on it and returns the task
/// that owns the connection; aborting that task closes the socket.
async fn send_and_keep_the_line_open(server: &Server, path_and_query: &str) -> JoinHandle<()> {
    let stream = TcpStream::connect(server.addr).await.expect("connects");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake");
    let request = Request::get(path_and_query)
        .header("host", server.addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("a valid request");
    tokio::spawn(async move {
        let response = sender.send_request(request);
        // Both the connection and the response wait here until aborted.
        let _ = tokio::join!(connection, response);
    })
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_its_sleep() {
    const HANGING_UP: usize = 5;
    let server = Server::start();

    let mut hang_ups = Vec::new();
    for _ in 0..HANGING_UP {
        hang_ups.push(send_and_keep_the_line_open(&server, "/sleep?seconds=2").await);
    }
    hang_ups.push(send_and_keep_the_line_open(&server, "/loop?seconds=2").await);
    // Sent right after them, never hung up on, and a second longer: by the
    // time it is answered, every timer above would have fired.
    let control_url = server.url("/sleep?seconds=3");
    let control = tokio::spawn(async move { get(&control_url).await });

    server
        .wait_for_count(
            "sleep for 2 seconds once: starting",
            HANGING_UP,
            Duration::from_secs(5),
        )
        .await;
    server
        .wait_for_count(
            "sleep for one second 2 times: starting",
            1,
            Duration::from_secs(5),
        )
        .await;
    // Hang up half a second in: the sleeps are well under way, and far
    // from done.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for hang_up in &hang_ups {
        hang_up.abort();
    }

    let control = control.await.expect("the control request's task");
    assert_eq!(control.body, "slept for 3 seconds\n");
    server
        .wait_for_count(
            "sleep for 3 seconds once: finished",
            1,
            Duration::from_secs(5),
        )
        .await;

    let console = server.stdout_lines();
    for never in [
        "sleep for 2 seconds once: finished",
        "sleep for one second 2 times: finished",
    ] {
        assert!(
            !console.iter().any(|line| line == never),
            "`{never}` was printed for a client that had hung up:\n{}",
            console.join("\n")
        );
    }
    server.assert_still_answers("clients hung up").await;
}
