//! The runs as a markdown table, a CSV file and an SVG chart.

use std::path::Path;

use plotters::prelude::*;

use crate::load::Run;
use crate::servers::Kind;

/// The report's columns, in order: the table's and the CSV's header.
pub const COLUMNS: [&str; 16] = [
    "server",
    "N",
    "ok",
    "errors",
    "p50 overhead ms",
    "p99 overhead ms",
    "p99.9 overhead ms",
    "max overhead ms",
    "peak RSS MiB",
    "user KiB/request",
    "kernel KiB/request",
    "memory KiB/request",
    "KiB/idle connection",
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

/// One run's cells, in the order of `COLUMNS`.
pub fn cells(run: &Run) -> Vec<String> {
    // Memory per request divides growth by N, which assumes all N requests
    // are in flight together. The blocking server never has more than one
    // per worker thread in flight, so for it the figure would mean nothing.
    let per_request = |kib: f64| match run.server {
        Kind::Blocking => "-".to_string(),
        _ => format!("{kib:.1}"),
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
        ms(run, 0.5),
        ms(run, 0.99),
        ms(run, 0.999),
        max_ms,
        format!("{:.1}", run.in_flight_peak.peak_rss_kib as f64 / 1024.0),
        per_request(run.user_kib_per_request()),
        per_request(run.kernel_kib_per_request()),
        per_request(run.user_kib_per_request() + run.kernel_kib_per_request()),
        format!("{:.1}", run.kib_per_connection()),
        run.in_flight_peak.threads.to_string(),
        format!("{:.2} + {:.2}", run.server_cpu_s.0, run.server_cpu_s.1),
        format!("{:.2}", run.load_cpu_s),
    ]
}

pub fn markdown(runs: &[Run]) -> String {
    let mut table = format!("| {} |\n", COLUMNS.join(" | "));
    table += &format!("|{}\n", " --- |".repeat(COLUMNS.len()));
    for run in runs {
        table += &format!("| {} |\n", cells(run).join(" | "));
    }
    table
}

pub fn csv(runs: &[Run]) -> String {
    let mut text = COLUMNS.join(",") + "\n";
    for run in runs {
        text += &(cells(run).join(",") + "\n");
    }
    text
}

/// A number the chart draws for one run.
type Metric = fn(&Run) -> f64;

/// Memory per request and p99 overhead against N, one line each for the
/// futures and thread-per-request servers. The blocking server is left out:
/// it runs at one small N only, and its memory figures mean nothing.
pub fn chart(runs: &[Run], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let series: Vec<(Kind, RGBColor)> = vec![(Kind::Futures, BLUE), (Kind::ThreadPerRequest, RED)];
    let drawn: Vec<&Run> = runs
        .iter()
        .filter(|run| run.succeeded > 0 && series.iter().any(|(kind, _)| *kind == run.server))
        .collect();
    let max_n = drawn.iter().map(|run| run.requests).max().unwrap_or(1) as f64;

    // Each panel's legend goes where its lines are not.
    let panels: [(&str, Metric, SeriesLabelPosition); 2] = [
        (
            "memory per in-flight request, KiB (user + kernel)",
            |run| run.user_kib_per_request() + run.kernel_kib_per_request(),
            SeriesLabelPosition::MiddleRight,
        ),
        (
            "p99 latency over the 1 s sleep, ms",
            |run| run.overhead_us.value_at_quantile(0.99) as f64 / 1000.0,
            SeriesLabelPosition::UpperLeft,
        ),
    ];
    for (area, (title, value, legend_at)) in [left, right].iter().zip(panels) {
        let max_y = drawn
            .iter()
            .map(|run| value(run))
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
        for (kind, colour) in &series {
            let points: Vec<(f64, f64)> = drawn
                .iter()
                .filter(|run| run.server == *kind)
                .map(|run| (run.requests as f64, value(run)))
                .collect();
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
