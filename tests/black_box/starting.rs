//! How the program starts, and how it refuses to.

use std::net::TcpListener;

use crate::support::{get, run_to_exit, Exited, Server, BINARY, LISTENING_PREFIX};

/// The checks every refusal to start must pass: exit status 1, one line on
/// stderr naming the address, no panic, and no claim to be listening.
fn assert_refused(exited: &Exited, requested: &str) {
    let context = format!(
        "{BINARY} {requested}\n--- stdout:\n{}\n--- stderr:\n{}",
        exited.stdout, exited.stderr
    );
    assert_eq!(exited.status.code(), Some(1), "{context}");
    assert_eq!(exited.stderr.lines().count(), 1, "{context}");
    assert!(exited.stderr.contains(requested), "{context}");
    assert!(!exited.stderr.contains("panicked"), "{context}");
    assert!(!exited.stdout.contains("Listening"), "{context}");
}

#[tokio::test]
async fn port_zero_listens_on_a_free_port_and_prints_it() {
    let server = Server::start_with_args(&["127.0.0.1:0"]);
    assert_ne!(server.addr.port(), 0);
    assert_eq!(
        server.stdout_lines(),
        [format!("{LISTENING_PREFIX}{}", server.addr)]
    );
    // The printed port is the one that answers.
    let answer = get(&server.url("/sleep?seconds=0")).await;
    assert_eq!(answer.body, "slept for 0 seconds\n");
}

#[tokio::test]
async fn a_host_name_such_as_localhost_is_accepted() {
    let server = Server::start_with_args(&["localhost:0"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    let answer = get(&server.url("/sleep?seconds=0")).await;
    assert_eq!(answer.body, "slept for 0 seconds\n");
}

#[test]
fn a_port_already_taken_is_refused_with_one_clear_line() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("binds a port to take");
    let requested = taken.local_addr().expect("its address").to_string();
    let exited = run_to_exit(&[&requested]);
    assert_refused(&exited, &requested);
    assert!(exited.stderr.contains("in use"), "{}", exited.stderr);
}

#[test]
fn a_malformed_address_is_refused_with_one_clear_line() {
    for requested in ["nonsense", "127.0.0.1", "127.0.0.1:99999", "localhost"] {
        let exited = run_to_exit(&[requested]);
        assert_refused(&exited, requested);
    }
}

/// Without an argument the server must use 127.0.0.1:7878, the README's
/// address. No other test in this suite uses that port, but a process outside
/// it might (a reader's own `cargo run`). Then the refusal must name the
/// default address, which checks the default just as well.
#[test]
fn without_an_argument_it_listens_on_127_0_0_1_port_7878() {
    const DEFAULT: &str = "127.0.0.1:7878";
    let free = TcpListener::bind(DEFAULT).is_ok(); // the probe closes at once
    if free {
        let server = Server::start_with_args(&[]);
        assert_eq!(server.addr.to_string(), DEFAULT);
    } else {
        eprintln!("{DEFAULT} is in use outside this test: checking the refusal instead");
        assert_refused(&run_to_exit(&[]), DEFAULT);
    }
}
