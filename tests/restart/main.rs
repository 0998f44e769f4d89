//! A restart under steady load, and the listening socket a service manager
//! hands over. The test plays the service manager: it holds a listening
//! socket and starts the example with it at descriptor 3, as systemd does,
//! while clients keep arriving, each on a new connection; it stops the
//! example with SIGTERM and starts a new one on the same socket.
//!
//! A test binary of its own: each child gets the socket at descriptor 3
//! with close-on-exec cleared, and a test process that starts children
//! copies its descriptors into every one until it replaces itself, so these
//! tests would hand their socket to the children of tests beside them (a
//! flake of that kind is in docs/maintaining.md). The copy to descriptor 3 is
//! made in the child only, and `LISTEN_PID` is set by a shell that then
//! replaces itself with the example (`sh -c 'LISTEN_PID=$$ exec ...'`), so
//! nothing changes the environment of this multi-threaded process.
//!
//! Every wait is for an event (a line printed, a client sent, a process
//! gone), bounded by a timeout; none guesses how fast the machine is.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::ask_at_once;

// The black-box tests' helpers; this binary uses only the raw client.
#[allow(dead_code)]
#[path = "../black_box/support.rs"]
mod support;

const BINARY: &str = env!("CARGO_BIN_EXE_gotham_examples_handlers_simple_async_handlers");
const LISTENING_PREFIX: &str = "Listening for requests at http://";
/// Generous: the machine is shared, and these bound waits, not speed.
const PATIENCE: Duration = Duration::from_secs(30);
/// One new client every 10 ms: 100 a second, each asking for a second.
const ARRIVAL_EVERY: Duration = Duration::from_millis(10);

/// Makes the shell that starts the example set `LISTEN_PID` to its own
/// id, which `exec` hands on to the example.
const WITH_OWN_PID: &str = "LISTEN_PID=$$ exec \"$0\" \"$@\"";

/// What to put at descriptor 3 of the child.
#[derive(Clone, Copy)]
enum AtThree {
    /// Whatever this descriptor is, as a service manager would.
    Descriptor(RawFd),
    /// Nothing: descriptor 3 closed.
    Nothing,
}

/// The example in a child process, with each stdout line and when it was
/// read.
struct Example {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Ends once the child's stdout closes, with every line in `lines`.
    stdout_reader: Option<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
    /// Ends once the child's stderr closes, with all of it in `stderr`.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Example {
    /// Starts the example with `args`, `LISTEN_FDS` set to `listen_fds`
    /// and `LISTEN_PID` to the example's own id (unless `listen_fds` is
    /// `None`), and `at_three` at descriptor 3.
    fn start(args: &[&str], listen_fds: Option<&str>, at_three: Option<AtThree>) -> Example {
        let mut command = match listen_fds {
            Some(count) => {
                let mut command = Command::new("sh");
                command
                    .args(["-c", WITH_OWN_PID, BINARY])
                    .env("LISTEN_FDS", count);
                command
            }
            None => {
                let mut command = Command::new(BINARY);
                command.env_remove("LISTEN_FDS");
                command
            }
        };
        command.env_remove("LISTEN_PID");
        if let Some(at_three) = at_three {
            // SAFETY: runs in the forked child before exec, and makes only
            // `dup2`, `fcntl` and `close` calls, which are safe there.
            unsafe {
                command.pre_exec(move || put_at_three(at_three));
            }
        }
        command.args(args);
        Example::spawn(command)
    }

    /// Runs `command` with its output piped to readers.
    fn spawn(mut command: Command) -> Example {
        // A developer's own `RUST_LOG` would add lines to stderr.
        command.env_remove("RUST_LOG");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("piped");
        let mut child_stderr = child.stderr.take().expect("piped");
        let stdout_reader = std::thread::spawn({
            let lines = Arc::clone(&lines);
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            }
        });
        let stderr_reader = std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut text = String::new();
                let _ = child_stderr.read_to_string(&mut text);
                stderr.lock().unwrap().push_str(&text);
            }
        });
        Example {
            child,
            lines,
            stdout_reader: Some(stdout_reader),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// When the first line starting with `prefix` was read, and the line.
    async fn line_starting(&mut self, prefix: &str) -> (Instant, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found =
                self.lines.lock().unwrap().iter().find_map(|(when, line)| {
                    line.starts_with(prefix).then(|| (*when, line.clone()))
                });
            if let Some(found) = found {
                return found;
            }
            let exited = self.child.try_wait().expect("the child's status");
            if exited.is_some() {
                // Its last lines may still be on their way to `lines`.
                if let Some(reader) = self.stdout_reader.take() {
                    reader.join().expect("the stdout reader");
                    continue;
                }
            }
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "no line `{prefix}...` ({exited:?}): stdout {:?}, stderr {:?}",
                self.lines(),
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The address in the `Listening` line, and when the line came.
    async fn listening(&mut self) -> (Instant, SocketAddr) {
        let (when, line) = self.line_starting(LISTENING_PREFIX).await;
        let addr = line[LISTENING_PREFIX.len()..]
            .parse()
            .unwrap_or_else(|_| panic!("an address in {line:?}"));
        (when, addr)
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().map(|(_, line)| line.clone()).collect()
    }

    fn terminate(&self) {
        // SAFETY: sends a signal to a child of this process, which has not
        // been waited for, so its id is still its own.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM could not be sent");
    }

    /// Waits for the process to end; its status and what it wrote on stderr.
    async fn exited(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                // The reader has the rest of stderr once the pipe closes.
                if let Some(reader) = self.stderr_reader.take() {
                    reader.join().expect("the stderr reader");
                }
                return (status, self.stderr.lock().unwrap().clone());
            }
            assert!(
                Instant::now() < deadline,
                "still running after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In the forked child: `at_three` to descriptor 3, close-on-exec cleared.
fn put_at_three(at_three: AtThree) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptor numbers, in the child.
    let done = unsafe {
        match at_three {
            AtThree::Nothing => {
                libc::close(3);
                0
            }
            // `dup2` onto itself would keep the flag: clear it by hand.
            AtThree::Descriptor(3) => libc::fcntl(3, libc::F_SETFD, 0),
            AtThree::Descriptor(fd) => libc::dup2(fd, 3),
        }
    };
    if done == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The service manager's listening socket, on a port the system picks,
/// with a queue long enough for every client that arrives while no
/// process accepts: 1,024, ten seconds of this test's arrivals. systemd's
/// `Backlog=` defaults to the system's limit, as `serve::bind` asks.
fn managers_socket() -> (socket2::Socket, SocketAddr) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    socket.bind(&any.into()).expect("binds");
    socket.listen(1024).expect("listens");
    let addr = socket.local_addr().expect("bound").as_socket().expect("IP");
    (socket, addr)
}

/// One client: when it started to connect, and how it ended (`None` while
/// it waits).
struct Client {
    sent: Instant,
    outcome: Option<Result<(), String>>,
}

/// Clients arriving at a steady rate, each on a new connection with one
/// `GET /sleep?seconds=1`.
struct Load {
    clients: Arc<Mutex<Vec<Client>>>,
    stop: Arc<AtomicBool>,
    arriving: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let clients = Arc::new(Mutex::new(Vec::<Client>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let arriving = tokio::spawn({
            let clients = Arc::clone(&clients);
            let stop = Arc::clone(&stop);
            async move {
                let mut every = tokio::time::interval(ARRIVAL_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !stop.load(Ordering::SeqCst) {
                    every.tick().await;
                    let index = {
                        let mut clients = clients.lock().unwrap();
                        clients.push(Client {
                            sent: Instant::now(),
                            outcome: None,
                        });
                        clients.len() - 1
                    };
                    let clients = Arc::clone(&clients);
                    tokio::spawn(async move {
                        let outcome = ask(addr).await;
                        clients.lock().unwrap()[index].outcome = Some(outcome);
                    });
                }
            }
        });
        Load {
            clients,
            stop,
            arriving,
        }
    }

    /// Waits until `count` clients were sent after `since`.
    async fn sent_after(&self, since: Instant, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sent = self.count(|client| client.sent > since);
            if sent >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sent} clients sent, not {count}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn count(&self, which: impl Fn(&Client) -> bool) -> usize {
        self.clients
            .lock()
            .unwrap()
            .iter()
            .filter(|c| which(c))
            .count()
    }

    /// Stops new arrivals and waits until every client has its outcome.
    async fn finish(mut self) -> Vec<Client> {
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.arriving).await.expect("the arrivals");
        let deadline = Instant::now() + PATIENCE;
        while self.count(|client| client.outcome.is_none()) > 0 {
            assert!(Instant::now() < deadline, "clients still waiting");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::mem::take(&mut *self.clients.lock().unwrap())
    }
}

/// One request on a new connection: `Ok` if answered 200 with the body.
async fn ask(addr: SocketAddr) -> Result<(), String> {
    let asked = tokio::time::timeout(PATIENCE, ask_at_once(addr, "/sleep?seconds=1")).await;
    match asked {
        Ok(Ok((200, body))) if body == "slept for 1 seconds\n" => Ok(()),
        Ok(Ok(answer)) => Err(format!("answered {answer:?}")),
        Ok(Err(reason)) => Err(reason),
        Err(_) => Err(format!("no answer within {PATIENCE:?}")),
    }
}

/// What a restart under load came to: every client, and the gap between
/// the old process's `Shutting down` and the new one's start.
struct Restart {
    clients: Vec<Client>,
    shutting_down: Instant,
    new_started: Instant,
}

impl Restart {
    /// Clients sent after the old process stopped accepting (it prints
    /// `Shutting down` after closing its listener) and before the new one
    /// was even started.
    fn sent_in_the_gap(&self) -> Vec<&Client> {
        let gap = self.shutting_down..self.new_started;
        self.clients
            .iter()
            .filter(|client| gap.contains(&client.sent))
            .collect()
    }

    fn failures(&self) -> Vec<&String> {
        let outcomes = self.clients.iter().map(|client| client.outcome.as_ref());
        outcomes
            .filter_map(|outcome| outcome?.as_ref().err())
            .collect()
    }
}

/// What `systemctl restart` does under load: SIGTERM, wait for the old
/// process to exit, start a new one. With `handed_over`, both serve the
/// test's socket; without it, each binds the same port itself.
async fn restart_under_load(handed_over: bool) -> Restart {
    let manager = handed_over.then(managers_socket);
    let start = |addr: Option<SocketAddr>| match &manager {
        Some((socket, _)) => Example::start(
            &[],
            Some("1"),
            Some(AtThree::Descriptor(socket.as_raw_fd())),
        ),
        None => {
            let addr = addr.map_or("127.0.0.1:0".to_string(), |addr| addr.to_string());
            Example::start(&[&addr], None, None)
        }
    };
    let mut old = start(None);
    let (_, addr) = old.listening().await;
    if let Some((_, managers_addr)) = &manager {
        assert_eq!(
            &addr, managers_addr,
            "the example bound a socket of its own"
        );
    }

    let load = Load::start(addr);
    // Requests in flight when the signal comes: half a second of arrivals.
    load.sent_after(Instant::now(), 50).await;
    old.terminate();
    let (shutting_down, _) = old.line_starting("Shutting down").await;
    // Some clients arrive while the old process lets its requests finish.
    load.sent_after(shutting_down, 5).await;
    let (status, stderr) = old.exited().await;
    assert!(status.success(), "the old process: {status}, {stderr}");

    let new_started = Instant::now();
    let mut new = start(Some(addr));
    let (listening_again, new_addr) = new.listening().await;
    assert_eq!(new_addr, addr);
    load.sent_after(listening_again, 50).await;
    let clients = load.finish().await;
    new.terminate();
    let (status, stderr) = new.exited().await;
    assert!(status.success(), "the new process: {status}, {stderr}");
    Restart {
        clients,
        shutting_down,
        new_started,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_a_handed_over_socket_loses_no_request() {
    let restart = restart_under_load(true).await;
    let in_the_gap = restart.sent_in_the_gap().len();
    assert!(
        in_the_gap >= 1,
        "no client was sent while no process accepted: the test proves nothing"
    );
    let failures = restart.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed ({in_the_gap} sent in the gap): {failures:?}",
        failures.len(),
        restart.clients.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_binds_its_own_socket_refuses_the_clients_in_the_gap() {
    let restart = restart_under_load(false).await;
    let in_the_gap = restart.sent_in_the_gap();
    let refused = in_the_gap
        .iter()
        .filter(|client| matches!(&client.outcome, Some(Err(reason)) if reason.contains("refused")))
        .count();
    assert!(
        refused >= 1,
        "none of the {} clients sent in the gap was refused: the test cannot see a lost request",
        in_the_gap.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_started_before_the_old_one_stops_shares_the_queue_and_loses_nothing() {
    let (socket, addr) = managers_socket();
    let handed = || {
        Example::start(
            &[],
            Some("1"),
            Some(AtThree::Descriptor(socket.as_raw_fd())),
        )
    };
    let mut old = handed();
    old.listening().await;
    let load = Load::start(addr);
    load.sent_after(Instant::now(), 50).await;

    let mut new = handed();
    let (listening, _) = new.listening().await;
    // Both accept from the same queue for a while.
    load.sent_after(listening, 20).await;
    old.terminate();
    let (shutting_down, _) = old.line_starting("Shutting down").await;
    let (status, stderr) = old.exited().await;
    assert!(status.success(), "the old process: {status}, {stderr}");
    load.sent_after(shutting_down, 50).await;
    let clients = load.finish().await;
    new.terminate();
    new.exited().await;

    let failures: Vec<_> = clients
        .iter()
        .filter_map(|client| client.outcome.as_ref()?.as_ref().err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {failures:?}",
        failures.len(),
        clients.len()
    );
}

/// Asserts that the example, started so, refuses to serve with one line on
/// stderr that contains `reason`, status 1, and no `Listening` line.
async fn assert_refused(listen_fds: &str, at_three: AtThree, reason: &str) {
    let mut example = Example::start(&["127.0.0.1:0"], Some(listen_fds), Some(at_three));
    let (status, stderr) = example.exited().await;
    assert_eq!(
        (status.code(), status.signal()),
        (Some(1), None),
        "LISTEN_FDS={listen_fds}: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(
        stderr.contains(reason),
        "{stderr:?} does not say {reason:?}"
    );
    assert!(
        !example
            .lines()
            .iter()
            .any(|line| line.starts_with(LISTENING_PREFIX)),
        "it says it listens: {:?}",
        example.lines()
    );
}

#[tokio::test]
async fn a_listen_fds_that_is_not_a_number_gets_one_line_and_status_1() {
    let (socket, _) = managers_socket();
    let at_three = AtThree::Descriptor(socket.as_raw_fd());
    assert_refused("one", at_three, "LISTEN_FDS is \"one\", not a number").await;
    assert_refused("2", at_three, "LISTEN_FDS is 2").await;
}

#[tokio::test]
async fn a_handed_over_descriptor_that_is_no_listening_tcp_socket_gets_one_line_and_status_1() {
    // Left closed, descriptor 3 is taken by the tokio runtime's own before
    // the serve loop looks (the system gives out the lowest number free).
    assert_refused("1", AtThree::Nothing, "descriptor 3 is not").await;
    let file = std::fs::File::open("/dev/null").expect("opens");
    let at_three = AtThree::Descriptor(file.as_raw_fd());
    assert_refused("1", at_three, "descriptor 3 is not a socket").await;
    let unlistening =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
    unlistening.bind(&any.into()).expect("binds");
    let at_three = AtThree::Descriptor(unlistening.as_raw_fd());
    assert_refused(
        "1",
        at_three,
        "descriptor 3 is a TCP socket that does not listen",
    )
    .await;
}

#[tokio::test]
async fn listen_variables_meant_for_another_process_are_ignored_with_one_line() {
    // Process 1 is the system's init, never the example.
    let mut command = Command::new(BINARY);
    command
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "1")
        .arg("127.0.0.1:0");
    let mut example = Example::spawn(command);
    let (_, addr) = example.listening().await;
    assert_ne!(addr.port(), 0, "it should bind the address it was given");
    assert_eq!(ask(addr).await, Ok(()));
    example.terminate();
    let (status, stderr) = example.exited().await;
    assert!(status.success(), "{status}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("LISTEN_PID is 1, not this process"),
        "{stderr:?}"
    );
}
