//! The request log's lines, kept in memory for a test to read: a writer
//! for `request_log::layer`. Shared by every test of the log, in three
//! crates: this binary's `logging`, the example's `src/tests/request_log.rs`
//! and the database lesson's routes, which include this file by its path.

use std::sync::{Arc, Mutex};

use gotham_examples_handlers_simple_async_handlers::request_log::TARGET;

/// What the subscriber writes; a clone writes to the same buffer.
#[derive(Clone, Default)]
pub struct Written(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Written {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Written {
    type Writer = Written;

    fn make_writer(&'a self) -> Written {
        self.clone()
    }
}

impl Written {
    /// The request log's lines so far, from their method on (the time
    /// before it differs from run to run). Any other line fails the test.
    pub fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8");
        let marker = format!(" INFO {TARGET}: ");
        text.lines()
            .map(|line| match line.split_once(&marker) {
                Some((_, rest)) => rest.to_string(),
                None => panic!("not a request log line: {line:?}"),
            })
            .collect()
    }
}
