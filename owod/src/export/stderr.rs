//! The stderr sink: every record also on standard error, for a terminal or a pipe.

use std::io::{self, BufWriter, Stderr, Write};

use super::{Sink, SinkErrors};

pub struct StderrSink {
    out: BufWriter<Stderr>,
    errors: SinkErrors,
}

impl StderrSink {
    pub fn new() -> StderrSink {
        StderrSink {
            out: BufWriter::with_capacity(64 * 1024, io::stderr()),
            errors: SinkErrors::default(),
        }
    }
}

impl Sink for StderrSink {
    fn name(&self) -> &'static str {
        "stderr"
    }

    fn write_line(&mut self, line: &str) {
        let result = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.errors.record(result, "stderr", "standard error");
    }

    fn flush(&mut self) {
        let result = self.out.flush();
        self.errors.record(result, "stderr", "standard error");
    }

    fn errors(&self) -> u64 {
        self.errors.total
    }
}
