//! A throwaway PostgreSQL for each test that needs one, started from the
//! installed server binaries, never a user's own database.
//!
//! `initdb` takes about two seconds, so it runs once per test binary, into a
//! template directory; each test copies the template and starts its own
//! server on the copy (a test that stops its database must not stop
//! another's). The server listens on a socket in its own directory, and on
//! no TCP port unless the test asks (`start_tcp`: PostgreSQL has no TLS on a
//! socket): then on 127.0.0.1, on a port that was free a moment before,
//! with `ssl` on or off. Its certificates are made once per test binary,
//! by the `openssl` command: a certificate authority, a server certificate
//! it signs for `localhost` and 127.0.0.1, and a second authority that
//! signed nothing, for the tests that must fail to verify. Dropping the
//! `Postgres` stops the server and removes its directory. The test runner
//! has no end-of-run hook to remove the template, so each run removes the
//! templates of runs whose process has ended.
//!
//! `initdb` and `postgres` refuse to run as root: as root, they run as the
//! `postgres` user (the server package makes it), on directories it owns.
//!
//! Without the server binaries (or, for TLS, the `openssl` command),
//! `Postgres::start` says so in one line on the terminal and returns
//! `None`, and the test returns without running; with `CI` set, it panics
//! instead, so CI cannot pass without them.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a learner without PostgreSQL reads, once per test binary.
const MISSING: &str = "install the `postgresql` package (PostgreSQL's server) to run them";

/// Far longer than a start takes here (a fraction of a second); the margin
/// is wide on purpose, for a machine that is busy.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// What a learner without the `openssl` command reads.
const MISSING_OPENSSL: &str = "install the `openssl` package to run them";

/// How many ports to try when another process takes the free one first.
const PORT_TRIES: usize = 5;

/// One PostgreSQL server of a test's own, on a copy of the template.
pub struct Postgres {
    directory: PathBuf,
    server: Option<Child>,
    /// With TCP: its port, and whether TLS is on.
    tcp: Option<(u16, bool)>,
}

/// The certificates the TLS tests use, made once per test binary.
pub struct Certificates {
    /// The authority that signed the server's certificate.
    pub authority: PathBuf,
    /// An authority that signed nothing the server has.
    pub other_authority: PathBuf,
    server_certificate: PathBuf,
    server_key: PathBuf,
}

static CERTIFICATES: OnceLock<Result<Certificates, String>> = OnceLock::new();

/// The template and how to run the binaries, made once per test binary.
struct Template {
    bindir: PathBuf,
    directory: PathBuf,
    /// The unprivileged user to run as, when the tests run as root.
    user: Option<(u32, u32)>,
}

static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();

impl Postgres {
    /// Copies the template and starts a server on it; `None` (said on the
    /// terminal) without the server binaries.
    pub async fn start() -> Option<Postgres> {
        Postgres::start_listening(None).await
    }

    /// As `start`, and listening on 127.0.0.1 on a free port too, with TLS
    /// on (`ssl`) or off; `None` (said) without the binaries or `openssl`.
    pub async fn start_tcp(ssl: bool) -> Option<Postgres> {
        if ssl {
            certificates()?;
        }
        Postgres::start_listening(Some((free_port(), ssl))).await
    }

    async fn start_listening(tcp: Option<(u16, bool)>) -> Option<Postgres> {
        let template = match TEMPLATE.get_or_init(make_template) {
            Ok(template) => template,
            Err(missing) => {
                skip(missing);
                return None;
            }
        };
        let directory = template
            .directory
            .with_file_name(format!("server-{}", unique()));
        run(
            Command::new("cp")
                .arg("-a")
                .arg(&template.directory)
                .arg(&directory),
            "copy the template",
        );
        let mut postgres = Postgres {
            directory,
            server: None,
            tcp,
        };
        postgres.start_again().await;
        Some(postgres)
    }

    /// What `DATABASE_URL` would hold for this server (libpq's `key=value`
    /// form, which tokio-postgres reads as well as a URL).
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.directory.display(),
            self.port()
        )
    }

    /// The port: the TCP one, which names the socket too, or the default.
    pub fn port(&self) -> u16 {
        self.tcp.map_or(5432, |(port, _)| port)
    }

    /// The certificates, once a server with TLS has made them.
    pub fn certificates(&self) -> &'static Certificates {
        match CERTIFICATES.get() {
            Some(Ok(certificates)) => certificates,
            _ => panic!("no certificates: the server was started without TLS"),
        }
    }

    /// The URL for the tests' own sessions, which `sessions_at_most` leaves
    /// out.
    fn test_url(&self) -> String {
        format!("{} application_name=test", self.url())
    }

    /// Stops the server (a fast shutdown: sessions are ended, not waited
    /// for) and waits until it has exited. Its data stays.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SAFETY: kill only sends a signal to our own child, not yet
            // waited for.
            unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGINT) };
            let _ = server.wait();
        }
    }

    /// Starts the server on its directory, again after `stop`, and waits
    /// until it takes connections.
    pub async fn start_again(&mut self) {
        for _ in 1..PORT_TRIES {
            if self.try_start().await {
                return;
            }
            // The port was taken between `free_port` and the server's bind.
            let Some((_, ssl)) = self.tcp else { break };
            self.tcp = Some((free_port(), ssl));
        }
        assert!(
            self.try_start().await,
            "postgres in {} exited at start: see {}",
            self.directory.display(),
            self.log_path().display()
        );
    }

    /// Starts the server and waits until it takes connections; `false` if
    /// it exited first (a port taken).
    async fn try_start(&mut self) -> bool {
        let template = TEMPLATE.get().and_then(|t| t.as_ref().ok()).expect("made");
        let mut command = Command::new(template.bindir.join("postgres"));
        command
            .arg("-D")
            .arg(&self.directory)
            .arg("-k")
            .arg(&self.directory)
            .args(["-p", &self.port().to_string()]);
        match self.tcp {
            // No TCP: the socket in the directory is the only way in.
            None => command.args(["-c", "listen_addresses="]),
            Some((_, ssl)) => command.args(["-c", "listen_addresses=127.0.0.1"]).args([
                "-c".to_string(),
                format!("ssl={}", if ssl { "on" } else { "off" }),
            ]),
        };
        if let Some((_, true)) = self.tcp {
            let certificates = self.certificates();
            command
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    certificates.server_certificate.display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    certificates.server_key.display()
                ));
        }
        command
            // A test's data is thrown away: no need to wait for the disk.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Every session's start and end, each line led by its process
            // id, in `log` (`sessions_at_most`).
            .args(["-c", "log_connections=on", "-c", "log_disconnections=on"])
            .args(["-c", "log_line_prefix=%p "])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file());
        as_user(&mut command, template.user);
        let server = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start postgres: {error}"));
        self.server = Some(server);

        let deadline = Instant::now() + START_PATIENCE;
        loop {
            match tokio_postgres::connect(&self.test_url(), tokio_postgres::NoTls).await {
                Ok(_) => return true,
                Err(error) => {
                    let server = self.server.as_mut().expect("started");
                    if server.try_wait().ok().flatten().is_some() {
                        self.server = None;
                        return false;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "postgres in {} took connections not within {START_PATIENCE:?}: {error}",
                        self.directory.display()
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// A connection of the test's own (not through the example's pool),
    /// for looking at the server: `pg_stat_activity` and the like. Its
    /// application name, `test`, keeps it out of `sessions_at_most`.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.test_url(), tokio_postgres::NoTls)
            .await
            .expect("connects to the test's own server");
        tokio::spawn(connection);
        client
    }

    /// The most sessions the server ever had open at once, other than the
    /// tests' own, read from its log of every session's start and end.
    ///
    /// Counted from the log, not by looking at `pg_stat_activity` now and
    /// then: a look between two moments could miss a session that came and
    /// went between them. Each server process writes its start line after
    /// it is authorized and its end line before it exits, so the running
    /// count over the log's lines is the number open at once.
    pub fn sessions_at_most(&self) -> usize {
        let log = std::fs::read_to_string(self.log_path()).expect("the server's log");
        let mut open = std::collections::HashSet::new();
        let mut ours = std::collections::HashSet::new();
        let mut most = 0;
        for line in log.lines() {
            let Some((pid, message)) = line.split_once(' ') else {
                continue;
            };
            if message.contains("connection authorized:") {
                // The harness's own readiness checks and `connect`.
                if message.contains("application_name=test") {
                    ours.insert(pid.to_string());
                } else {
                    open.insert(pid.to_string());
                    most = most.max(open.len());
                }
            } else if message.contains("disconnection:") {
                open.remove(pid);
            }
        }
        most
    }

    fn log_path(&self) -> PathBuf {
        self.directory.with_extension("log")
    }

    /// The server's log, appended to across restarts.
    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opens the server's log")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            // An immediate shutdown: the data is about to be removed.
            // SAFETY: as in `stop`.
            unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGQUIT) };
            let _ = server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.directory);
        let _ = std::fs::remove_file(self.log_path());
    }
}

/// Says that tests did not run for want of `missing`, or, under CI,
/// fails.
fn skip(missing: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("the database tests cannot run under CI: {missing}");
    }
    say_once(missing);
}

/// A port nothing listened on a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds a port");
    listener.local_addr().expect("an address").port()
}

/// The certificates, made on the first call; `None` (said) without
/// `openssl`.
fn certificates() -> Option<&'static Certificates> {
    match CERTIFICATES.get_or_init(make_certificates) {
        Ok(certificates) => Some(certificates),
        Err(missing) => {
            skip(missing);
            None
        }
    }
}

/// Makes two authorities and a server certificate signed by the first,
/// for `localhost` and 127.0.0.1, beside the template. Elliptic-curve
/// keys: made in milliseconds. The server's key is the server user's,
/// mode 0600, or PostgreSQL refuses it.
fn make_certificates() -> Result<Certificates, String> {
    let template = match TEMPLATE.get_or_init(make_template) {
        Ok(template) => template,
        Err(missing) => return Err(missing.clone()),
    };
    let has_openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !has_openssl {
        return Err(format!(
            "the TLS database tests did not run: the `openssl` command was not found: \
             {MISSING_OPENSSL}"
        ));
    }
    let directory = template.directory.with_file_name("certificates");
    std::fs::create_dir_all(&directory).expect("makes the certificates' directory");
    let at = |name: &str| directory.join(name);
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for authority in ["authority", "other-authority"] {
        run(
            Command::new("openssl")
                .args(["req", "-x509", "-days", "2"])
                .args(key)
                .args(["-subj", &format!("/CN=throwaway {authority}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign"])
                .arg("-keyout")
                .arg(at(&format!("{authority}.key")))
                .arg("-out")
                .arg(at(&format!("{authority}.crt"))),
            "make an authority",
        );
    }
    std::fs::write(
        at("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
         basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("writes the extensions");
    run(
        Command::new("openssl")
            .arg("req")
            .args(key)
            .args(["-subj", "/CN=localhost"])
            .arg("-keyout")
            .arg(at("server.key"))
            .arg("-out")
            .arg(at("server.csr")),
        "make the server's request",
    );
    run(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "1"])
            .arg("-in")
            .arg(at("server.csr"))
            .arg("-CA")
            .arg(at("authority.crt"))
            .arg("-CAkey")
            .arg(at("authority.key"))
            .arg("-extfile")
            .arg(at("server.ext"))
            .arg("-out")
            .arg(at("server.crt")),
        "sign the server's certificate",
    );
    let server_key = at("server.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&server_key, std::fs::Permissions::from_mode(0o600))
        .expect("chmod the key");
    if let Some((uid, gid)) = template.user {
        std::os::unix::fs::chown(&server_key, Some(uid), Some(gid)).expect("chown the key");
    }
    Ok(Certificates {
        authority: at("authority.crt"),
        other_authority: at("other-authority.crt"),
        server_certificate: at("server.crt"),
        server_key,
    })
}

/// Finds the binaries and runs `initdb` into a template, or says what is
/// missing.
fn make_template() -> Result<Template, String> {
    let bindir = bindir().ok_or_else(|| {
        format!(
            "the database tests did not run: PostgreSQL's server binaries (initdb, postgres) \
             were not found: {MISSING}"
        )
    })?;
    let user = if unsafe { libc::geteuid() } == 0 {
        Some(postgres_user().ok_or_else(|| {
            format!(
                "the database tests did not run: running as root, they need the `postgres` \
                 user to run the server: {MISSING}"
            )
        })?)
    } else {
        None
    };

    let base = std::env::temp_dir().join("gotham-database-tests");
    remove_stale_runs(&base);
    let run_directory = base.join(std::process::id().to_string());
    let directory = run_directory.join("template");
    std::fs::create_dir_all(&run_directory).expect("makes the tests' directory");
    std::fs::create_dir(&directory).expect("makes the template's directory");
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&run_directory, Some(uid), Some(gid)).expect("chown");
        std::os::unix::fs::chown(&directory, Some(uid), Some(gid)).expect("chown");
    }
    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&directory)
        .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
        .args(["--locale=C", "--no-sync", "--no-instructions"])
        .stdin(Stdio::null());
    as_user(&mut initdb, user);
    run(&mut initdb, "initdb");
    Ok(Template {
        bindir,
        directory,
        user,
    })
}

/// Where `initdb` and `postgres` are: `pg_config --bindir` says, and
/// Debian's own place is tried when `pg_config` (in libpq-dev) is missing.
fn bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .filter(|dir| has_server(dir));
    if from_pg_config.is_some() {
        return from_pg_config;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|dir| has_server(dir))
        .collect();
    versions.sort();
    versions.pop()
}

/// The `postgres` user's uid and gid.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: getpwnam returns a pointer to static storage or null; it is
    // read at once, before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwnam(c"postgres".as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}

/// Runs `command` as `user` (uid, gid), if given.
fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        // std also drops root's supplementary groups when it sets a uid.
        command.uid(uid).gid(gid);
    }
}

/// Runs `command` to its end; panics with its output if it fails.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes the directories of earlier runs whose process has ended.
fn remove_stale_runs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A number no other server of this run has.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Says, once per test binary and reason, past the test runner's capture,
/// which tests did not run, and why.
fn say_once(missing: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !said.iter().any(|line| line == missing) {
        said.push(missing.to_string());
        // Written to the terminal's stderr itself: the runner captures what
        // `eprintln!` prints in a test that passes.
        let _ = writeln!(std::io::stderr(), "SKIPPED: {missing}");
    }
}
