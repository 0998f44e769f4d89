//! What the example's programs share: the serve loop, and HTTP's manners.
//!
//! `src/main.rs` (run with `cargo run`) and `examples/relay/` (run with
//! `cargo run --example relay`) each build a gotham `Router` and hand it to
//! `serve::listen_and_serve`, which binds the address, says where it
//! listens, and serves until Ctrl-C. The lessons are in those programs;
//! this library is the plumbing around them, kept in one place so that both
//! programs take in, bound and stop their connections the same way, and
//! answer `HEAD`, unknown paths and other methods the same way (`manners`).

pub mod manners;
pub mod serve;
