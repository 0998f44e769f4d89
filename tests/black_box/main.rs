//! Black-box tests: the real binary, started as a user starts it, on real
//! TCP. They live in one test crate so that cargo runs them in parallel (it
//! runs separate test crates one after another).
//!
//! Each test starts its own server on port 0, so they never share state.

mod cancellation;
mod descriptors;
mod hostile_input;
mod non_blocking;
mod readme;
mod shutdown;
mod starting;
mod support;
