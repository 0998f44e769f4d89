//! Ctrl-C and SIGTERM: short requests finish, long ones are dropped, and the
//! program exits by itself with status 0.
//!
//! This runs in real time, through the binary's own 8-second grace period;
//! the other tests run meanwhile.

use std::time::Duration;

use gotham::hyper::StatusCode;

use std::io::{BufRead, BufReader, Read};

use crate::support::{get_owned, spawn_binary, Server, LISTENING_PREFIX};

/// The shipped grace period, `Limits::default()` in `src/serve/listen.rs`.
const GRACE: Duration = Duration::from_secs(8);

#[tokio::test]
async fn sigterm_lets_a_short_sleep_finish_drops_a_long_one_and_exits_0() {
    let mut server = Server::start();
    let short = tokio::spawn(get_owned(server.url("/sleep?seconds=2")));
    let long = tokio::spawn(get_owned(server.url("/sleep?seconds=3600")));
    for started in [
        "sleep for 2 seconds once: starting",
        "sleep for 3600 seconds once: starting",
    ] {
        server
            .wait_for_count(started, 1, Duration::from_secs(5))
            .await;
    }

    server.send_signal(libc::SIGTERM);
    server
        .wait_for_count(
            "Shutting down: 2 requests in flight, waiting up to 8 seconds for them to finish",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "a new connection was accepted after shutdown began"
    );
    let short = short.await.expect("the short request's task");
    assert_eq!(
        short,
        Ok((StatusCode::OK, "slept for 2 seconds\n".to_string()))
    );

    let status = server.wait_for_exit(GRACE + Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(long.await.expect("the long request's task").is_err());
    // The reader thread may still be catching up with the last line.
    server
        .wait_for_count(
            "Shut down: 1 unfinished request dropped",
            1,
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(
        server.count_lines("sleep for 3600 seconds once: finished"),
        0
    );
    assert_eq!(server.count_lines("sleep for 2 seconds once: finished"), 1);
}

#[tokio::test]
async fn a_second_ctrl_c_stops_at_once_with_status_130() {
    let mut server = Server::start();
    let long = tokio::spawn(get_owned(server.url("/sleep?seconds=3600")));
    server
        .wait_for_count(
            "sleep for 3600 seconds once: starting",
            1,
            Duration::from_secs(5),
        )
        .await;
    server.send_signal(libc::SIGINT);
    server
        .wait_for_count(
            "Shutting down: 1 request in flight, waiting up to 8 seconds for it to finish",
            1,
            Duration::from_secs(5),
        )
        .await;
    server.send_signal(libc::SIGINT);
    // Far less than the grace period: the second Ctrl-C did not wait.
    let status = server.wait_for_exit(GRACE / 2).await;
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(long.await.expect("the request's task").is_err());
    server
        .wait_for_count(
            "Stopped at once: 1 unfinished request dropped",
            1,
            Duration::from_secs(5),
        )
        .await;
}

/// How many times the race below is run. With the handlers installed just
/// after the `Listening` line, 13 of 50 such tries ended by the default
/// action of SIGINT (exit by signal, no "Shut down" line); twenty tries
/// catch that more than 99 times in 100.
const RACES: usize = 20;

#[test]
fn ctrl_c_the_instant_listening_appears_still_shuts_down_gracefully() {
    for _ in 0..RACES {
        let (mut child, command) = spawn_binary(&["127.0.0.1:0"], None);
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).expect("reads stdout");
        assert!(
            first_line.starts_with(LISTENING_PREFIX),
            "{command}: {first_line:?}"
        );
        // No sleep, no polling: the signal follows the line as closely as
        // this process can send it.
        // SAFETY: kill only sends a signal to a child not yet waited for.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        assert_eq!(sent, 0, "cannot signal {command}");
        let status = child.wait().expect("waits for the server");
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        assert_eq!(
            (status.code(), rest.as_str()),
            (
                Some(0),
                "Shutting down: 0 requests in flight, waiting up to 8 seconds for them to finish\n\
                 Shut down: 0 unfinished requests dropped\n"
            ),
            "{command} ended {status}; stderr: {stderr}"
        );
    }
}
