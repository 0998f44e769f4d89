//! A burst of clients connecting at once, against the binary as most systems
//! start it (a soft limit of 1,024 open files, a higher hard one): none of
//! them waits a second for a full listen queue or for descriptors.
//!
//! A client whose connection finds the listen queue full has its SYN (or
//! its last ACK) dropped, and its system tries again a second later; a
//! server out of descriptors leaves the rest of the burst in the queue
//! until requests finish. Either way some clients get their first byte a
//! second or more after their one-second sleep should have ended. Their
//! connect may well look done (a dropped last ACK looks connected from the
//! client's side), so the time measured is to the answer's first byte.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Server;

/// Clients in the burst: more than a queue of 128 holds, and more than a
/// soft limit of 1,024 descriptors lets the server hold.
const CLIENTS: usize = 2_000;
/// The limits most Linux systems start a process with: the soft one is
/// enforced, and the process may raise it to the hard one.
const SOFT_LIMIT: u64 = 1_024;
const HARD_LIMIT: u64 = 4_096;
/// How long each request sleeps on the server.
const SLEEP: Duration = Duration::from_secs(1);
/// A client that waited for a SYN to be sent again, or in the queue for a
/// descriptor, gets its first byte at least this much after its sleep.
const WAITED: Duration = Duration::from_secs(1);

/// One client: connects, sends `/sleep?seconds=1` at once, and reads the
/// whole answer. Returns how long after its connect began the first byte
/// came, and whether the answer was the 200 with its line.
async fn one_client(addr: std::net::SocketAddr) -> Result<Duration, String> {
    let began = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .write_all(b"GET /sleep?seconds=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut answer = vec![0; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|error| format!("first byte: {error}"))?;
    let first_byte = began.elapsed();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|error| format!("read: {error}"))?;
    let answer = String::from_utf8_lossy(&answer);
    if answer.starts_with("HTTP/1.1 200 OK\r\n")
        && answer.ends_with("\r\n\r\nslept for 1 seconds\n")
    {
        Ok(first_byte)
    } else {
        Err(format!("not the 200: {answer:?}"))
    }
}

/// Raises this test process's own soft limit to its hard one (its clients
/// need a descriptor each too), and returns the limit now in force.
fn raise_own_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only touch the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return raised.rlim_cur;
        }
    }
    limit.rlim_cur
}

/// Says why the burst did not run, on the terminal itself (the test runner
/// hides what a passing test prints); under CI, where the claim must be
/// checked, fails instead.
fn skip(why: &str) {
    use std::io::Write;
    if std::env::var_os("CI").is_some() {
        panic!("the burst test cannot run: {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: the burst test did not run: {why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_two_thousand_clients_is_answered_with_none_waiting_a_second_more() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    if somaxconn < 1_100 {
        return skip(&format!(
            "net.core.somaxconn is {somaxconn} here, so no listen queue can hold a burst of \
             {CLIENTS} (`sysctl -w net.core.somaxconn=4096` to run this test)"
        ));
    }
    let own_limit = raise_own_descriptor_limit();
    if own_limit < CLIENTS as u64 + 200 {
        return skip(&format!(
            "this test process may open {own_limit} descriptors, too few for {CLIENTS} \
             clients (raise the hard limit, `ulimit -Hn`, to run this test)"
        ));
    }

    let mut server = Server::start_with_descriptor_limits(SOFT_LIMIT, HARD_LIMIT);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(one_client(server.addr)))
        .collect();
    let mut first_bytes = Vec::with_capacity(CLIENTS);
    let mut failed = Vec::new();
    for client in clients {
        match client.await.expect("a client's task") {
            Ok(first_byte) => first_bytes.push(first_byte),
            Err(why) => failed.push(why),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} clients got no answer: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );

    first_bytes.sort();
    let waited = first_bytes
        .iter()
        .filter(|first_byte| **first_byte >= SLEEP + WAITED)
        .count();
    let at = |quantile: f64| first_bytes[((CLIENTS - 1) as f64 * quantile) as usize];
    let summary = format!(
        "first bytes after {:?} (median), {:?} (p99), {:?} (slowest)",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert_eq!(
        waited, 0,
        "{waited} of {CLIENTS} clients got their first byte {WAITED:?} or more after their \
         {SLEEP:?} sleep: a full listen queue (a SYN sent again) or a server out of \
         descriptors; {summary}"
    );
    eprintln!("{CLIENTS} clients at once, all answered; {summary}");
    // The raise worked, so it said nothing.
    let stderr = server.stop_for_stderr().await;
    assert_eq!(
        stderr, "",
        "a descriptor limit raised without a hitch printed a line"
    );
}
