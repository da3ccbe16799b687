//! Benchmark (not a test): a loop of open+close of one existing file, run without owod, with
//! owod, and without again, in two places: under /tmp, which owod watches by default, and under
//! /var/lib/owo-bench, which it does not. Prints opens/s, the ratio with/without, and how many of
//! the loop's opens owod recorded (all of them under /tmp, none under /var/lib/owo-bench). Needs
//! root (it starts owod).
//!
//! `file-loop [--owod PATH] [--opens N]`

use std::{
    fs::{self, File},
    path::Path,
};

use anyhow::{Context, Result};
use owo_bench::{measure, ops_per_second, parse_args, print_count, require_root};

/// Not in owod's default `monitor.file_watch_paths`: opens here should cost little and be
/// reported never.
const UNWATCHED_ROOT: &str = "/var/lib/owo-bench";

/// The file monitor on, paths filtered (the defaults, spelled out because the results rely on
/// them); `file_watch_paths` keeps its default, which holds /tmp.
const CONFIG: &str = "monitor:\n  file_events: true\n  file_watch_all_paths: false\n";

fn main() -> Result<()> {
    let mut opens = 20000usize;
    let owod = parse_args(
        "file-loop [--owod PATH] [--opens N]",
        &mut [("--opens", &mut opens)],
    )?;
    require_root("file-loop")?;

    fs::create_dir_all(UNWATCHED_ROOT).with_context(|| format!("create `{UNWATCHED_ROOT}`"))?;
    for (root, watched) in [("/tmp", true), (UNWATCHED_ROOT, false)] {
        // A fresh directory per run, so no other process opens the marker file.
        let dir = tempfile::Builder::new()
            .prefix("owo-bench-")
            .tempdir_in(root)
            .with_context(|| format!("create a temp dir in `{root}`"))?;
        place(&owod, opens, dir.path(), watched)?;
    }
    Ok(())
}

/// The loop in `dir`, measured and reported; owod should record every open only if `watched`.
fn place(owod: &str, opens: usize, dir: &Path, watched: bool) -> Result<()> {
    let created = dir.join("marker");
    fs::write(&created, "owo-bench\n")?;
    // owod reports the path the kernel resolves, without symlinks.
    let marker = fs::canonicalize(&created)?;
    let m = measure(owod, CONFIG, |_| {
        ops_per_second(opens, || {
            File::open(&marker)
                .map(drop)
                .with_context(|| format!("open `{}`", marker.display()))
        })
    })?;
    let path = marker.to_str().context("the marker path is not UTF-8")?;
    let seen = m
        .records
        .count(|e| e["event_type"] == "file" && e["type"] == "open" && e["path"] == path);

    let watch = if watched { "watched" } else { "not watched" };
    println!("file-loop: {opens} open+close of {path} ({watch}) per phase");
    m.print_rates("opens/s");
    print_count("file open records:", seen, if watched { opens } else { 0 });
    m.print_losses(Some("file"));
    m.print_cpu(opens, "open");
    Ok(())
}
