//! The accept loop: takes in connections and gives each a task of its own
//! (`connection.rs`), decides what a failed `accept()` means (skip it, make
//! room by closing the connection idle the longest, or pause), and, when a
//! stop comes, the graceful shutdown with its two lines on stdout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::Stream;
use gotham::hyper::body::{Body, Incoming};
use gotham::hyper::server::conn::http1;
use gotham::hyper::service::Service;
use gotham::hyper::{Request, Response};
use gotham::hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{serve_connection, BoxError};
use super::idle::{IdleConnections, IdlePlace, Tracked};
use super::listen::{Limits, Stopped};
use super::stop::next_stop;

/// Where connections come from: a `TcpListener`, or in tests, one that can
/// be made to run out of descriptors on demand.
pub trait Accept {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// How large hyper lets a connection's read buffer grow: 128 KiB, not its
/// default of about 400 KiB. hyper starts at 8 KiB and doubles the buffer
/// while reads fill it, as a fast upload's do; a frame it hands a handler
/// is a slice of the buffer and keeps it alive, so a handler that holds a
/// frame while it pauses costs up to two buffers. With the default, 100
/// uploads to the body lesson's `/digest?pause_ms=100` peaked at 100.4 MiB;
/// with this, at 39.3 MiB (docs/body.md). It also bounds a request head,
/// a limit no sane head meets (a 64 KiB URI is refused first, with a 414).
const READ_BUFFER_AT_MOST: usize = 128 * 1024;

/// How long the accept loop goes without closing an idle connection before
/// it reports how many it closed.
const SHEDDING_REPORT_AFTER: Duration = Duration::from_secs(1);

/// Serves connections from `listener` until `stop` yields, then shuts down.
///
/// `new_service` makes the service for each connection from the client's
/// address. The first item of `stop` begins a graceful shutdown; a second
/// one, during the grace period, ends it at once.
pub async fn serve_with<S, B>(
    mut listener: impl Accept,
    new_service: impl Fn(SocketAddr) -> S,
    limits: Limits,
    stop: impl Stream<Item = ()> + Unpin,
) -> Stopped
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut http = http1::Builder::new();
    // The timer is the line `bind_server` lacks: without one, hyper cannot
    // time anything and quietly skips its default 30 s header deadline (a
    // deadline set by hand without a timer would make it panic instead).
    // hyper's deadline covers the heads after the first; `serve_connection`
    // below times the first one from the moment of accepting.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_deadline)
        .max_buf_size(READ_BUFFER_AT_MOST);

    let mut stop = stop;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(IdleConnections::default());
    // A watch channel, not a `Notify`: a connection that starts waiting
    // after the value changed still sees the change.
    let (begin_shutdown, shutdown_begun) = watch::channel(false);
    // Every connection's task. Aborting them drops their connections, and
    // with them the futures of the requests still in flight.
    let mut connections = JoinSet::new();
    let mut failing_since_last_accept = false;
    // Whether idle connections were asked to close since the last report.
    let mut asked_in_streak = false;
    let mut last_shed = Instant::now();

    loop {
        tokio::select! {
            () = next_stop(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, client)) => {
                    failing_since_last_accept = false;
                    let place = IdlePlace::new(&idle);
                    let service = Tracked {
                        inner: new_service(client),
                        in_flight: Arc::clone(&in_flight),
                        place: Arc::clone(&place),
                    };
                    connections.spawn(serve_connection(
                        socket,
                        http.clone(),
                        service,
                        place,
                        Instant::now() + limits.header_deadline,
                        Instant::now() + limits.idle_before_shedding,
                        shutdown_begun.clone(),
                    ));
                }
                // The client gave up before we took its connection: nothing
                // is short, so accept the next one at once.
                Err(error) if belongs_to_one_connection(&error) => {}
                // Out of descriptors, a connection that sends nothing and
                // one that waits for a second request hold a descriptor for
                // nobody's benefit, while the new client waiting in the
                // queue may have a request ready. Closing the connection
                // idle the longest is what a client can best afford: one
                // that has waited that long is the least likely to send
                // anything soon. Requests in flight are never shed, since
                // their handlers are doing what they were asked, and
                // neither is a connection idle for less than
                // `idle_before_shedding`: one just accepted has had no time
                // to send its request, and may have sent it already, unread
                // (`serve_connection` also looks for that before closing).
                // With none old enough, the last arm pauses instead.
                Err(error)
                    if out_of_descriptors(&error)
                        && idle.shed_longest_idle(limits.idle_before_shedding) =>
                {
                    asked_in_streak = true;
                    last_shed = Instant::now();
                    // Its descriptor is free once its task has ended. If the
                    // connection took a request meanwhile it stays, and the
                    // pause bounds the wait before the next try.
                    tokio::select! {
                        () = next_stop(&mut stop) => break,
                        Some(_) = connections.join_next() => {}
                        () = tokio::time::sleep(limits.accept_pause) => {}
                    }
                }
                Err(error) => {
                    if !failing_since_last_accept {
                        eprintln!(
                            "cannot accept connections: {error}; trying again every {:?}",
                            limits.accept_pause
                        );
                        failing_since_last_accept = true;
                    }
                    tokio::select! {
                        () = next_stop(&mut stop) => break,
                        () = tokio::time::sleep(limits.accept_pause) => {}
                    }
                }
            },
            // One line per streak, not one per connection: a flood of
            // clients can make the loop shed thousands a second.
            () = tokio::time::sleep_until(last_shed + SHEDDING_REPORT_AFTER), if asked_in_streak => {
                report_shedding(&idle);
                asked_in_streak = false;
            }
            // Collect finished connections as they end, or the set keeps
            // every one that ever was.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    if asked_in_streak {
        report_shedding(&idle);
    }

    // A listener bound by this process was the socket's only descriptor:
    // closing it closes the socket, so new clients' connects fail at once,
    // and those waiting in its queue are reset. A listener handed over by
    // a service manager is this process's copy of the manager's descriptor.
    // A socket lives until its last descriptor closes, and its queue is the
    // socket's, so closing this copy leaves both to the manager: clients
    // waiting, and those still arriving, are accepted by the next process.
    drop(listener);
    let waiting_for = in_flight.load(Ordering::SeqCst);
    println!(
        "Shutting down: {}, waiting up to {} seconds for {} to finish",
        count(waiting_for, "request in flight", "requests in flight"),
        limits.grace_period.as_secs(),
        if waiting_for == 1 { "it" } else { "them" },
    );
    // Each connection closes once idle: at once if it is between requests,
    // after its answer if one is in flight.
    let _ = begin_shutdown.send(true);

    let all_closed = async { while connections.join_next().await.is_some() {} };
    let stopped = tokio::select! {
        () = all_closed => Stopped::Gracefully,
        () = tokio::time::sleep(limits.grace_period) => Stopped::Gracefully,
        () = next_stop(&mut stop) => Stopped::AtOnce,
    };
    let unfinished = in_flight.load(Ordering::SeqCst);
    connections.shutdown().await;
    let dropped = count(unfinished, "unfinished request", "unfinished requests");
    match stopped {
        Stopped::Gracefully => println!("Shut down: {dropped} dropped"),
        Stopped::AtOnce => println!("Stopped at once: {dropped} dropped"),
    }
    stopped
}

/// Says on stderr how many idle connections were closed to make room since
/// the last report, if any were.
fn report_shedding(idle: &IdleConnections) {
    if let Some(line) = shedding_report(idle) {
        eprintln!("{line}");
    }
}

/// The line `report_shedding` prints, and counts afresh. The connections
/// count themselves as they close, since one asked to close may have found
/// its request arriving instead (`serve_connection`).
pub(super) fn shedding_report(idle: &IdleConnections) -> Option<String> {
    let closed = idle.closed_to_make_room.swap(0, Ordering::SeqCst);
    (closed > 0).then(|| {
        format!(
            "out of descriptors: closed {}, longest idle first, to make room for new clients",
            count(closed, "idle connection", "idle connections")
        )
    })
}

/// Whether `accept()` failed because of one connection only (the client
/// reset or abandoned it while it waited in the queue), rather than because
/// the process or system is short of something, such as descriptors.
pub(super) fn belongs_to_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Whether `accept()` failed because the process (EMFILE) or the whole
/// system (ENFILE) has no descriptor left: what closing a connection mends.
/// The numbers are the same on Linux and the BSDs; std has no `ErrorKind`
/// for them.
pub(super) fn out_of_descriptors(error: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(error.raw_os_error(), Some(ENFILE | EMFILE))
}

pub(super) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
