//! What the example's programs share: the serve loop, HTTP's manners, and
//! a middleware that logs each request's busy and waiting time.
//!
//! `src/main.rs` (run with `cargo run`), `examples/relay/` (`cargo run
//! --example relay`), `examples/database/` (`cargo run --example
//! database`) and `examples/body/` (`cargo run --example body`) each build
//! a gotham `Router` and hand it to
//! `serve::listen_and_serve`, which binds the address (or takes the socket
//! a service manager hands over), says where it listens, and serves until
//! Ctrl-C. The lessons are in those programs; this library is the plumbing
//! around them, kept in one place so that every program takes in, bounds
//! and stops its connections the same way,
//! answer `HEAD`, unknown paths and other methods the same way (`manners`),
//! and log their requests the same way when `RUST_LOG` asks (`request_log`).

pub mod manners;
pub mod request_log;
pub mod serve;

// `cargo test` compiles and runs the Rust blocks of every page as doctests
// of these items, one for each page (`tests/docs` fails on a page missing
// here). They exist only for rustdoc's tests, so the library's own
// documentation stays its own.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;
#[cfg(doctest)]
#[doc = include_str!("../docs/body.md")]
pub struct Body;
#[cfg(doctest)]
#[doc = include_str!("../docs/database.md")]
pub struct Database;
#[cfg(doctest)]
#[doc = include_str!("../docs/exercises.md")]
pub struct Exercises;
#[cfg(doctest)]
#[doc = include_str!("../docs/futures_vs_threads.md")]
pub struct FuturesVsThreads;
#[cfg(doctest)]
#[doc = include_str!("../docs/maintaining.md")]
pub struct Maintaining;
#[cfg(doctest)]
#[doc = include_str!("../docs/questions.md")]
pub struct Questions;
#[cfg(doctest)]
#[doc = include_str!("../docs/relay.md")]
pub struct Relay;
#[cfg(doctest)]
#[doc = include_str!("../docs/serving.md")]
pub struct Serving;
#[cfg(doctest)]
#[doc = include_str!("../docs/testing.md")]
pub struct Testing;
