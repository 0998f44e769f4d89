//! gotham's own way to wait on PostgreSQL, served for the benchmark's
//! database comparison (`benches/futures_vs_threads/database.rs`):
//! `gotham_middleware_diesel`, diesel's PostgreSQL backend (libpq) over an
//! r2d2 pool, each query run by `Repo::run` on tokio's blocking pool
//! (`spawn_blocking`), which holds a thread for the whole wait, for the
//! connection and then for the query.
//!
//! ```text
//! diesel_peer LISTEN DATABASE_URL POOL WAIT_SECONDS
//! ```
//!
//! It answers `/sleep?seconds=N` as the database lesson does, on the same
//! serve loop, and prints the `Listening` line the benchmark waits for.

use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::Double;
use diesel::{PgConnection, RunQueryDsl};
use futures::FutureExt;
use gotham::handler::HandlerFuture;
use gotham::helpers::http::response::create_response;
use gotham::hyper::StatusCode;
use gotham::pipeline::{new_pipeline, single_pipeline};
use gotham::router::builder::{build_router, DefineSingleRoute, DrawRoutes};
use gotham::router::Router;
use gotham::state::{FromState, State};
use gotham_derive::{StateData, StaticResponseExtender};
use gotham_examples_handlers_simple_async_handlers::serve;
use gotham_middleware_diesel::{DieselMiddleware, Repo};
use serde_derive::Deserialize;

type DieselRepo = Repo<PgConnection>;

/// `?seconds=N` (the derived extender's bare 400 is enough here).
#[derive(Deserialize, StateData, StaticResponseExtender)]
struct SleepQuery {
    seconds: u64,
}

/// The route as the middleware's documentation shows it: a `Repo` in
/// `State` (put there by `DieselMiddleware`), and the query a closure that
/// `Repo::run` hands to `spawn_blocking`.
fn router(url: &str, pool: u32, wait: Duration) -> Router {
    let builder = Pool::<ConnectionManager<PgConnection>>::builder()
        .max_size(pool)
        .connection_timeout(wait);
    // r2d2 opens the pool's connections here, and the middleware panics if
    // it cannot: unlike the lesson, this way cannot start without its
    // database.
    let repo = DieselRepo::from_pool_builder(url, builder);
    let pipeline = new_pipeline().add(DieselMiddleware::new(repo)).build();
    let (chain, pipelines) = single_pipeline(pipeline);
    build_router(chain, pipelines, |route| {
        route
            .get("/sleep")
            .with_query_string_extractor::<SleepQuery>()
            .to(sleep_handler);
    })
}

fn sleep_handler(mut state: State) -> Pin<Box<HandlerFuture>> {
    let seconds = SleepQuery::take_from(&mut state).seconds;
    let repo = DieselRepo::borrow_from(&state).clone();
    async move {
        // `run` takes a connection from the pool inside the blocking task
        // and unwraps it: a pool wait that times out panics there, and
        // gotham answers the panic with an empty 500. A hang-up drops this
        // future, not the blocking task: the query runs on.
        let slept = repo
            .run(move |mut connection| {
                diesel::sql_query("SELECT pg_sleep($1)")
                    .bind::<Double, _>(seconds as f64)
                    .execute(&mut connection)
            })
            .await;
        let (status, body) = match slept {
            Ok(_) => (StatusCode::OK, format!("slept for {seconds} seconds\n")),
            Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")),
        };
        let response = create_response(&state, status, mime::TEXT_PLAIN, body);
        Ok((state, response))
    }
    .boxed()
}

#[tokio::main(worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, url, pool, wait] = args.as_slice() else {
        eprintln!("usage: diesel_peer LISTEN DATABASE_URL POOL WAIT_SECONDS");
        return ExitCode::FAILURE;
    };
    let (Ok(pool), Ok(wait)) = (pool.parse(), wait.parse()) else {
        eprintln!("POOL and WAIT_SECONDS are whole numbers");
        return ExitCode::FAILURE;
    };
    serve::listen_and_serve(listen, router(url, pool, Duration::from_secs(wait))).await
}
