//! Where the server listens, and with what limits: binding the address a
//! program was given (with a deep listen queue), the descriptor limit raised
//! at start, `listen_and_serve` (what each program's `main` calls), and the
//! `Limits` the rest of the serve loop obeys.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use futures::stream::Stream;
use gotham::router::Router;
use tokio::net::{TcpListener, TcpSocket};

use super::accept_loop::serve_with;
use super::connection::GothamService;
use super::handed_over;
use super::stop::stop_signals;

/// How long the server waits for clients, and for itself when it stops.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a connection may take to deliver a complete request head,
    /// counted from when the server starts waiting for one: from when the
    /// connection is accepted, and again after each answer on a kept-alive
    /// one. It never cuts a request that has reached its handler.
    pub header_deadline: Duration,
    /// How long to stop accepting after `accept()` fails for a reason that
    /// is not one connection's fault and that closing an idle connection
    /// cannot mend.
    pub accept_pause: Duration,
    /// How long requests in flight may go on once shutdown begins.
    pub grace_period: Duration,
    /// How long a connection must have been idle before it may be closed to
    /// make room for a new client when descriptors run out; also how long,
    /// from its accepting, a silent connection has to begin its request
    /// once shutdown has begun.
    pub idle_before_shedding: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // hyper's default for `header_read_timeout`. (axum's `serve`
            // sets none, and neither does Go's `http.Server` unless its
            // `ReadHeaderTimeout` is set.)
            header_deadline: Duration::from_secs(30),
            // Short enough that the server answers again at once when
            // descriptors free up; long enough that a server out of them
            // sleeps instead of spinning (ten tries a second cost nothing).
            accept_pause: Duration::from_millis(100),
            // Longer than the README's own 5-second requests, so a Ctrl-C
            // during them lets them finish; shorter than the 10 s `docker
            // stop` waits before it kills, so the server gets to finish
            // itself and say so. A request that would take longer is dropped.
            grace_period: Duration::from_secs(8),
            // A client sends its request the moment its connection is
            // made, and the next one on a kept-alive connection a round
            // trip after its answer; a round trip across the world takes
            // about 0.3 s. A second leaves room for two slow round trips
            // and a busy client, while a connection that has said nothing
            // for a second has shown it is in no hurry. Longer would make
            // a new client wait longer when every idle connection is new.
            // At shutdown it is what a silent connection gets to begin its
            // request. Go's `http.Server.Shutdown` gives a new connection
            // 5 s before counting it idle; here each second spent on a
            // silent client delays the next process, while the clients in
            // a handed-over socket's queue wait for it.
            idle_before_shedding: Duration::from_secs(1),
        }
    }
}

/// How `serve` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// On the first signal: every request in flight finished or the grace
    /// period ran out.
    Gracefully,
    /// A second signal came during the grace period.
    AtOnce,
}

/// Binds `requested`, says where it listens, and serves `router` there
/// until Ctrl-C or SIGTERM: what each program's `main` does.
///
/// Started by a service manager with a listening socket handed over
/// (`handed_over.rs`), it serves that socket instead, and `requested` goes
/// unused: the socket was bound by whoever configured the service.
///
/// The order matters. The socket is bound before anything is printed, so
/// `Listening` appears only once the server really listens, and shows the
/// port the system chose when asked for port 0. The signal handlers are in
/// place before that line: whoever sees it may press Ctrl-C at once, and
/// should get a graceful shutdown, not the default sudden death.
///
/// An address that cannot be used, or variables that name no usable
/// socket, get one line on stderr and exit status 1; a second Ctrl-C
/// during the grace period, 130 (128 + SIGINT, what a shell reports for a
/// program ended by Ctrl-C).
pub async fn listen_and_serve(requested: &str, router: Router) -> ExitCode {
    // First, so that every connection the server takes counts against the
    // raised limit. A limit that cannot be raised is no reason not to serve.
    if let Err(reason) = raise_descriptor_limit() {
        eprintln!("warning: {reason}");
    }
    let (listener, source) = match handed_over::take_listener() {
        Ok(Some(listener)) => (listener, "the socket handed over"),
        Ok(None) => match bind(requested).await {
            Ok(listener) => (listener, requested),
            Err(reason) => {
                eprintln!("error: cannot listen on {requested}: {reason}");
                return ExitCode::FAILURE;
            }
        },
        Err(reason) => {
            eprintln!(
                "error: cannot serve the socket handed over by the service manager: {reason}"
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(reason) => {
            eprintln!("error: cannot tell which address {source} is bound to: {reason}");
            return ExitCode::FAILURE;
        }
    };
    let stop_signals = match stop_signals() {
        Ok(stop_signals) => stop_signals,
        Err(reason) => {
            eprintln!("error: cannot watch for Ctrl-C: {reason}");
            return ExitCode::FAILURE;
        }
    };
    println!("Listening for requests at http://{addr}");

    match serve(listener, router, stop_signals).await {
        Stopped::Gracefully => ExitCode::SUCCESS,
        Stopped::AtOnce => ExitCode::from(130),
    }
}

/// How many connections the kernel may hold for the server, handshake
/// done, before the server has accepted them: the listening socket's queue
/// (its *backlog*), asked of `listen()`.
///
/// The largest number `listen()` takes, so that the queue is as deep as the
/// system allows: Linux and the BSDs cut it to their own limit without a
/// word (`net.core.somaxconn` on Linux, 4,096 since Linux 5.4). The
/// standard library, and so `tokio::net::TcpListener::bind`, asks for 128.
/// That is too few for a server that teaches bursts: when the queue is
/// full, the kernel drops the new client's SYN (or its last ACK), and the
/// client's system sends it again a second later, then at 3 s, then at 7 s
/// (the wait doubles each time). A burst of a few hundred clients connecting at once fills
/// 128 before the accept loop has run, and some of them wait that second
/// (`docs/serving.md` has what was measured). Go's `net.Listen` asks for
/// the system's limit too; Node.js asks for 511.
pub const LISTEN_BACKLOG: u32 = i32::MAX as u32;

/// Binds a TCP listener to `requested`, with a listen queue as deep as the
/// system allows (`LISTEN_BACKLOG`). `requested` is HOST:PORT, where HOST
/// is an IP address or a name the system resolves, such as `localhost`.
///
/// A name may resolve to several addresses (`localhost` to 127.0.0.1 and
/// ::1); the first one that binds is used.
pub async fn bind(requested: &str) -> Result<TcpListener, String> {
    bind_with_backlog(requested, LISTEN_BACKLOG).await
}

/// `bind`, with a listen queue of `backlog` connections at most (the
/// system may cut it shorter).
pub async fn bind_with_backlog(requested: &str, backlog: u32) -> Result<TcpListener, String> {
    let addrs = tokio::net::lookup_host(requested)
        .await
        .map_err(|error| match error.kind() {
            // What the standard library says of a missing or bad port.
            std::io::ErrorKind::InvalidInput => {
                "not HOST:PORT, such as 127.0.0.1:7878 or localhost:9000".to_string()
            }
            _ => format!("cannot resolve the host name: {error}"),
        })?;
    let mut last_error = "the host name resolved to no address".to_string();
    for addr in addrs {
        match listen_on(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

/// What `TcpListener::bind` does for one address, but for the queue's
/// length: `SO_REUSEADDR` (so that a restarted server can bind while its
/// predecessor's closed connections linger in TIME_WAIT), `bind`, `listen`.
fn listen_on(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Raises this process's soft limit on open descriptors to its hard limit,
/// as Go's runtime does at start (since Go 1.19); tokio does not.
///
/// Each connection holds a descriptor. Most Linux systems start a process
/// with a soft limit of 1,024 and a hard limit far higher; the soft limit
/// is the one enforced, and a process may raise it up to the hard one
/// itself. Left at 1,024, a burst of 2,000 clients finds the server out of
/// descriptors at about 1,000 connections, and the rest wait in the queue
/// until requests finish. Done once, before binding; a child process
/// inherits the raised limit. The error says why it could not be raised.
pub fn raise_descriptor_limit() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "cannot read the limit on open descriptors: {error}"
        ));
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "cannot raise the limit on open descriptors from {} to {}, so the server holds \
             about {} connections at most: {error}",
            limit.rlim_cur, limit.rlim_max, limit.rlim_cur
        ));
    }
    Ok(())
}

/// Serves `router` on `listener` with the default limits until `stop`
/// yields (see `stop_signals`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Stream<Item = ()> + Unpin,
) -> Stopped {
    let new_service = move |client| GothamService {
        router: router.clone(),
        client,
    };
    serve_with(listener, new_service, Limits::default(), stop).await
}
