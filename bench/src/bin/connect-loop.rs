//! Benchmark (not a test): a loop of TCP connect+close to a listener on 127.0.0.1, run without
//! owod, with owod, and without again. Prints connects/s, the ratio with/without, and how many of
//! the loop's connects (and the listener's accepts) owod recorded. Needs root (it starts owod).
//! The client closes with a reset, so no TIME_WAIT piles up between phases; a connection reset
//! before the listener took it is not accepted at all (accept fails), so accepts can be fewer.
//!
//! `connect-loop [--owod PATH] [--connects N]`

use std::{
    io::ErrorKind,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
};

use anyhow::{Context, Result};
use owo_bench::{measure, ops_per_second, parse_args, print_count, require_root, Measurement};

/// The network monitor on (the default, spelled out because the results rely on it).
const CONFIG: &str = "monitor:\n  network_events: true\n";

fn main() -> Result<()> {
    let mut connects = 5000usize;
    let owod = parse_args(
        "connect-loop [--owod PATH] [--connects N]",
        &mut [("--connects", &mut connects)],
    )?;
    require_root("connect-loop")?;

    // Port 0: the kernel picks a free port, which then marks this run's records.
    let listener = TcpListener::bind("127.0.0.1:0").context("listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    // std listens with a backlog of 128. When the acceptor falls further behind (it shares the
    // CPUs with the loop and owod), a SYN is dropped and the loop waits out a 1 s retransmit,
    // which would swamp the measurement. Listening again only raises the backlog; the kernel
    // caps it at net.core.somaxconn.
    // SAFETY: listen on a socket fd that `listener` owns and keeps open; no memory is passed.
    if unsafe { libc::listen(listener.as_raw_fd(), libc::c_int::MAX) } != 0 {
        return Err(std::io::Error::last_os_error()).context("raise the listen backlog");
    }
    let done = AtomicBool::new(false);
    let m = std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let acceptor = scope.spawn(|| accept_until(&listener, &done, ready_tx));
        // Time nothing until the acceptor has taken a first connection: a loop that starts
        // before it runs overflows the listen backlog, and a dropped SYN costs a 1 s retransmit.
        // If the acceptor fails instead, the channel closes and `recv` returns.
        let _ = TcpStream::connect(addr);
        let _ = ready_rx.recv();
        let m = measure(&owod, CONFIG, |_| {
            ops_per_second(connects, || {
                TcpStream::connect(addr)
                    .map(close_without_time_wait)
                    .with_context(|| format!("connect to {addr}"))
            })
        });
        done.store(true, Ordering::SeqCst);
        // The acceptor is blocked in accept: one more connection lets it see `done`. If it
        // already stopped on an error, this still connects (into the backlog), so it never hangs.
        let _ = TcpStream::connect(addr);
        let accepted = acceptor.join().expect("the accept thread panicked");
        let m = m?;
        accepted?;
        anyhow::Ok(m)
    })?;
    report(&m, connects, addr.port());
    Ok(())
}

/// Accepts connections and closes them at once, until `done` is set; says so on `ready` once it
/// accepted the first.
fn accept_until(
    listener: &TcpListener,
    done: &AtomicBool,
    ready: mpsc::SyncSender<()>,
) -> Result<()> {
    for stream in listener.incoming() {
        let _ = ready.try_send(());
        if done.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => drop(stream),
            // The client gave up before we accepted: nothing to close.
            Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e).context("accept on the benchmark listener"),
        }
    }
    Ok(())
}

/// Close with a reset (SO_LINGER 0), so no TIME_WAIT is left behind: thousands of them make
/// every later phase slower than the one before, whatever owod does, and the ratio meaningless.
fn close_without_time_wait(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd, a pointer to a live linger struct and its size.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

fn report(m: &Measurement, connects: usize, port: u16) {
    let network =
        |kind: &str, e: &serde_json::Value| e["event_type"] == "network" && e["type"] == kind;
    let connected = m
        .records
        .count(|e| network("connect", e) && e["dport"] == port);
    let accepted = m
        .records
        .count(|e| network("accept", e) && e["dport"] == port); // the peer is the source

    println!("connect-loop: {connects} TCP connect+close to 127.0.0.1:{port} per phase");
    m.print_rates("connects/s");
    print_count("connect records:", connected, connects);
    print_count("accept records:", accepted, connects);
    m.print_losses(Some("network"));
    m.print_cpu(connects, "connect");
}
