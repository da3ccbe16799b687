//! The stderr sink: every record also on standard error, for a terminal or a pipe.

use std::io;

use super::{LineSink, Writer};
use crate::config::Format;

pub fn stderr_sink(format: Format) -> io::Result<LineSink> {
    Writer::new("stderr", "standard error".to_owned(), io::stderr(), None).start(64 * 1024, format)
}
