//! Reading the pages: which there are, and their fenced code blocks.

use std::path::{Path, PathBuf};

/// The repository's top directory.
pub fn top() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, as paths relative to the top, found on
/// disk so that a page added later is checked without being listed here.
pub fn all() -> Vec<String> {
    let mut pages = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(top().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

pub fn read(page: &str) -> String {
    let path: PathBuf = top().join(page);
    std::fs::read_to_string(&path).unwrap_or_else(|why| panic!("{page}: {why}"))
}

/// One fenced code block of a page.
pub struct Block {
    pub page: String,
    /// The line of its opening fence, counting from 1.
    pub line: usize,
    /// What follows the opening fence: ```` ```rust,ignore ```` gives
    /// `rust,ignore`.
    pub info: String,
    /// Its lines, without the indentation of its fence (a block inside a
    /// list item is indented).
    pub lines: Vec<String>,
}

impl Block {
    /// Where it is, as a failure message starts.
    pub fn at(&self) -> String {
        format!("{} line {} (```{})", self.page, self.line, self.info)
    }

    /// The words of its info string, split as rustdoc splits them.
    pub fn tags(&self) -> Vec<&str> {
        self.info
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|tag| !tag.is_empty())
            .collect()
    }
}

/// Every fenced block (```` ``` ```` or `~~~`) of `text`, or why the page
/// cannot be read that way (a fence never closed).
pub fn blocks(page: &str, text: &str) -> Result<Vec<Block>, String> {
    let mut found = Vec::new();
    let mut open: Option<(Block, usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        let fence: String = rest.chars().take_while(|&c| c == '`' || c == '~').collect();
        let is_fence = fence.len() >= 3 && fence.chars().all(|c| c == fence.as_bytes()[0] as char);
        match open.take() {
            None if is_fence => {
                let block = Block {
                    page: page.to_string(),
                    line: index + 1,
                    info: rest[fence.len()..].trim().to_string(),
                    lines: Vec::new(),
                };
                open = Some((block, indent, fence));
            }
            None => {}
            Some((block, _, opening))
                if is_fence
                    && fence.starts_with(&opening[..1])
                    && fence.len() >= opening.len()
                    && rest[fence.len()..].trim().is_empty() =>
            {
                found.push(block);
            }
            Some((mut block, fence_indent, opening)) => {
                let strip = indent.min(fence_indent);
                block.lines.push(line[strip..].to_string());
                open = Some((block, fence_indent, opening));
            }
        }
    }
    match open {
        Some((block, _, _)) => Err(format!("{}: this fence is never closed", block.at())),
        None => Ok(found),
    }
}

/// The learner pages every lesson shares, counted together with the README.
pub const SHARED: [&str; 6] = [
    "docs/exercises.md",
    "docs/futures_vs_threads.md",
    "docs/questions.md",
    "docs/relay.md",
    "docs/serving.md",
    "docs/testing.md",
];
/// Each lesson's own page, counted alone: a lesson brings its page with it.
pub const LESSONS: [&str; 2] = ["docs/body.md", "docs/database.md"];
/// The maintainers' page: breakage tables, mutation runs, runs under load
/// and dated runs. It counts toward no budget and may tell history.
pub const MAINTAINERS: &str = "docs/maintaining.md";

const README_MOST: usize = 260;
const README_AND_SHARED_MOST: usize = 1550;
const LESSON_MOST: usize = 350;

/// Where a new measurement goes, said in every failure of these checks.
pub const WHERE_A_MEASUREMENT_GOES: &str = "a learner page gets the figure and the command that \
gives it; docs/maintaining.md gets the run's record (its date, load average, every run)";

fn lines(page: &str) -> usize {
    read(page).lines().count()
}

#[test]
fn every_page_is_listed_once_as_shared_a_lessons_own_or_the_maintainers() {
    let mut wrong = Vec::new();
    for page in all().iter().filter(|page| page.starts_with("docs/")) {
        let lists = [
            SHARED.contains(&page.as_str()),
            LESSONS.contains(&page.as_str()),
            page == MAINTAINERS,
        ];
        match lists.iter().filter(|&&listed| listed).count() {
            1 => {}
            0 => wrong.push(format!(
                "{page} is in no list of tests/docs/pages.rs: put it in SHARED (a learner page of \
                 every lesson, counted with the README within {README_AND_SHARED_MOST} lines) or \
                 LESSONS (a lesson's own page, within {LESSON_MOST}), and list it in src/lib.rs; \
                 records belong on {MAINTAINERS}: {WHERE_A_MEASUREMENT_GOES}"
            )),
            _ => wrong.push(format!(
                "{page} is in more than one list of tests/docs/pages.rs"
            )),
        }
    }
    for page in SHARED.iter().chain(&LESSONS).chain([&MAINTAINERS]) {
        if !top().join(page).is_file() {
            wrong.push(format!(
                "tests/docs/pages.rs lists {page}, which is not there"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_readme_the_shared_pages_and_each_lessons_page_keep_to_their_line_budgets() {
    let readme = lines("README.md");
    let counts: Vec<(&str, usize)> = SHARED.iter().map(|&page| (page, lines(page))).collect();
    let total = readme + counts.iter().map(|(_, count)| count).sum::<usize>();
    let mut wrong = Vec::new();
    if readme > README_MOST {
        wrong.push(format!("README.md has {readme} lines, over {README_MOST}"));
    }
    if total > README_AND_SHARED_MOST {
        wrong.push(format!(
            "README.md ({readme}) and the shared pages have {total} lines, over \
             {README_AND_SHARED_MOST}: {counts:?}"
        ));
    }
    for page in LESSONS {
        let count = lines(page);
        if count > LESSON_MOST {
            wrong.push(format!("{page} has {count} lines, over {LESSON_MOST}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nSay things once and link; move records to {MAINTAINERS} ({WHERE_A_MEASUREMENT_GOES})",
        wrong.join("\n")
    );
    println!(
        "README.md {readme} lines, with the shared pages {total}; {}",
        LESSONS
            .map(|page| format!("{page} {}", lines(page)))
            .join(", ")
    );
}
