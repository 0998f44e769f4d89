//! Measures the README's claim: waiting with futures costs less than a
//! thread per request; and where the example stands against what a reader
//! would pick instead (axum, Node.js, Go).
//!
//! ```text
//! cargo bench --bench futures_vs_threads            # every server, N = 1,000 to 19,500, 3 rounds
//! cargo bench --bench futures_vs_threads -- --rounds 5
//! cargo bench --bench futures_vs_threads -- --quick # 50 requests a server, one round
//! cargo bench --bench futures_vs_threads -- --quick --rounds 3
//! cargo bench --bench futures_vs_threads -- --server futures --n 10000
//! cargo bench --bench futures_vs_threads -- --relays # the relays alone
//! cargo bench --bench futures_vs_threads -- --database # async and diesel on PostgreSQL
//! cargo bench --bench futures_vs_threads -- --database --n 200 --wait 5
//! ```
//!
//! The last form runs one server at one N, e.g. under `perf record -a`.
//!
//! `cargo test` runs the quick mode too (in the test profile), so the
//! benchmark cannot rot; it asserts that every run succeeded and the report
//! has every column, and nothing about speed.
//!
//! Each server runs in its own process (see `servers.rs`). For each server
//! and N, `load.rs` opens N connections, sends one `/sleep?seconds=1` on
//! each at once, and records the latency over the sleep and the server's
//! memory, threads and CPU time (`probe.rs`) and its live heap (`heap.rs`).
//! `sizes.rs` measures the handlers' futures themselves. `report.rs` writes
//! a markdown table (with where the memory of a waiting request goes) to
//! stdout, and CSV files and SVG charts under `target/futures_vs_threads/`.
//!
//! One round of a server says little about latency and CPU on a machine
//! that does other things too, so the full run measures every server R
//! times (`ROUNDS`), interleaved: at each N, every server once, then every
//! server again (A B C A B C), so that a noisy minute falls on all of them
//! alike, not on one. `results.csv` holds each column's median over the
//! rounds, `rounds.csv` every round; a ratio between two servers has a
//! range, from its rounds' ratios (round i of one over round i of the
//! other), and `report.md` prints it.

mod database;
mod heap;
mod load;
mod probe;
mod report;
mod servers;
mod sizes;

// The example's own router and handlers, compiled in so that the counting
// allocator below sees them (the serve loop every server runs on comes from
// the library, `serve`). Its `main` goes unused here, and so do its tests,
// which are compiled too: cargo builds benchmarks with `cfg(test)`.
#[allow(unused)]
#[path = "../../../src/main.rs"]
mod example;

// The relay example, for the same reason: its router, on the same loop.
#[allow(unused)]
#[path = "../../../examples/relay/main.rs"]
mod relay;

// The database lesson, for the comparison with gotham's blocking way
// (`database.rs`), and the tests' throwaway PostgreSQL it runs against.
#[allow(unused)]
#[path = "../../../examples/database/main.rs"]
mod database_example;
#[allow(unused)]
#[path = "../../../examples/database/tests/database/throwaway.rs"]
mod throwaway;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

use std::path::PathBuf;

use load::Run;
use servers::Kind;

/// How many times the full run measures each server at each N.
const ROUNDS: usize = 3;
/// The N of the full run; the largest the descriptor limit allows is added.
const FULL_NS: [usize; 3] = [1_000, 5_000, 10_000];
/// The servers run at every N.
const COMPARED: [Kind; 6] = [
    Kind::Futures,
    Kind::BareHyper,
    Kind::Axum,
    Kind::Node,
    Kind::Go,
    Kind::ThreadPerRequest,
];
/// The relays, run at the N of `RELAY_NS` that the descriptor limit allows
/// (a relayed request holds two descriptors in the relay).
const RELAYS: [Kind; 4] = [
    Kind::GothamRelay,
    Kind::BareHyperRelay,
    Kind::NodeRelay,
    Kind::GoRelay,
];
const RELAY_NS: [usize; 2] = [1_000, 5_000];
/// The N whose memory is split into its parts (or the nearest one run).
const SPLIT_N: usize = 10_000;
/// The blocking server is only run small: it answers two requests a second.
const BLOCKING_N: usize = 20;
/// The quick mode's N.
const QUICK_N: usize = 50;
/// Descriptors kept back from the limit for everything but connections.
const DESCRIPTOR_RESERVE: u64 = 200;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, way, url, pool, wait] = args.as_slice() {
        if flag == "--serve-database" {
            database::serve(way, url, pool, wait);
        }
    }
    if let [flag, kind, addr, rest @ ..] = args.as_slice() {
        if flag == "--serve" {
            let kind = Kind::from_name(kind).unwrap_or_else(|| panic!("no server {kind}"));
            servers::serve(kind, addr, rest.first().map(String::as_str));
        }
    }
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let full = args.iter().any(|arg| arg == "--bench") && !args.iter().any(|arg| arg == "--quick");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let out_dir = target_dir().join("futures_vs_threads");
    let value_of = |flag: &str| {
        let at = args.iter().position(|arg| arg == flag)?;
        args.get(at + 1).cloned()
    };
    if let (Some(kind), Some(n)) = (value_of("--server"), value_of("--n")) {
        let kind = Kind::from_name(&kind).unwrap_or_else(|| panic!("no server {kind}"));
        let n = n
            .parse()
            .unwrap_or_else(|_| panic!("--n takes a number, not {n}"));
        probe::raise_descriptor_limit();
        let run = runtime
            .block_on(load::run(kind, n))
            .unwrap_or_else(|why| panic!("{} cannot run here: {why}", kind.name()));
        let sizes = runtime.block_on(async { sizes::measure() });
        let runs = Runs {
            runs: vec![run],
            skipped: Vec::new(),
        };
        write_report(&runs, &sizes, &out_dir.join("one"), &machine_description());
    } else if full && args.iter().any(|arg| arg == "--database") {
        let n = value_of("--n").map_or(database::N, |n| n.parse().expect("--n takes a number"));
        let pool = value_of("--pool").map_or(database::POOL, |p| {
            p.parse().expect("--pool takes a number")
        });
        let wait = value_of("--wait").map(|s| {
            std::time::Duration::from_secs(s.parse().expect("--wait takes whole seconds"))
        });
        probe::raise_descriptor_limit();
        runtime.block_on(database_run(n, pool, wait, &out_dir));
    } else if full && args.iter().any(|arg| arg == "--relays") {
        runtime.block_on(relays_run(out_dir.join("relays")));
    } else {
        let rounds = |default| {
            value_of("--rounds").map_or(default, |r| {
                r.parse::<usize>()
                    .expect("--rounds takes a whole number")
                    .max(1)
            })
        };
        if full {
            runtime.block_on(full_run(out_dir, rounds(ROUNDS)));
        } else {
            runtime.block_on(quick_run(out_dir.join("quick"), rounds(1)));
        }
    }
}

/// The runs made, and the servers that could not run here, with why.
pub struct Runs {
    pub runs: Vec<Run>,
    pub skipped: Vec<(Kind, String)>,
}

impl Runs {
    /// Runs `kind` at N = `n` as round `round` (from 0).
    async fn add(&mut self, kind: Kind, n: usize, round: usize) {
        if self.skipped.iter().any(|(skipped, _)| *skipped == kind) {
            return;
        }
        eprintln!("{} with N = {n}, round {} ...", kind.name(), round + 1);
        match load::run(kind, n).await {
            Ok(run) => self.runs.push(Run { round, ..run }),
            Err(why) => {
                eprintln!("{} skipped: {why}", kind.name());
                self.skipped.push((kind, why));
            }
        }
    }
}

/// The workspace's `target/`, one folder above this package's.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            package.parent().unwrap_or(package).join("target")
        })
}

async fn full_run(out_dir: PathBuf, rounds: usize) {
    let started = std::time::Instant::now();
    let limit = probe::raise_descriptor_limit();
    // Rounded down to a multiple of 500, so the largest N reads plainly.
    let largest = (limit.saturating_sub(DESCRIPTOR_RESERVE) / 500 * 500) as usize;
    let mut ns: Vec<usize> = FULL_NS.iter().copied().filter(|&n| n <= largest).collect();
    if ns.len() < FULL_NS.len() {
        eprintln!("N cut to {largest} by the descriptor limit of {limit}");
    }
    if ns.last() != Some(&largest) {
        ns.push(largest);
    }
    eprintln!("descriptor limit {limit}: N = {ns:?}, {rounds} rounds");

    let mut runs = Runs {
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    // Interleaved: every server once at this N, then every server again.
    for &n in &ns {
        for round in 0..rounds {
            for kind in COMPARED {
                runs.add(kind, n, round).await;
            }
        }
    }
    for n in RELAY_NS {
        if 2 * n as u64 + DESCRIPTOR_RESERVE > limit {
            eprintln!("relays at N = {n} left out: the descriptor limit is {limit}");
            continue;
        }
        for round in 0..rounds {
            for kind in RELAYS {
                runs.add(kind, n, round).await;
            }
        }
    }
    let split_n = *ns.iter().min_by_key(|n| n.abs_diff(SPLIT_N)).expect("an N");
    for round in 0..rounds {
        runs.add(Kind::BareHyperHoldingRequest, split_n, round)
            .await;
        runs.add(Kind::Blocking, BLOCKING_N, round).await;
    }
    let longest_idle = runs
        .runs
        .iter()
        .map(|run| run.idle_wait)
        .max()
        .unwrap_or_default();
    eprintln!("the longest a connection sat idle before its request: {longest_idle:?}");
    let took = started.elapsed().as_secs();
    let about = format!(
        "{}\n\nThe whole run took {} min {} s (the build before it not counted), {rounds} \
         rounds of every server at every N, interleaved; each figure of the first table is \
         the median of its rounds.",
        machine_description(),
        took / 60,
        took % 60
    );
    write_report(&runs, &sizes::measure(), &out_dir, &about);
    database_run(database::N, database::POOL, None, &out_dir).await;
}

/// The database comparison (`--database`, and after the full run): its
/// table on stdout and in `database/report.md`, and its rows in
/// `database.csv` beside the full run's CSV files, whose figures the
/// README's database paragraph and docs/database.md cite.
async fn database_run(
    n: usize,
    pool: usize,
    wait: Option<std::time::Duration>,
    out_dir: &std::path::Path,
) {
    let (table, rows) = match database::compare(n, pool, wait).await {
        Ok(done) => done,
        Err(why) => (
            format!("\nThe database comparison could not run here: {why}\n"),
            Vec::new(),
        ),
    };
    let document = format!("{}\n{table}", machine_description());
    println!("{document}");
    std::fs::create_dir_all(out_dir.join("database")).expect("the output folder");
    std::fs::write(out_dir.join("database").join("report.md"), &document).expect("report.md");
    if !rows.is_empty() {
        let csv = out_dir.join("database.csv");
        let old = std::fs::read_to_string(&csv).unwrap_or_default();
        std::fs::write(&csv, database::merged_csv(&old, &rows)).expect("database.csv");
    }
    eprintln!("written to {}", out_dir.display());
}

/// The relays at `RELAY_NS`, with the example and bare hyper at the same N
/// for the ratio and the split.
async fn relays_run(out_dir: PathBuf) {
    let limit = probe::raise_descriptor_limit();
    let mut runs = Runs {
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    for n in RELAY_NS {
        if 2 * n as u64 + DESCRIPTOR_RESERVE > limit {
            eprintln!("N = {n} left out: the descriptor limit is {limit}");
            continue;
        }
        for kind in [Kind::Futures, Kind::BareHyper].into_iter().chain(RELAYS) {
            runs.add(kind, n, 0).await;
        }
    }
    write_report(&runs, &sizes::measure(), &out_dir, &machine_description());
}

/// The quick mode: every server at a small N, one round unless asked
/// (`--rounds`), with every part of the report checked.
async fn quick_run(out_dir: PathBuf, rounds: usize) {
    // The full run's medians, checked on rounds whose medians are known:
    // the middle value of each column, a CPU cell taken whole by its sum,
    // a `-` kept, whatever order the rounds came in.
    let row = |cells: [&str; 4]| cells.map(str::to_string).to_vec();
    let medians = report::median_rows(&[
        row(["futures", "10", "3.0", "0.30 + 0.10"]),
        row(["go", "10", "7.0", "-"]),
        row(["futures", "10", "1.0", "0.10 + 0.50"]),
        row(["futures", "10", "2.0", "0.20 + 0.00"]),
    ]);
    assert_eq!(
        medians,
        [
            row(["futures", "10", "2.0", "0.30 + 0.10"]),
            row(["go", "10", "7.0", "-"])
        ],
        "the medians of the rounds"
    );

    let mut runs = Runs {
        runs: Vec::new(),
        skipped: Vec::new(),
    };
    for round in 0..rounds {
        for kind in COMPARED {
            runs.add(kind, QUICK_N, round).await;
        }
        runs.add(Kind::BareHyperHoldingRequest, QUICK_N, round)
            .await;
        for kind in RELAYS {
            runs.add(kind, QUICK_N, round).await;
        }
    }
    let sizes = sizes::measure();
    write_report(&runs, &sizes, &out_dir, "quick mode");

    // Only the peers in other languages may be missing from a machine.
    for (kind, why) in &runs.skipped {
        assert!(!kind.is_rust(), "{} could not run: {why}", kind.name());
    }
    for run in &runs.runs {
        let name = run.server.name();
        assert_eq!(
            (run.succeeded, run.failed),
            (QUICK_N as u64, 0),
            "{name}: every request should succeed"
        );
        assert_eq!(
            run.in_flight_together, QUICK_N,
            "{name}: every request should have been in flight together"
        );
        if run.server.is_relay() {
            let used = run.upstream.expect("a relay's use of its upstream");
            assert!(
                used.opened > 0 && used.most_at_once > 0,
                "{name}: no connection to the upstream counted: {used:?}"
            );
            let cells = report::relay_cells(run, &runs.runs);
            for (column, cell) in report::RELAY_COLUMNS.iter().zip(&cells) {
                let may_be_blank = !run.server.is_rust() && column.starts_with("heap");
                assert!(
                    !cell.is_empty() && (cell != "-" || may_be_blank),
                    "{name}: no value for `{column}`"
                );
            }
            continue;
        }
        let cells = report::cells(run);
        assert_eq!(cells.len(), report::COLUMNS.len());
        for (column, cell) in report::COLUMNS.iter().zip(&cells) {
            // Node and Go run their own allocators, which this benchmark
            // cannot count: their heap cells are `-`, and only theirs.
            let may_be_blank = !run.server.is_rust() && column.starts_with("heap");
            assert!(
                !cell.is_empty() && (cell != "-" || may_be_blank),
                "{name}: no value for `{column}`"
            );
        }
    }
    let runs_made = &runs.runs;
    let table = report::markdown(runs_made);
    let header = table.lines().next().unwrap_or_default();
    for column in report::COLUMNS {
        assert!(
            header.contains(column),
            "the table has no `{column}` column"
        );
    }
    let split = report::split(runs_made, &sizes, QUICK_N).expect("a split of the memory");
    for part in split.futures.iter().chain(&split.threads) {
        assert!(part.kib.is_finite(), "no value for `{}`", part.what);
    }
    for size in [
        sizes.gotham_sleep,
        sizes.gotham_loop,
        sizes.bare_hyper_sleep,
    ] {
        assert!(size > 0, "a future of no size: {sizes:?}");
    }
    let relay_split = report::relay_split(runs_made, QUICK_N).expect("a split of the relay's heap");
    for part in &relay_split {
        assert!(part.kib.is_finite(), "no value for `{}`", part.what);
    }
    let relay_table = report::relay_markdown(runs_made);
    for column in report::RELAY_COLUMNS {
        assert!(
            relay_table.contains(column),
            "the relay table has no `{column}` column"
        );
    }
    for file in [
        "relay.csv",
        "relay_rounds.csv",
        "results.csv",
        "rounds.csv",
        "chart.svg",
        "split.svg",
        "waiting_client.svg",
        "report.md",
    ] {
        let size = std::fs::metadata(out_dir.join(file)).map(|m| m.len());
        assert!(matches!(size, Ok(1..)), "{file} was not written");
    }
    println!(
        "quick mode: {} servers ran, every request succeeded and the report has all {} columns",
        runs_made.len(),
        report::COLUMNS.len()
    );
    for (kind, why) in &runs.skipped {
        println!("quick mode: {} skipped: {why}", kind.name());
    }
    // N/P seconds and more on each side, and PostgreSQL: too long for
    // `cargo test`. The database lesson's own tests run against PostgreSQL.
    println!(
        "quick mode: the database comparison is left out (it takes {} s or more); \
         run it with `cargo bench --bench futures_vs_threads -- --database`",
        2 * database::N / database::POOL
    );
}

fn write_report(runs: &Runs, sizes: &sizes::FutureSizes, out_dir: &PathBuf, about: &str) {
    std::fs::create_dir_all(out_dir).expect("the output folder");
    // Splitting memory into parts takes one round whose parts add up.
    let typical = report::typical_rounds(&runs.runs);
    let table = report::markdown(&runs.runs);
    let mut document = format!("{about}\n\n{table}");
    document += &report::notes(runs);
    document += &report::ratio_markdown(&runs.runs);
    document += &report::relay_markdown(&runs.runs);
    document += &report::relay_split_markdown(&typical);
    if let Some(split) = report::split(&typical, sizes, SPLIT_N) {
        document += &format!("\n{}", report::split_markdown(&split, sizes));
        report::split_chart(&split, &out_dir.join("split.svg")).expect("split.svg");
    }
    if let Some(n) = report::nearest_n(&typical, SPLIT_N) {
        let path = out_dir.join("waiting_client.svg");
        // The chart names its run by the description's last part, the date.
        let first_line = about.lines().next().unwrap_or(about);
        let run_of = first_line.rsplit(", ").next().unwrap_or(first_line);
        report::waiting_client_chart(&typical, n, run_of, &path).expect("waiting_client.svg");
    }
    if runs.runs.iter().any(|run| run.round > 0) {
        document += &report::rounds_markdown(&runs.runs);
    }
    println!("{document}");
    std::fs::write(out_dir.join("report.md"), &document).expect("report.md");
    std::fs::write(out_dir.join("results.csv"), report::csv(&runs.runs)).expect("results.csv");
    let rounds = report::rounds_csv(&runs.runs, &report::COLUMNS, false);
    std::fs::write(out_dir.join("rounds.csv"), rounds).expect("rounds.csv");
    std::fs::write(out_dir.join("relay.csv"), report::relay_csv(&runs.runs)).expect("relay.csv");
    let relay_rounds = report::rounds_csv(&runs.runs, &report::RELAY_COLUMNS, true);
    std::fs::write(out_dir.join("relay_rounds.csv"), relay_rounds).expect("relay_rounds.csv");
    report::chart(&runs.runs, &out_dir.join("chart.svg")).expect("chart.svg");
    eprintln!("written to {}", out_dir.display());
}

/// The machine, kernel, versions and date, for the report's first lines.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .unwrap_or_default();
    let version = |name: &str| {
        let entry = format!("name = \"{name}\"\nversion = \"");
        lock.split_once(&entry)
            .and_then(|(_, rest)| rest.split('"').next())
            .unwrap_or("?")
            .to_string()
    };
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} cores, {ram_gib:.0} GiB RAM, Linux {}, gotham {}, hyper {}, tokio {}, \
         {} server worker threads, {date}",
        kernel.trim(),
        version("gotham"),
        version("hyper"),
        version("tokio"),
        servers::WORKER_THREADS,
    )
}
