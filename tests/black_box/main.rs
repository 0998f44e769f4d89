//! Black-box tests: the real binary, started as a user starts it, on real
//! TCP. They live in one test crate so that cargo runs them in parallel (it
//! runs separate test crates one after another).
//!
//! Each test starts its own server on port 0, so they never share state.

mod body;
mod burst;
mod cancellation;
mod descriptors;
mod hostile_input;
mod log_lines;
mod logging;
mod manners;
mod non_blocking;
mod readme;
mod relay;
mod several_at_once;
mod shutdown;
mod starting;
mod support;

// The relay example, compiled in so that its tests can serve its router
// in-process beside the real example binary (cargo builds examples for
// `cargo test`, but tells integration tests no path to them). Its `main`
// goes unused here.
#[allow(dead_code)]
#[path = "../../examples/relay/main.rs"]
mod relay_example;

// The body lesson, compiled in the same way: its in-process tests
// (`examples/body/tests.rs`) run here, and `body.rs` runs this test binary
// as the lesson's server, to read its console.
#[allow(dead_code)]
#[path = "../../examples/body/main.rs"]
mod body_example;
