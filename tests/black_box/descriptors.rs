//! Out of descriptors, the server waits instead of spinning, and answers
//! again as soon as descriptors are free.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::support::Server;

/// Open files the server may have: a few for itself, the rest connections.
const DESCRIPTOR_LIMIT: u64 = 64;
/// More idle connections than that, so `accept()` fails with EMFILE.
const IDLE_CONNECTIONS: usize = 120;
/// How long the server's CPU time is watched while it is out of descriptors.
const WATCHED: Duration = Duration::from_secs(1);

#[tokio::test]
async fn out_of_descriptors_the_server_waits_without_spinning_and_recovers() {
    let server = Server::start_with_descriptor_limit(DESCRIPTOR_LIMIT);
    let mut idle = Vec::new();
    for _ in 0..IDLE_CONNECTIONS {
        // The kernel completes the connect; the server cannot accept them all.
        idle.push(TcpStream::connect(server.addr).await.expect("connects"));
    }
    // Let the server take in what it can and run out.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = server.cpu_time();
    tokio::time::sleep(WATCHED).await;
    let used = server.cpu_time() - before;
    // A loop retrying accept() at once uses the whole second (measured on
    // gotham's bind_server); pausing between tries uses next to nothing.
    assert!(
        used < WATCHED / 4,
        "out of descriptors, the server used {used:?} of CPU in {WATCHED:?}"
    );

    drop(idle);
    // No sleep here: the answer must come as soon as the server has closed
    // the connections it held and accepted the rest; the client waits.
    server
        .assert_still_answers("running out of descriptors")
        .await;
}
