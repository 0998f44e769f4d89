//! The fourth lesson: a handler that waits on its own client's body.
//!
//! `src/main.rs` waits on a timer, `examples/relay/` on another web server
//! and `examples/database/` on PostgreSQL. Here the wait is on the one party
//! a server trusts least, its own client, sending a request body:
//!
//! ```text
//! $ cargo run --example body                                     # on 7881
//! $ curl -d '{"seconds":1}' -H 'content-type: application/json' \
//!     http://127.0.0.1:7881/sleep
//! slept for 1 seconds
//! $ curl --data-binary @Cargo.lock http://127.0.0.1:7881/digest
//! N bytes, sha256 HEX                                    # as sha256sum says
//! ```
//!
//! - `POST /sleep` takes `{"seconds": N}` as JSON and then does what
//!   `GET /sleep?seconds=N` does in `src/main.rs`, with the same lines.
//! - `POST /digest` takes a body of any kind, up to 1 GiB, and answers its
//!   size and SHA-256, holding one frame of it at a time. `?pause_ms=N`
//!   makes it pause after each frame, a slow reader: the client's sends
//!   then wait, and the server's memory stays flat (backpressure).
//!
//! A body is a stream of frames that hyper reads from the socket only when
//! the handler asks for the next one: the handler's future waits on the
//! socket, as the relay's waits on its upstream. Waiting on a client is
//! bounded like any other wait (`reading.rs`): in size (413), in time
//! (408), and each refusal in one line. A client that hangs up mid-body
//! does not drop the handler's future as a hang-up mid-sleep does: hyper
//! hands the handler an error, and the handler answers it and says so on
//! the console. docs/body.md walks through it. Arguments: `[LISTEN]`,
//! HOST:PORT, by default `127.0.0.1:7881`.

use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::Body;
use gotham::hyper::header::CONTENT_TYPE;
use gotham::hyper::{HeaderMap, Response, StatusCode};
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;
use sha2::{Digest, Sha256};

use gotham_examples_handlers_simple_async_handlers::request_log::{self, RequestLog};
use gotham_examples_handlers_simple_async_handlers::{manners, serve};

mod reading;

use reading::{Bounds, Reading, Refusal};

/// Where the program listens when no address is given: next to the other
/// three lessons (7878 to 7880), so all four can run at once.
const DEFAULT_ADDR: &str = "127.0.0.1:7881";

/// `POST /sleep`'s body: `{"seconds": 5}` is 14 bytes, so a kibibyte is
/// room enough, and 10 s is long for a body that small.
const SLEEP_BOUNDS: Bounds = Bounds {
    size: 1024,
    time: Duration::from_secs(10),
    bytes_per_extra_second: None,
};

/// `POST /digest`'s body: up to 1 GiB, in 20 s plus a second for each 500
/// bytes received (Apache's `mod_reqtimeout` default, `body=20,MinRate=500`):
/// a large upload may take its time as long as it keeps coming.
const DIGEST_BOUNDS: Bounds = Bounds {
    size: 1 << 30,
    time: Duration::from_secs(20),
    bytes_per_extra_second: Some(500),
};

/// The longest pause `/digest` takes after a frame.
const LONGEST_PAUSE_MS: u64 = 10_000;

/// The paths `router` serves, which a 404 lists.
pub const PATHS: &[&str] = &["/sleep", "/digest"];

/// `POST /sleep`'s body. `deny_unknown_fields`: a misspelled `secnods`
/// gets a 400 naming it, not a silent default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepRequest {
    seconds: u64,
}

/// `?pause_ms=N` for `/digest`, 0 if not given.
#[derive(Deserialize, StateData)]
pub struct DigestQuery {
    #[serde(default)]
    pause_ms: u64,
}

const BAD_PAUSE_MESSAGE: &str =
    "the query string takes `pause_ms`, a whole number of milliseconds from 0 to 10000\n";

impl StaticResponseExtender for DigestQuery {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_PAUSE_MESSAGE,
        );
    }
}

/// Refuses a body that is not JSON: compares the media type, so that
/// `application/json; charset=utf-8` is JSON too.
fn check_json(state: &State) -> Result<(), Refusal> {
    let sent = HeaderMap::borrow_from(state).get(CONTENT_TYPE);
    let media_type = sent
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<mime::Mime>().ok());
    if media_type.is_some_and(|media_type| media_type.essence_str() == "application/json") {
        return Ok(());
    }
    let what = match sent {
        Some(value) => format!("`{}`", String::from_utf8_lossy(value.as_bytes())),
        None => "none".to_string(),
    };
    Err(Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        line: format!("this route takes `content-type: application/json`; the request's is {what}"),
        cut_short: false,
    })
}

/// The seconds `POST /sleep`'s body asks for, or why there are none.
/// The checks that need no body come first (see `check_announced_size`).
async fn seconds_asked(state: &mut State) -> Result<u64, Refusal> {
    check_json(state)?;
    reading::check_announced_size(state, &SLEEP_BOUNDS)?;
    let body = Reading::take_from(state, SLEEP_BOUNDS).whole().await?;
    // serde_json's message names the line and column, and the field.
    let asked: SleepRequest = serde_json::from_slice(&body).map_err(|error| Refusal {
        status: StatusCode::BAD_REQUEST,
        line: format!("the body must be JSON such as {{\"seconds\": 5}}: {error}"),
        cut_short: false,
    })?;
    Ok(asked.seconds)
}

/// `POST /sleep` with `{"seconds": N}`: `GET /sleep?seconds=N`'s twin.
///
/// Once the body is read, the wait is the timer's: a client that hangs
/// up now has the future dropped, as in `src/main.rs`, and `finished` is
/// never printed.
fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    async move {
        let seconds = match seconds_asked(&mut state).await {
            Ok(seconds) => seconds,
            Err(refusal) => return Ok(refusal.respond(state, "POST /sleep")),
        };
        println!("sleep for {seconds} seconds once: starting");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let body = format!("slept for {seconds} seconds\n");
        let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
        println!("sleep for {seconds} seconds once: finished");
        Ok((state, response))
    }
    .boxed()
}

/// The body's size and SHA-256, read one frame at a time.
async fn digest(state: &mut State, pause: Duration) -> Result<String, Refusal> {
    reading::check_announced_size(state, &DIGEST_BOUNDS)?;
    let mut body = Reading::take_from(state, DIGEST_BOUNDS);
    let mut hasher = Sha256::new();
    while let Some(frame) = body.next().await? {
        hasher.update(&frame);
        // The frame is dropped here: memory holds one at a time.
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("{} bytes, sha256 {hex}\n", body.received()))
}

/// `POST /digest[?pause_ms=N]`: `N bytes, sha256 HEX`.
fn digest_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let pause_ms = DigestQuery::take_from(&mut state).pause_ms;
    async move {
        if pause_ms > LONGEST_PAUSE_MS {
            let response = manners::response(
                &state,
                StatusCode::BAD_REQUEST,
                mime::TEXT_PLAIN,
                BAD_PAUSE_MESSAGE,
            );
            return Ok((state, response));
        }
        match digest(&mut state, Duration::from_millis(pause_ms)).await {
            Ok(body) => {
                let response = manners::response(&state, StatusCode::OK, mime::TEXT_PLAIN, body);
                Ok((state, response))
            }
            Err(refusal) => Ok(refusal.respond(state, "POST /digest")),
        }
    }
    .boxed()
}

/// The two routes. Both take `POST` only: a `GET` or `HEAD` on them gets a
/// 405 that says so, another path a 404 (`manners`). Each request a route
/// takes passes the request log first (`src/request_log.rs`): with
/// `RUST_LOG=info`, a line with how long its handler was busy and how long
/// it waited, here mostly for the client's body. The router's own answers
/// (404, 405, the 400 for `pause_ms`'s query string) get none.
pub fn router() -> Router {
    let (chain, pipelines) = single_pipeline(new_pipeline().add(RequestLog).build());
    build_router(chain, pipelines, |route| {
        manners::explain_404_and_405(route, PATHS);
        route.post("/sleep").to(sleep_handler);
        route
            .post("/digest")
            .with_query_string_extractor::<DigestQuery>()
            .to(digest_handler);
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    request_log::init_from_env();
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    serve::listen_and_serve(&listen, router()).await
}

#[cfg(test)]
mod tests;
