//! Benchmark (not a test): records/s from owod to a remote collector on loopback, for a real
//! HTTP receiver (NDJSON batches) and a real nats-server with JetStream, and owod's CPU per
//! 100k records. The load is a burst of opens under a watched directory; the time runs from
//! the first open until the collector holds as many of the run's records as owod's own file.
//!
//! `remote-loop [--owod PATH] [--opens N]`. Needs root, python3 and nats-server.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use owo_bench::{parse_args, print_field, require_root, Owod};

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines the HTTP receiver wrote.
fn http_count(out: &Path) -> usize {
    fs::read_to_string(out)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Messages in the JetStream stream (from `nats-server`'s monitoring endpoint would need it on;
/// ask the stream over NATS with a tiny request instead).
fn nats_count(port: u16, stream: &str) -> usize {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let Ok(client) = async_nats::connect(format!("127.0.0.1:{port}")).await else {
            return 0;
        };
        let js = async_nats::jetstream::new(client);
        let Ok(mut s) = js.get_stream(stream).await else {
            return 0;
        };
        s.info()
            .await
            .map(|i| i.state.messages as usize)
            .unwrap_or(0)
    })
}

fn run(
    owod_path: &str,
    label: &str,
    config: &str,
    opens: usize,
    count: &dyn Fn() -> usize,
) -> Result<()> {
    let owod = Owod::start(owod_path, config)?;
    let dir = tempfile::Builder::new()
        .prefix("owo-remote-bench-")
        .tempdir_in("/tmp")?;
    let file = dir.path().join("marker");
    fs::write(&file, b"x")?;
    let cpu_before = owod.cpu_seconds()?;
    let start = Instant::now();
    for _ in 0..opens {
        drop(fs::File::open(&file)?);
    }
    // Until the collector has everything owod has written so far (and nothing more comes).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (written, delivered) = loop {
        let written = owod.records_written();
        let delivered = count();
        if delivered >= written && written > 1 {
            break (written, delivered);
        }
        if Instant::now() > deadline {
            bail!("{label}: only {delivered} of {written} records delivered in 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = owod.cpu_seconds()? - cpu_before;
    let records = owod.stop()?;
    println!("remote-loop ({label}): {opens} opens under a watched directory");
    print_field("records written:", written);
    print_field("records delivered:", delivered);
    print_field("delivered/s:", format!("{:.0}", delivered as f64 / elapsed));
    print_field(
        "owod CPU per 100k records:",
        format!("{:.2} s", cpu * 100_000.0 / written as f64),
    );
    print_field("file records lost (counted):", records.losses(Some("file")));
    Ok(())
}

fn main() -> Result<()> {
    let mut opens = 50_000usize;
    let owod = parse_args(
        "remote-loop [--owod PATH] [--opens N]",
        &mut [("--opens", &mut opens)],
    )?;
    require_root("remote-loop")?;
    let work = tempfile::tempdir()?;

    // HTTP: the tests' receiver.
    let receiver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../owod/tests/support/receiver.py");
    let out = work.path().join("http.jsonl");
    let mut child = Command::new("python3")
        .arg(&receiver)
        .args(["--port", "0", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .spawn()
        .context("python3")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("receiver stdout")?).read_line(&mut line)?;
    let _http = Killed(child);
    let port: u16 = line.trim().parse().context("the receiver's port")?;
    let spool = work.path().join("spool-http");
    let config = format!(
        "  remote:\n    enabled: true\n    protocol: http\n    address: \"127.0.0.1:{port}\"\n    spool:\n      dir: {}\n",
        spool.display()
    );
    run(&owod, "http", &config, opens, &|| http_count(&out))?;

    // NATS JetStream.
    let port = free_port()?;
    let nats = Killed(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(work.path().join("js"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("nats-server")?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nats-server did not listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let spool = work.path().join("spool-nats");
    let config = format!(
        "  remote:\n    enabled: true\n    protocol: nats\n    address: \"127.0.0.1:{port}\"\n    nats_subject: owo.bench\n    nats_stream: OWOBENCH\n    spool:\n      dir: {}\n",
        spool.display()
    );
    run(&owod, "nats", &config, opens, &|| {
        nats_count(port, "OWOBENCH")
    })?;
    drop(nats);
    Ok(())
}
