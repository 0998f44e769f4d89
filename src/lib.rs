//! What the example's programs share: the serve loop.
//!
//! `src/main.rs` (run with `cargo run`) and `examples/relay/` (run with
//! `cargo run --example relay`) each build a gotham `Router` and hand it to
//! `serve::listen_and_serve`, which binds the address, says where it
//! listens, and serves until Ctrl-C. The lessons are in those programs;
//! this library is the plumbing around them, kept in one place so that both
//! programs take in, bound and stop their connections the same way.

pub mod serve;
