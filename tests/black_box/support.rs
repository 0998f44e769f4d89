//! Running the real binary for a test, and talking HTTP to it.
//!
//! `Server::start` runs the example as a user would, on `127.0.0.1:0`, learns
//! its port from the `Listening` line and keeps every line it prints. The
//! process is killed when the `Server` is dropped, also when a test panics,
//! and then its stdout and stderr are printed so the failure can be read.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gotham::bytes::Bytes;
use gotham::http_body_util::{BodyExt, Empty};
use gotham::hyper::StatusCode;
use gotham::hyper_util::client::legacy::connect::HttpConnector;
use gotham::hyper_util::client::legacy::Client;
use gotham::hyper_util::rt::TokioExecutor;

/// The example's binary, built by cargo for the tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_gotham_examples_handlers_simple_async_handlers");

/// How long a starting server may take to print its `Listening` line.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server prints first, before the address.
pub const LISTENING_PREFIX: &str = "Listening for requests at http://";

/// Runs the binary with `args`, its stdout and stderr piped to this process,
/// and at most `descriptor_limit` open files if given; returns the child and
/// the command line, for messages.
pub fn spawn_binary(args: &[&str], descriptor_limit: Option<u64>) -> (Child, String) {
    spawn(
        Command::new(BINARY),
        args,
        descriptor_limit.map(|limit| (limit, limit)),
    )
}

/// Runs `command` as `spawn_binary` runs the binary, with the soft and hard
/// limits on open files `descriptor_limits`, if given.
///
/// The programs raise their soft limit to the hard one as they start
/// (`serve::raise_descriptor_limit`), so a test that means to lower a
/// server's limit lowers both; one that gives a hard limit above the soft
/// tests that raise.
fn spawn(
    mut command: Command,
    args: &[&str],
    descriptor_limits: Option<(u64, u64)>,
) -> (Child, String) {
    let envs: Vec<String> = command
        .get_envs()
        .map(|(key, value)| {
            let value = value.unwrap_or_default().to_string_lossy();
            format!("{}={value} ", key.to_string_lossy())
        })
        .collect();
    let mut command_line = format!(
        "{}{} {}",
        envs.concat(),
        command.get_program().to_string_lossy(),
        args.join(" ")
    );
    if let Some((soft, hard)) = descriptor_limits {
        command_line = format!("(ulimit -Hn {hard}; ulimit -Sn {soft}; {command_line})");
        let limit = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: runs in the forked child before exec, and only makes one
        // system call, which is safe there.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    // A developer's own `RUST_LOG` would add lines to stderr that the
    // tests do not expect: removed, unless the test sets it.
    if !command.get_envs().any(|(key, _)| key == "RUST_LOG") {
        command.env_remove("RUST_LOG");
    }
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command_line}: {error}"));
    (child, command_line)
}

/// The example's binary, running in a child process.
pub struct Server {
    child: Child,
    command: String,
    pub addr: SocketAddr,
    // A std mutex, not tokio's: it is held only to push or copy lines, never
    // across an `.await`, and the reader threads are not async.
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Server {
    /// Starts the binary on a port the system picks.
    pub fn start() -> Server {
        Server::start_with_args(&["127.0.0.1:0"])
    }

    /// Starts the binary with `args` and waits for its `Listening` line.
    pub fn start_with_args(args: &[&str]) -> Server {
        Server::start_with(args, None)
    }

    /// Starts the binary on port 0, allowed `limit` open files at most (its
    /// soft and hard limits both, so that it cannot raise it).
    pub fn start_with_descriptor_limit(limit: u64) -> Server {
        Server::start_with(&["127.0.0.1:0"], Some((limit, limit)))
    }

    /// Starts the binary on port 0 with a soft limit of `soft` open files
    /// and a hard limit of `hard`: the limits most systems give a process.
    pub fn start_with_descriptor_limits(soft: u64, hard: u64) -> Server {
        Server::start_with(&["127.0.0.1:0"], Some((soft, hard)))
    }

    fn start_with(args: &[&str], descriptor_limits: Option<(u64, u64)>) -> Server {
        Server::start_process(Command::new(BINARY), args, descriptor_limits)
    }

    /// Starts another program that serves HTTP and says where with a
    /// `Listening` line, as the binary does (lines before it are kept).
    pub fn start_program(program: Command, args: &[&str], descriptor_limit: Option<u64>) -> Server {
        let limits = descriptor_limit.map(|limit| (limit, limit));
        Server::start_process(program, args, limits)
    }

    fn start_process(
        program: Command,
        args: &[&str],
        descriptor_limits: Option<(u64, u64)>,
    ) -> Server {
        let (mut child, command) = spawn(program, args, descriptor_limits);

        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let child_stdout = child.stdout.take().expect("stdout is piped");
        let child_stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            std::thread::spawn({
                let stdout = Arc::clone(&stdout);
                move || {
                    for line in BufReader::new(child_stdout).lines() {
                        let Ok(line) = line else { break };
                        stdout.lock().unwrap().push(line);
                    }
                }
            }),
            std::thread::spawn({
                let stderr = Arc::clone(&stderr);
                move || {
                    let mut text = String::new();
                    let _ = BufReader::new(child_stderr).read_to_string(&mut text);
                    stderr.lock().unwrap().push_str(&text);
                }
            }),
        ];

        let mut server = Server {
            child,
            command,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdout,
            stderr,
            readers,
        };
        let listening = server.listening_line_blocking(START_TIMEOUT);
        let addr = listening
            .as_deref()
            .and_then(|line| line.strip_prefix(LISTENING_PREFIX))
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => server.addr = addr,
            None => panic!(
                "expected a line `{LISTENING_PREFIX}ADDR` within {START_TIMEOUT:?}, got {:?}",
                server.stdout_lines()
            ),
        }
        server
    }

    /// `http://ADDR/PATH_AND_QUERY` for this server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Every line the server has printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// How many stdout lines so far are exactly `line`.
    pub fn count_lines(&self, line: &str) -> usize {
        count(&self.stdout.lock().unwrap(), line)
    }

    /// Waits until the server's stdout lines so far satisfy `done`; `what`
    /// says what was awaited if they do not within `timeout`.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[String]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(&self.stdout.lock().unwrap()) {
            assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `wanted` lines exactly equal to `line` were printed.
    pub async fn wait_for_count(&self, line: &str, wanted: usize, timeout: Duration) {
        let what = format!("{wanted} lines `{line}`");
        self.wait_until(&what, timeout, |lines| count(lines, line) >= wanted)
            .await;
    }

    /// The first line printed that starts with `Listening`, once there is
    /// one; `None` after `timeout`. (The binary prints it first; a test
    /// binary run as a server prints the test harness's lines before it.)
    /// Blocking, since it runs before any test has requests in flight.
    fn listening_line_blocking(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let stdout = self.stdout.lock().unwrap();
            if let Some(line) = stdout
                .iter()
                .find(|line| line.starts_with(LISTENING_PREFIX))
            {
                return Some(line.clone());
            }
            drop(stdout);
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many descriptors the server has open: its listener and a few of
    /// the runtime's, plus one per open connection.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the server's /proc/PID/fd")
            .count()
    }

    /// Sends the server the signal `signal` (such as `libc::SIGINT`).
    pub fn send_signal(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal; the child has not been waited
        // for yet, so its pid is still its own.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(sent, 0, "cannot signal {}", self.command);
    }

    /// Waits, at most `timeout`, for the server to exit by itself.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting on the server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server was still running {timeout:?} later"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server with SIGTERM, waits for it to exit, and returns
    /// everything it printed on stderr (which is read whole, at its end).
    pub async fn stop_for_stderr(&mut self) -> String {
        self.send_signal(libc::SIGTERM);
        let status = self.wait_for_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "{} ended {status}", self.command);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.stderr.lock().unwrap().clone()
    }

    /// CPU time the server has used so far, user and system together.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("the server's /proc/PID/stat");
        // Field 2, the command name, may hold spaces: count from its ")".
        // utime and stime, fields 14 and 15, are then the 12th and 13th.
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf only reads a configuration value.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / ticks_per_second)
    }

    /// Checks that the server still answers a well-formed request correctly
    /// (a server that crashed fails here too: the GET cannot connect).
    pub async fn assert_still_answers(&self, after: &str) {
        let answer = get(&self.url("/sleep?seconds=0")).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, "slept for 0 seconds\n"),
            "the server stopped answering properly after {after}"
        );
    }
}

fn count(lines: &[String], wanted: &str) -> usize {
    lines.iter().filter(|line| *line == wanted).count()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        if std::thread::panicking() {
            eprintln!("--- command: {}", self.command);
            eprintln!(
                "--- server stdout:\n{}",
                self.stdout.lock().unwrap().join("\n")
            );
            eprintln!("--- server stderr:\n{}", self.stderr.lock().unwrap());
        }
    }
}

/// How a run of the binary that was expected to end, ended.
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` and waits, at most 10 s, for it to exit.
pub fn run_to_exit(args: &[&str]) -> Exited {
    let (mut child, command) = spawn_binary(args, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("waiting on the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("reading its output");
            panic!(
                "{command} was still running after 10 s\n--- stdout:\n{}\n--- stderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("reading its output");
    Exited {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A complete answer to a GET.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: String,
}

/// hyper-util's client, the one gotham itself re-exports.
pub fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GETs `url` with a fresh client; panics with the URL if it fails.
pub async fn get(url: &str) -> Answer {
    get_with(&client(), url)
        .await
        .unwrap_or_else(|error| panic!("GET {url}: {error}"))
}

/// A GET on its own task (it takes `url` by value): the status and body,
/// or why there is none, for requests a test expects may be dropped.
pub async fn get_owned(url: String) -> Result<(StatusCode, String), String> {
    let answer = get_with(&client(), &url).await?;
    Ok((answer.status, answer.body))
}

/// GETs `url` with `client`, reading the whole body.
pub async fn get_with(
    client: &Client<HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Result<Answer, String> {
    let uri = url.parse().map_err(|error| format!("bad URL: {error}"))?;
    let response = client.get(uri).await.map_err(|error| error.to_string())?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).map_err(|error| error.to_string())?;
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// Sends `bytes` on a fresh connection and returns everything the server
/// writes back before it closes the connection (or before 5 s pass).
///
/// Only for deliberately malformed input; well-formed requests go through a
/// real HTTP client. The write side stays open: hyper takes a half-closed
/// connection for a client that has gone away.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    stream.write_all(bytes).await.expect("sends");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    answer
}

/// Connects, sends `GET path` at once (asking the server to close after
/// its answer), and reads until it does: the status and the body, or why
/// there are none. Raw bytes, so that a reset shows as such.
pub async fn ask_at_once(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| format!("send: {error}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|error| format!("read: {error}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|code| code.parse().ok());
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string());
    match (status, body) {
        (Some(status), Some(body)) => Ok((status, body)),
        _ => Err(format!("not an HTTP answer: {answer:?}")),
    }
}
