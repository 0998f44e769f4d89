//! The runs as a markdown table, CSV files and SVG charts: memory and
//! latency against N, and where a waiting request's memory goes.
//!
//! A server runs R rounds at each N. The tables and `results.csv` give
//! each figure's median over the rounds; `rounds.csv` has every round; the
//! ratios to the example come with their range over the rounds; the charts
//! draw medians, and the charts and tables that split one run's memory into
//! its parts take the round whose memory per waiting client is the median
//! (`typical_rounds`), so that the parts add up.

use std::path::Path;

use plotters::prelude::*;

use crate::load::Run;
use crate::servers::Kind;
use crate::sizes::FutureSizes;
use crate::Runs;

/// The servers in the charts, each with its colour. The blocking server is
/// left out: it runs at one small N only, and its memory figures mean
/// nothing.
const CHARTED: [(Kind, RGBColor); 6] = [
    (Kind::Futures, BLUE),
    (Kind::BareHyper, GREEN),
    (Kind::Axum, RGBColor(230, 130, 0)),
    (Kind::Node, RGBColor(120, 60, 160)),
    (Kind::Go, RGBColor(0, 160, 170)),
    (Kind::ThreadPerRequest, RED),
];

/// The report's columns, in order: the table's and the CSV's header.
pub const COLUMNS: [&str; 20] = [
    "server",
    "N",
    "ok",
    "errors",
    "in flight together",
    "p50 overhead ms",
    "p99 overhead ms",
    "p99.9 overhead ms",
    "max overhead ms",
    "peak RSS MiB",
    "RSS KiB/request",
    "heap KiB/request",
    "kernel KiB/request",
    "memory KiB/request",
    "KiB/idle connection",
    "heap KiB/idle connection",
    "KiB/waiting client",
    "peak threads",
    "server CPU s (user + sys)",
    "load-gen CPU s",
];

fn ms(run: &Run, quantile: f64) -> String {
    if run.succeeded == 0 {
        return "-".to_string();
    }
    format!(
        "{:.1}",
        run.overhead_us.value_at_quantile(quantile) as f64 / 1000.0
    )
}

fn kib(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "-".to_string()
    }
}

/// One run's cells, in the order of `COLUMNS`.
pub fn cells(run: &Run) -> Vec<String> {
    // The blocking server has at most one request per worker thread in
    // flight and the rest queued, so memory per request means nothing.
    let per_request = |value: f64| match run.server {
        Kind::Blocking => "-".to_string(),
        _ => kib(value),
    };
    let max_ms = if run.succeeded == 0 {
        "-".to_string()
    } else {
        format!("{:.1}", run.overhead_us.max() as f64 / 1000.0)
    };
    vec![
        run.server.name().to_string(),
        run.requests.to_string(),
        run.succeeded.to_string(),
        run.failed.to_string(),
        run.in_flight_together.to_string(),
        ms(run, 0.5),
        ms(run, 0.99),
        ms(run, 0.999),
        max_ms,
        format!("{:.1}", run.in_flight_peak.peak_rss_kib as f64 / 1024.0),
        per_request(run.user_kib_per_request()),
        per_request(run.heap_kib_per_request()),
        per_request(run.kernel_kib_per_request()),
        per_request(run.memory_kib_per_request()),
        kib(run.kib_per_connection()),
        kib(run.heap_kib_per_connection()),
        per_request(run.kib_per_waiting_client()),
        run.in_flight_peak.threads.to_string(),
        format!("{:.2} + {:.2}", run.server_cpu_s.0, run.server_cpu_s.1),
        format!("{:.2}", run.load_cpu_s),
    ]
}

/// A cell as a number, for medians and ratios: `a + b` is added up (CPU
/// time is user + sys); `None` for `-` or text.
pub fn cell_value(cell: &str) -> Option<f64> {
    cell.split(" + ")
        .map(|part| part.trim().parse::<f64>().ok())
        .sum()
}

/// The median of `values` (of an even count, the lower of the middle two,
/// so that it is always a value measured); NaN if there are none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|value| value.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        len => values[(len - 1) / 2],
    }
}

/// Rows of cells, the server and N first, reduced to one row per server and
/// N, in the order they first come: each other cell is the median of its
/// column over the rounds, as its round printed it. A column where a round
/// has no number (`-`) keeps the first round's cell.
pub fn median_rows(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let key = |row: &Vec<String>| (row[0].clone(), row[1].clone());
    let mut keys = Vec::new();
    for row in rows {
        if !keys.contains(&key(row)) {
            keys.push(key(row));
        }
    }
    keys.iter()
        .map(|wanted| {
            let group: Vec<&Vec<String>> = rows.iter().filter(|row| key(row) == *wanted).collect();
            (0..group[0].len())
                .map(|column| {
                    let values: Option<Vec<(f64, &String)>> = group
                        .iter()
                        .map(|row| Some((cell_value(&row[column])?, &row[column])))
                        .collect();
                    match values {
                        Some(mut values) if column >= 2 => {
                            values.sort_by(|a, b| a.0.total_cmp(&b.0));
                            values[(values.len() - 1) / 2].1.clone()
                        }
                        _ => group[0][column].clone(),
                    }
                })
                .collect()
        })
        .collect()
}

/// For each server and N, the round whose memory per waiting client is the
/// median of its rounds: what the memory split and the bar chart show, so
/// that their parts add up to a total the tables give.
pub fn typical_rounds(runs: &[Run]) -> Vec<Run> {
    let mut typical: Vec<Run> = Vec::new();
    for run in runs {
        if typical
            .iter()
            .any(|kept| kept.server == run.server && kept.requests == run.requests)
        {
            continue;
        }
        let mut rounds: Vec<&Run> = runs
            .iter()
            .filter(|other| other.server == run.server && other.requests == run.requests)
            .collect();
        rounds.sort_by(|a, b| {
            a.kib_per_waiting_client()
                .total_cmp(&b.kib_per_waiting_client())
        });
        typical.push(rounds[(rounds.len() - 1) / 2].clone());
    }
    typical
}

/// What a reader of the table must know about this run: the servers that
/// could not run, and the runs whose requests did not all overlap.
pub fn notes(runs: &Runs) -> String {
    let mut notes = String::new();
    for (kind, why) in &runs.skipped {
        notes += &format!("- {} did not run: {why}\n", kind.name());
    }
    for run in &runs.runs {
        if run.in_flight_together < run.requests && run.server != Kind::Blocking {
            notes += &format!(
                "- {} at N = {}, round {}: only {} requests were in flight together; its \
                 per-request figures divide by that\n",
                run.server.name(),
                run.requests,
                run.round + 1,
                run.in_flight_together
            );
        }
    }
    if runs.runs.iter().any(|run| !run.server.is_rust()) {
        notes += "- node and go (and their relays) have no heap figures (`-`): they run \
                  allocators of their own, which the benchmark's counting allocator cannot see\n";
    }
    if notes.is_empty() {
        notes
    } else {
        format!("\n{notes}")
    }
}

/// Every round's cells of the servers' runs (not the relays').
fn server_rows(runs: &[Run]) -> Vec<Vec<String>> {
    runs.iter()
        .filter(|run| !run.server.is_relay())
        .map(cells)
        .collect()
}

/// The servers' runs (not the relays') as a markdown table, each figure
/// the median of its rounds.
pub fn markdown(runs: &[Run]) -> String {
    let mut table = format!("| {} |\n", COLUMNS.join(" | "));
    table += &format!("|{}\n", " --- |".repeat(COLUMNS.len()));
    for row in median_rows(&server_rows(runs)) {
        table += &format!("| {} |\n", row.join(" | "));
    }
    table
}

/// The medians as CSV, one row per server and N: `results.csv`.
pub fn csv(runs: &[Run]) -> String {
    let mut text = COLUMNS.join(",") + "\n";
    for row in median_rows(&server_rows(runs)) {
        text += &(row.join(",") + "\n");
    }
    text
}

/// Every round as CSV, its number third: `rounds.csv` (and, for the
/// relays' cells, `relay_rounds.csv`).
pub fn rounds_csv(runs: &[Run], columns: &[&str], relays: bool) -> String {
    let mut header: Vec<&str> = columns.to_vec();
    header.insert(2, "round");
    let mut text = header.join(",") + "\n";
    for run in runs.iter().filter(|run| run.server.is_relay() == relays) {
        let mut row = if relays {
            relay_cells(run, runs)
        } else {
            cells(run)
        };
        row.insert(2, (run.round + 1).to_string());
        text += &(row.join(",") + "\n");
    }
    text
}

/// The columns whose ratios to the example `ratio_markdown` gives.
const RATIO_COLUMNS: [&str; 4] = [
    "KiB/waiting client",
    "KiB/idle connection",
    "p99 overhead ms",
    "server CPU s (user + sys)",
];

/// `run`'s figure in `column` (one of `COLUMNS`), as a number.
fn figure(run: &Run, column: &str) -> Option<f64> {
    let at = COLUMNS.iter().position(|name| *name == column)?;
    cell_value(&cells(run)[at])
}

/// Each server's figure over the example's at the same N: the ratio of
/// their medians, and the range of the rounds' ratios (round i of one over
/// round i of the other). A range that holds 1 is marked: those rounds do
/// not tell which of the two is larger.
pub fn ratio_markdown(runs: &[Run]) -> String {
    let rounds = runs.iter().map(|run| run.round).max().unwrap_or(0) + 1;
    let mut table = format!(
        "\nEach server over the example (`futures`) at the same N: the ratio of the \
         medians, and in brackets the range of the {rounds} rounds' ratios (round i over \
         round i); `*` marks a range that holds 1\n\n| server | N | {} |\n|{}\n",
        RATIO_COLUMNS.join(" | "),
        " --- |".repeat(RATIO_COLUMNS.len() + 2)
    );
    let mut any = false;
    for row in median_rows(&server_rows(runs)) {
        let (name, n) = (&row[0], row[1].parse::<usize>().unwrap_or(0));
        let Some(kind) = Kind::from_name(name) else {
            continue;
        };
        if kind == Kind::Futures || kind == Kind::Blocking {
            continue;
        }
        let rounds_of = |kind: Kind| -> Vec<&Run> {
            runs.iter()
                .filter(|run| run.server == kind && run.requests == n && run.succeeded > 0)
                .collect()
        };
        let (own, example) = (rounds_of(kind), rounds_of(Kind::Futures));
        if example.is_empty() {
            continue;
        }
        let mut cells_out = vec![name.clone(), n.to_string()];
        for column in RATIO_COLUMNS {
            let medians = |rounds: &[&Run]| {
                median(
                    rounds
                        .iter()
                        .filter_map(|run| figure(run, column))
                        .collect(),
                )
            };
            let ratio = medians(&own) / medians(&example);
            let paired: Vec<f64> = own
                .iter()
                .filter_map(|run| {
                    let base = example.iter().find(|other| other.round == run.round)?;
                    Some(figure(run, column)? / figure(base, column)?)
                })
                .filter(|ratio| ratio.is_finite())
                .collect();
            let low = paired.iter().copied().fold(f64::INFINITY, f64::min);
            let high = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            cells_out.push(if !ratio.is_finite() || paired.is_empty() {
                "-".to_string()
            } else {
                let mark = if low <= 1.0 && high >= 1.0 { " *" } else { "" };
                format!("{ratio:.2} ({low:.2} to {high:.2}){mark}")
            });
        }
        any = true;
        table += &format!("| {} |\n", cells_out.join(" | "));
    }
    if any {
        table
    } else {
        String::new()
    }
}

/// Every round of every server (not the relays'), as a markdown table.
pub fn rounds_markdown(runs: &[Run]) -> String {
    let mut header: Vec<&str> = COLUMNS.to_vec();
    header.insert(2, "round");
    let mut table = format!(
        "\nEvery round, in the order run\n\n| {} |\n|{}\n",
        header.join(" | "),
        " --- |".repeat(header.len())
    );
    for run in runs.iter().filter(|run| !run.server.is_relay()) {
        let mut row = cells(run);
        row.insert(2, (run.round + 1).to_string());
        table += &format!("| {} |\n", row.join(" | "));
    }
    table
}

/// A number the chart draws for one run.
type Metric = fn(&Run) -> f64;

/// One server's line in a chart: its colour and its points.
type Line = (Kind, RGBColor, Vec<(f64, f64)>);

/// The median of `value` over the rounds of `kind` at each N it ran, in
/// the order of N.
fn median_points(runs: &[&Run], kind: Kind, value: Metric) -> Vec<(f64, f64)> {
    let mut ns: Vec<usize> = runs
        .iter()
        .filter(|run| run.server == kind)
        .map(|run| run.requests)
        .collect();
    ns.sort_unstable();
    ns.dedup();
    ns.into_iter()
        .map(|n| {
            let values = runs
                .iter()
                .filter(|run| run.server == kind && run.requests == n)
                .map(|run| value(run))
                .collect();
            (n as f64, median(values))
        })
        .collect()
}

/// Memory per waiting client and p99 overhead against N, one line a
/// server, each point the median of its rounds.
pub fn chart(runs: &[Run], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let series: Vec<(Kind, RGBColor)> = CHARTED
        .into_iter()
        .filter(|(kind, _)| runs.iter().any(|run| run.server == *kind))
        .collect();
    let drawn: Vec<&Run> = runs
        .iter()
        .filter(|run| run.succeeded > 0 && series.iter().any(|(kind, _)| *kind == run.server))
        .collect();
    let max_n = drawn.iter().map(|run| run.requests).max().unwrap_or(1) as f64;

    // Each panel's legend goes where its lines are not.
    let panels: [(&str, Metric, SeriesLabelPosition); 2] = [
        (
            "memory per waiting client, KiB (RSS + kernel)",
            Run::kib_per_waiting_client,
            SeriesLabelPosition::MiddleRight,
        ),
        (
            "p99 latency over the 1 s sleep, ms",
            |run| run.overhead_us.value_at_quantile(0.99) as f64 / 1000.0,
            SeriesLabelPosition::UpperLeft,
        ),
    ];
    for (area, (title, value, legend_at)) in [left, right].iter().zip(panels) {
        let lines: Vec<Line> = series
            .iter()
            .map(|(kind, colour)| (*kind, *colour, median_points(&drawn, *kind, value)))
            .collect();
        let max_y = lines
            .iter()
            .flat_map(|(_, _, points)| points.iter().map(|(_, y)| *y))
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..max_n * 1.05, 0.0..max_y)?;
        chart
            .configure_mesh()
            .x_desc("concurrent requests (N)")
            .x_labels(6)
            .x_label_formatter(&|n| format!("{:.0}", n))
            .y_label_formatter(&|y| format!("{:.0}", y))
            .draw()?;
        for (kind, colour, points) in &lines {
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(kind.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], *colour));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .position(legend_at)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// One part of a waiting request's memory, in KiB.
pub struct Part {
    pub what: &'static str,
    pub kib: f64,
}

/// Where a waiting request's memory goes, for the futures server and for a
/// thread per request, at one N.
pub struct Split {
    pub requests: usize,
    pub futures: Vec<Part>,
    pub futures_total: f64,
    pub threads: Vec<Part>,
    pub threads_total: f64,
}

/// Splits the memory per in-flight request at the N nearest `wanted` that
/// has a run of each of the futures, bare-hyper and thread servers.
///
/// For the futures server the parts are: the handler's future itself (its
/// measured size); hyper and the serve loop (the bare hyper server's heap
/// per request, less its own future), taken to cost the same under gotham:
/// mostly hyper's two 8 KiB buffers, which the serve loop makes only once a
/// connection's first byte arrives, so they count here and not in the idle
/// connection's cost; gotham (the rest of the live heap: `State` with its
/// copy of the request head, and the router's futures and boxes); allocator
/// slack (RSS growth less live heap growth); and kernel memory. They add
/// up to the measured total (RSS + kernel) by construction: slack is what
/// RSS holds beyond what is live. Slack can be negative: memory allocated
/// but never written is never paged in, so it is live heap that RSS does
/// not show.
pub fn split(runs: &[Run], sizes: &FutureSizes, wanted: usize) -> Option<Split> {
    let find = |kind: Kind, n: usize| {
        runs.iter()
            .find(|run| run.server == kind && run.requests == n && run.succeeded > 0)
    };
    let n = runs
        .iter()
        .map(|run| run.requests)
        .filter(|&n| {
            [Kind::Futures, Kind::BareHyper, Kind::ThreadPerRequest]
                .iter()
                .all(|&kind| find(kind, n).is_some())
        })
        .min_by_key(|&n| n.abs_diff(wanted))?;
    let (futures, bare, threads) = (
        find(Kind::Futures, n)?,
        find(Kind::BareHyper, n)?,
        find(Kind::ThreadPerRequest, n)?,
    );
    let kib = |bytes: usize| bytes as f64 / 1024.0;
    let future = kib(sizes.gotham_sleep);
    let hyper = bare.heap_kib_per_request() - kib(sizes.bare_hyper_sleep);
    let gotham = futures.heap_kib_per_request() - future - hyper;
    let futures_parts = vec![
        Part {
            what: "futures: the handler's future itself",
            kib: future,
        },
        Part {
            what: "futures: gotham (State with a copy of the head, the router's boxes)",
            kib: gotham,
        },
        Part {
            what: "futures: hyper (its buffers, made at the first byte) and the serve loop",
            kib: hyper,
        },
        Part {
            what: "futures: allocator slack (RSS beyond live heap)",
            kib: futures.user_kib_per_request() - futures.heap_kib_per_request(),
        },
        Part {
            what: "futures: kernel memory",
            kib: futures.kernel_kib_per_request(),
        },
    ];
    let threads_parts = vec![
        Part {
            what: "thread: heap (gotham, hyper, the thread's handle)",
            kib: threads.heap_kib_per_request(),
        },
        Part {
            what: "thread: its stack and allocator slack (RSS beyond live heap)",
            kib: threads.user_kib_per_request() - threads.heap_kib_per_request(),
        },
        Part {
            what: "thread: kernel memory (kernel stack, task)",
            kib: threads.kernel_kib_per_request(),
        },
    ];
    let total = Run::memory_kib_per_request;
    Some(Split {
        requests: n,
        futures: futures_parts,
        futures_total: total(futures),
        threads: threads_parts,
        threads_total: total(threads),
    })
}

/// The split as a markdown table.
pub fn split_markdown(split: &Split, sizes: &FutureSizes) -> String {
    let mut table = format!(
        "Memory per in-flight request at N = {}, KiB\n\n| server | part | KiB |\n| --- | --- | --- |\n",
        split.requests
    );
    for (server, parts, total) in [
        ("futures", &split.futures, split.futures_total),
        ("thread-per-request", &split.threads, split.threads_total),
    ] {
        for part in parts {
            table += &format!("| {server} | {} | {:.2} |\n", part.what, part.kib);
        }
        table += &format!("| {server} | **measured total** | **{total:.2}** |\n");
    }
    table += &format!(
        "\nFuture sizes, bytes: gotham `/sleep` {}, gotham `/loop` {}, bare hyper `/sleep` {}\n",
        sizes.gotham_sleep, sizes.gotham_loop, sizes.bare_hyper_sleep
    );
    table
}

/// The split as stacked bars, one for each way of waiting.
pub fn split_chart(split: &Split, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    let widest = split.futures_total.max(split.threads_total).max(1.0);
    // The right part of the x axis is left free for the legend.
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Where a waiting request's memory goes (N = {}), KiB per request",
                split.requests
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d(0.0..widest * 2.0, 0.0..2.0)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("KiB per in-flight request")
        .draw()?;
    for (name, parts, total, y) in [
        ("futures", &split.futures, split.futures_total, 1.5),
        (
            "thread per request",
            &split.threads,
            split.threads_total,
            0.5,
        ),
    ] {
        // A negative part (RSS below live heap) has no bar; say so.
        let untouched: f64 = parts.iter().map(|part| part.kib.min(0.0)).sum();
        let label = if untouched < 0.0 {
            format!(
                "{name}: {total:.1} KiB measured (RSS + kernel); the bars add to {:.1}, \
                 as {:.1} KiB of live heap was never touched",
                total - untouched,
                -untouched
            )
        } else {
            format!("{name}: {total:.1} KiB measured (RSS + kernel)")
        };
        chart.draw_series(std::iter::once(Text::new(
            label,
            (0.0, y + 0.42),
            ("sans-serif", 15),
        )))?;
    }
    let futures_colours = [
        BLUE,
        CYAN,
        GREEN,
        RGBColor(200, 200, 200),
        RGBColor(120, 60, 160),
    ];
    let thread_colours = [RGBColor(240, 150, 40), RED, RGBColor(120, 60, 160)];
    for (parts, y, colours) in [
        (&split.futures, 1.5, &futures_colours[..]),
        (&split.threads, 0.5, &thread_colours[..]),
    ] {
        let mut from = 0.0;
        for (part, colour) in parts.iter().zip(colours) {
            if part.kib <= 0.0 {
                continue;
            }
            let to = from + part.kib;
            let colour = *colour;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, y - 0.25), (to, y + 0.25)],
                    colour.filled(),
                )))?
                .label(format!("{}: {:.2}", part.what, part.kib))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
            from = to;
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The N nearest `wanted` at which the example itself ran.
pub fn nearest_n(runs: &[Run], wanted: usize) -> Option<usize> {
    runs.iter()
        .filter(|run| run.server == Kind::Futures && run.succeeded > 0)
        .map(|run| run.requests)
        .min_by_key(|n| n.abs_diff(wanted))
}

/// What one waiting client costs on each server at N: its idle connection
/// and its request in flight, as one stacked bar a server.
pub fn waiting_client_chart(
    runs: &[Run],
    n: usize,
    run_of: &str,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<(&Run, RGBColor)> = CHARTED
        .iter()
        .filter_map(|(kind, colour)| {
            runs.iter()
                .find(|run| run.server == *kind && run.requests == n && run.succeeded > 0)
                .map(|run| (run, *colour))
        })
        .collect();
    let height = 90 + 46 * bars.len() as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let widest = bars
        .iter()
        .map(|(run, _)| run.kib_per_waiting_client())
        .fold(1.0, f64::max);
    let rows = bars.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("What one waiting client costs, N = {n} at once (RSS + kernel, KiB), {run_of}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        // Each label sits above its bar, so the axis can end at the widest.
        .build_cartesian_2d(0.0..widest * 1.04, 0.0..rows)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(
            "KiB per waiting client: its idle connection (light) + its request in flight (dark)",
        )
        .draw()?;
    for (row, (run, colour)) in bars.iter().enumerate() {
        let y = rows - row as f64 - 0.5;
        let idle = run.kib_per_connection().max(0.0);
        let request = run.memory_kib_per_request().max(0.0);
        chart.draw_series([
            Rectangle::new([(0.0, y - 0.4), (idle, y)], colour.mix(0.35).filled()),
            Rectangle::new([(idle, y - 0.4), (idle + request, y)], colour.filled()),
        ])?;
        let threads = if run.server == Kind::ThreadPerRequest {
            format!(", {} threads", run.in_flight_peak.threads)
        } else {
            String::new()
        };
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "{}: {:.1} = {:.1} idle + {:.1} request{threads}",
                table_name(run.server),
                run.kib_per_waiting_client(),
                run.kib_per_connection(),
                run.memory_kib_per_request(),
            ),
            (widest * 0.005, y + 0.42),
            ("sans-serif", 14),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// A server's name as the README's table heads its column, so that the
/// chart beside that table names it alike.
pub fn table_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Futures => "gotham",
        Kind::BareHyper => "bare hyper",
        Kind::Node => "Node.js",
        Kind::Go => "Go",
        Kind::ThreadPerRequest => "thread per request",
        other => other.name(),
    }
}

/// The relay table's columns, in order.
pub const RELAY_COLUMNS: [&str; 16] = [
    "relay",
    "N",
    "ok",
    "errors",
    "in flight together",
    "p99 overhead ms",
    "RSS KiB/request",
    "heap KiB/request",
    "kernel KiB/request",
    "KiB/idle connection",
    "KiB/waiting request",
    "× the example's waiting client",
    "upstream connections opened",
    "most at once",
    "kept after",
    "relay CPU s (user + sys)",
];

/// One relay run's cells, in the order of `RELAY_COLUMNS`; `runs` holds the
/// example's own run at the same N and round, if there is one, for the
/// ratio.
pub fn relay_cells(run: &Run, runs: &[Run]) -> Vec<String> {
    let example = runs.iter().find(|other| {
        other.server == Kind::Futures
            && other.requests == run.requests
            && other.round == run.round
            && other.succeeded > 0
    });
    let ratio = example.map_or(f64::NAN, |example| {
        run.kib_per_waiting_client() / example.kib_per_waiting_client()
    });
    let upstream = |value: fn(&crate::load::UpstreamUse) -> u64| {
        run.upstream
            .as_ref()
            .map_or("-".to_string(), |used| value(used).to_string())
    };
    vec![
        run.server.name().to_string(),
        run.requests.to_string(),
        run.succeeded.to_string(),
        run.failed.to_string(),
        run.in_flight_together.to_string(),
        ms(run, 0.99),
        kib(run.user_kib_per_request()),
        kib(run.heap_kib_per_request()),
        kib(run.kernel_kib_per_request()),
        kib(run.kib_per_connection()),
        kib(run.kib_per_waiting_client()),
        if ratio.is_finite() {
            format!("{ratio:.2}")
        } else {
            "-".to_string()
        },
        upstream(|used| used.opened),
        upstream(|used| used.most_at_once),
        upstream(|used| used.kept),
        format!("{:.2} + {:.2}", run.server_cpu_s.0, run.server_cpu_s.1),
    ]
}

/// The relays' runs as a markdown table, and what to know to read it;
/// empty if there were none.
pub fn relay_markdown(runs: &[Run]) -> String {
    let relays: Vec<&Run> = runs.iter().filter(|run| run.server.is_relay()).collect();
    if relays.is_empty() {
        return String::new();
    }
    let mut table = "\nA relayed waiting request: N clients each waiting on a relay whose \
                     upstream is the example (`futures`)\n\n"
        .to_string();
    table += &format!("| {} |\n", RELAY_COLUMNS.join(" | "));
    table += &format!("|{}\n", " --- |".repeat(RELAY_COLUMNS.len()));
    for row in median_rows(&relay_rows(runs)) {
        table += &format!("| {} |\n", row.join(" | "));
    }
    table += "\n- memory is the relay process's (RSS, heap) and the kernel's (machine-wide: \
              it holds the upstream's and the load's sockets too, alike for every relay)\n\
              - × the example's waiting client: KiB/waiting request over `futures`' \
              KiB/waiting client at the same N\n\
              - kept after: upstream connections still open a second after the last answer\n\
              - each figure is the median of its rounds (`relay_rounds.csv` has every round)\n";
    table
}

/// Every round's cells of the relays' runs.
fn relay_rows(runs: &[Run]) -> Vec<Vec<String>> {
    runs.iter()
        .filter(|run| run.server.is_relay())
        .map(|run| relay_cells(run, runs))
        .collect()
}

/// The relays' runs as CSV, each figure the median of its rounds.
pub fn relay_csv(runs: &[Run]) -> String {
    let mut text = RELAY_COLUMNS.join(",") + "\n";
    for row in median_rows(&relay_rows(runs)) {
        text += &(row.join(",") + "\n");
    }
    text
}

/// Where a relayed waiting request's live heap goes, for the gotham relay at
/// `n`, by subtraction between runs of the same N (so only where all four
/// ran): the inbound side as a waiting client of the example costs; the
/// outbound side as the bare hyper relay adds to a bare hyper server (the
/// client's connection and its buffers, its pool entry, its futures); and
/// what the gotham relay adds to both (its handler's future, the
/// `Upstream` and `Turns` in `State`, the relay's lines). They add up to
/// the gotham relay's live heap per waiting request by construction.
pub fn relay_split(runs: &[Run], n: usize) -> Option<Vec<Part>> {
    let find = |kind: Kind| {
        runs.iter()
            .find(|run| run.server == kind && run.requests == n && run.succeeded > 0)
    };
    let heap_per_waiting = |run: &Run| run.heap_kib_per_connection() + run.heap_kib_per_request();
    let (relay, bare_relay, example, bare) = (
        find(Kind::GothamRelay)?,
        find(Kind::BareHyperRelay)?,
        find(Kind::Futures)?,
        find(Kind::BareHyper)?,
    );
    let inbound = heap_per_waiting(example);
    let outbound = heap_per_waiting(bare_relay) - heap_per_waiting(bare);
    let total = heap_per_waiting(relay);
    Some(vec![
        Part {
            what: "inbound: the client's connection and request, as on the example",
            kib: inbound,
        },
        Part {
            what: "outbound: hyper-util's connection to the upstream, its pool entry and futures",
            kib: outbound,
        },
        Part {
            what: "the gotham relay's own: the rest",
            kib: total - inbound - outbound,
        },
        Part {
            what: "**live heap per waiting request, measured**",
            kib: total,
        },
    ])
}

/// The relay split as a markdown table; empty if it cannot be made.
pub fn relay_split_markdown(runs: &[Run]) -> String {
    let Some(n) = runs
        .iter()
        .filter(|run| run.server == Kind::GothamRelay)
        .map(|run| run.requests)
        .max()
    else {
        return String::new();
    };
    let Some(parts) = relay_split(runs, n) else {
        return String::new();
    };
    let mut table = format!(
        "\nThe gotham relay's live heap per waiting request at N = {n}, KiB\n\n\
         | part | KiB |\n| --- | --- |\n"
    );
    for part in parts {
        table += &format!("| {} | {:.2} |\n", part.what, part.kib);
    }
    table
}
