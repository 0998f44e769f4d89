//! Checks that keep the docs (README.md and every page in docs/) from
//! drifting away from the code and the benchmark: every code block is
//! compiled, a checked excerpt or plain text (`blocks`); every benchmark
//! figure in the README is its own entry's cell of the run (`figures`); no
//! learner page tells history or keeps a table of dated runs (`history`);
//! and every page is listed as shared, a lesson's own or the maintainers',
//! within its line budget (`pages`).
//!
//! A failure names the page, the line and what to do, so that a page added
//! by another change is mended from the message alone.

mod blocks;
mod figures;
mod history;
mod pages;
