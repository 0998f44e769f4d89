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

#[test]
fn the_readme_stays_within_260_lines_and_the_teaching_pages_within_1650() {
    // The lessons' own pages (docs/database.md, say) are not counted: a
    // lesson brings its page with it.
    const COUNTED: [&str; 7] = [
        "README.md",
        "docs/exercises.md",
        "docs/futures_vs_threads.md",
        "docs/questions.md",
        "docs/relay.md",
        "docs/serving.md",
        "docs/testing.md",
    ];
    let lines = |page: &str| read(page).lines().count();
    let readme = lines("README.md");
    assert!(readme <= 260, "README.md has {readme} lines, over 260");
    let counts: Vec<(&str, usize)> = COUNTED.iter().map(|&page| (page, lines(page))).collect();
    let total: usize = counts.iter().map(|(_, count)| count).sum();
    assert!(
        total <= 1650,
        "README.md and the six pages have {total} lines, over 1,650: {counts:?}"
    );
}
