//! Every benchmark figure in the README comes from the run it cites, each
//! from the cell this file names for it.
//!
//! The full run (`cargo bench --locked -p benchmark --bench
//! futures_vs_threads`) writes `report.md`, `results.csv`, `relay.csv` and
//! its charts, and `-- --database` writes `database.csv` beside them; they
//! are committed as they came in `docs/futures_vs_threads/`, the single
//! source of the README's figures. This test
//!
//! - recomputes every cell of the costs section's table from the CSV files,
//!   by the rule its row and its header state (each server's figure over
//!   gotham's), through one function, `table_cell`;
//! - reads the figures of the section's prose, and of the README's database
//!   paragraph, in order, and checks each against its entry in `COSTS` or
//!   `DATABASE`: a cell (file, server, N, column), a ratio, sum or
//!   difference of two cells, an N the run has, a line of the report, or a
//!   constant with its reason. A figure with no entry, or one that is not
//!   its entry's value at the precision the README gives it, fails (figures
//!   in `code` and in link targets are commands and names, and are skipped);
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

/// What one cell of the table must read: `server`'s figure in the row's
/// column at N, over `base`'s (gotham's) if the row is of ratios, or as a
/// count; `-` where the column's server has no such figure (no relay).
/// Every cell is read through here, so a mark on a cell (how sure a ratio
/// is, once a run has several rounds) is added in this one place.
fn table_cell(csv: &Csv, rule: &Row, n: u64, server: Option<&str>, base: Option<&str>) -> String {
    let Some(name) = server else {
        return "-".to_string();
    };
    let base_value = base.and_then(|base| csv.value(base, n, rule.column));
    match (csv.value(name, n, rule.column), base_value) {
        (Some(value), _) if !rule.ratio => with_thousands(value as u64),
        (Some(_), Some(_)) if base == Some(name) => "1".to_string(),
        (Some(value), Some(base_value)) => ratio_cell(
            rule.csv,
            name,
            base.unwrap_or_default(),
            n,
            rule.column,
            value / base_value,
        ),
        _ => format!(
            "(no `{}` for {name} at N = {n} in {})",
            rule.column, csv.path
        ),
    }
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
        for (column, shown) in header.iter().zip(&row_cells).skip(1) {
            let expected = table_cell(csv, &rule, n, name_of(column), name_of("gotham"));
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

/// A cell of one of the run's CSV files: the file, the server (its first
/// column), N, and the column's name.
#[derive(Clone, Copy)]
struct Cell(&'static str, &'static str, u64, &'static str);

/// Where one figure of the README's prose comes from.
#[derive(Clone, Copy)]
enum From {
    Cell(Cell),
    /// The first cell over the second.
    Ratio(Cell, Cell),
    Sum(Cell, Cell),
    /// The first cell less the second.
    Difference(Cell, Cell),
    /// An N the file has rows for.
    N(&'static str, u64),
    /// The last number on the line of report.md that holds this text.
    ReportLine(&'static str),
    /// Text report.md prints, the figure in place of `{}`.
    Printed(&'static str),
    /// A figure that is not the run's: its text, and why it is what it is.
    Constant(&'static str, &'static str),
}

const R: &str = "results.csv";
const RELAY: &str = "relay.csv";
const DB: &str = "database.csv";

/// The figures of the costs section's prose, in the order they are read.
const COSTS: &[From] = &[
    // "Each bar is one server holding 10,000 clients on 2 cores ... the
    // medians of 3 rounds ... on 2026-12-05 (8 min 46 s)": the run's N,
    // machine, rounds, date and length; "whose rounds fell on both sides
    // of 1" (the `≈1` in code is no figure).
    From::N(R, 10_000),
    From::Printed("{} cores"),
    From::Printed("{} rounds of every server"),
    From::Printed("threads, {}"),
    From::Printed("took {} min"),
    From::Printed("min {} s"),
    From::Constant("1", "a ratio of one: which side of it a round fell"),
    // "The future is tiny; HTTP is not."
    From::ReportLine("gotham `/sleep`"),
    From::Sum(
        Cell(R, "futures", 10_000, "heap KiB/idle connection"),
        Cell(R, "futures", 10_000, "heap KiB/request"),
    ),
    From::Cell(Cell(R, "futures", 10_000, "heap KiB/idle connection")),
    From::Cell(Cell(R, "futures", 10_000, "heap KiB/request")),
    From::ReportLine("hyper (its buffers, made at the first byte) and the serve loop"),
    From::Constant(
        "8",
        "hyper's HTTP/1 read and write buffers, 8 KiB each (hyper's source)",
    ),
    From::Cell(Cell(R, "futures", 10_000, "KiB/waiting client")),
    From::Cell(Cell(R, "futures", 10_000, "KiB/idle connection")),
    From::Cell(Cell(R, "futures", 10_000, "memory KiB/request")),
    // "A thread per request cost 2.46 times as much"
    From::Ratio(
        Cell(R, "thread-per-request", 10_000, "KiB/waiting client"),
        Cell(R, "futures", 10_000, "KiB/waiting client"),
    ),
    From::Cell(Cell(R, "thread-per-request", 10_000, "KiB/waiting client")),
    From::Cell(Cell(R, "thread-per-request", 10_000, "kernel KiB/request")),
    From::Cell(Cell(R, "thread-per-request", 10_000, "peak threads")),
    From::N(R, 19_500),
    From::Cell(Cell(R, "thread-per-request", 19_500, "peak threads")),
    // "gotham costs about what the cheapest Rust server does"
    From::Ratio(
        Cell(R, "futures", 10_000, "KiB/waiting client"),
        Cell(R, "bare-hyper", 10_000, "KiB/waiting client"),
    ),
    From::Difference(
        Cell(R, "bare-hyper-holding-request", 10_000, "heap KiB/request"),
        Cell(R, "bare-hyper", 10_000, "heap KiB/request"),
    ),
    From::Cell(Cell(
        R,
        "bare-hyper-holding-request",
        10_000,
        "heap KiB/request",
    )),
    From::Cell(Cell(R, "bare-hyper", 10_000, "heap KiB/request")),
    // "Node.js costs less per client the more it holds"
    From::Cell(Cell(R, "node", 1_000, "KiB/waiting client")),
    From::N(R, 1_000),
    From::Cell(Cell(R, "node", 19_500, "KiB/waiting client")),
    From::N(R, 19_500),
    // "Waiting on another server cost 2.33 times as much at N = 5,000"
    From::Cell(Cell(
        RELAY,
        "gotham-relay",
        5_000,
        "× the example's waiting client",
    )),
    From::N(RELAY, 5_000),
    From::Cell(Cell(RELAY, "gotham-relay", 5_000, "KiB/waiting request")),
    From::Cell(Cell(R, "futures", 5_000, "KiB/waiting client")),
];

/// The figures of the README's paragraph on waiting on a database, in order.
const DATABASE: &[From] = &[
    // "(`cargo run --example database`, on 7880) ... one pool of 10
    // connections ... past 10 s a `504`, no connection within 10 s a `503`"
    From::Constant(
        "7880",
        "the database lesson's port (examples/database/main.rs)",
    ),
    From::Cell(Cell(DB, "async", 1_000, "P")),
    From::Constant("10", "the lesson's query deadline, `Bounds::deadline`"),
    From::Constant("10", "the lesson's pool wait, `Bounds::wait`"),
    // "1,000 clients ... behind 10 connections held 518 threads there and
    // 3 here, and took as long (100.2 s there, 100.3 here)"
    From::N(DB, 1_000),
    From::Cell(Cell(DB, "diesel", 1_000, "P")),
    From::Cell(Cell(DB, "diesel", 1_000, "threads at most")),
    From::Cell(Cell(DB, "async", 1_000, "threads at most")),
    From::Cell(Cell(DB, "diesel", 1_000, "last answer s")),
    From::Cell(Cell(DB, "async", 1_000, "last answer s")),
];

/// The run's files, read once.
struct Run {
    report: String,
    files: Vec<Csv>,
}

impl Run {
    fn read() -> Run {
        Run {
            report: pages::read(&format!("{RUN}/report.md")),
            files: [R, RELAY, DB].map(Csv::read).into(),
        }
    }

    fn cell(&self, Cell(file, server, n, column): Cell) -> Result<f64, String> {
        let csv = self
            .files
            .iter()
            .find(|csv| csv.path.ends_with(file))
            .ok_or(format!("no {file}"))?;
        csv.value(server, n, column).ok_or(format!(
            "no `{column}` for {server} at N = {n} in {}",
            csv.path
        ))
    }

    /// Whether `figure`, as the README gives it, is what `from` says.
    fn check(&self, figure: &str, from: From) -> Result<(), String> {
        let number = |value: f64| -> Result<(), String> {
            let plain = figure.replace(',', "");
            let decimals = plain.split_once('.').map_or(0, |(_, after)| after.len());
            if figure_matches(figure, value) {
                Ok(())
            } else {
                Err(format!("the run gives {value:.decimals$}"))
            }
        };
        match from {
            From::Cell(cell) => number(self.cell(cell)?),
            From::Ratio(a, b) => number(self.cell(a)? / self.cell(b)?),
            From::Sum(a, b) => number(self.cell(a)? + self.cell(b)?),
            From::Difference(a, b) => number(self.cell(a)? - self.cell(b)?),
            From::N(file, n) => {
                let csv = self.files.iter().find(|csv| csv.path.ends_with(file));
                let has = csv.is_some_and(|csv| csv.rows.iter().any(|row| row[1] == n.to_string()));
                match (has, figure == with_thousands(n)) {
                    (true, true) => Ok(()),
                    (false, _) => Err(format!("{file} has no rows at N = {n}")),
                    (true, false) => Err(format!("its entry is N = {}", with_thousands(n))),
                }
            }
            From::ReportLine(text) => {
                let line = self
                    .report
                    .lines()
                    .find(|line| line.contains(text))
                    .ok_or(format!("report.md has no line with `{text}`"))?;
                let after = &line[line.find(text).unwrap_or(0) + text.len()..];
                let last = after
                    .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                    .filter_map(|word| word.trim_matches('.').parse::<f64>().ok())
                    .next()
                    .ok_or(format!(
                        "report.md's line with `{text}` has no number after it"
                    ))?;
                number(last)
            }
            From::Printed(text) => {
                let printed = text.replace("{}", figure);
                if self.report.contains(&printed) {
                    Ok(())
                } else {
                    Err(format!("report.md does not print `{printed}`"))
                }
            }
            From::Constant(text, reason) => {
                if figure == text {
                    Ok(())
                } else {
                    Err(format!("its entry is the constant {text} ({reason})"))
                }
            }
        }
    }
}

/// Whether `figure` reads `value` at the precision it is given: `1.11` is
/// 1.113 but not 1.118; `5,029` is 5029 exactly.
fn figure_matches(figure: &str, value: f64) -> bool {
    let plain = figure.replace(',', "");
    let decimals = plain.split_once('.').map_or(0, |(_, after)| after.len());
    if decimals == 0 {
        value.fract() == 0.0 && format!("{value:.0}") == plain
    } else {
        format!("{value:.decimals$}") == plain
    }
}

/// Checks `figures` (line index within `first_line`'s text, figure) one by
/// one against `entries`, in order; the mistakes go to `wrong`.
fn check_in_order(
    run: &Run,
    what: &str,
    first_line: usize,
    figures: &[(usize, String)],
    entries: &[From],
    wrong: &mut Vec<String>,
) {
    for (at, (offset, figure)) in figures.iter().enumerate() {
        let line = first_line + offset;
        let Some(&from) = entries.get(at) else {
            wrong.push(format!(
                "README.md line {line}: `{figure}` ({what}'s figure {}) has no entry: add one \
                 in tests/docs/figures.rs, in the order the figures are read, naming its cell \
                 (file, server, N, column), or the constant and its reason; a learner page gets \
                 the figure and its command, docs/maintaining.md the run's record",
                at + 1
            ));
            continue;
        };
        if let Err(why) = run.check(figure, from) {
            wrong.push(format!(
                "README.md line {line}: `{figure}` ({what}'s figure {}): {why}; take it from \
                 the run, or mend the entry (the entries follow the figures in order)",
                at + 1
            ));
        }
    }
    if entries.len() > figures.len() {
        wrong.push(format!(
            "README.md: {what} has {} figures and {} entries: take out the entries of the \
             figures taken out",
            figures.len(),
            entries.len()
        ));
    }
}

/// Checks docs/database.md's first comparison table (the main run, N and P
/// as `DATABASE`'s entries) against `database.csv`, cell by cell; the
/// mistakes go to `wrong`, and the count of cells checked is returned.
fn check_database_table(run: &Run, wrong: &mut Vec<String>) -> usize {
    const PAGE: &str = "docs/database.md";
    let text = pages::read(PAGE);
    let lines: Vec<&str> = text.lines().collect();
    let Some(head) = lines
        .iter()
        .position(|line| line.starts_with("| way | answers |"))
    else {
        wrong.push(format!(
            "{PAGE} has no table whose header starts `| way | answers |`"
        ));
        return 0;
    };
    let Some(csv) = run.files.iter().find(|csv| csv.path.ends_with(DB)) else {
        return 0;
    };
    let columns = [
        ("answers", ""),
        ("last answer s", " s"),
        ("threads at most", ""),
        ("peak RSS MiB", " MiB"),
        ("a hang-up mid-query", ""),
    ];
    let mut checked = 0;
    for (offset, line) in lines[head + 2..].iter().enumerate() {
        if !line.starts_with('|') {
            break;
        }
        let shown = cells(line);
        let way = shown[0].split(' ').next().unwrap_or_default();
        let Some(row) = csv
            .rows
            .iter()
            .find(|row| row[0] == way && row[1] == "1000")
        else {
            wrong.push(format!(
                "{PAGE} line {}: no row for `{way}` at N = 1000 in {DB}",
                head + 3 + offset
            ));
            continue;
        };
        for (at, (column, unit)) in columns.iter().enumerate() {
            let Some(index) = csv.header.iter().position(|name| name == column) else {
                wrong.push(format!("{DB} has no column `{column}`"));
                continue;
            };
            // The file joins answers with `and` and keeps commas out of cells.
            let mut value = row[index].replace(';', ",");
            if *column == "answers" {
                value = value.replace(" and ", ", ");
            }
            let expected = format!("{value}{unit}");
            checked += 1;
            if shown.get(at + 1) != Some(&expected) {
                wrong.push(format!(
                    "{PAGE} line {}, row `{way}`, column `{column}`: it says {:?}, {DB} gives {expected:?}",
                    head + 3 + offset,
                    shown.get(at + 1)
                ));
            }
        }
    }
    checked
}

/// The README's paragraph on waiting on a database (from its bold start to
/// the blank line after it), with the line number of its first line.
fn database_paragraph() -> (usize, String) {
    let readme = pages::read("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.starts_with("**Waiting on a database**"))
        .unwrap_or_else(|| {
            panic!("README.md has no paragraph starting `**Waiting on a database**`")
        });
    let end = lines[start..]
        .iter()
        .position(|line| line.trim().is_empty())
        .map_or(lines.len(), |at| start + at);
    (start + 1, lines[start..end].join("\n"))
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
    // A number glued to a letter before it (`p99`, `E0382`) is part of a
    // name, not a figure.
    let mut in_word = false;
    let mut previous = ' ';
    for c in text.chars().chain([' ']) {
        let continues =
            c.is_ascii_digit() || (!current.is_empty() && (c == ',' || c == '.' || c == '-'));
        if continues {
            if current.is_empty() {
                in_word = previous.is_alphabetic();
            }
            current.push(c);
        } else if !current.is_empty() {
            if !in_word {
                figures.push((line, current.trim_end_matches([',', '.', '-']).to_string()));
            }
            current.clear();
        }
        previous = c;
        if c == '\n' {
            line += 1;
        }
    }
    figures
}

#[test]
fn every_figure_of_the_readme_is_the_one_its_run_wrote() {
    let (first_line, lines) = section();
    let mut wrong = Vec::new();
    let table_cells = check_table(&lines, first_line, &mut wrong);

    let run = Run::read();
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
    let costs = figures_in(&prose.join("\n"));
    check_in_order(
        &run,
        "the costs section",
        first_line,
        &costs,
        COSTS,
        &mut wrong,
    );
    let (database_line, paragraph) = database_paragraph();
    let database = figures_in(&paragraph);
    check_in_order(
        &run,
        "the database paragraph",
        database_line,
        &database,
        DATABASE,
        &mut wrong,
    );
    let in_prose = costs.len() + database.len();
    let database_cells = check_database_table(&run, &mut wrong);

    let report = pages::read(&format!("{RUN}/report.md"));
    let chart = pages::read(&format!("{RUN}/waiting_client.svg"));
    let date = report
        .lines()
        .next()
        .and_then(|line| line.rsplit(", ").next())
        .unwrap_or_default()
        .to_string();
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
    assert!(
        table_cells > 0 && in_prose > 0 && database_cells > 0,
        "nothing was checked"
    );
    println!(
        "{} figures of README.md checked against {RUN}/: {table_cells} table cells, {in_prose} \
         in prose, each against its own entry; {database_cells} cells of docs/database.md's \
         table against {DB}",
        table_cells + in_prose
    );
}

#[test]
fn a_figure_matches_its_value_only_at_the_precision_it_is_given() {
    assert!(figure_matches("21.0", 21.04));
    assert!(figure_matches("1.10", 1.1043));
    assert!(figure_matches("10,000", 10000.0));
    assert!(!figure_matches("21.1", 21.04));
    assert!(!figure_matches("1.11", 1.1043));
    assert!(!figure_matches("21", 21.04), "a whole number rounded");
    let figures = figures_in(
        "at N = 10,000, 1.10 times, `cargo\nbench --n 5000` [a](x/2.svg)\n4 min 24 s, p99.",
    );
    let expected = [(0, "10,000"), (0, "1.10"), (2, "4"), (2, "24")];
    assert_eq!(
        figures,
        expected.map(|(line, figure)| (line, figure.to_string()))
    );
}
