//! owod, the OWO daemon: parse the flags, read the config, build the pipeline
//! (collector → process stage → exporter hub → sinks), run until SIGTERM/SIGINT, then detach,
//! drain, flush and exit 0.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: owod::Counting = owod::Counting;

fn main() -> ExitCode {
    owod::main()
}
