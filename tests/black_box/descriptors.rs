//! Out of descriptors: idle connections give way to a new client at once,
//! requests in flight never do, and with nothing idle to close the server
//! waits instead of spinning.

use std::time::{Duration, Instant};

use gotham::hyper::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{ask_at_once, get_owned, Server};

/// Open files the server may have: a few for itself, the rest connections.
const DESCRIPTOR_LIMIT: u64 = 64;
/// More connections than that, so `accept()` fails with EMFILE.
const CONNECTIONS: usize = 120;
/// How long the server's CPU time is watched while it is out of descriptors.
const WATCHED: Duration = Duration::from_secs(1);

/// Asserts the server uses little CPU over `WATCHED`: a loop retrying
/// accept() at once uses the whole second (measured on gotham's
/// bind_server); pausing between tries uses next to nothing.
async fn assert_calm(server: &Server, while_: &str) {
    let before = server.cpu_time();
    tokio::time::sleep(WATCHED).await;
    let used = server.cpu_time() - before;
    assert!(
        used < WATCHED / 4,
        "{while_}, the server used {used:?} of CPU in {WATCHED:?}"
    );
}

#[tokio::test]
async fn out_of_descriptors_idle_connections_give_way_to_a_new_client_and_requests_in_flight_stay()
{
    let mut server = Server::start_with_descriptor_limit(DESCRIPTOR_LIMIT);
    let sleeping = tokio::spawn(get_owned(server.url("/sleep?seconds=3")));
    server
        .wait_for_count(
            "sleep for 3 seconds once: starting",
            1,
            Duration::from_secs(5),
        )
        .await;

    let mut idle = Vec::new();
    for _ in 0..CONNECTIONS {
        // Connected, silent: each one a descriptor the server holds.
        idle.push(TcpStream::connect(server.addr).await.expect("connects"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_calm(&server, "making room among idle connections").await;

    // The idle connections are still open on this side; the server must
    // close some of its own to take this one.
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        get_owned(server.url("/sleep?seconds=0")),
    )
    .await;
    assert_eq!(
        answer.ok(),
        Some(Ok((StatusCode::OK, "slept for 0 seconds\n".to_string()))),
        "a new client was not answered within 2 s (the header deadline is 30 s)"
    );
    let waited = asked.elapsed();

    assert_eq!(
        sleeping.await.expect("the sleeping request's task"),
        Ok((StatusCode::OK, "slept for 3 seconds\n".to_string())),
        "the request in flight when the idle connections came was not answered in full"
    );
    drop(idle);
    let stderr = server.stop_for_stderr().await;
    assert!(
        stderr.contains("out of descriptors: closed ")
            && stderr.contains(" idle connections, longest idle first, to make room for new clients"),
        "no line about the connections closed to make room (new client waited {waited:?}): {stderr}"
    );
}

#[tokio::test]
async fn out_of_descriptors_with_every_connection_busy_the_server_waits_without_spinning_and_recovers(
) {
    let server = Server::start_with_descriptor_limit(DESCRIPTOR_LIMIT);
    let mut busy = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        // A complete request each: nothing the server may close.
        stream
            .write_all(b"GET /sleep?seconds=3600 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("sends");
        busy.push(stream);
    }
    // Let the server take in what it can and run out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_calm(&server, "out of descriptors with every request in flight").await;

    // Hanging up ends those requests and frees their descriptors. No sleep
    // here: the answer must come as soon as the server has closed them and
    // accepted the rest; the client waits.
    drop(busy);
    server
        .assert_still_answers("running out of descriptors")
        .await;
}

/// Clients in the burst below: more than twice what the server can hold.
const BURST: usize = 150;

#[tokio::test]
async fn a_burst_of_clients_beyond_the_descriptor_limit_loses_no_request() {
    let server = Server::start_with_descriptor_limit(DESCRIPTOR_LIMIT);
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move { ask_at_once(addr, "/sleep?seconds=1").await })
        })
        .collect();
    let mut lost = Vec::new();
    for client in burst {
        // The server holds about 55 at a time for a second each: the burst
        // needs about 3 s; a lost answer fails at once, not by timing out.
        let answer = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("an answer within 30 s")
            .expect("the client's task");
        match answer {
            Ok((200, body)) if body == "slept for 1 seconds\n" => {}
            other => lost.push(other),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {BURST} clients that had sent a complete request got no answer: {:?}",
        lost.len(),
        &lost[..lost.len().min(3)]
    );
}
