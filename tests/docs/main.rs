//! Checks that keep the docs (README.md and every page in docs/) from
//! drifting away from the code and the benchmark: every code block is
//! compiled, a checked excerpt or plain text (`blocks`); every benchmark
//! figure in the README is the one its run wrote (`figures`); no page tells
//! history (`history`); and the pages keep to their line budget (`pages`).
//!
//! A failure names the page, the line and what to do, so that a page added
//! by another change is mended from the message alone.

mod blocks;
mod figures;
mod history;
mod pages;
