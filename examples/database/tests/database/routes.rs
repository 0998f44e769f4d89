//! The routes answer as the example does, with the database doing the
//! waiting and keeping the count; and a database that is not there is
//! answered with a line, never a crash.

use std::time::{Duration, Instant};

use crate::example::{Bounds, Database, DEFAULT_DATABASE_URL};
use crate::throwaway::Postgres;
use crate::{ask, get, lesson_bounds, serve_lesson, PATIENCE};

#[path = "../../../../tests/black_box/log_lines.rs"]
mod log_lines;
use log_lines::Written;

#[tokio::test]
async fn sleep_answers_the_examples_line_after_the_databases_wait() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;

    let started = Instant::now();
    let answer = get(lesson, "/sleep?seconds=1").await;
    let took = started.elapsed();
    assert_eq!(answer, (200, "slept for 1 seconds\n".to_string()));
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(1) + PATIENCE,
        "a one-second pg_sleep answered in {took:?}"
    );
}

#[tokio::test]
async fn visits_are_counted_across_requests_and_a_restart_of_the_program() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let first = serve_lesson(&postgres.url(), lesson_bounds()).await;
    assert_eq!(
        get(first, "/visit?name=ada").await,
        (200, "visit 1 by ada\n".into())
    );
    assert_eq!(
        get(first, "/visit?name=ada").await,
        (200, "visit 2 by ada\n".into())
    );
    // A name that would end the statement if it were pasted into the SQL
    // text is only a name when bound. (%27 is ', %3B is ;, %20 a space.)
    let sneaky = "/visit?name=x%27%3B%20DROP%20TABLE%20visits%3B%20--";
    assert_eq!(
        get(first, sneaky).await,
        (200, "visit 1 by x'; DROP TABLE visits; --\n".into())
    );

    // Another program, with a pool of its own, on the same database: the
    // count was kept there, not in the first program's memory.
    let second = serve_lesson(&postgres.url(), lesson_bounds()).await;
    assert_eq!(
        get(second, "/visit?name=ada").await,
        (200, "visit 3 by ada\n".into())
    );
    assert_eq!(
        get(second, "/visit?name=bo").await,
        (200, "visit 1 by bo\n".into())
    );
}

#[tokio::test]
async fn a_bad_seconds_or_name_gets_the_400_and_its_line() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;
    let seconds_400 = "the query string needs `seconds`, given once, as a whole number of \
        seconds from 0 to 18446744073709551615, for example ?seconds=5\n";
    for query in [
        "",
        "?seconds=",
        "?seconds=-1",
        "?seconds=1.5",
        "?seconds=abc",
        "?second=1",
    ] {
        let path = format!("/sleep{query}");
        assert_eq!(
            get(lesson, &path).await,
            (400, seconds_400.into()),
            "{path}"
        );
    }
    let name_400 = "the query string needs `name`, given once, 1 to 64 characters with no \
        control characters, for example ?name=ada\n";
    let too_long = format!("?name={}", "a".repeat(65));
    for query in [
        "",
        "?name=",
        "?name=a%00b",
        "?name=a%0Ab",
        too_long.as_str(),
    ] {
        let path = format!("/visit{query}");
        assert_eq!(get(lesson, &path).await, (400, name_400.into()), "{path}");
    }
    // The longest name allowed is counted.
    let longest = format!("/visit?name={}", "é".repeat(64));
    assert_eq!(get(lesson, &longest).await.0, 200);
}

#[tokio::test]
async fn a_stopped_database_gets_a_line_naming_it_and_the_program_serves_again_once_it_is_back() {
    let Some(mut postgres) = Postgres::start().await else {
        return;
    };
    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;
    assert_eq!(get(lesson, "/sleep?seconds=0").await.0, 200);

    postgres.stop();
    let (status, line) = get(lesson, "/sleep?seconds=0").await;
    assert_eq!(status, 503, "{line}");
    assert!(
        line.starts_with("cannot connect to database postgres at /") && line.ends_with('\n'),
        "{line:?}"
    );
    assert_eq!(line.lines().count(), 1, "{line:?}");
    assert!(line.contains("No such file or directory"), "{line:?}");
    assert_eq!(get(lesson, "/visit?name=ada").await.0, 503);
    // What does not need the database is answered as before.
    assert_eq!(get(lesson, "/sleep?seconds=x").await.0, 400);

    postgres.start_again().await;
    assert_eq!(
        get(lesson, "/sleep?seconds=0").await,
        (200, "slept for 0 seconds\n".into())
    );
}

#[tokio::test]
async fn a_database_that_cannot_be_reached_is_named_without_its_password() {
    // Port 1 on loopback: nothing listens there, so connecting is refused
    // at once. No PostgreSQL is needed for this test.
    let url = "postgresql://alice:hunter2secret@127.0.0.1:1/shop";
    let lesson = serve_lesson(url, lesson_bounds()).await;
    let (status, line) = get(lesson, "/sleep?seconds=1").await;
    assert_eq!(status, 503);
    assert_eq!(
        line,
        "cannot connect to database shop at 127.0.0.1:1 as alice: Connection refused (os error 111) \
         (DATABASE_URL names the database)\n"
    );
    assert!(!line.contains("hunter2secret"));

    // A URL that cannot be read is refused, without echoing it either.
    let bad_port = "postgresql://alice:hunter2secret@localhost:notaport/shop";
    let reason = Database::new(bad_port, lesson_bounds())
        .err()
        .expect("a port that is not a number is refused");
    assert!(!reason.contains("hunter2secret"), "{reason}");
}

#[test]
fn the_default_database_is_the_local_socket_as_the_system_user() {
    let bounds = Bounds {
        connections: 1,
        ..lesson_bounds()
    };
    let database = Database::new(DEFAULT_DATABASE_URL, bounds).expect("the default is a URL");
    let user = whoami::username().expect("a user name");
    assert_eq!(
        database.name(),
        format!("database {user} at /var/run/postgresql/.s.PGSQL.5432 as {user}")
    );
}

/// The head's lines other than `date` and `x-request-id`, which differ
/// from one answer to the next, sorted: hyper may write the same headers
/// in another order.
fn steady_lines(head: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|line| {
            let name = line.split(':').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("date") && !name.eq_ignore_ascii_case("x-request-id")
        })
        .collect();
    lines.sort_unstable();
    lines
}

#[tokio::test]
async fn head_is_answered_as_get_without_a_body_and_a_404_or_405_says_why() {
    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;

    for path in ["/sleep?seconds=0", "/sleep?seconds=-1", "/slep?seconds=0"] {
        let (get_head, get_body) = ask(lesson, "GET", path).await;
        let (head_head, head_body) = ask(lesson, "HEAD", path).await;
        assert!(
            get_head.contains(&format!("content-length: {}", get_body.len())),
            "GET {path}: {get_head:?}"
        );
        assert_eq!(
            steady_lines(&head_head),
            steady_lines(&get_head),
            "HEAD {path}"
        );
        assert_eq!(head_body, "", "HEAD {path} sent body bytes");
    }

    assert_eq!(
        get(lesson, "/slep?seconds=0").await,
        (
            404,
            "there is nothing at /slep: the paths here are /sleep and /visit\n".into()
        )
    );
    let (head, body) = ask(lesson, "POST", "/visit?name=ada").await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head:?}");
    assert!(
        head.contains("allow: GET\r\n") && head.contains("allow: HEAD"),
        "{head:?}"
    );
    assert_eq!(
        body,
        "POST is not allowed on /visit: it takes GET or HEAD\n"
    );
}

/// The lesson's pipeline starts with the request log: with the subscriber
/// `RUST_LOG=request_log=info` makes, set for this test's thread (where the
/// lesson's tasks run), a one-second `pg_sleep` logs its second as waiting.
#[tokio::test]
async fn the_lessons_router_logs_each_request_with_its_wait() {
    use gotham_examples_handlers_simple_async_handlers::request_log;
    use tracing_subscriber::layer::SubscriberExt;

    let Some(postgres) = Postgres::start().await else {
        return;
    };
    let written = Written::default();
    let subscriber = tracing_subscriber::registry()
        .with(request_log::layer(written.clone()))
        .with(request_log::filter_from("request_log=info").expect("a filter"));
    let _guard = tracing::subscriber::set_default(subscriber);
    let lesson = serve_lesson(&postgres.url(), lesson_bounds()).await;

    let answer = get(lesson, "/sleep?seconds=1").await;
    assert_eq!(answer, (200, "slept for 1 seconds\n".to_string()));
    let lines = written.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert!(
        line.starts_with("GET /sleep?seconds=1 200 OK wall=1."),
        "{line}"
    );
    let busy = line
        .split(' ')
        .find_map(|field| field.strip_prefix("busy="))
        .unwrap_or_else(|| panic!("{line}"));
    // Microseconds, or a few milliseconds on a loaded machine: far from
    // the second the query took.
    let small = busy.ends_with("µs")
        || busy
            .strip_suffix("ms")
            .and_then(|milliseconds| milliseconds.parse::<f64>().ok())
            .is_some_and(|milliseconds| milliseconds < 100.0);
    assert!(small, "{line}");
}
