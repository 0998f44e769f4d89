//! The load: N connections opened first, then one sleep request on each, all
//! at once (a closed loop of one round).
//!
//! Connections are opened ahead, a bounded number at a time. The Rust
//! servers and Go listen with a queue as deep as the system allows, but
//! Node.js asks for 511, and a burst of thousands of connects would overflow
//! that and measure the kernel's SYN retries (a second each), not the
//! server. The connects are not what is measured: the latency counts from
//! each request's sending, once every connection is open.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use gotham::bytes::Bytes;
use gotham::http_body_util::{BodyExt, Empty};
use gotham::hyper::client::conn::http1::{self, SendRequest};
use gotham::hyper::{Request, StatusCode};
use gotham::hyper_util::rt::TokioIo;
use hdrhistogram::Histogram;
use tokio::net::TcpStream;

use crate::probe::{self, PeakSampler, Reading};
use crate::servers::{Kind, ServerProcess};

/// How long each request sleeps on the server.
pub const SLEEP: Duration = Duration::from_secs(1);
/// Connects in flight at once while connections are opened.
const CONNECTING_AT_ONCE: usize = 64;
/// A request not answered by then counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything measured for one server at one N, in one round.
#[derive(Clone)]
pub struct Run {
    pub server: Kind,
    /// Which round this was at this server and N, from 0 (`main.rs` runs
    /// every server R times, interleaved).
    pub round: usize,
    /// N: the connections opened, one request each.
    pub requests: usize,
    /// The most requests in flight together, counted from the server's
    /// `starting` and `finished` lines. Below N when early requests ended
    /// before the last ones began (a server slow to start threads).
    pub in_flight_together: usize,
    pub succeeded: u64,
    pub failed: u64,
    /// Latency minus the 1 s sleep, in microseconds, of the requests that
    /// succeeded.
    pub overhead_us: Histogram<u64>,
    /// The server before any connection, with N idle connections, and at its
    /// largest while the requests were in flight.
    pub fresh: Reading,
    pub connected: Reading,
    pub in_flight_peak: Reading,
    /// The server's live heap bytes before any connection, with N idle
    /// connections, and the most there were while the requests were in
    /// flight (if it answered: the Rust servers do).
    pub heap_fresh: Option<u64>,
    pub heap_connected: Option<u64>,
    pub heap_in_flight_peak: Option<u64>,
    /// How long the first connection sat idle before its request was sent:
    /// it must stay under the servers' header deadline (`benchmark_limits`).
    pub idle_wait: Duration,
    /// Server CPU time from its start, user and system.
    pub server_cpu_s: (f64, f64),
    /// This process's CPU time while the requests were in flight.
    pub load_cpu_s: f64,
    /// For a relay: how it used its upstream.
    pub upstream: Option<UpstreamUse>,
}

/// How a relay used its upstream during one run.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamUse {
    /// Connections the upstream accepted while the requests were in flight
    /// (the kernel's count of accepted connections, less none: the load's
    /// own were all opened before).
    pub opened: u64,
    /// The most connections the upstream had open at once.
    pub most_at_once: u64,
    /// Connections still open a second after the last answer: what the
    /// relay's pool keeps for the next burst.
    pub kept: u64,
}

impl Run {
    /// Growth per connection, from a fresh server to N idle connections.
    fn per_connection_kib(&self, from: u64, to: u64) -> f64 {
        to.saturating_sub(from) as f64 / self.requests.max(1) as f64
    }

    /// Growth per request in flight, over the idle connections: divided by
    /// the requests really in flight together, not by N.
    fn per_request_kib(&self, from: u64, to: u64) -> f64 {
        to.saturating_sub(from) as f64 / self.in_flight_together.max(1) as f64
    }

    /// RSS added per request in flight, over the idle connections.
    pub fn user_kib_per_request(&self) -> f64 {
        self.per_request_kib(self.connected.rss_kib, self.in_flight_peak.rss_kib)
    }

    /// Live heap added per request in flight, in KiB; NaN if the server
    /// did not say.
    pub fn heap_kib_per_request(&self) -> f64 {
        match (self.heap_connected, self.heap_in_flight_peak) {
            (Some(connected), Some(peak)) => self.per_request_kib(connected, peak) / 1024.0,
            _ => f64::NAN,
        }
    }

    /// Kernel memory (KernelStack + Slab) added per request in flight.
    pub fn kernel_kib_per_request(&self) -> f64 {
        self.per_request_kib(self.connected.kernel_kib, self.in_flight_peak.kernel_kib)
    }

    /// RSS + kernel memory per request in flight.
    pub fn memory_kib_per_request(&self) -> f64 {
        self.user_kib_per_request() + self.kernel_kib_per_request()
    }

    /// RSS + kernel memory per open, idle connection: what a server pays
    /// before a single request arrives.
    pub fn kib_per_connection(&self) -> f64 {
        self.per_connection_kib(self.fresh.rss_kib, self.connected.rss_kib)
            + self.per_connection_kib(self.fresh.kernel_kib, self.connected.kernel_kib)
    }

    /// Live heap per open, idle connection; NaN if the server did not say.
    pub fn heap_kib_per_connection(&self) -> f64 {
        match (self.heap_fresh, self.heap_connected) {
            (Some(fresh), Some(connected)) => self.per_connection_kib(fresh, connected) / 1024.0,
            _ => f64::NAN,
        }
    }

    /// What one waiting client costs in all: its connection, and its
    /// request in flight on it. Where a server allocates (at connect, at
    /// the first byte, at the request) moves memory between the two parts,
    /// so servers are compared on this sum.
    pub fn kib_per_waiting_client(&self) -> f64 {
        self.kib_per_connection() + self.memory_kib_per_request()
    }
}

async fn connect(server: std::net::SocketAddr) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(server)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one `GET path` (a one-second sleep) and returns how long its
/// answer took.
async fn sleep_once(
    mut sender: SendRequest<Empty<Bytes>>,
    host: String,
    path: &'static str,
) -> Result<Duration, String> {
    let request = Request::get(path)
        .header("host", host)
        .body(Empty::new())
        .map_err(|error| error.to_string())?;
    let sent = Instant::now();
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        if status == StatusCode::OK && body == "slept for 1 seconds\n" {
            Ok(sent.elapsed())
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

/// Starts a `kind` server, loads it with `requests` sleeps, and measures;
/// or says why the server cannot run here.
///
/// A relay gets an upstream of its own, the example (`futures`), started
/// first; its requests are `/relay?seconds=1`, and how it used the
/// upstream is measured too.
pub async fn run(kind: Kind, requests: usize) -> Result<Run, String> {
    let upstream = if kind.is_relay() {
        Some(ServerProcess::start(Kind::Futures, None)?)
    } else {
        None
    };
    let path = if kind.is_relay() {
        "/relay?seconds=1"
    } else {
        "/sleep?seconds=1"
    };
    let mut server = ServerProcess::start(kind, upstream.as_ref().map(|upstream| upstream.addr))?;
    let pid = server.pid();
    let host = server.addr.to_string();
    // Let the new process settle before the first reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = probe::read(pid);
    let heap_fresh = server.heap().map(|(live, _)| live);

    let connecting = Instant::now();
    let connections: Vec<_> = stream::iter(0..requests)
        .map(|_| connect(server.addr))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect()
        .await;
    let mut failed = 0;
    let mut senders = Vec::with_capacity(requests);
    for connection in connections {
        match connection {
            Ok(sender) => senders.push(sender),
            Err(error) => {
                failed += 1;
                eprintln!("{}: {error}", kind.name());
            }
        }
    }
    // The server accepts on its own schedule; give it time to take in every
    // connection before the idle reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connected = probe::read(pid);
    let heap_connected = server.heap().map(|(live, _)| live);
    server.most_in_flight();

    let sampler = PeakSampler::start(pid);
    let upstream_at_rest = upstream.as_ref().map(|upstream| {
        let upstream_pid = upstream.pid();
        (
            upstream_pid,
            probe::open_descriptors(upstream_pid),
            probe::passive_opens(),
            probe::DescriptorSampler::start(upstream_pid),
        )
    });
    let load_cpu = || {
        let (user, system) = probe::cpu_seconds("self");
        user + system
    };
    let load_cpu_before = load_cpu();
    let idle_wait = connecting.elapsed();
    let answers = futures::future::join_all(
        senders
            .into_iter()
            .map(|sender| sleep_once(sender, host.clone(), path)),
    )
    .await;
    let load_cpu_s = load_cpu() - load_cpu_before;
    let upstream_use = match upstream_at_rest {
        Some((upstream_pid, at_rest, opens_before, sampler)) => {
            let opened = probe::passive_opens().saturating_sub(opens_before);
            let most = sampler.stop();
            // A pool takes a connection back once its answer is read, from
            // a task of its own; a second is plenty.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let kept = probe::open_descriptors(upstream_pid);
            Some(UpstreamUse {
                opened,
                most_at_once: most.saturating_sub(at_rest),
                kept: kept.saturating_sub(at_rest),
            })
        }
        None => None,
    };
    let heap_in_flight_peak = server.heap().map(|(_, peak)| peak);
    // The reader thread may still be catching up with the last lines, but
    // the most in flight was reached before the first answer came back.
    let in_flight_together = server.most_in_flight();
    let mut in_flight_peak = sampler.stop();
    in_flight_peak.peak_rss_kib = probe::read(pid).peak_rss_kib;
    let server_cpu_s = probe::cpu_seconds(&pid.to_string());

    // Fixed bounds, 1 µs to an hour at 3 significant digits: an auto-resizing
    // histogram does not grow on `saturating_record` and would clamp.
    let mut overhead_us =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("a histogram");
    let mut succeeded = 0;
    for answer in answers {
        match answer {
            Ok(latency) => {
                succeeded += 1;
                let overhead = latency.saturating_sub(SLEEP).as_micros() as u64;
                overhead_us.saturating_record(overhead);
            }
            Err(error) => {
                failed += 1;
                if failed <= 5 {
                    eprintln!("{}: {error}", kind.name());
                }
            }
        }
    }
    Ok(Run {
        server: kind,
        round: 0,
        requests,
        in_flight_together,
        succeeded,
        failed,
        overhead_us,
        fresh,
        connected,
        in_flight_peak,
        heap_fresh,
        heap_connected,
        heap_in_flight_peak,
        idle_wait,
        server_cpu_s,
        load_cpu_s,
        upstream: upstream_use,
    })
}
