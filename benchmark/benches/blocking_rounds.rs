//! How many rounds 20 blocking one-second calls take on 2 tokio workers.
//!
//! The main benchmark's `blocking` row needed 11 rounds where 10 should do
//! (docs/futures_vs_threads.md, "Two rows that look wrong"). This program
//! sets up the same situation without HTTP or gotham: a server on a runtime
//! of 2 workers, 20 connections to it, and a task per connection that
//! blocks its worker for one second per byte it reads. One byte goes out on
//! every connection at once, and the time of the median and of the last
//! answer is printed, for each of a dozen tries:
//!
//! ```text
//! cargo bench --bench blocking_rounds
//! RUSTFLAGS="--cfg tokio_unstable" cargo bench --bench blocking_rounds -- --no-lifo
//! ```
//!
//! The second form turns tokio's LIFO slot off (an unstable runtime option,
//! hence the flag, which rebuilds every dependency), to see whether the
//! slot is what holds a request back. Each try takes 10 or 11 seconds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 20;
const WORKERS: usize = 2;
const TRIES: usize = 12;

fn main() {
    let no_lifo = std::env::args().any(|arg| arg == "--no-lifo");
    if no_lifo && !cfg!(tokio_unstable) {
        eprintln!("--no-lifo needs RUSTFLAGS=\"--cfg tokio_unstable\"");
        std::process::exit(2);
    }
    println!(
        "{CONNECTIONS} blocking one-second calls on {WORKERS} workers, LIFO slot {}",
        if no_lifo { "off" } else { "on" }
    );
    let mut over_ten = 0;
    for try_number in 1..=TRIES {
        let (median, last) = one_try(no_lifo);
        let rounds = last.as_secs_f64().round() as u64;
        println!(
            "try {try_number:2}: median answer after {:.2} s, last after {:.2} s ({rounds} rounds)",
            median.as_secs_f64(),
            last.as_secs_f64()
        );
        if rounds > 10 {
            over_ten += 1;
        }
    }
    println!("more than 10 rounds in {over_ten} of {TRIES} tries");
}

/// One try on a fresh server runtime; returns the median and last answer's
/// time, measured from the moment every byte was sent.
fn one_try(no_lifo: bool) -> (Duration, Duration) {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(WORKERS).enable_all();
    #[cfg(tokio_unstable)]
    if no_lifo {
        builder.disable_lifo_slot();
    }
    let _ = no_lifo;
    let server = builder.build().expect("a server runtime");
    let listener = server
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("binds");
    let addr = listener.local_addr().expect("an address");
    server.spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut byte = [0u8; 1];
                while stream.read_exact(&mut byte).await.is_ok() {
                    // The mistake under study: a blocking call on a worker.
                    std::thread::sleep(Duration::from_secs(1));
                    if stream.write_all(&byte).await.is_err() {
                        break;
                    }
                }
            });
        }
    });

    // The clients on a runtime of their own, so that they are never stuck
    // behind the server's blocked workers.
    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    let mut times = clients.block_on(async move {
        let mut streams = Vec::new();
        for _ in 0..CONNECTIONS {
            streams.push(TcpStream::connect(addr).await.expect("connects"));
        }
        // Every connection accepted and its task waiting for a byte.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = Instant::now();
        let mut answers = Vec::new();
        for mut stream in streams {
            answers.push(tokio::spawn(async move {
                stream.write_all(b"x").await.expect("sends");
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await.expect("an answer");
                sent.elapsed()
            }));
        }
        let mut times = Vec::new();
        for answer in answers {
            times.push(answer.await.expect("the client task"));
        }
        times
    });
    server.shutdown_background();
    times.sort();
    (times[CONNECTIONS / 2 - 1], times[CONNECTIONS - 1])
}
