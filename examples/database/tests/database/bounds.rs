//! The bounds: at most P connections, a 503 past the pool's wait, a 504
//! past the query's deadline, each with its line.

use std::time::{Duration, Instant};

use crate::example::Bounds;
use crate::throwaway::Postgres;
use crate::{get, lesson_bounds, serve_lesson, verify_full_url, wait_for_sleeps, PATIENCE};

#[tokio::test]
async fn more_clients_than_the_pool_make_at_most_p_connections_and_past_its_wait_get_the_503() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    // Three connections; a request waits 1.5 s for one. Twelve one-second
    // sleeps at once: three end after 1 s, three more after 2 s, and the
    // rest would have waited 2 s or more, past the wait.
    let bounds = Bounds {
        connections: 3,
        wait: Duration::from_millis(1500),
        deadline: Duration::from_secs(10),
    };
    let lesson = serve_lesson(&postgres.url(), bounds).await;
    let clients: Vec<_> = (0..12)
        .map(|_| tokio::spawn(async move { get(lesson, "/sleep?seconds=1").await }))
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.push(client.await.expect("a client"));
    }

    let most = postgres.sessions_at_most();
    assert!(
        (1..=3).contains(&most),
        "the server had {most} of the program's sessions open at once, for a pool of 3"
    );

    let busy = "all 3 connections to database postgres at ";
    let slept = answers.iter().filter(|(status, _)| *status == 200).count();
    let refused = answers
        .iter()
        .filter(|(status, line)| *status == 503 && line.starts_with(busy))
        .count();
    assert_eq!(slept + refused, 12, "{answers:?}");
    assert!(slept >= 3, "fewer than P requests slept: {answers:?}");
    assert!(refused >= 1, "no request got the pool's 503: {answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(status, _)| *status == 503)
            .all(|(_, line)| line.ends_with("and none came free within 1.5 seconds\n")),
        "{answers:?}"
    );
}

#[tokio::test]
async fn a_query_past_the_deadline_gets_the_504_and_is_gone_from_the_server() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    past_the_deadline(&postgres, &postgres.url(), "database postgres at /").await;
}

#[tokio::test]
async fn a_query_over_tls_past_the_deadline_gets_the_504_and_is_gone_from_the_server() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    let named = format!("database postgres at localhost:{} ", postgres.port());
    past_the_deadline(&postgres, &verify_full_url(&postgres), &named).await;
}

/// A 30-second sleep through `url` with a one-second deadline: the 504,
/// its line starting `named`, and no sleep left on the server.
async fn past_the_deadline(postgres: &Postgres, url: &str, named: &str) {
    let watcher = postgres.connect().await;
    let bounds = Bounds {
        deadline: Duration::from_secs(1),
        ..lesson_bounds()
    };
    let lesson = serve_lesson(url, bounds).await;

    let started = Instant::now();
    let (status, line) = get(lesson, "/sleep?seconds=30").await;
    let took = started.elapsed();
    assert_eq!(status, 504, "{line}");
    assert!(
        line.starts_with(named)
            && line.ends_with(" did not answer within 1 seconds; the query was cancelled\n"),
        "{line:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(1) + PATIENCE,
        "the 504 came after {took:?}"
    );
    wait_for_sleeps(&watcher, 0, Duration::from_secs(1)).await;
}
