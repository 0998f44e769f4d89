//! The same two handlers, written with `async` blocks and `.await` instead
//! of `map` and `fold`.
//!
//! An `async` block is a future too: the compiler turns it into a state
//! machine that stops at each `.await` and returns "not ready" to whoever
//! polls it, exactly where the combinator versions stop. Nothing here waits
//! on a thread either, and dropping the future cancels it the same way.
//!
//! The tests serve these beside the shipped handlers and check that they
//! answer alike, take the same (virtual) time and are dropped alike when a
//! client hangs up. Only the tests compile this file: to serve these
//! instead, remove the `#[cfg(test)]` on `mod with_await` in `main.rs` and
//! write `with_await::sleep_handler` and `with_await::loop_handler` in
//! `router()`.

use std::pin::Pin;

use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::hyper::StatusCode;
use gotham::state::{FromState, State};

use super::{manners, sleep_for, QueryStringExtractor};

/// `GET /sleep?seconds=N`, awaiting the sleep.
pub(crate) fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for {seconds} seconds once: starting");

    async move {
        let body = sleep_for(seconds).await;
        let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
        println!("sleep for {seconds} seconds once: finished");
        Ok((state, response))
    }
    .boxed()
}

/// `GET /loop?seconds=N` as a plain `for` loop: each pass awaits one
/// second, so the next sleep starts only when the previous one is over.
pub(crate) fn loop_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    println!("sleep for one second {seconds} times: starting");

    async move {
        let mut body = Vec::new();
        for _ in 0..seconds {
            body.extend(sleep_for(1).await);
        }
        let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
        println!("sleep for one second {seconds} times: finished");
        Ok((state, response))
    }
    .boxed()
}
