//! The claim the example exists for: a waiting handler holds no thread.

use std::time::{Duration, Instant};

use futures::future::join_all;
use gotham::hyper::StatusCode;

use crate::support::{client, get, get_with, Server};

const SLEEPS: usize = 500;
const LOOPS: usize = 100;

/// The arithmetic: the requests below ask for 500 × 1 s + 100 × 2 s = 700 s
/// of sleeping. The server's tokio runtime starts one worker thread per core;
/// on a 2-core machine, a server that slept *on* its threads could serve that
/// in no less than 700 s / 2 = 350 s (on 8 cores, 88 s), and would start its
/// handlers one per thread at a time.
/// Futures let all 600 sleep at once: once the last handler has started,
/// every answer is due within 2 s. 4 s is far from both, so the bound is
/// about blocking, not about speed.
const BOUND: Duration = Duration::from_secs(4);

/// How long sending 600 requests may take. The listen queue takes the whole
/// burst of connects (`serve::bind` asks for the system's limit, not
/// tokio's 128: `burst::` checks that none waits a second), so this is
/// generous for a machine busy with other builds; a blocking server would
/// still need minutes.
const SENDING_BOUND: Duration = Duration::from_secs(15);

// Two threads for the test's own client runtime (the server is another
// process with its own runtime), so that it sends and reads in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_sleeping_requests_are_all_served_at_once() {
    let server = Server::start();
    let client = client();
    let started = Instant::now();

    let send_all = |count: usize, url: String| {
        let requests = (0..count).map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move { get_with(&client, &url).await }
        });
        tokio::spawn(join_all(requests.collect::<Vec<_>>()))
    };
    let sleeps = send_all(SLEEPS, server.url("/sleep?seconds=1"));
    let loops = send_all(LOOPS, server.url("/loop?seconds=2"));

    // Once every request is in a handler, one that needs no sleep at all
    // must still be answered ahead of the sleepers.
    server
        .wait_for_count("sleep for 1 seconds once: starting", SLEEPS, SENDING_BOUND)
        .await;
    server
        .wait_for_count(
            "sleep for one second 2 times: starting",
            LOOPS,
            SENDING_BOUND,
        )
        .await;
    let all_sleeping = Instant::now();
    let quick = get(&server.url("/sleep?seconds=0")).await;
    let quick_took = all_sleeping.elapsed();
    let finished_by_then = server.count_lines("sleep for 1 seconds once: finished")
        + server.count_lines("sleep for one second 2 times: finished");
    assert_eq!(quick.body, "slept for 0 seconds\n");
    // The last request to start sleeps at least a second more, so an answer
    // that waited for a free thread would come after all of them.
    assert!(
        finished_by_then < SLEEPS + LOOPS,
        "the zero-second request was answered only after all {} sleepers ({quick_took:?})",
        SLEEPS + LOOPS
    );

    let sleeps = sleeps.await.expect("the sleeps' task");
    let loops = loops.await.expect("the loops' task");
    let sleeping_took = all_sleeping.elapsed();
    let took = started.elapsed();

    for answer in sleeps {
        let answer = answer.expect("every sleep is answered");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.body, "slept for 1 seconds\n");
    }
    for answer in loops {
        let answer = answer.expect("every loop is answered");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
        assert_eq!(answer.body, "slept for 1 seconds\n".repeat(2));
    }
    assert!(
        sleeping_took < BOUND,
        "the last of {SLEEPS} sleeps and {LOOPS} loops was answered {sleeping_took:?} after \
         all had started; a blocking server needs minutes"
    );
    eprintln!(
        "{SLEEPS} × /sleep?seconds=1 and {LOOPS} × /loop?seconds=2 all answered in {took:?} \
         ({sleeping_took:?} after the last had started); /sleep?seconds=0 in the middle \
         took {quick_took:?}"
    );
}
