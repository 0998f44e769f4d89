//! The relay's `/series` and `/parallel`, and its bound on what it asks of
//! the upstream: with the real example as upstream, with stand-ins that
//! fail, hold or count on purpose, and with the relay out of descriptors in
//! a child process. Real time, as in `relay.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gotham::hyper::StatusCode;
use gotham_examples_handlers_simple_async_handlers::serve;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::relay::{
    assert_upstream_has_nothing_in_flight, start_relay, start_relay_with_turns,
    wait_for_descriptors, PATIENCE,
};
use crate::relay_example::{router, Turns, Upstream, TURNS};
use crate::support::{ask_at_once, get, get_owned, Server};

const DEADLINE: Duration = Duration::from_secs(10);

fn url(relay: SocketAddr, route: &str, seconds: u64, times: u64) -> String {
    format!("http://{relay}/{route}?seconds={seconds}&times={times}")
}

#[tokio::test]
async fn parallel_asks_all_at_once_and_series_one_after_another() {
    let upstream = Server::start();
    let relay = start_relay(&upstream.addr.to_string(), DEADLINE).await;

    let timed = |url: String| async move {
        let started = Instant::now();
        let answer = get(&url).await;
        (answer.status, answer.body, started.elapsed())
    };
    let (
        (parallel_status, parallel_body, parallel_took),
        (series_status, series_body, series_took),
    ) = tokio::join!(
        timed(url(relay, "parallel", 1, 5)),
        timed(url(relay, "series", 1, 3)),
    );

    assert_eq!(parallel_status, StatusCode::OK);
    assert_eq!(parallel_body, "slept for 1 seconds\n".repeat(5));
    // All at once: about one second. One after another would take five.
    assert!(
        parallel_took >= Duration::from_secs(1) && parallel_took < Duration::from_secs(4),
        "five one-second sleeps in parallel took {parallel_took:?}"
    );
    assert_eq!(series_status, StatusCode::OK);
    assert_eq!(series_body, "slept for 1 seconds\n".repeat(3));
    assert!(
        series_took >= Duration::from_secs(3) && series_took < Duration::from_secs(3) + PATIENCE,
        "three one-second sleeps in series took {series_took:?}"
    );
    upstream
        .wait_for_count("sleep for 1 seconds once: finished", 8, PATIENCE)
        .await;
}

/// A stand-in upstream that reads each request's head on a task of its
/// own, and hands the connection, with its arrival number (1 for the
/// first), to `answer`.
async fn numbered_stand_in<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(usize, TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("an address");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        let mut arrivals = 0;
        while let Ok((mut stream, _)) = listener.accept().await {
            arrivals += 1;
            let arrival = arrivals;
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                answer(arrival, stream).await;
            });
        }
    });
    addr
}

/// Answers with `status` and `body`, and closes the connection.
async fn answer_with(mut stream: TcpStream, status: &str, body: &str) {
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
}

/// Never answers; returns once the relay has closed the connection.
async fn hold_until_closed(mut stream: TcpStream) {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
}

/// Waits until `count` reaches `wanted`; `what` says what was awaited.
async fn wait_for(count: &AtomicUsize, wanted: usize, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while count.load(Ordering::SeqCst) < wanted {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {wanted} after {PATIENCE:?}",
            count.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn in_parallel_the_first_failure_ends_the_whole_and_drops_the_other_requests() {
    let closed = Arc::new(AtomicUsize::new(0));
    let upstream = numbered_stand_in({
        let closed = Arc::clone(&closed);
        move |arrival, stream| {
            let closed = Arc::clone(&closed);
            async move {
                if arrival == 3 {
                    answer_with(stream, "503 Service Unavailable", "").await;
                } else {
                    hold_until_closed(stream).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
    .await;
    let relay = start_relay(&upstream.to_string(), DEADLINE).await;

    // The four others are never answered: only dropping them ends them.
    let answer = tokio::time::timeout(PATIENCE, get(&url(relay, "parallel", 1, 5)))
        .await
        .expect("the failure should end the whole at once, not at the deadline");
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    // Which of the five met the failing arrival depends on who got there
    // third; the line says which it was.
    let failed_request = (1..=5).find(|request| {
        answer.body
            == format!(
                "request {request} of 5: upstream {upstream} answered 503 Service Unavailable\n"
            )
    });
    assert!(failed_request.is_some(), "{:?}", answer.body);
    wait_for(&closed, 4, "connections of the other requests closed").await;
}

#[tokio::test]
async fn in_series_the_first_failure_ends_the_whole_and_the_rest_are_never_asked() {
    let arrivals = Arc::new(AtomicUsize::new(0));
    let upstream = numbered_stand_in({
        let arrivals = Arc::clone(&arrivals);
        move |arrival, stream| {
            arrivals.fetch_add(1, Ordering::SeqCst);
            async move {
                if arrival == 3 {
                    answer_with(stream, "503 Service Unavailable", "").await;
                } else {
                    answer_with(stream, "200 OK", "slept for 1 seconds\n").await;
                }
            }
        }
    })
    .await;
    let relay = start_relay(&upstream.to_string(), DEADLINE).await;

    let answer = get(&url(relay, "series", 1, 5)).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        answer.body,
        format!("request 3 of 5: upstream {upstream} answered 503 Service Unavailable\n")
    );
    // The answer comes only once the loop has ended: a fourth request
    // would have arrived before it.
    assert_eq!(arrivals.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_client_that_hangs_up_on_parallel_makes_the_upstream_drop_every_sleep() {
    let upstream = Server::start();
    let baseline = upstream.open_descriptors();
    let relay = start_relay(&upstream.addr.to_string(), DEADLINE).await;

    let mut client = TcpStream::connect(relay).await.expect("connects");
    let request = "GET /parallel?seconds=30&times=4 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("sends");
    upstream
        .wait_for_count("sleep for 30 seconds once: starting", 4, PATIENCE)
        .await;
    drop(client);

    wait_for_descriptors(
        &upstream,
        baseline,
        "the hang-up did not reach all four of the upstream's requests",
    )
    .await;
    assert_eq!(
        upstream.count_lines("sleep for 30 seconds once: finished"),
        0
    );
    assert_upstream_has_nothing_in_flight(upstream).await;
}

#[tokio::test]
async fn the_upstream_never_has_more_of_the_relays_requests_than_its_turns() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let upstream = numbered_stand_in({
        let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
        move |_arrival, stream| {
            let (in_flight, most) = (Arc::clone(&in_flight), Arc::clone(&most));
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                // Counted out before the answer leaves, so that the relay
                // can take the turn again only after this.
                in_flight.fetch_sub(1, Ordering::SeqCst);
                answer_with(stream, "200 OK", "slept for 0 seconds\n").await;
            }
        }
    })
    .await;
    let turns = 3;
    let relay = start_relay_with_turns(&upstream.to_string(), DEADLINE, turns).await;

    // Twelve single requests and two of five at once: 22 for 3 turns.
    let mut clients: Vec<_> = (0..12)
        .map(|_| tokio::spawn(get_owned(format!("http://{relay}/relay?seconds=0"))))
        .collect();
    for _ in 0..2 {
        clients.push(tokio::spawn(get_owned(url(relay, "parallel", 0, 5))));
    }
    for client in clients {
        let (status, body) = client.await.expect("the client's task").expect("an answer");
        assert_eq!(status, StatusCode::OK, "{body:?}");
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        turns,
        "the most requests the upstream had from the relay at once"
    );
}

#[tokio::test]
async fn a_request_that_waits_past_the_deadline_for_a_turn_gets_a_503_that_says_why() {
    let arrivals = Arc::new(AtomicUsize::new(0));
    let upstream = numbered_stand_in({
        let arrivals = Arc::clone(&arrivals);
        move |_arrival, stream| {
            arrivals.fetch_add(1, Ordering::SeqCst);
            hold_until_closed(stream)
        }
    })
    .await;
    let deadline = Duration::from_secs(1);
    let relay = start_relay_with_turns(&upstream.to_string(), deadline, 1).await;
    let relay_url = format!("http://{relay}/relay?seconds=5");

    // The first takes the one turn and holds it until its own deadline.
    let first = tokio::spawn(get_owned(relay_url.clone()));
    wait_for(&arrivals, 1, "the first request at the upstream").await;
    // Of the next two, one gets the turn when the first gives it back (and
    // then a 504 of its own); the other is still waiting a deadline after
    // it began, while the turn is held again.
    let second = tokio::spawn(get_owned(relay_url.clone()));
    let third = tokio::spawn(get_owned(relay_url));

    let answer = |client: tokio::task::JoinHandle<Result<(StatusCode, String), String>>| async {
        client.await.expect("the client's task").expect("an answer")
    };
    let timed_out = format!("upstream {upstream} did not answer within 1 seconds\n");
    assert_eq!(
        answer(first).await,
        (StatusCode::GATEWAY_TIMEOUT, timed_out.clone())
    );
    let no_turn = format!(
        "the relay already has as many requests at upstream {upstream} as it allows, \
         and none ended within 1 seconds\n"
    );
    let mut others = vec![answer(second).await, answer(third).await];
    others.sort();
    assert_eq!(
        others,
        [
            (StatusCode::SERVICE_UNAVAILABLE, no_turn),
            (StatusCode::GATEWAY_TIMEOUT, timed_out)
        ]
    );
    assert_eq!(
        arrivals.load(Ordering::SeqCst),
        2,
        "only two ever had a turn"
    );
}

#[tokio::test]
async fn bad_times_get_a_400_that_says_what_times_must_be() {
    let relay = start_relay("127.0.0.1:9", DEADLINE).await;
    for route in ["series", "parallel"] {
        for query in [
            "?seconds=1",
            "?seconds=1&times=",
            "?seconds=1&times=0",
            "?seconds=1&times=11",
            "?seconds=1&times=1000000",
            "?seconds=1&times=-1",
            "?seconds=1&times=2.5",
            "?times=2",
        ] {
            let answer = get(&format!("http://{relay}/{route}{query}")).await;
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{route}{query}");
            assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
            assert!(
                answer.body.contains("`times`, a whole number from 1 to 10")
                    && answer.body.contains("`seconds`")
                    && answer.body.ends_with('\n')
                    && answer.body.lines().count() == 1,
                "{route}{query}: {:?}",
                answer.body
            );
        }
    }
}

/// Set in a child run of this test binary: the address of the upstream the
/// relay it serves should ask.
const CHILD_UPSTREAM: &str = "SEVERAL_AT_ONCE_CHILD_UPSTREAM";

/// Not a test of its own: in a child run started by the test below, with
/// the descriptor limit that test gives it, serves the relay until killed.
/// In an ordinary run it returns at once.
#[tokio::test]
async fn child_serves_the_relay() {
    let Ok(upstream) = std::env::var(CHILD_UPSTREAM) else {
        return;
    };
    let upstream = Upstream::new(&upstream, DEADLINE).expect("a usable upstream address");
    let turns = Turns::new(TURNS, DEADLINE);
    serve::listen_and_serve("127.0.0.1:0", router(upstream, turns)).await;
}

#[tokio::test]
async fn out_of_descriptors_the_relay_answers_503_and_never_blames_the_upstream() {
    let upstream = Server::start();
    let mut this_binary = Command::new(std::env::current_exe().expect("the test binary's path"));
    this_binary.env(CHILD_UPSTREAM, upstream.addr.to_string());
    let relay = Server::start_program(
        this_binary,
        &[
            "--exact",
            "several_at_once::child_serves_the_relay",
            "--nocapture",
        ],
        Some(64),
    );

    // A hundred clients at once, each wanting two descriptors in the relay
    // (its own connection and the relay's to the upstream): far more than
    // the relay has.
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let addr = relay.addr;
            tokio::spawn(async move { ask_at_once(addr, "/relay?seconds=1").await })
        })
        .collect();
    let out_of_descriptors = format!(
        "the relay is out of descriptors and cannot open a connection to upstream {}: ",
        upstream.addr
    );
    let (mut served, mut refused) = (0, 0);
    for client in clients {
        let answer = tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("an answer within 30 s")
            .expect("the client's task");
        match answer {
            Ok((200, body)) if body == "slept for 1 seconds\n" => served += 1,
            Ok((503, body)) if body.starts_with(&out_of_descriptors) => refused += 1,
            other => panic!("neither served nor refused for want of descriptors: {other:?}"),
        }
    }
    assert!(
        refused > 0,
        "the relay never ran out of descriptors ({served} served): the test proves nothing"
    );
}
