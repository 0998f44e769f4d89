//! A listening socket handed over by a service manager, so that a restart
//! refuses nobody.
//!
//! A server that binds its own socket closes it when it stops, and until
//! the next process has bound a new one, every client is refused. systemd's
//! socket activation keeps the listening socket open in the service manager
//! instead and gives it to each new process: `LISTEN_FDS` says how many
//! sockets it passed, from descriptor 3 on, and `LISTEN_PID` which process
//! they are for. Clients that arrive between two processes wait in the
//! socket's queue, and the next process accepts them. `systemd-socket-activate`
//! and `systemfd` speak the same protocol for trying it without systemd.
//!
//! The `listenfd` crate reads these variables, but not in a way this serve
//! loop can use: it removes them from the environment, and
//! `listen_and_serve` runs inside the tokio runtime, whose threads are
//! running, where changing the environment is unsound; it takes a
//! `LISTEN_FDS` that is not a number for no socket at all, and it does not
//! check that the socket listens. What it does beyond that is a few system
//! calls, so they are here, with every check: a variable that names no
//! usable listening socket stops the program with one line saying which,
//! rather than letting it serve something else.
//!
//! The variables stay in the environment. A program started from this one
//! would inherit them, but with this process's id in `LISTEN_PID`, so it
//! would leave them alone (unless `LISTEN_PID` was empty, as with
//! `systemfd --no-pid`); and this program starts none.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;

/// Where the protocol puts the first socket (`SD_LISTEN_FDS_START`).
const FIRST_DESCRIPTOR: RawFd = 3;

/// What `LISTEN_PID` and `LISTEN_FDS` say, before any descriptor is looked at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Variables {
    /// No `LISTEN_FDS`: nothing was handed over, so the program binds.
    Absent,
    /// `LISTEN_PID` names another process: the variables were meant for it,
    /// and this process inherited them. systemd's rule is to ignore them.
    ForAnother { named: u32, this: u32 },
    /// One socket, at descriptor 3, for this process.
    OneSocket,
}

/// Reads the two variables' values; `this` is this process's id.
///
/// A `LISTEN_PID` that is missing or empty counts as naming this process,
/// as the `listenfd` crate has it: `systemfd --no-pid` leaves it out when a
/// program such as `cargo watch` stands between it and the server, whose
/// id it cannot know.
pub(super) fn read_variables(
    listen_pid: Option<&OsStr>,
    listen_fds: Option<&OsStr>,
    this: u32,
) -> Result<Variables, String> {
    let Some(listen_fds) = listen_fds else {
        return Ok(Variables::Absent);
    };
    match listen_pid {
        None => {}
        Some(pid) if pid.is_empty() => {}
        Some(pid) => match pid.to_str().and_then(|pid| pid.parse::<u32>().ok()) {
            Some(named) if named == this => {}
            Some(named) => return Ok(Variables::ForAnother { named, this }),
            None => return Err(format!("LISTEN_PID is {pid:?}, not a process id")),
        },
    }
    match listen_fds
        .to_str()
        .and_then(|count| count.parse::<u32>().ok())
    {
        Some(1) => Ok(Variables::OneSocket),
        Some(count) => Err(format!(
            "LISTEN_FDS is {count}, and this program serves exactly one socket (descriptor 3)"
        )),
        None => Err(format!(
            "LISTEN_FDS is {listen_fds:?}, not a number of descriptors"
        )),
    }
}

/// The listening socket a service manager handed over, if it did; an error
/// if the variables name no usable one. Variables meant for another
/// process are ignored, with one line on stderr saying so.
///
/// Called at most once by a program: the descriptor becomes the listener's
/// to close. A second call is an error rather than a second owner.
pub(super) fn take_listener() -> Result<Option<TcpListener>, String> {
    let variables = read_variables(
        std::env::var_os("LISTEN_PID").as_deref(),
        std::env::var_os("LISTEN_FDS").as_deref(),
        std::process::id(),
    )?;
    match variables {
        Variables::Absent => Ok(None),
        Variables::ForAnother { named, this } => {
            eprintln!(
                "LISTEN_FDS ignored: LISTEN_PID is {named}, not this process ({this}), so the socket is not for it"
            );
            Ok(None)
        }
        Variables::OneSocket => take_descriptor(FIRST_DESCRIPTOR).map(Some),
    }
}

/// Whether descriptor 3 has been taken: it may have one owner only.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Makes `fd` this process's listener, once it has proved to be a listening
/// TCP socket.
pub(super) fn take_descriptor(fd: RawFd) -> Result<TcpListener, String> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(format!("descriptor {fd} was taken already"));
    }
    check_listening_tcp(fd)?;
    // SAFETY: the descriptor is open and a listening TCP socket (just
    // checked), and from here on the socket owns it: the protocol gives it
    // to this process alone, nothing else in this process refers to it, and
    // `TAKEN` lets only this call take it.
    let socket = unsafe { socket2::Socket::from_raw_fd(fd) };
    // tokio needs a socket that never blocks. Close-on-exec keeps the
    // socket out of any program this one might start, which would keep its
    // queue alive behind the service manager's back.
    let made_ready = socket
        .set_nonblocking(true)
        .and_then(|()| socket.set_cloexec(true))
        .and_then(|()| TcpListener::from_std(socket.into()));
    made_ready.map_err(|error| format!("descriptor {fd} cannot be served: {error}"))
}

/// Whether `number` is an open descriptor of a TCP socket that listens
/// (IPv4 or IPv6, a stream, with `SO_ACCEPTCONN` set); if not, what it is
/// instead.
///
/// A descriptor 3 that the service manager left closed is seldom found
/// closed here: the tokio runtime starts first, and the system gives its
/// own descriptors the lowest numbers free, so 3 is one of them, and "not a
/// socket". Either way the program stops with one line.
pub(super) fn check_listening_tcp(number: RawFd) -> Result<(), String> {
    // SAFETY: `fcntl(F_GETFD)` only asks about a descriptor; it fails with
    // EBADF, touching nothing, when the descriptor is not open.
    if unsafe { libc::fcntl(number, libc::F_GETFD) } == -1 {
        let error = io::Error::last_os_error();
        return Err(format!("descriptor {number} is not open: {error}"));
    }
    // SAFETY: the descriptor is open (just asked), and it is only asked
    // about while borrowed; whoever gave its number keeps it open.
    let fd = unsafe { BorrowedFd::borrow_raw(number) };
    let socket = socket2::SockRef::from(&fd);
    // On a descriptor that is open, asking for a socket's type fails only
    // with ENOTSOCK.
    let Ok(kind) = socket.r#type() else {
        return Err(format!("descriptor {number} is not a socket"));
    };
    let internet = socket
        .local_addr()
        .is_ok_and(|address| address.as_socket().is_some());
    if kind != socket2::Type::STREAM || !internet {
        return Err(format!("descriptor {number} is not a TCP socket"));
    }
    if !accepts_connections(fd)? {
        return Err(format!(
            "descriptor {number} is a TCP socket that does not listen"
        ));
    }
    Ok(())
}

/// `SO_ACCEPTCONN`: whether `listen()` was called on the socket. (socket2
/// asks it only on some systems; the option itself is POSIX.)
fn accepts_connections(fd: BorrowedFd<'_>) -> Result<bool, String> {
    let mut value: libc::c_int = 0;
    let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the descriptor is open for as long as it is borrowed, and the
    // pointers are to a `c_int` and its length, as `SO_ACCEPTCONN` needs.
    let asked = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&mut value as *mut libc::c_int).cast(),
            &mut length,
        )
    };
    if asked != 0 {
        let error = io::Error::last_os_error();
        return Err(format!("descriptor {}: {error}", fd.as_raw_fd()));
    }
    Ok(value != 0)
}
