//! Every benchmark figure in the README comes from the run it cites.
//!
//! The full run (`cargo bench --locked -p benchmark --bench
//! futures_vs_threads`) writes `report.md`, `results.csv`, `relay.csv` and
//! its charts; they are committed as they came in `docs/futures_vs_threads/`,
//! the single source of the README's figures. This test reads the README's
//! section on costs and
//!
//! - recomputes every cell of its table from the CSV files, by the rule its
//!   row and its header state (each server's figure over gotham's);
//! - finds a source for every other figure in the section: a number the
//!   report prints, or a ratio or sum of two of the run's figures, at the
//!   precision the README gives it (figures in `code` and in link targets
//!   are commands and names, not figures, and are skipped);
//! - checks that the chart beside the table is that run's, and names the
//!   servers as the table does.

use crate::pages;

const SECTION: &str = "## What a waiting client costs";
const RUN: &str = "docs/futures_vs_threads";

/// A CSV file the benchmark wrote: its header and its rows.
struct Csv {
    path: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    fn read(name: &str) -> Csv {
        let path = format!("{RUN}/{name}");
        let text = pages::read(&path);
        let mut lines = text
            .lines()
            .map(|line| line.split(',').map(str::to_string).collect::<Vec<String>>());
        let header = lines.next().unwrap_or_default();
        // Every row has the server and N first; a shorter one is no row.
        let rows = lines.filter(|row| row.len() > 2).collect();
        Csv { path, header, rows }
    }

    /// A cell as a number (`a + b` is added up: CPU time is user + sys).
    fn value(&self, server: &str, n: u64, column: &str) -> Option<f64> {
        let at = self.header.iter().position(|name| name == column)?;
        let row = self
            .rows
            .iter()
            .find(|row| row[0] == server && row[1] == n.to_string())?;
        row.get(at)?
            .split(" + ")
            .map(|part| part.trim().parse::<f64>().ok())
            .sum()
    }

    /// Every number of a row that the run measured, by column.
    fn numbers(&self) -> impl Iterator<Item = (&str, u64, &str, f64)> + '_ {
        self.rows.iter().flat_map(move |row| {
            let n = row.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
            self.header.iter().skip(2).filter_map(move |column| {
                Some((
                    row[0].as_str(),
                    n,
                    column.as_str(),
                    self.value(&row[0], n, column)?,
                ))
            })
        })
    }
}

/// The server a column of the README's table names, in the run's files;
/// the second is its relay, if it has one.
fn server(column: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match column {
        "gotham" => ("futures", Some("gotham-relay")),
        "bare hyper" => ("bare-hyper", Some("bare-hyper-relay")),
        "axum" => ("axum", None),
        "Node.js" => ("node", Some("node-relay")),
        "Go" => ("go", Some("go-relay")),
        "thread per request" => ("thread-per-request", None),
        _ => return None,
    })
}

/// The number in a piece of text, `10,000` read as 10000.
fn number_in(text: &str) -> Option<u64> {
    let digits: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// What a row of the table shows: which file and column, at which N, and
/// whether each cell is a ratio to gotham's or a count.
struct Row {
    csv: &'static str,
    column: &'static str,
    relay: bool,
    ratio: bool,
}

fn row(label: &str) -> Option<Row> {
    let rows = [
        (
            "memory per waiting client",
            "results.csv",
            "KiB/waiting client",
            false,
            true,
        ),
        (
            "memory per idle connection",
            "results.csv",
            "KiB/idle connection",
            false,
            true,
        ),
        (
            "p99 latency over the sleep",
            "results.csv",
            "p99 overhead ms",
            false,
            true,
        ),
        (
            "server CPU",
            "results.csv",
            "server CPU s (user + sys)",
            false,
            true,
        ),
        ("peak threads", "results.csv", "peak threads", false, false),
        (
            "memory per waiting relayed request",
            "relay.csv",
            "KiB/waiting request",
            true,
            true,
        ),
    ];
    rows.into_iter()
        .find(|(start, ..)| label.starts_with(start))
        .map(|(_, csv, column, relay, ratio)| Row {
            csv,
            column,
            relay,
            ratio,
        })
}

fn with_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn cells(line: &str) -> Vec<String> {
    line.trim()
        .trim_matches('|')
        .split('|')
        .map(|cell| cell.trim().to_string())
        .collect()
}

/// The README's section on what a waiting client costs, with the line
/// number of its heading.
fn section() -> (usize, Vec<String>) {
    let readme = pages::read("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|line| *line == SECTION)
        .unwrap_or_else(|| panic!("README.md has no `{SECTION}` section"));
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.starts_with("## "))
        .map_or(lines.len(), |at| start + 1 + at);
    (
        start + 1,
        lines[start..end]
            .iter()
            .map(|line| line.to_string())
            .collect(),
    )
}

/// Checks the table; its mistakes, and how many cells it checked.
fn check_table(lines: &[String], first_line: usize, wrong: &mut Vec<String>) -> usize {
    let results = Csv::read("results.csv");
    let relays = Csv::read("relay.csv");
    let Some(head_at) = lines.iter().position(|line| line.starts_with("| at N = ")) else {
        wrong.push(format!(
            "README.md: the section at line {first_line} has no table whose header starts \
             `| at N = `"
        ));
        return 0;
    };
    let header = cells(&lines[head_at]);
    let table_n = number_in(&header[0]).unwrap_or(0);
    if !header[0].contains("÷ gotham") {
        wrong.push(format!(
            "README.md line {}: the header's first cell must say which way the ratios go \
             (`÷ gotham's`)",
            first_line + head_at
        ));
    }
    let mut checked = 0;
    for (offset, line) in lines[head_at + 2..].iter().enumerate() {
        if !line.starts_with('|') {
            break;
        }
        let at = first_line + head_at + 2 + offset;
        let row_cells = cells(line);
        let label = &row_cells[0];
        let Some(rule) = row(label) else {
            wrong.push(format!(
                "README.md line {at}: no source known for the row `{label}`: teach \
                 tests/docs/figures.rs which column of the run it comes from"
            ));
            continue;
        };
        let csv = if rule.csv == "relay.csv" {
            &relays
        } else {
            &results
        };
        let n = if rule.relay {
            number_in(label).unwrap_or(table_n)
        } else {
            table_n
        };
        let name_of = |column: &str| {
            let (plain, relay) = server(column)?;
            if rule.relay {
                relay
            } else {
                Some(plain)
            }
        };
        if rule.relay && !label.contains("÷ the gotham relay's") {
            wrong.push(format!(
                "README.md line {at}: a relay row must say which way it goes \
                 (`÷ the gotham relay's`)"
            ));
        }
        let base = name_of("gotham").and_then(|name| csv.value(name, n, rule.column));
        for (column, shown) in header.iter().zip(&row_cells).skip(1) {
            let expected = match name_of(column) {
                None => "-".to_string(),
                Some(name) => match (csv.value(name, n, rule.column), base) {
                    (Some(value), _) if !rule.ratio => with_thousands(value as u64),
                    (Some(_), Some(_)) if name_of("gotham") == Some(name) => "1".to_string(),
                    (Some(value), Some(base)) => ratio_cell(
                        rule.csv,
                        name,
                        name_of("gotham").unwrap_or_default(),
                        n,
                        rule.column,
                        value / base,
                    ),
                    _ => format!(
                        "(no `{}` for {name} at N = {n} in {})",
                        rule.column, csv.path
                    ),
                },
            };
            checked += 1;
            if *shown != expected {
                wrong.push(format!(
                    "README.md line {at}, row `{label}`, column `{column}`: it says {shown}, the \
                     run gives {expected} (`{}` at N = {n} in {}{})",
                    rule.column,
                    csv.path,
                    if rule.ratio { ", over gotham's" } else { "" }
                ));
            }
        }
    }
    checked
}

/// How the table shows `server`'s `column` over `base`'s at N = `n`, whose
/// medians (in `csv`) give `ratio`: at two decimals; or, when the ratios of
/// the rounds (round i over round i, in the rounds file beside `csv`) fall
/// on both sides of 1, as `≈1 (LOW–HIGH)`, their range, since those rounds
/// do not tell which of the two is larger.
fn ratio_cell(csv: &str, server: &str, base: &str, n: u64, column: &str, ratio: f64) -> String {
    let rounds = match csv {
        "relay.csv" => "relay_rounds.csv",
        _ => "rounds.csv",
    };
    let text = pages::read(&format!("{RUN}/{rounds}"));
    let mut lines = text
        .lines()
        .map(|line| line.split(',').collect::<Vec<&str>>());
    let header = lines.next().unwrap_or_default();
    let at = |name: &str| header.iter().position(|cell| *cell == name);
    let (Some(round_at), Some(column_at)) = (at("round"), at(column)) else {
        return format!("(no `round` or `{column}` column in {RUN}/{rounds})");
    };
    let rows: Vec<Vec<&str>> = lines.filter(|row| row.len() == header.len()).collect();
    let value = |server: &str, round: &str| -> Option<f64> {
        let row = rows
            .iter()
            .find(|row| row[0] == server && row[1] == n.to_string() && row[round_at] == round)?;
        row[column_at]
            .split(" + ")
            .map(|part| part.trim().parse::<f64>().ok())
            .sum()
    };
    let paired: Vec<f64> = rows
        .iter()
        .filter(|row| row[0] == server && row[1] == n.to_string())
        .filter_map(|row| Some(value(server, row[round_at])? / value(base, row[round_at])?))
        .collect();
    let low = paired.iter().copied().fold(f64::INFINITY, f64::min);
    let high = paired.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if low <= 1.0 && high >= 1.0 {
        format!("≈1 ({low:.2}–{high:.2})")
    } else {
        format!("{ratio:.2}")
    }
}

/// Every value the run gives a figure in prose: each number of the report,
/// and each ratio or sum of two figures of one column at one N.
fn sources() -> (Vec<Source>, Vec<String>) {
    let report = pages::read(&format!("{RUN}/report.md"));
    let mut values: Vec<Source> = report
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .filter_map(|word| word.trim_matches(['.', '-']).parse().ok())
        .map(Source::Printed)
        .collect();
    let dates = report
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|word| is_date(word))
        .map(str::to_string)
        .collect();
    let results = Csv::read("results.csv");
    let relays = Csv::read("relay.csv");
    let all: Vec<(&str, u64, &str, f64)> = results.numbers().chain(relays.numbers()).collect();
    for &(server_a, n_a, column_a, a) in &all {
        for &(server_b, n_b, column_b, b) in &all {
            if n_a != n_b {
                continue;
            }
            // One column across servers (gotham over bare hyper), or two
            // columns of one server (its heap per idle connection plus per
            // request; a relay's cost over the example's).
            let same_column = column_a == column_b
                || (column_a.starts_with("KiB/waiting") && column_b.starts_with("KiB/waiting"));
            if same_column && b != 0.0 {
                values.push(Source::Derived(a / b));
            }
            if server_a == server_b && column_a != column_b {
                values.push(Source::Derived(a + b));
            }
        }
    }
    (values, dates)
}

/// A value a figure may come from: one the report prints, or one worked
/// out from two of them.
#[derive(Clone, Copy)]
enum Source {
    Printed(f64),
    Derived(f64),
}

fn is_date(word: &str) -> bool {
    word.len() == 10
        && word.char_indices().all(|(at, c)| {
            if at == 4 || at == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        })
}

/// The figures of some prose, each with the index of its line, leaving out
/// what is in `code` (which may span lines) and in link targets.
fn figures_in(prose: &str) -> Vec<(usize, String)> {
    let blank = |text: &str| -> String {
        text.chars()
            .map(|c| if c == '\n' { c } else { ' ' })
            .collect()
    };
    let mut text = String::new();
    for (at, piece) in prose.split('`').enumerate() {
        if at % 2 == 0 {
            text += piece;
        } else {
            // Kept as blanks, so that the lines still count.
            text += &blank(piece);
            text.push(' ');
        }
    }
    while let Some(start) = text.find("](") {
        let end = text[start..]
            .find(')')
            .map_or(text.len(), |end| start + end + 1);
        let blanked = blank(&text[start..end]);
        text.replace_range(start..end, &blanked);
    }
    let mut figures = Vec::new();
    let mut current = String::new();
    let mut line = 0;
    for c in text.chars().chain([' ']) {
        let continues =
            c.is_ascii_digit() || (!current.is_empty() && (c == ',' || c == '.' || c == '-'));
        if continues {
            current.push(c);
        } else if !current.is_empty() {
            figures.push((line, current.trim_end_matches([',', '.', '-']).to_string()));
            current.clear();
        }
        if c == '\n' {
            line += 1;
        }
    }
    figures
}

fn has_source(figure: &str, values: &[Source], dates: &[String]) -> bool {
    if is_date(figure) {
        return dates.iter().any(|date| date == figure);
    }
    let plain = figure.replace(',', "");
    let decimals = plain.split_once('.').map_or(0, |(_, after)| after.len());
    // A whole number must be one the run printed as it is: a small integer
    // rounds from too many values, or adds up from two, to say anything.
    values.iter().any(|source| match *source {
        Source::Printed(value) if decimals == 0 => {
            value.fract() == 0.0 && value.to_string() == plain
        }
        Source::Derived(_) if decimals == 0 => false,
        Source::Printed(value) | Source::Derived(value) => format!("{value:.decimals$}") == plain,
    })
}

#[test]
fn every_figure_of_the_readme_is_the_one_its_run_wrote() {
    let (first_line, lines) = section();
    let mut wrong = Vec::new();
    let table_cells = check_table(&lines, first_line, &mut wrong);

    let (values, dates) = sources();
    let mut in_prose = 0;
    // Table rows blanked, so that line numbers stay those of the page.
    let prose: Vec<&str> = lines
        .iter()
        .map(|line| {
            if line.starts_with('|') {
                ""
            } else {
                line.as_str()
            }
        })
        .collect();
    for (offset, figure) in figures_in(&prose.join("\n")) {
        in_prose += 1;
        if !has_source(&figure, &values, &dates) {
            wrong.push(format!(
                "README.md line {}: `{figure}` has no source in {RUN}/report.md, results.csv \
                 or relay.csv (a number printed there, or the ratio or sum of two of the run's \
                 figures): take it from the run, or move a figure that is not the benchmark's \
                 out of this section",
                first_line + offset
            ));
        }
    }

    let report = pages::read(&format!("{RUN}/report.md"));
    let chart = pages::read(&format!("{RUN}/waiting_client.svg"));
    let date = dates.first().cloned().unwrap_or_default();
    if !chart.contains(&date) || !report.lines().next().unwrap_or("").contains(&date) {
        wrong.push(format!(
            "{RUN}/waiting_client.svg does not name the run's date ({date}): copy the chart \
             from the same run as report.md"
        ));
    }
    if let Some(header) = lines.iter().find(|line| line.starts_with("| at N = ")) {
        for column in cells(header).iter().skip(1) {
            let named = |line: &str| line.trim_start().starts_with(&format!("{column}: "));
            if !chart.lines().any(named) {
                wrong.push(format!(
                    "{RUN}/waiting_client.svg names no `{column}`, as the README's table does"
                ));
            }
        }
    }
    if !lines
        .iter()
        .any(|line| line.contains(&format!("{RUN}/waiting_client.svg")))
    {
        wrong.push(format!(
            "README.md: the section at line {first_line} must show {RUN}/waiting_client.svg"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(table_cells > 0 && in_prose > 0, "nothing was checked");
    println!(
        "{} figures of README.md checked against {RUN}/: {table_cells} table cells, {in_prose} \
         in prose",
        table_cells + in_prose
    );
}

#[test]
fn a_figure_is_found_only_at_the_precision_it_is_given() {
    let values = [
        Source::Printed(21.04),
        Source::Derived(1.1043),
        Source::Printed(10000.0),
        Source::Derived(3.0),
    ];
    let dates = ["2026-12-02".to_string()];
    assert!(has_source("21.0", &values, &dates));
    assert!(has_source("1.10", &values, &dates));
    assert!(has_source("10,000", &values, &dates));
    assert!(has_source("2026-12-02", &values, &dates));
    assert!(!has_source("21.1", &values, &dates));
    assert!(!has_source("1.11", &values, &dates));
    assert!(!has_source("2026-12-01", &values, &dates));
    assert!(!has_source("21", &values, &dates), "a whole number rounded");
    assert!(
        !has_source("3", &values, &dates),
        "a whole number worked out"
    );
    let figures =
        figures_in("at N = 10,000, 1.10 times, `cargo\nbench --n 5000` [a](x/2.svg)\n4 min 24 s.");
    let expected = [(0, "10,000"), (0, "1.10"), (2, "4"), (2, "24")];
    assert_eq!(
        figures,
        expected.map(|(line, figure)| (line, figure.to_string()))
    );
}
