//! How the server takes in connections, bounds its wait for clients, and
//! stops: everything around the handlers that `main.rs`, the relay, the
//! database lesson and the body lesson teach, shared by all four through
//! the library target (`lib.rs`).
//!
//! A handler may wait as long as its request asks. The server must not wait
//! on a *client* the same way, and `gotham::bind_server` (gotham 0.8.1) does:
//!
//! - it gives hyper no timer, so hyper's deadline for reading a request head
//!   is off. A connection that never sends a complete request is kept
//!   forever, holding a descriptor and hyper's buffers, and enough of them
//!   shut everybody else out (`docs/serving.md` has what was measured);
//! - its accept loop retries at once after any error. Out of descriptors the
//!   listener stays readable, so the loop spins: 100% of a core for as long
//!   as the idle connections stay.
//!
//! So this module has its own accept loop, built on gotham's public API
//! (`State::from_request` and `call_handler`, as gotham's own
//! `custom_service` example does) and on hyper's HTTP/1 connection with a
//! timer. What it does, each for a reason given where it is done:
//!
//! - a connection must send a complete request head within a deadline;
//! - hyper's buffers are made only once a client has sent a byte, and a
//!   waiting request's head is copied out of the read buffer
//!   (`detach_head`), so that hyper need not make a second one while the
//!   request waits: what a waiting client costs is close to what bare
//!   hyper's costs;
//! - a connection's read buffer grows to 128 KiB at most, not hyper's
//!   400 KiB, so uploads read slowly keep memory flat;
//! - out of descriptors, it closes the connection idle the longest to make
//!   room for a new client, but never a request in flight, nor a connection
//!   idle for under a second or with a request waiting unread; with none to
//!   close it pauses instead of spinning. A request whose handler waits for
//!   body bytes that do not come counts as idle (`WatchedBody`);
//! - it shuts down gracefully on Ctrl-C or SIGTERM.
//!
//! It speaks HTTP/1.1 only. hyper-util's automatic builder, which
//! `bind_server` uses, first sniffs for HTTP/2's preface, and that step has
//! no deadline: a client that sends nothing would hold it forever. HTTP/2
//! without TLS ("prior knowledge") is what it would add, and browsers never
//! use it.
//!
//! One file a concern, in the order a connection meets them:
//!
//! - `listen.rs`: binding the address with a deep listen queue, raising
//!   the descriptor limit, `listen_and_serve` and `Limits`;
//! - `handed_over.rs`: taking the listening socket from a service manager
//!   instead, so that a restart refuses nobody;
//! - `accept_loop.rs`: accepting connections, what to do when `accept()`
//!   fails, and the shutdown that ends the loop;
//! - `connection.rs`: one connection's life, from its accepting to its
//!   end: what happens to a client's connection; and the request body
//!   that tells when a handler waits on its client;
//! - `idle.rs`: which connections are idle and since when, so that the
//!   longest idle can make room;
//! - `stop.rs`: Ctrl-C and SIGTERM as a stream of stop requests.

mod accept_loop;
mod connection;
mod handed_over;
mod idle;
mod listen;
mod stop;

pub use accept_loop::{serve_with, Accept};
pub use connection::{detach_head, GothamService};
pub use listen::{
    bind, bind_with_backlog, listen_and_serve, raise_descriptor_limit, serve, Limits, Stopped,
    LISTEN_BACKLOG,
};
pub use stop::stop_signals;

#[cfg(test)]
mod tests;
