//! TLS as `sslmode` asks, against a throwaway PostgreSQL on 127.0.0.1 with
//! `ssl` on and certificates the tests made (`throwaway.rs`); and what the
//! lesson refuses at start, in one line.

use crate::example::Database;
use crate::throwaway::Postgres;
use crate::{get, lesson_bounds, serve_lesson};

/// libpq's `key=value` form for the server's TCP port, as `host` (the name
/// the certificate is checked against) and `hostaddr` (where to connect),
/// with `extra` after it.
fn tcp_url(postgres: &Postgres, host: &str, extra: &str) -> String {
    format!(
        "host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres {extra}",
        postgres.port()
    )
}

/// The start of every TLS failure's line for `host`.
fn cannot_connect(postgres: &Postgres, host: &str) -> String {
    format!(
        "cannot connect to database postgres at {host}:{} as postgres: ",
        postgres.port()
    )
}

#[tokio::test]
async fn require_encrypts_the_session_as_pg_stat_ssl_shows() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    // A root file named but not there: under `require` libpq then checks
    // nothing, as here; without it, a ~/.postgresql/root.crt of the
    // tester's own would make this `verify-ca`.
    let missing = postgres.certificates().authority.with_file_name("none.crt");
    let extra = format!("sslmode=require sslrootcert='{}'", missing.display());
    let lesson = serve_lesson(&tcp_url(&postgres, "localhost", &extra), lesson_bounds()).await;
    assert_eq!(
        get(lesson, "/sleep?seconds=1").await,
        (200, "slept for 1 seconds\n".into())
    );

    // The pooled connection stays open: the server says how it is carried.
    let watcher = postgres.connect().await;
    let row = watcher
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) \
             FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'gotham database lesson'",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (sessions, all_encrypted): (i64, bool) = (row.get(0), row.get(1));
    assert!(sessions >= 1, "no session of the lesson's is open");
    assert!(all_encrypted, "a session of the lesson's is not encrypted");
}

#[tokio::test]
async fn verify_full_with_the_tests_authority_answers_and_with_another_gets_a_503_saying_so() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    let certificates = postgres.certificates();
    // The URL form this time, the root file's path percent-encoded.
    let url = |root: &std::path::Path| {
        let root = root.display().to_string().replace('/', "%2F");
        format!(
            "postgresql://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={root}",
            postgres.port()
        )
    };
    let trusted = serve_lesson(&url(&certificates.authority), lesson_bounds()).await;
    assert_eq!(
        get(trusted, "/sleep?seconds=1").await,
        (200, "slept for 1 seconds\n".into())
    );

    let other = serve_lesson(&url(&certificates.other_authority), lesson_bounds()).await;
    let (status, line) = get(other, "/sleep?seconds=1").await;
    assert_eq!(status, 503, "{line}");
    let expected = format!(
        "{}the server's certificate does not verify: ",
        cannot_connect(&postgres, "localhost")
    );
    assert!(line.starts_with(&expected), "{line:?}");
    assert!(
        line.ends_with(&format!(
            "(sslmode=verify-full trusts the roots in {} for the host named; \
             look at DATABASE_URL's sslrootcert and host)\n",
            certificates.other_authority.display()
        )),
        "{line:?}"
    );
    assert_eq!(line.lines().count(), 1, "{line:?}");

    // The system's roots (libpq 16's `system`) never hold the tests'
    // authority: the same 503, naming them.
    let url = format!(
        "postgresql://postgres@localhost:{}/postgres?sslrootcert=system",
        postgres.port()
    );
    let system = serve_lesson(&url, lesson_bounds()).await;
    let (status, line) = get(system, "/sleep?seconds=1").await;
    assert_eq!(status, 503, "{line}");
    assert!(
        line.starts_with(&expected)
            && line.ends_with(
                "(sslmode=verify-full trusts the system's roots for the host named; \
                 look at DATABASE_URL's sslrootcert and host)\n"
            ),
        "{line:?}"
    );
}

#[tokio::test]
async fn a_wrong_host_name_fails_verify_full_and_passes_verify_ca() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    let root = postgres.certificates().authority.display().to_string();
    // tokio-postgres checks `host`, and connects to `hostaddr`.
    let full = tcp_url(
        &postgres,
        "wrong.name",
        &format!("sslmode=verify-full sslrootcert={root}"),
    );
    let lesson = serve_lesson(&full, lesson_bounds()).await;
    let (status, line) = get(lesson, "/sleep?seconds=0").await;
    assert_eq!(status, 503, "{line}");
    // OpenSSL's verdict, in the case this OpenSSL writes it.
    assert_eq!(
        line.to_lowercase(),
        format!(
            "{}the server's certificate does not verify: hostname mismatch \
             (sslmode=verify-full trusts the roots in {root} for the host named; \
             look at DATABASE_URL's sslrootcert and host)\n",
            cannot_connect(&postgres, "wrong.name")
        )
        .to_lowercase()
    );

    let chain_only = tcp_url(
        &postgres,
        "wrong.name",
        &format!("sslmode=verify-ca sslrootcert={root}"),
    );
    let lesson = serve_lesson(&chain_only, lesson_bounds()).await;
    assert_eq!(
        get(lesson, "/sleep?seconds=0").await,
        (200, "slept for 0 seconds\n".into())
    );
}

#[tokio::test]
async fn require_with_a_root_file_checks_the_chain_as_verify_ca() {
    let Some(postgres) = Postgres::start_tcp(true).await else {
        return;
    };
    let root = postgres
        .certificates()
        .other_authority
        .display()
        .to_string();
    let url = tcp_url(
        &postgres,
        "localhost",
        &format!("sslmode=require sslrootcert={root}"),
    );
    let lesson = serve_lesson(&url, lesson_bounds()).await;
    let (status, line) = get(lesson, "/sleep?seconds=0").await;
    assert_eq!(status, 503, "{line}");
    assert!(
        line.starts_with(&format!(
            "{}the server's certificate does not verify: ",
            cannot_connect(&postgres, "localhost")
        )) && line.contains(&format!("(sslmode=require trusts the roots in {root};")),
        "{line:?}"
    );
}

#[tokio::test]
async fn require_against_a_server_without_tls_gets_a_503_saying_so() {
    let Some(postgres) = Postgres::start_tcp(false).await else {
        return;
    };
    let lesson = serve_lesson(
        &tcp_url(&postgres, "localhost", "sslmode=require"),
        lesson_bounds(),
    )
    .await;
    assert_eq!(
        get(lesson, "/sleep?seconds=0").await,
        (
            503,
            format!(
                "{}the server does not offer TLS, which sslmode=require asks for \
                 (look at DATABASE_URL's sslmode, or the server's ssl setting)\n",
                cannot_connect(&postgres, "localhost")
            )
        )
    );
    // And `prefer` goes on in plain text, as psql does.
    let lesson = serve_lesson(
        &tcp_url(&postgres, "localhost", "sslmode=prefer"),
        lesson_bounds(),
    )
    .await;
    assert_eq!(get(lesson, "/sleep?seconds=0").await.0, 200);
    // And on the server's Unix socket, `require` asks for no TLS, as libpq.
    let lesson = serve_lesson(
        &format!("{} sslmode=require", postgres.url()),
        lesson_bounds(),
    )
    .await;
    assert_eq!(get(lesson, "/sleep?seconds=0").await.0, 200);
}

#[test]
fn what_the_lesson_cannot_do_is_refused_at_start_in_one_line_naming_it() {
    let refused = |url: &str| {
        Database::new(url, lesson_bounds())
            .err()
            .unwrap_or_else(|| panic!("{url} was taken"))
    };
    assert_eq!(
        refused("postgresql://alice:hunter2secret@db.example/shop?sslmode=verify_full"),
        "DATABASE_URL has sslmode=verify_full, which is none of disable, prefer, require, \
         verify-ca, verify-full"
    );
    assert!(refused("host=db.example sslmode=allow").starts_with("DATABASE_URL has sslmode=allow"));
    assert_eq!(
        refused("host=db.example password='hunter2 secret' sslcert=me.crt"),
        "DATABASE_URL has `sslcert`, but this lesson does not use client certificates: \
         take `sslcert` out of DATABASE_URL"
    );
    assert_eq!(
        refused("postgres://db.example/shop?sslcrl=%2Fcrl.pem"),
        "DATABASE_URL has `sslcrl`, but this lesson does not use certificate revocation \
         lists: take `sslcrl` out of DATABASE_URL"
    );
    assert_eq!(
        refused("postgres://db.example/shop?sslrootcert=system&sslmode=require"),
        "DATABASE_URL has sslrootcert=system with sslmode=require: the system's roots go \
         with sslmode=verify-full only, as in libpq"
    );
    assert_eq!(
        refused("postgres://alice:hunter2secret@db.example/shop?sslcompression=1"),
        "DATABASE_URL has `sslcompression`, an option tokio-postgres does not know \
         (the lesson itself reads sslmode and sslrootcert)"
    );
    let missing =
        refused("host=db.example sslmode=verify-full sslrootcert='/no/such dir/root.crt'");
    assert!(
        missing.starts_with(
            "cannot read /no/such dir/root.crt (DATABASE_URL's sslrootcert, for \
             sslmode=verify-full): "
        ),
        "{missing}"
    );

    // Taken: the system's roots imply verify-full; a Unix socket asks for
    // no TLS whatever the mode, as in libpq.
    for url in [
        "postgres://db.example/shop?sslrootcert=system",
        "host=/var/run/postgresql sslmode=verify-full sslrootcert=/no/such/root.crt",
    ] {
        let taken = Database::new(url, lesson_bounds());
        assert!(taken.is_ok(), "{url}: {:?}", taken.err());
    }
}
