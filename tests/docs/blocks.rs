//! Every code block of every page is one of three things, and is checked
//! as such:
//!
//! - **compiled**: a Rust block (```` ```rust ````, or rustdoc's own tags
//!   alone) that `cargo test` compiles, and runs unless `no_run`, as a
//!   doctest of `src/lib.rs`, which includes each page as the doc of an
//!   item; hidden `# ` lines give it the context it needs;
//! - **an excerpt**: ```` ```rust,ignore ```` whose first line is
//!   `// From PATH` (a comment a reader sees too), checked here to be one
//!   run of consecutive lines of PATH (of its added and kept lines, for a
//!   patch);
//! - **plain text**: a transcript, a shell session, a file in another
//!   language, tagged as such (`text`, `sh`, `toml`...).
//!
//! An untagged block is compiled by rustdoc as Rust, so it is refused
//! here with a clearer message than rustdoc's. A block that must not
//! compile (`compile_fail`) names its error and is followed by the block
//! that does compile: on stable, rustdoc passes `compile_fail` for any
//! error at all.

use crate::pages::{self, Block};

/// Languages whose blocks are shown as they are, never run.
const PLAIN: [&str; 13] = [
    "text",
    "sh",
    "console",
    "toml",
    "sql",
    "json",
    "diff",
    "python",
    "go",
    "js",
    "javascript",
    "yaml",
    "ini",
];

/// The tags rustdoc reads on a Rust block.
const RUSTDOC: [&str; 8] = [
    "rust",
    "ignore",
    "no_run",
    "compile_fail",
    "should_panic",
    "edition2018",
    "edition2021",
    "edition2024",
];

#[derive(Debug, PartialEq)]
enum Kind {
    Compiled,
    MustNotCompile,
    Excerpt(String),
    Plain,
}

fn is_error_code(tag: &str) -> bool {
    tag.len() == 5 && tag.starts_with('E') && tag[1..].chars().all(|c| c.is_ascii_digit())
}

/// The file an excerpt names on its first line, `// From PATH` (PATH may
/// be followed by a comma or a colon and words about where in it).
fn named_file(block: &Block) -> Option<String> {
    let first = block.lines.first()?.trim();
    let path = first.strip_prefix("// From ")?.split_whitespace().next()?;
    Some(path.trim_end_matches([',', ':', '.']).to_string())
}

/// What the block is, or why it is none of the three.
fn kind(block: &Block) -> Result<Kind, String> {
    let tags = block.tags();
    if tags.is_empty() {
        return Err(
            "no tag: rustdoc compiles an untagged block as Rust; tag a transcript or \
                    shell session `text`, Rust `rust`"
                .to_string(),
        );
    }
    let rust = tags.contains(&"rust")
        || tags
            .iter()
            .all(|tag| RUSTDOC.contains(tag) || is_error_code(tag));
    if !rust {
        return match tags.iter().find(|tag| PLAIN.contains(tag)) {
            Some(_) => Ok(Kind::Plain),
            None => Err(format!(
                "a tag this check does not know: use `rust` for Rust, or one of {PLAIN:?} for \
                 text shown as it is"
            )),
        };
    }
    if let Some(unknown) = tags
        .iter()
        .find(|tag| !RUSTDOC.contains(tag) && !is_error_code(tag))
    {
        return Err(format!(
            "`{unknown}` is not a tag rustdoc reads on a Rust block"
        ));
    }
    if tags.contains(&"ignore") {
        return match named_file(block) {
            Some(path) => Ok(Kind::Excerpt(path)),
            None => Err(
                "`ignore` without a file: an ignored block must be an excerpt whose \
                         first line is `// From PATH`, checked against PATH; otherwise let \
                         rustdoc compile it (hidden `# ` lines can supply its context)"
                    .to_string(),
            ),
        };
    }
    if tags.contains(&"compile_fail") {
        return Ok(Kind::MustNotCompile);
    }
    Ok(Kind::Compiled)
}

fn all_blocks() -> Vec<Block> {
    let mut all = Vec::new();
    for page in pages::all() {
        match pages::blocks(&page, &pages::read(&page)) {
            Ok(blocks) => all.extend(blocks),
            Err(why) => panic!("{why}"),
        }
    }
    all
}

#[test]
fn every_page_is_listed_in_the_library_for_rustdoc_to_compile() {
    let lib = pages::read("src/lib.rs");
    let mut missing = Vec::new();
    for page in pages::all() {
        let item = format!("#[doc = include_str!(\"../{page}\")]");
        // The item must be compiled only as a doctest, or its text would
        // become the library's documentation.
        let listed = lib
            .split("#[cfg(doctest)]")
            .skip(1)
            .any(|after| after.trim_start().starts_with(&item));
        if !listed {
            missing.push(format!(
                "{page} is not listed in src/lib.rs: add `#[cfg(doctest)]` then `{item}` on an \
                 item of its own, so that `cargo test` compiles its Rust blocks"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_code_block_is_compiled_an_excerpt_or_plain_text() {
    let blocks = all_blocks();
    let mut wrong = Vec::new();
    let mut counts = [0; 4];
    for block in &blocks {
        match kind(block) {
            Ok(Kind::Compiled) => counts[0] += 1,
            Ok(Kind::MustNotCompile) => counts[1] += 1,
            Ok(Kind::Excerpt(_)) => counts[2] += 1,
            Ok(Kind::Plain) => counts[3] += 1,
            Err(why) => wrong.push(format!("{}: {why}", block.at())),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!(
        "{} code blocks: {} compiled, {} that must not compile, {} excerpts, {} plain text",
        blocks.len(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
}

/// The lines a file holds as code: a patch's added and kept lines, without
/// their first column; any other file's lines as they are.
fn code_lines(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(pages::top().join(path))
        .map_err(|why| format!("it names `{path}`, which cannot be read: {why}"))?;
    if !path.ends_with(".patch") {
        return Ok(text.lines().map(str::to_string).collect());
    }
    Ok(text
        .lines()
        .filter(|line| !line.starts_with("+++") && !line.starts_with("---"))
        .filter_map(|line| line.strip_prefix('+').or_else(|| line.strip_prefix(' ')))
        .map(str::to_string)
        .collect())
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Whether `excerpt` is a run of consecutive lines of `file`, each indented
/// by the same number of spaces more there (an excerpt may leave out the
/// indentation of the function or module it comes from).
fn is_a_run_of(excerpt: &[String], file: &[String]) -> bool {
    let Some(first) = excerpt.first() else {
        return false;
    };
    (0..file.len().saturating_sub(excerpt.len() - 1)).any(|start| {
        let Some(shift) = indent(&file[start]).checked_sub(indent(first)) else {
            return false;
        };
        excerpt.iter().zip(&file[start..]).all(|(shown, there)| {
            if shown.trim().is_empty() {
                return there.trim().is_empty();
            }
            there.len() >= shift
                && there[..shift].trim().is_empty()
                && there[shift..].trim_end() == shown.trim_end()
        })
    })
}

#[test]
fn every_excerpt_is_one_run_of_lines_of_the_file_it_names() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for block in all_blocks() {
        let Ok(Kind::Excerpt(path)) = kind(&block) else {
            continue;
        };
        let excerpt = &block.lines[1..];
        let outcome = if excerpt.iter().all(|line| line.trim().is_empty()) {
            Err("an excerpt with nothing after its `// From` line".to_string())
        } else {
            code_lines(&path).and_then(|file| {
                if is_a_run_of(excerpt, &file) {
                    Ok(())
                } else {
                    Err(format!(
                        "not one run of consecutive lines of `{path}`: copy the lines from it \
                         again, or split the block where it skips lines"
                    ))
                }
            })
        };
        match outcome {
            Ok(()) => checked += 1,
            Err(why) => wrong.push(format!("{}: {why}", block.at())),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    println!("{checked} excerpts found in the files they name");
}

#[test]
fn a_block_that_must_not_compile_names_its_error_and_comes_with_one_that_compiles() {
    let mut wrong = Vec::new();
    for page in pages::all() {
        let blocks =
            pages::blocks(&page, &pages::read(&page)).unwrap_or_else(|why| panic!("{why}"));
        for (at, block) in blocks.iter().enumerate() {
            if kind(block) != Ok(Kind::MustNotCompile) {
                continue;
            }
            if !block.tags().iter().any(|tag| is_error_code(tag)) {
                wrong.push(format!(
                    "{}: name the error it shows, as in ```rust,compile_fail,E0382",
                    block.at()
                ));
            }
            if blocks.get(at + 1).map(kind) != Some(Ok(Kind::Compiled)) {
                wrong.push(format!(
                    "{}: the next block must be the corrected code, compiled: on stable, \
                     `compile_fail` passes for any error, a typo included",
                    block.at()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_excerpt_check_refuses_lines_that_are_there_but_not_together() {
    let file: Vec<String> = [
        "fn a() {",
        "    one();",
        "}",
        "",
        "fn b() {",
        "    two();",
        "}",
    ]
    .map(str::to_string)
    .to_vec();
    let lines = |lines: &[&str]| {
        lines
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
    };
    assert!(is_a_run_of(&lines(&["fn b() {", "    two();", "}"]), &file));
    assert!(is_a_run_of(&lines(&["one();"]), &file), "dedented");
    assert!(!is_a_run_of(
        &lines(&["fn a() {", "    two();", "}"]),
        &file
    ));
    assert!(!is_a_run_of(&lines(&["    one();", "    two();"]), &file));
}
