//! The learner pages say what is. What changed when belongs in git's log: a
//! page that names a commit, or says how things were, goes stale the day it
//! is written and tells a learner nothing about the code in front of them.
//! docs/maintaining.md, the maintainers' page of dated records, is left out.

use crate::pages;

/// Phrases that date a sentence (compared without case).
const DATED: [&str; 3] = ["as it was at", "before the fix", "used to"];

/// A commit hash written in backticks: 7 to 40 hexadecimal digits, not all
/// of them decimal (a number in backticks is a number).
fn is_commit_hash(quoted: &str) -> bool {
    (7..=40).contains(&quoted.len())
        && quoted
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        && !quoted.chars().all(|c| c.is_ascii_digit())
}

/// What is wrong with one line of a page, if anything.
fn history_in(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, quoted) in line.split('`').enumerate() {
        if at % 2 == 1 && is_commit_hash(quoted) {
            found.push(format!("the commit `{quoted}`"));
        }
    }
    let lower = line.to_lowercase();
    for phrase in DATED {
        if lower.contains(phrase) {
            found.push(format!("\"{phrase}\""));
        }
    }
    found
}

/// Whether a line holds a date, `2026-12-02`.
fn has_date(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.windows(10).any(|word| {
        word.iter().enumerate().all(|(at, &c)| match at {
            4 | 7 => c == b'-',
            _ => c.is_ascii_digit(),
        })
    })
}

#[test]
fn no_learner_page_keeps_a_table_of_dated_runs() {
    // A learner page may date the one run it cites, in its prose; a table
    // whose rows carry dates is a log, and the maintainers' page keeps it.
    let mut wrong = Vec::new();
    for page in pages::all()
        .into_iter()
        .filter(|page| page != pages::MAINTAINERS)
    {
        for (index, line) in pages::read(&page).lines().enumerate() {
            if line.trim_start().starts_with('|') && has_date(line) {
                wrong.push(format!(
                    "{page} line {}: a table row with a date: move the table of runs to {} \
                     ({})",
                    index + 1,
                    pages::MAINTAINERS,
                    pages::WHERE_A_MEASUREMENT_GOES
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(has_date("| run | 2026-12-02 |") && !has_date("| 10,000 | 2026-1-2 |"));
}

#[test]
fn no_page_names_a_commit_or_says_how_things_used_to_be() {
    let mut wrong = Vec::new();
    let mut lines = 0;
    // The maintainers' page keeps dated records on purpose.
    for page in pages::all()
        .into_iter()
        .filter(|page| page != pages::MAINTAINERS)
    {
        let text = pages::read(&page);
        let all: Vec<&str> = text.lines().collect();
        for (index, line) in all.iter().enumerate() {
            lines += 1;
            // A phrase may break across two lines of a paragraph; what the
            // next line holds by itself is that line's to report.
            let next = all.get(index + 1).copied().unwrap_or("");
            let (own, in_next) = (history_in(line), history_in(next));
            let found: Vec<String> = history_in(&format!("{line} {}", next.trim_start()))
                .into_iter()
                .filter(|what| own.contains(what) || !in_next.contains(what))
                .collect();
            if !found.is_empty() {
                wrong.push(format!(
                    "{page} line {}: {}: say the rule, why, and what was measured with the \
                     command; what changed when is git's log ({})",
                    index + 1,
                    found.join(", "),
                    pages::WHERE_A_MEASUREMENT_GOES
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!(
        "{lines} lines of {} learner pages tell no history",
        pages::all().len() - 1
    );
}

#[test]
fn commits_and_dated_phrases_are_told_from_numbers_and_plain_words() {
    assert_eq!(history_in("lost at `5b8616a`"), ["the commit `5b8616a`"]);
    assert_eq!(
        history_in("The rule As it was at noon"),
        ["\"as it was at\""]
    );
    assert!(history_in("seconds from 0 to `18446744073709551615`").is_empty());
    assert!(history_in("the `Box<dyn Future>` and `deadline`").is_empty());
    assert!(history_in("the serve loop uses a timer").is_empty());
}
