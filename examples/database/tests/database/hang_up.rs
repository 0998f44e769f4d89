//! A client that hangs up mid-query: the query is cancelled on the server,
//! not left running with a pooled connection nobody waits for; over TLS
//! too, where the cancel request must go the way the connection went.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::throwaway::Postgres;
use crate::{
    lesson_bounds, serve_lesson, sleeps_running, verify_full_url, wait_for_sleeps, PATIENCE,
};

#[tokio::test]
async fn a_hang_up_cancels_the_query_on_the_server_within_a_second() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    hang_up_cancels(&postgres, &postgres.url()).await;
}

#[tokio::test]
async fn a_hang_up_over_tls_cancels_the_query_on_the_server_within_a_second() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    hang_up_cancels(&postgres, &verify_full_url(&postgres)).await;
}

/// A five-second sleep through `url`, its client gone once it runs: the
/// query is gone from `pg_stat_activity` within a second, for good.
async fn hang_up_cancels(postgres: &Postgres, url: &str) {
    let watcher = postgres.connect().await;
    let lesson = serve_lesson(url, lesson_bounds()).await;

    // Five seconds: shorter than the query deadline (10 s), so only the
    // hang-up can end it early.
    let mut client = tokio::net::TcpStream::connect(lesson)
        .await
        .expect("connects");
    client
        .write_all(b"GET /sleep?seconds=5 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("sends");
    wait_for_sleeps(&watcher, 1, PATIENCE).await;

    drop(client);
    wait_for_sleeps(&watcher, 0, Duration::from_secs(1)).await;
    // And it stays gone: not a query that ended and another that began.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sleeps_running(&watcher).await, 0);
}
