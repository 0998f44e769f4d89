//! The third lesson: a handler whose wait is PostgreSQL's.
//!
//! `src/main.rs` waits on a timer and `examples/relay/` on another web
//! server. Most handlers in real use wait on a database. This program asks
//! PostgreSQL, through tokio-postgres and one pool of connections:
//!
//! ```text
//! $ cargo run --example database                    # terminal 1, on 7880
//! $ curl 'http://127.0.0.1:7880/sleep?seconds=2'    # terminal 2
//! slept for 2 seconds
//! $ curl 'http://127.0.0.1:7880/visit?name=ada'
//! visit 1 by ada
//! ```
//!
//! `GET /sleep?seconds=N` runs `SELECT pg_sleep(N)`: the wait is now the
//! database's. The handler's future waits on the query's, which waits on
//! the connection's socket: nothing polls it until PostgreSQL's answer
//! arrives, as with the timer and the relay's upstream.
//!
//! `GET /visit?name=NAME` counts NAME's visits in a table, `visits`, made
//! if missing: a shared thing that changes, kept where it survives a
//! restart of the program and is shared by every copy of it.
//!
//! What this adds to the relay, each where the code does it:
//!
//! - **one pool of connections, shared**: made once in `main`, reaching
//!   every request's `State` through `StateMiddleware` (`router`), at most
//!   `CONNECTIONS` connections to the database (`postgres.rs`);
//! - **a hang-up that reaches the query**: dropping a query's future does
//!   not stop PostgreSQL running it; a guard sends PostgreSQL's cancel
//!   request when it is dropped mid-query (`postgres.rs`, `CancelOnDrop`);
//! - **bounds with answers**: no connection within 10 seconds is a 503, a
//!   query past 10 seconds is cancelled and gets a 504, a database that
//!   cannot be reached a 503 naming it and why; each one line.
//!
//! The database is the one `DATABASE_URL` names (the variable sqlx, diesel
//! and most hosts read), its `sslmode` read as libpq reads it, with the
//! few exceptions `tls.rs` lists; by default PostgreSQL's socket on this machine,
//! as the system user, in the database of that user's name. The program
//! starts without it and says so on stderr; each request then gets the
//! failure until the database is there. Arguments: `[LISTEN]`, HOST:PORT,
//! by default `127.0.0.1:7880`. docs/database.md has a walk through it.

use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::Body;
use gotham::hyper::{Response, StatusCode};
use gotham::middleware::state::StateMiddleware;
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::response::StaticResponseExtender;
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::StateData;
use serde_derive::Deserialize;

use gotham_examples_handlers_simple_async_handlers::request_log::{self, RequestLog};
use gotham_examples_handlers_simple_async_handlers::{manners, serve};

mod postgres;
mod tls;

pub use postgres::{Bounds, Database, Failure, CONNECTIONS};

/// Where the program listens when no address is given: next to the
/// example (7878) and the relay (7879), and the body lesson (7881) after
/// it, so all four can run at once.
const DEFAULT_ADDR: &str = "127.0.0.1:7880";

/// The database when `DATABASE_URL` is not set: PostgreSQL's socket in
/// Debian's and Ubuntu's place, as the system user, in the database named
/// after that user. docs/database.md says how to make both on a stock install.
pub const DEFAULT_DATABASE_URL: &str = "postgresql://%2Fvar%2Frun%2Fpostgresql";

/// How long a request waits for a connection, and how long a query may run.
const DEADLINE: Duration = Duration::from_secs(10);

/// The same rules and the same words as `main.rs`'s 400.
const BAD_SECONDS_MESSAGE: &str = "the query string needs `seconds`, given once, as a whole \
number of seconds from 0 to 18446744073709551615, for example ?seconds=5\n";

/// `/visit`'s 400.
const BAD_NAME_MESSAGE: &str = "the query string needs `name`, given once, 1 to 64 \
characters with no control characters, for example ?name=ada\n";

/// The paths `router` serves, which a 404 lists.
pub const PATHS: &[&str] = &["/sleep", "/visit"];

/// The longest name `/visit` counts, in characters.
const LONGEST_NAME: usize = 64;

/// `?seconds=N`, as in `main.rs`.
#[derive(Deserialize, StateData)]
pub struct QueryStringExtractor {
    seconds: u64,
}

impl StaticResponseExtender for QueryStringExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_SECONDS_MESSAGE,
        );
    }
}

/// `?name=NAME`, for `/visit`; gotham has decoded it from the URL already.
#[derive(Deserialize, StateData)]
pub struct NameQueryExtractor {
    name: String,
}

impl StaticResponseExtender for NameQueryExtractor {
    type ResBody = Body;

    fn extend(state: &mut State, response: &mut Response<Body>) {
        *response = manners::response(
            state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_NAME_MESSAGE,
        );
    }
}

/// `GET /sleep?seconds=N`: `SELECT pg_sleep(N)`, then the example's line.
fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = QueryStringExtractor::take_from(&mut state).seconds;
    // A clone of a handle to the one pool: the future must own what it
    // uses, since it runs after this function has returned.
    let database = Database::borrow_from(&state).clone();
    let what = format!("database sleep for {seconds} seconds");
    println!("{what}: starting");

    async move {
        // If the client hangs up here, hyper drops this future: the guard
        // inside `sleep` sends the cancel request.
        let answer = database.sleep(seconds, &what).await;
        let body = answer.map(|()| format!("slept for {seconds} seconds\n"));
        Ok(respond(state, &what, body))
    }
    .boxed()
}

/// `GET /visit?name=NAME`: one more visit by NAME, and how many so far.
fn visit_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let name = NameQueryExtractor::take_from(&mut state).name;
    let fits =
        (1..=LONGEST_NAME).contains(&name.chars().count()) && !name.chars().any(char::is_control);
    if !fits {
        let response = manners::response(
            &state,
            StatusCode::BAD_REQUEST,
            mime::TEXT_PLAIN,
            BAD_NAME_MESSAGE,
        );
        return futures::future::ready(Ok((state, response))).boxed();
    }
    let database = Database::borrow_from(&state).clone();
    let what = format!("visit by {name}");
    println!("{what}: starting");

    async move {
        let answer = database.visit(&name, &what).await;
        let body = answer.map(|visits| format!("visit {visits} by {name}\n"));
        Ok(respond(state, &what, body))
    }
    .boxed()
}

/// The answer: the body, or the failure's status and line; and the
/// console's `finished` line, which says which.
fn respond(state: State, what: &str, answer: Result<String, Failure>) -> (State, Response<Body>) {
    let (status, body) = match answer {
        Ok(body) => (StatusCode::OK, body),
        Err(failure) => (failure.status, failure.line + "\n"),
    };
    let response = manners::response(&state, status, mime::TEXT_PLAIN, body);
    if status == StatusCode::OK {
        println!("{what}: finished");
    } else {
        println!("{what}: finished with {status}");
    }
    (state, response)
}

/// The two routes, behind a pipeline that puts the pool into each
/// request's `State`, as the relay's does with its HTTP client, after
/// `RequestLog`, which logs each request's line when `RUST_LOG` asks.
///
/// As in `main.rs`, each route answers `HEAD` too (`get_or_head`): the
/// handler runs, so a `HEAD` on `/sleep` runs its query and a `HEAD` on
/// `/visit` counts a visit, and the client gets the headers without the
/// body. A 404 or 405 gets a line saying why (`manners`).
pub fn router(database: Database) -> Router {
    let pipeline = new_pipeline()
        .add(RequestLog)
        .add(StateMiddleware::new(database))
        .build();
    let (chain, pipelines) = single_pipeline(pipeline);
    build_router(chain, pipelines, |route| {
        manners::explain_404_and_405(route, PATHS);
        route
            .get_or_head("/sleep")
            .with_query_string_extractor::<QueryStringExtractor>()
            .to(sleep_handler);
        route
            .get_or_head("/visit")
            .with_query_string_extractor::<NameQueryExtractor>()
            .to(visit_handler);
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    request_log::init_from_env();
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string());
    let bounds = Bounds {
        connections: CONNECTIONS,
        wait: DEADLINE,
        deadline: DEADLINE,
    };
    let database = match Database::new(&url, bounds) {
        Ok(database) => database,
        Err(reason) => {
            // Each reason names the part at fault, never the whole URL:
            // it may hold a password.
            eprintln!("error: {reason}");
            return ExitCode::FAILURE;
        }
    };
    // psql reads these; tokio-postgres does not, so neither does the lesson.
    for variable in ["PGSSLMODE", "PGSSLROOTCERT"] {
        if std::env::var_os(variable).is_some() {
            eprintln!("warning: {variable} is set, but only DATABASE_URL counts here: put it in the URL as {}", variable[2..].to_lowercase());
        }
    }
    // Tried once at start, beside the serving, only to say on stderr
    // what each request would meet; serving starts either way.
    tokio::spawn({
        let database = database.clone();
        async move {
            if let Err(failure) = database.check().await {
                eprintln!(
                    "warning: {}; serving anyway, each request answers this until the database is there",
                    failure.line
                );
            }
        }
    });
    serve::listen_and_serve(&listen, router(database)).await
}
