//! The lesson's side of the conversation with PostgreSQL: one pool of
//! connections, the bounds on it, the cancel request a hang-up sends, and
//! failures a client can read. `main.rs` holds the handlers that use it;
//! `tls.rs` the TLS that `sslmode` asks for.

use std::fmt::Write as _;
use std::panic::RefUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, Object, Pool, PoolError, Runtime, TimeoutType};
use gotham::hyper::StatusCode;
use gotham_derive::StateData;
use tokio::sync::OnceCell;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{CancelToken, Config};

use super::tls::{Settings, Tls};

/// How many connections the program opens to the database, at most.
///
/// PostgreSQL allows 100 connections by default (`max_connections`), three
/// of them kept for superusers, and every process that uses the database
/// shares them: copies of this program, psql, migrations, backups. Ten
/// leaves room for several copies and the tools beside them. More would not
/// make PostgreSQL faster: each connection is a process of its own on the
/// server, and past a few per core they queue for its CPUs and disks.
/// Requests past the tenth wait for a connection to come free.
pub const CONNECTIONS: usize = 10;

/// The bounds on the pool and on each query.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// At most this many connections to the database (P).
    pub connections: usize,
    /// How long a request waits for a pooled connection, and for a new
    /// connection to be made, before it gets a 503.
    pub wait: Duration,
    /// How long a query may run (D) before it is cancelled and gets a 504.
    pub deadline: Duration,
}

/// The database, and the one pool of connections to it.
///
/// A pool, not a connection per request: opening a PostgreSQL connection
/// costs a TCP (or socket) handshake, authentication and a new process on
/// the server, several milliseconds, and the server allows only so many.
/// A pooled connection is opened once and lent to one request at a time.
/// Cloning a `Database` clones a handle to the same pool (deadpool keeps it
/// behind an `Arc`), which is why `StateMiddleware` can put a clone in
/// every request's `State`, as the relay does with its HTTP client.
///
/// As for the relay's `Upstream`, gotham wants `RefUnwindSafe`, and neither
/// the pool (its manager is a boxed trait object) nor tokio's `OnceCell`
/// promises it itself (error E0277 without the `impl` below). The promise
/// holds for the same reason: each changes only inside its own code, under
/// its own locks, never halfway by a handler's panic.
#[derive(Clone, StateData)]
pub struct Database {
    pool: Pool,
    /// Which database, for the lines a client reads: never the password.
    name: Arc<str>,
    bounds: Bounds,
    /// Set once the visits table is known to exist.
    table: Arc<OnceCell<()>>,
    /// The TLS `sslmode` asks for, for connections and cancel requests.
    tls: Tls,
}

impl RefUnwindSafe for Database {}

/// Why a request gets no answer from the database: the status to answer,
/// and one line for the client (without its newline).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub line: String,
}

impl Database {
    /// A pool for the database `url` names (a `postgres://` URL or
    /// libpq's `key=value` form). No connection is made here: the pool
    /// makes one when one is first asked for (by `check` at start, or by a
    /// request). Fails only on a URL that cannot be read or asks for what
    /// the lesson cannot do, with one line saying which part.
    pub fn new(url: &str, bounds: Bounds) -> Result<Database, String> {
        // `sslmode` and `sslrootcert` are read here, not by tokio-postgres
        // (`tls.rs` says why); the rest of the URL is its to read.
        let settings = Settings::take_from(url)?;
        // tokio-postgres's messages name the option at fault, never its
        // value, so the password cannot leak through them.
        let mut config: Config = settings.rest.parse().map_err(|error| unreadable(&error))?;
        let tls = Tls::new(&settings, config.get_hosts())?;
        config.ssl_mode(tls.ssl_mode());
        // A new connection gets as long as a pooled one is waited for.
        config.connect_timeout(bounds.wait);
        // What `pg_stat_activity` shows for this program's sessions.
        if config.get_application_name().is_none() {
            config.application_name("gotham database lesson");
        }
        let name = describe(&config);
        let pool = Pool::builder(Manager::new(config, tls.connector()))
            .max_size(bounds.connections)
            .wait_timeout(Some(bounds.wait))
            .create_timeout(Some(bounds.wait))
            .recycle_timeout(Some(bounds.wait))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Database {
            pool,
            name: name.into(),
            bounds,
            table: Arc::new(OnceCell::new()),
            tls,
        })
    }

    /// Which database this is, as the lines to clients name it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes sure a connection can be had, for the line at start.
    pub async fn check(&self) -> Result<(), Failure> {
        self.connection().await.map(drop)
    }

    /// `SELECT pg_sleep($1)`: the database waits `seconds`, then answers.
    ///
    /// `pg_sleep` takes a `float8` (an `f64`), and tokio-postgres binds a
    /// parameter only from the Rust type that matches its SQL type: it has
    /// no `ToSql` for `u64`, which PostgreSQL has no type for. `as f64` is
    /// exact up to 2^53 seconds (285 million years) and rounds beyond; the
    /// query deadline ends any such sleep long before it matters.
    pub async fn sleep(&self, seconds: u64, what: &str) -> Result<(), Failure> {
        let seconds = seconds as f64;
        let guard = CancelOnDrop::arm(self.connection().await?, what, &self.tls);
        let client = guard.connection();
        let answer = tokio::time::timeout(self.bounds.deadline, async {
            // Prepared once per connection, then taken from deadpool's
            // cache: later sleeps on it skip a round trip.
            let statement = client.prepare_cached("SELECT pg_sleep($1)").await?;
            client.execute(&statement, &[&seconds]).await
        })
        .await;
        self.ended(guard, answer).map(drop)
    }

    /// Counts one more visit by `name` and returns how many there have
    /// been, kept in the database's `visits` table (made if missing).
    ///
    /// `$1` is bound: the name travels beside the SQL, never inside it, so
    /// no name can change what the statement does.
    pub async fn visit(&self, name: &str, what: &str) -> Result<i64, Failure> {
        let guard = CancelOnDrop::arm(self.connection().await?, what, &self.tls);
        let client = guard.connection();
        let answer = tokio::time::timeout(self.bounds.deadline, async {
            self.table.get_or_try_init(|| make_table(client)).await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO visits (name, visits) VALUES ($1, 1) \
                     ON CONFLICT (name) DO UPDATE SET visits = visits.visits + 1 \
                     RETURNING visits",
                )
                .await?;
            let row = client.query_one(&statement, &[&name]).await?;
            row.try_get::<_, i64>(0)
        })
        .await;
        self.ended(guard, answer)
    }

    /// What a query came to: its answer, its failure, or, past the
    /// deadline, a 504 (the guard, dropped here, cancels it on the server).
    fn ended<T>(
        &self,
        guard: CancelOnDrop,
        answer: Result<Result<T, tokio_postgres::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, Failure> {
        match answer {
            Ok(answer) => {
                // The query ended by itself: nothing left to cancel, and
                // the connection goes back to the pool.
                guard.disarm();
                answer.map_err(|error| self.query_failed(&error))
            }
            Err(_elapsed) => Err(Failure {
                status: StatusCode::GATEWAY_TIMEOUT,
                line: format!(
                    "{} did not answer within {} seconds; the query was cancelled",
                    self.name,
                    self.bounds.deadline.as_secs_f64()
                ),
            }),
        }
    }

    /// A pooled connection, or the 503 that says why there is none.
    async fn connection(&self) -> Result<Object, Failure> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(TimeoutType::Wait) => Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                line: format!(
                    "all {} connections to {} are in use, and none came free within {} seconds",
                    self.bounds.connections,
                    self.name,
                    self.bounds.wait.as_secs_f64()
                ),
            },
            PoolError::Timeout(_) => self.unreachable(&format!(
                "no connection within {} seconds",
                self.bounds.wait.as_secs_f64()
            )),
            PoolError::Backend(error) => match self.tls.explain(&error) {
                // The TLS setting to look at, where other failures say
                // that DATABASE_URL names the database.
                Some(reason) => Failure {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    line: format!("cannot connect to {}: {reason}", self.name),
                },
                None => self.unreachable(&innermost(&error)),
            },
            other => Failure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                line: format!(
                    "cannot use the pool of connections to {}: {other}",
                    self.name
                ),
            },
        })
    }

    /// The status and line for a database that cannot be reached (or that
    /// turns the connection away: no such role, a wrong password): 503, the
    /// standard "cannot serve this now, try again later". Not the relay's
    /// 502: that status says a gateway got a bad answer from the server it
    /// passes requests on to, and this program passes nothing on; the
    /// database is part of the service, and the service is down.
    fn unreachable(&self, reason: &str) -> Failure {
        Failure {
            status: StatusCode::SERVICE_UNAVAILABLE,
            line: format!(
                "cannot connect to {}: {reason} (DATABASE_URL names the database)",
                self.name
            ),
        }
    }

    /// The line for a query that failed: the connection lost is the
    /// database's absence (503); an error PostgreSQL sent back is the
    /// program's own fault or the data's (500), said in PostgreSQL's words.
    fn query_failed(&self, error: &tokio_postgres::Error) -> Failure {
        let shutting_down = error.code().is_some_and(|code| {
            code == &SqlState::ADMIN_SHUTDOWN
                || code == &SqlState::CRASH_SHUTDOWN
                || code == &SqlState::CANNOT_CONNECT_NOW
        });
        if error.is_closed() || shutting_down || error.as_db_error().is_none() {
            return Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                line: format!("lost the connection to {}: {}", self.name, innermost(error)),
            };
        }
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            line: format!("{} refused the query: {}", self.name, innermost(error)),
        }
    }
}

/// A guard that owns a pooled connection while its query runs.
///
/// Dropping a tokio-postgres query future stops the *client* waiting, not
/// the server working: the query went out on the connection and PostgreSQL
/// runs it to its end. Stopping it takes a cancel request, sent on a
/// separate, new connection, naming the backend process (its secret key is
/// in the `CancelToken`). `Drop` cannot `.await`, so the guard spawns a task
/// that sends it.
///
/// And the connection itself is taken out of the pool (`Object::take`) and
/// closed, not given back. PostgreSQL cancels whatever its backend is
/// running when the cancel request arrives; a connection lent to the next
/// request at once could have *that* request's query cancelled, if the
/// cancel arrived after the old query ended of itself. A connection closed
/// cannot be lent. The price is a new connection for the next request,
/// only after a hang-up or a deadline: milliseconds.
///
/// The cancel request goes the way the connection went, with the same
/// connector: `cancel_query` asks for TLS as the connection's `sslmode`
/// did, and with `NoTls` it fails at once under `require`, leaving the
/// query to run on.
struct CancelOnDrop {
    connection: Option<Object>,
    what: String,
    tls: Tls,
}

impl CancelOnDrop {
    /// Guards `connection` for the query `what` (named in the console line
    /// the cancel prints).
    fn arm(connection: Object, what: &str, tls: &Tls) -> CancelOnDrop {
        CancelOnDrop {
            connection: Some(connection),
            what: what.to_string(),
            tls: tls.clone(),
        }
    }

    /// The connection, for the query. The query's future borrows it from
    /// the guard, so the compiler drops that future before the guard.
    fn connection(&self) -> &Object {
        self.connection.as_ref().expect("armed until dropped")
    }

    /// The query ended by itself: the connection goes back to the pool.
    fn disarm(mut self) {
        drop(self.connection.take());
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let token: CancelToken = connection.cancel_token();
        // Out of the pool, and closed when dropped here.
        drop(Object::take(connection));
        let what = std::mem::take(&mut self.what);
        let tls = self.tls.connector();
        // A guard dropped as the runtime itself shuts down has nowhere to
        // send from: PostgreSQL then runs the query to its end.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            match token.cancel_query(tls).await {
                Ok(()) => println!("{what}: cancelled on the server"),
                Err(error) => println!("{what}: could not be cancelled: {}", innermost(&error)),
            }
        });
    }
}

/// Makes the `visits` table if it is missing, safely when another session
/// makes it at the same moment.
///
/// `CREATE TABLE IF NOT EXISTS` is not safe against itself: two sessions
/// can both find the table missing, and the second then waits on the
/// first's entry in the catalogue and fails when the first commits (23505,
/// a unique index of the catalogue), or finds the table made (42P07) or its
/// row type (42710, `type "visits" already exists`). Two copies of the
/// lesson sent their first `/visit` at once met all three. Each means
/// someone made the table, so the lesson goes on. That
/// covers any other maker (another copy, psql, a migration) where an
/// advisory lock would serialise only the sessions that take it, and costs
/// no round trip when nobody races.
async fn make_table(client: &Object) -> Result<(), tokio_postgres::Error> {
    let made = client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS visits \
             (name text PRIMARY KEY, visits bigint NOT NULL)",
        )
        .await;
    match made {
        Err(error)
            if [
                SqlState::UNIQUE_VIOLATION,
                SqlState::DUPLICATE_TABLE,
                SqlState::DUPLICATE_OBJECT,
            ]
            .iter()
            .any(|code| error.code() == Some(code)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// A URL tokio-postgres cannot read, in one line: an option it does not
/// know is named as such.
fn unreadable(error: &tokio_postgres::Error) -> String {
    let reason = innermost(error);
    match reason.strip_prefix("unknown option ") {
        Some(key) => format!(
            "DATABASE_URL has {key}, an option tokio-postgres does not know \
             (the lesson itself reads sslmode and sslrootcert)"
        ),
        None => format!("DATABASE_URL cannot be read: {reason}"),
    }
}

/// `database DB at HOST:PORT as USER` (a socket's path in place of
/// HOST:PORT), for the lines: the parts that say which database, never the
/// password.
fn describe(config: &Config) -> String {
    // tokio-postgres, like libpq, uses the system user's name when the URL
    // names none, and the user's name for a database not named.
    let user = config
        .get_user()
        .map(str::to_string)
        .unwrap_or_else(|| whoami::username().unwrap_or_else(|_| "(your user name)".to_string()));
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let mut hosts = String::new();
    for host in config.get_hosts() {
        if !hosts.is_empty() {
            hosts.push(',');
        }
        match host {
            Host::Tcp(name) => {
                let _ = write!(hosts, "{name}:{port}");
            }
            Host::Unix(directory) => {
                let _ = write!(hosts, "{}/.s.PGSQL.{port}", directory.display());
            }
        }
    }
    format!("database {dbname} at {hosts} as {user}")
}

/// The innermost cause of an error: "connection refused" says more than
/// tokio-postgres's "error connecting to server".
fn innermost(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_string();
    }
    let mut cause: &dyn std::error::Error = error;
    while let Some(deeper) = cause.source() {
        cause = deeper;
    }
    let line = cause.to_string();
    if line.is_empty() {
        error.to_string()
    } else {
        line
    }
}
