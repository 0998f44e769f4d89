//! TLS to the database as `DATABASE_URL`'s `sslmode` asks, with the meaning
//! libpq (and so `psql`) gives it: the same URL means the same thing to
//! both.
//!
//! Where tokio-postgres stops and the lesson takes over: tokio-postgres
//! 0.7 reads `sslmode` as `disable`, `prefer` or `require` only, refuses
//! any key it does not know (`sslrootcert` among them), and leaves every
//! check to the connector it is handed. So the lesson takes `sslmode` and
//! `sslrootcert` out of the URL itself (`Settings::take_from`), hands
//! tokio-postgres the rest, tells it only whether to ask for TLS, and sets
//! the connector's checks to what libpq's mode checks (`Tls::new`):
//!
//! | `sslmode` | encrypted | the chain checked | the host name checked |
//! | --- | --- | --- | --- |
//! | `disable` | no | | |
//! | `prefer` (libpq's default) | when the server offers it | no | no |
//! | `require` | yes | only if a root file is there (as `verify-ca`) | no |
//! | `verify-ca` | yes | against `sslrootcert` | no |
//! | `verify-full` | yes | against `sslrootcert` | yes |
//!
//! `sslrootcert` is a file of PEM certificates, by default
//! `~/.postgresql/root.crt` as libpq looks for it; `sslrootcert=system`
//! (libpq 16's spelling) means the system's roots and `verify-full`.
//! Where the two cannot agree, the lesson says so rather than guess:
//!
//! - `prefer`: libpq falls back to plain text when a TLS attempt fails;
//!   tokio-postgres does not retry, so here a failed handshake is a failure.
//!   For the same reason `prefer` checks nothing here, even with a root
//!   file there (libpq would check the chain, and on a failure retry in
//!   plain text): where psql ends up connected, so does the lesson;
//! - `allow` (plain first, TLS if refused) cannot be had for the same
//!   reason, and is refused at start;
//! - client certificates (`sslcert`, `sslkey`, `sslpassword`) and
//!   revocation lists (`sslcrl`, `sslcrldir`) are refused at start with a
//!   line naming them: the lesson does not send or check them;
//! - `PGSSLMODE` and `PGSSLROOTCERT`, which psql reads, mean nothing to
//!   tokio-postgres: `main` warns when they are set;
//! - a Unix-socket host: libpq never uses TLS on one (there is nothing on
//!   the wire to protect), whatever `sslmode` says; tokio-postgres would
//!   ask and fail, so the lesson asks for none there.

use std::error::Error as _;
use std::path::{Path, PathBuf};

use native_tls::{Certificate, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::{Host, SslMode};

/// The options of libpq's that the lesson refuses, and why.
const REFUSED: &[(&str, &str)] = &[
    ("sslcert", "client certificates"),
    ("sslkey", "client certificates"),
    ("sslpassword", "client certificates"),
    ("sslcertmode", "client certificates"),
    ("sslcrl", "certificate revocation lists"),
    ("sslcrldir", "certificate revocation lists"),
];

/// What `DATABASE_URL` asked of TLS, taken out of it, and the rest of the
/// URL, for tokio-postgres.
#[derive(Debug, PartialEq)]
pub struct Settings {
    /// The URL without `sslmode` and `sslrootcert`, in its own form.
    pub rest: String,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
}

impl Settings {
    /// Reads `sslmode` and `sslrootcert` from a `postgres://` URL (its
    /// query, percent-decoded) or from libpq's `key=value` form (quotes and
    /// backslashes as libpq reads them), and refuses the options in
    /// `REFUSED`. What it cannot read it leaves in `rest` as it was, for
    /// tokio-postgres's own message.
    pub fn take_from(url: &str) -> Result<Settings, String> {
        let (rest, pairs) = match url_query(url) {
            Some((before, query)) => {
                let parts: Vec<&str> = query.map_or(Vec::new(), |query| query.split('&').collect());
                let decoded = |part: &str| {
                    part.split_once('=')
                        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
                };
                let pairs: Vec<_> = parts.iter().filter_map(|part| decoded(part)).collect();
                let kept: Vec<&str> = parts
                    .into_iter()
                    .filter(|part| !decoded(part).is_some_and(|(key, _)| ours(&key)))
                    .collect();
                let rest = if kept.is_empty() {
                    before.to_string()
                } else {
                    format!("{before}?{}", kept.join("&"))
                };
                (rest, pairs)
            }
            None => match read_pairs(url) {
                // Written back with every value quoted.
                Some(pairs) => {
                    let rest = pairs
                        .iter()
                        .filter(|(key, _)| !ours(key))
                        .map(|(key, value)| {
                            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                            format!("{key}='{quoted}'")
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    (rest, pairs)
                }
                None => (url.to_string(), Vec::new()),
            },
        };
        let mut settings = Settings {
            rest,
            sslmode: None,
            sslrootcert: None,
        };
        for (key, value) in pairs {
            if let Some((_, what)) = REFUSED.iter().find(|(name, _)| *name == key) {
                return Err(format!(
                    "DATABASE_URL has `{key}`, but this lesson does not use {what}: \
                     take `{key}` out of DATABASE_URL"
                ));
            }
            match key.as_str() {
                "sslmode" => settings.sslmode = Some(value),
                "sslrootcert" => settings.sslrootcert = Some(value),
                _ => {}
            }
        }
        Ok(settings)
    }
}

/// A URL's text before its query, and the query, as tokio-postgres finds
/// them: the credentials end at the first `@`, the query starts at the
/// first `?` after them. `None` for libpq's `key=value` form.
fn url_query(url: &str) -> Option<(&str, Option<&str>)> {
    let after = ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| url.strip_prefix(prefix))?;
    let start = url.len() - after.len();
    let from = start + after.find('@').map_or(0, |at| at + 1);
    match url[from..].find('?') {
        Some(question) => Some((&url[..from + question], Some(&url[from + question + 1..]))),
        None => Some((url, None)),
    }
}

/// The keys the lesson reads itself.
fn ours(key: &str) -> bool {
    key == "sslmode" || key == "sslrootcert"
}

/// libpq's `key = value` pairs: a value is quoted (`'...'`) or runs to the
/// next white space, and a backslash takes the next character as it is.
fn read_pairs(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        chars.next_if_eq(&'=')?;
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.peek() {
                None if quoted => return None,
                None => break,
                Some('\'') if quoted => {
                    chars.next();
                    break;
                }
                Some(c) if !quoted && c.is_whitespace() => break,
                Some('\\') => {
                    chars.next();
                    value.extend(chars.next());
                }
                Some(&c) => {
                    chars.next();
                    value.push(c);
                }
            }
        }
        if key.is_empty() || (!quoted && value.is_empty()) {
            return None;
        }
        pairs.push((key, value));
    }
}

/// `%XX` decoded (as tokio-postgres decodes a URL), bytes that are not
/// UTF-8 replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libpq's modes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted roots come from.
#[derive(Clone, Debug)]
enum Roots {
    /// None: the certificate is not checked.
    Unchecked,
    /// A PEM file of the user's (`sslrootcert`, or libpq's default).
    File(PathBuf),
    /// The system's roots, as OpenSSL finds them (`sslrootcert=system`).
    System,
}

/// The TLS the connections use: what tokio-postgres is told, the connector
/// that does the checking, and how the lines name the setting.
#[derive(Clone)]
pub struct Tls {
    mode: Mode,
    roots: Roots,
    /// Asks for no TLS: every host is a Unix socket.
    on_socket: bool,
    connector: MakeTlsConnector,
}

impl Tls {
    /// The TLS `settings` ask for, to the `hosts` tokio-postgres read; or
    /// the one line that says what in `DATABASE_URL` cannot be had.
    pub fn new(settings: &Settings, hosts: &[Host]) -> Result<Tls, String> {
        let system = settings.sslrootcert.as_deref() == Some("system");
        let mode = match settings.sslmode.as_deref() {
            None if system => Mode::VerifyFull,
            None => Mode::Prefer,
            Some("disable") => Mode::Disable,
            Some("prefer") => Mode::Prefer,
            Some("require") => Mode::Require,
            Some("verify-ca") => Mode::VerifyCa,
            Some("verify-full") => Mode::VerifyFull,
            Some("allow") => {
                return Err("DATABASE_URL has sslmode=allow (plain text, TLS only when \
                            refused), which tokio-postgres cannot do: it never retries; \
                            use sslmode=disable or sslmode=prefer"
                    .to_string())
            }
            Some(other) => {
                return Err(format!(
                    "DATABASE_URL has sslmode={other}, which is none of disable, prefer, \
                     require, verify-ca, verify-full"
                ))
            }
        };
        if system && mode != Mode::VerifyFull {
            return Err(format!(
                "DATABASE_URL has sslrootcert=system with sslmode={}: the system's roots \
                 go with sslmode=verify-full only, as in libpq",
                mode.name()
            ));
        }
        let file = || match settings.sslrootcert.as_deref() {
            Some(path) => Some(PathBuf::from(path)),
            None => std::env::var_os("HOME")
                .map(|home| Path::new(&home).join(".postgresql").join("root.crt")),
        };
        let on_socket = !hosts.is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        let roots = match mode {
            _ if on_socket => Roots::Unchecked,
            Mode::Disable | Mode::Prefer => Roots::Unchecked,
            _ if system => Roots::System,
            // libpq's `require` checks the chain when a root file is there.
            Mode::Require => match file().filter(|path| path.exists()) {
                Some(path) => Roots::File(path),
                None => Roots::Unchecked,
            },
            Mode::VerifyCa | Mode::VerifyFull => match file() {
                Some(path) => Roots::File(path),
                None => {
                    return Err(format!(
                        "DATABASE_URL has sslmode={} but no sslrootcert, and HOME is not set \
                         to find ~/.postgresql/root.crt",
                        mode.name()
                    ))
                }
            },
        };
        let mut builder = TlsConnector::builder();
        match &roots {
            Roots::Unchecked => {
                builder.danger_accept_invalid_certs(true);
            }
            Roots::File(path) => {
                builder.disable_built_in_roots(true);
                for certificate in read_roots(path, mode)? {
                    builder.add_root_certificate(certificate);
                }
            }
            Roots::System => {}
        }
        // `verify-ca`, and `require` checking a chain, trust any name on it.
        builder.danger_accept_invalid_hostnames(mode != Mode::VerifyFull);
        let connector = builder
            .build()
            .map_err(|error| format!("cannot set up TLS: {error}"))?;
        Ok(Tls {
            mode,
            roots,
            on_socket,
            connector: MakeTlsConnector::new(connector),
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS at all.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            _ if self.on_socket => SslMode::Disable,
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }

    /// The connector, for the pool's connections and for cancel requests.
    pub fn connector(&self) -> MakeTlsConnector {
        self.connector.clone()
    }

    /// The line's reason for a connection that failed over TLS, naming the
    /// setting to look at; `None` for any other failure.
    pub fn explain(&self, error: &tokio_postgres::Error) -> Option<String> {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = error.source();
        while let Some(error) = cause {
            if let Some(tls) = error.downcast_ref::<native_tls::Error>() {
                return Some(self.explain_handshake(&tls.to_string()));
            }
            if error.to_string() == "server does not support TLS" {
                return Some(format!(
                    "the server does not offer TLS, which sslmode={} asks for (look at \
                     DATABASE_URL's sslmode, or the server's ssl setting)",
                    self.mode.name()
                ));
            }
            cause = error.source();
        }
        None
    }

    /// A failed handshake: OpenSSL's message ends with its check's verdict
    /// in brackets ("Hostname mismatch", "unable to get local issuer
    /// certificate"), which says more than the rest.
    fn explain_handshake(&self, message: &str) -> String {
        let verdict = message
            .strip_suffix(')')
            .and_then(|text| text.rsplit_once(" (").map(|(_, verdict)| verdict));
        let trusted = match &self.roots {
            Roots::Unchecked => "any certificate".to_string(),
            Roots::File(path) => format!("the roots in {}", path.display()),
            Roots::System => "the system's roots".to_string(),
        };
        match verdict {
            Some(verdict) if message.contains("certificate verify failed") => format!(
                "the server's certificate does not verify: {verdict} (sslmode={} trusts \
                 {trusted}{}; look at DATABASE_URL's sslrootcert and host)",
                self.mode.name(),
                if self.mode == Mode::VerifyFull {
                    " for the host named"
                } else {
                    ""
                }
            ),
            _ => format!(
                "the TLS handshake failed under sslmode={}: {message}",
                self.mode.name()
            ),
        }
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// The certificates of a PEM file (a root file may hold several).
fn read_roots(path: &Path, mode: Mode) -> Result<Vec<Certificate>, String> {
    let setting = format!("DATABASE_URL's sslrootcert, for sslmode={}", mode.name());
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {} ({setting}): {error}", path.display()))?;
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    for block in text
        .split_inclusive(END)
        .filter(|block| block.contains(END))
    {
        let certificate = Certificate::from_pem(block.as_bytes()).map_err(|error| {
            format!(
                "{} ({setting}) holds a certificate that cannot be read: {error}",
                path.display()
            )
        })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate ({setting})",
            path.display()
        ));
    }
    Ok(certificates)
}
