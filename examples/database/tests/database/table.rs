//! The `visits` table, made by whoever comes first: a copy of the lesson
//! whose `CREATE TABLE IF NOT EXISTS` meets another session's at the same
//! moment still counts its visit.

use std::time::{Duration, Instant};

use crate::throwaway::Postgres;
use crate::{get, lesson_bounds, serve_lesson, PATIENCE};

#[tokio::test]
async fn a_visit_whose_table_another_session_is_making_waits_for_it_and_counts() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    // Another session makes the table and holds it, uncommitted.
    let maker = postgres.connect().await;
    maker
        .batch_execute("BEGIN; CREATE TABLE visits (name text PRIMARY KEY, visits bigint NOT NULL)")
        .await
        .expect("makes the table");

    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;
    let visit = tokio::spawn(async move { get(lesson, "/visit?name=ada").await });

    // The lesson's CREATE waits on the other's entry in the catalogue.
    let watcher = postgres.connect().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE IF NOT EXISTS visits%'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lesson's CREATE never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Committed: the lesson's CREATE now finds the table made under it.
    maker.batch_execute("COMMIT").await.expect("commits");
    assert_eq!(
        visit.await.expect("the visit"),
        (200, "visit 1 by ada\n".into())
    );
}

#[tokio::test]
async fn two_fresh_copies_first_visits_at_the_same_moment_both_count_ten_rounds_in_ten() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let watcher = postgres.connect().await;
    for round in 0..10 {
        // A new database each round: no table in it yet.
        watcher
            .batch_execute(&format!("CREATE DATABASE round{round}"))
            .await
            .expect("makes a database");
        let url = postgres
            .url()
            .replace("dbname=postgres", &format!("dbname=round{round}"));
        let first = serve_lesson(&url, lesson_bounds()).await;
        let second = serve_lesson(&url, lesson_bounds()).await;
        let (one, two) = tokio::join!(
            get(first, "/visit?name=ada"),
            get(second, "/visit?name=ada")
        );
        let mut answers = [one, two];
        answers.sort();
        assert_eq!(
            answers,
            [
                (200, "visit 1 by ada\n".to_string()),
                (200, "visit 2 by ada\n".to_string())
            ],
            "round {round}"
        );
    }
}
