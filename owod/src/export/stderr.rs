//! The stderr sink: every record also on standard error, for a terminal or a pipe.

use std::io;

use super::LineSink;

pub fn stderr_sink() -> LineSink<io::Stderr> {
    LineSink::new(
        "stderr",
        "standard error".to_owned(),
        io::stderr(),
        64 * 1024,
        None,
    )
}
