//! Real: owod exporting to real collectors on loopback, started by the tests: an HTTP(S)
//! receiver (with and without a demanded client certificate). Outages, restarts, a full spool
//! and a wrong CA.

mod harness;

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use harness::{
    bpf_available, event, json_lines, marker, receiver::Receiver, wait_until, Daemon, Tmpfs,
};
use serde_json::Value;

fn remote_config(protocol: &str, port: u16, spool: &Path, extra: &str) -> String {
    format!(
        "  remote:\n    enabled: true\n    protocol: {protocol}\n    address: \"127.0.0.1:{port}\"\n    retry_interval_seconds: 1\n    flush_interval_ms: 50\n    spool:\n      dir: {}\n{extra}",
        spool.display()
    )
}

fn exec_marker(tag: &str) {
    assert!(Command::new("true").arg(tag).status().unwrap().success());
}

fn marked(records: &[Value], tag: &str) -> usize {
    records
        .iter()
        .filter(|r| event(r)["event_type"] == "execve" && event(r)["args"][1] == tag)
        .count()
}

/// The seqs of one run, in the order received: all there, none out of order (duplicates,
/// which at-least-once allows, are fine).
fn assert_complete(records: &[Value], run_id: &Value) {
    let seqs: Vec<u64> = records
        .iter()
        .filter(|r| &r["run_id"] == run_id)
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    let mut expected = 1;
    for &seq in &seqs {
        assert!(
            seq <= expected,
            "seq {seq} arrived before {expected}: {:?}",
            &seqs[..seqs.len().min(50)]
        );
        if seq == expected {
            expected += 1;
        }
    }
    assert!(expected > 1, "nothing of run {run_id}");
}

#[test]
fn http_records_arrive_complete_and_survive_an_outage() {
    if !bpf_available("http_records_arrive_complete_and_survive_an_outage") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start(dir.path(), 0, &[]);
    let port = receiver.port;
    let spool = dir.path().join("spool");
    let mut daemon = Daemon::start(&remote_config("http", port, &spool, ""));
    let first = marker("http-first");
    exec_marker(&first);
    receiver.wait_for("the first marked exec", |r| {
        event(r)["args"][1] == first.as_str()
    });

    // The collector goes away; records spool; it comes back on the same port; all arrive.
    receiver.stop();
    let during = marker("http-during");
    for _ in 0..50 {
        exec_marker(&during);
    }
    daemon.wait_for_n("the execs during the outage, in the file", 50, |r| {
        event(r)["args"][1] == during.as_str()
    });
    let status = daemon.log();
    assert!(
        status.contains("spooling and retrying"),
        "the outage is logged once:\n{status}"
    );
    let receiver = Receiver::start(dir.path(), port, &[]);
    wait_until("all 50 records to arrive after the outage", || {
        marked(&receiver.records(), &during) >= 50
    });
    let records = receiver.records();
    assert_complete(&records, &daemon.start["run_id"]);
    assert!(daemon.log().contains("connected again"));
}

/// `envelope: alert`, for the Go agent's manager: each record wrapped as that agent sent it,
/// `{"agent_name","agent_hostname","agent_group","alert":RECORD}`, a line each over TCP, and one
/// JSON object a POST, with its X-Agent-* headers, over HTTP (to the Go config's `/alerts`).
#[test]
fn the_go_agents_alert_envelope_over_tcp_and_http() {
    if !bpf_available("the_go_agents_alert_envelope_over_tcp_and_http") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manager = Receiver::start(dir.path(), 0, &["--go-manager"]);
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let lines = std::thread::spawn(move || {
        // Not for ever: a test that waits fails.
        tcp.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let conn = loop {
            match tcp.accept() {
                Ok((conn, _)) => break conn,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("owod never connected: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut got = Vec::new();
        // Until owod stops and closes the connection.
        for line in BufReader::new(conn).lines() {
            let Ok(line) = line else { break };
            got.push(serde_json::from_str::<Value>(&line).expect("one JSON object a line"));
        }
        got
    });
    let remote = |protocol: &str, port: u16, spool: &str| {
        format!(
            "  - enabled: true\n    protocol: {protocol}\n    address: \"127.0.0.1:{port}\"\n    envelope: alert\n    http_endpoint: /alerts\n    retry_interval_seconds: 1\n    flush_interval_ms: 50\n    spool:\n      dir: {}\n",
            dir.path().join(spool).display()
        )
    };
    let config = format!(
        "  remotes:\n{}{}agent:\n  name: ws1\n  hostname: host1\n  group: eng\nmonitor:\n  file_events: false\n  network_events: false\n",
        remote("http", manager.port, "s1"),
        remote("tcp", tcp_port, "s2")
    );
    let mut daemon = Daemon::start(&config);
    // The run's first record, its start: a record the Go agent posted one at a time waits for
    // nothing else (every exec on this busy machine is a record too).
    let run_id = daemon.start["run_id"].clone();
    let first = |r: &Value| r["seq"] == 1 && r["run_id"] == run_id;
    manager.wait_for("the start record", |r| first(&r["envelope"]["alert"]));
    assert!(daemon.stop().success());

    let posts = manager.records();
    for post in &posts {
        assert_eq!(post["path"], "/alerts");
        assert_eq!(post["content_type"], "application/json");
        assert_eq!(post["x_agent_name"], "ws1");
        assert_eq!(post["x_agent_hostname"], "host1");
    }
    let tcp_lines = lines.join().unwrap();
    for (how, envelopes) in [
        (
            "http",
            posts.iter().map(|p| &p["envelope"]).collect::<Vec<_>>(),
        ),
        ("tcp", tcp_lines.iter().collect()),
    ] {
        let marked = envelopes
            .iter()
            .find(|e| first(&e["alert"]))
            .unwrap_or_else(|| panic!("{how}: no envelope of the start record"));
        let keys: Vec<&str> = marked
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["agent_name", "agent_hostname", "agent_group", "alert"],
            "{how}"
        );
        assert_eq!(marked["agent_name"], "ws1", "{how}");
        assert_eq!(marked["agent_hostname"], "host1", "{how}");
        assert_eq!(marked["agent_group"], "eng", "{how}");
        assert_eq!(marked["alert"]["agent_hostname"], "host1", "{how}");
        let alerts: Vec<Value> = envelopes.iter().map(|e| e["alert"].clone()).collect();
        assert_complete(&alerts, &run_id);
    }
}

#[test]
fn a_collector_that_refuses_a_batch_costs_that_batch_counted_not_the_stream() {
    if !bpf_available("a_collector_that_refuses_a_batch_costs_that_batch_counted_not_the_stream") {
        return;
    }
    // HTTP 400 for everything: sent again, a batch would be refused again, forever.
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, &["--status", "400"]);
    let spool = dir.path().join("spool");
    let mut daemon = Daemon::start(&remote_config("http", receiver.port, &spool, ""));
    let refused = |daemon: &mut Daemon, tag: &str| {
        let seq = daemon.wait_for("the marked exec", |r| event(r)["args"][1] == tag)["seq"]
            .as_u64()
            .unwrap();
        daemon.wait_for("a loss record for the refused batch", |r| {
            event(r)["type"] == "loss"
                && event(r)["stage"] == "remote_refused"
                && event(r)["first_seq"].as_u64() <= Some(seq)
                && event(r)["last_seq"].as_u64() >= Some(seq)
        })
    };
    let first = marker("refused-first");
    exec_marker(&first);
    let loss = refused(&mut daemon, &first);
    assert_eq!(
        event(&loss)["remote"],
        format!("http://127.0.0.1:{}", receiver.port)
    );
    // And the next batch is sent, not stuck behind the first.
    let second = marker("refused-second");
    exec_marker(&second);
    refused(&mut daemon, &second);
    assert!(
        daemon.log().contains("answered HTTP 400"),
        "{}",
        daemon.log()
    );
}

#[test]
fn elasticsearch_item_errors_are_losses_not_deliveries() {
    if !bpf_available("elasticsearch_item_errors_are_losses_not_deliveries") {
        return;
    }
    // A 200 whose items refuse every other record (a mapping error).
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, &["--refuse-odd"]);
    let spool = dir.path().join("spool");
    let mut daemon = Daemon::start(&remote_config(
        "http",
        receiver.port,
        &spool,
        "    http_format: elasticsearch_bulk\n",
    ));
    let tag = marker("bulk");
    for _ in 0..20 {
        exec_marker(&tag);
    }
    daemon.wait_for_n("the marked execs", 20, |r| {
        event(r)["args"][1] == tag.as_str()
    });
    // Every record from the first marked exec to the last is at the collector or named in a
    // loss record; some are each. (Only those: tests that run beside this one, such as a storm
    // of 16 KiB command lines, pass this daemon too, and the collector takes a while with
    // those. Not only the execs: each is followed by its exit, and every other record refused
    // can be all of them.)
    let marked: Vec<u64> = daemon
        .records()
        .iter()
        .filter(|r| event(r)["args"][1] == tag.as_str())
        .filter_map(|r| r["seq"].as_u64())
        .collect();
    let span = marked[0]..=marked[marked.len() - 1];
    wait_until(
        "every marked record to be delivered or named as lost",
        || {
            let delivered: std::collections::HashSet<u64> = receiver
                .records()
                .iter()
                .filter_map(|r| r["seq"].as_u64())
                .collect();
            let records = daemon.records();
            // A loss record of a refusal that the collector refused in turn is only counted (it
            // would otherwise name itself for ever): it is in the file.
            let mut named: Vec<(u64, u64)> = Vec::new();
            for r in records.iter().filter(|r| {
                event(r)["type"] == "loss"
                    && ["remote_refused", "remote_queue"]
                        .iter()
                        .any(|s| event(r)["stage"] == *s)
            }) {
                let e = event(r);
                let (first, last) = (
                    e["first_seq"].as_u64().unwrap(),
                    e["last_seq"].as_u64().unwrap(),
                );
                assert_eq!(e["count"].as_u64(), Some(last - first + 1));
                let seq = r["seq"].as_u64().unwrap();
                named.extend([(first, last), (seq, seq)]);
            }
            let refused = span
                .clone()
                .filter(|s| named.iter().any(|&(a, b)| (a..=b).contains(s)))
                .count();
            let at_collector = span.clone().filter(|s| delivered.contains(s)).count();
            refused > 0 && at_collector > 0 && refused + at_collector >= span.clone().count()
        },
    );
}

#[test]
fn reloads_that_change_outputs_under_load_lose_nothing() {
    if !bpf_available("reloads_that_change_outputs_under_load_lose_nothing") {
        return;
    }
    // Each reload that changes an output starts the remote again on the same spool, while
    // records keep coming; first with the collector down, then with it up.
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    let mut daemon = Daemon::start(&remote_config("http", port, &spool, ""));
    let tag = marker("reloaded");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A steady load, not a flood: about 100 execs a second, at most 1,500 in all, so that the
    // file stays small enough to read again and again (under a busy CI too).
    let load = {
        let (tag, stop) = (tag.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1500 {
                exec_marker(&tag);
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            n
        })
    };
    let mut receiver = None;
    for round in 0..6 {
        if round == 3 {
            receiver = Some(Receiver::start(dir.path(), port, &[]));
        }
        // Some records of the load before each reload.
        daemon.wait_for_n("marked execs before the reload", 20 * (round + 1), |r| {
            event(r)["args"][1] == tag.as_str()
        });
        let config = fs::read_to_string(&daemon.config).unwrap();
        let changed = match round % 2 {
            0 => config.replace("flush_interval_ms: 50", "flush_interval_ms: 60"),
            _ => config.replace("flush_interval_ms: 60", "flush_interval_ms: 50"),
        };
        assert_ne!(config, changed);
        fs::write(&daemon.config, changed).unwrap();
        daemon.reload();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let execs = load.join().unwrap();
    daemon.wait_for_n("every marked exec, in the file", execs, |r| {
        event(r)["args"][1] == tag.as_str()
    });
    let last = daemon.records().last().unwrap()["seq"].as_u64().unwrap();
    let receiver = receiver.unwrap();
    wait_until("every record written to reach the collector", || {
        receiver
            .records()
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .max()
            .is_some_and(|seq| seq >= last)
    });
    assert_complete(&receiver.records(), &daemon.start["run_id"]);
    assert!(
        !daemon.records().iter().any(|r| event(r)["type"] == "loss"),
        "nothing lost"
    );
}

#[test]
fn a_remote_that_cannot_make_its_spool_costs_its_records_counted_not_the_start() {
    if !bpf_available("a_remote_that_cannot_make_its_spool_costs_its_records_counted_not_the_start")
    {
        return;
    }
    // The spool's place is under a regular file: it cannot be made.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), "").unwrap();
    let spool = dir.path().join("file").join("spool");
    let port = free_port();
    let mut daemon = Daemon::start(&remote_config("http", port, &spool, ""));
    assert!(daemon.log().contains("cannot start"), "{}", daemon.log());
    let tag = marker("unavailable");
    let seq = {
        exec_marker(&tag);
        daemon.wait_for("the marked exec, in the file", |r| {
            event(r)["args"][1] == tag.as_str()
        })["seq"]
            .as_u64()
            .unwrap()
    };
    wait_until("a loss record that names the marked exec", || {
        exec_marker(&marker("more"));
        daemon.records().iter().any(|r| {
            let e = event(r);
            e["stage"] == "remote_unavailable"
                && e["remote"] == format!("http://127.0.0.1:{port}")
                && e["first_seq"].as_u64() <= Some(seq)
                && e["last_seq"].as_u64() >= Some(seq)
        })
    });
}

#[test]
fn records_spooled_at_shutdown_go_out_after_the_next_start() {
    if !bpf_available("records_spooled_at_shutdown_go_out_after_the_next_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    // No collector yet: a port nobody listens on.
    let port = free_port();
    let mut first = Daemon::start(&remote_config("http", port, &spool, ""));
    let tag = marker("spooled");
    exec_marker(&tag);
    first.wait_for("the marked exec", |r| event(r)["args"][1] == tag.as_str());
    assert!(first.stop().success());
    let first_run = first.start["run_id"].clone();
    let receiver = Receiver::start(dir.path(), port, &[]);
    let _second = Daemon::start(&remote_config("http", port, &spool, ""));
    receiver.wait_for("the record spooled by the first run", |r| {
        event(r)["args"][1] == tag.as_str()
    });
    receiver.wait_for("the first run's stop record", |r| {
        r["run_id"] == first_run && event(r)["type"] == "stop"
    });
    assert_complete(&receiver.records(), &first_run);
}

#[test]
fn a_full_spool_drops_the_oldest_counted_and_reported() {
    if !bpf_available("a_full_spool_drops_the_oldest_counted_and_reported") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Daemon::start(&remote_config(
        "http",
        port,
        &dir.path().join("spool"),
        "      max_mb: 1\n",
    ));
    // About 3 MiB of records into a 1 MiB spool, with the collector away.
    let big = "x".repeat(15_000);
    for _ in 0..200 {
        Command::new("true")
            .args([&marker("fill"), &big])
            .status()
            .unwrap();
    }
    let loss = daemon.wait_for("the spool's loss record", |r| {
        event(r)["type"] == "loss" && event(r)["stage"] == "spool_full"
    });
    let e = event(&loss);
    assert!(e["count"].as_u64().unwrap() > 0);
    assert!(
        e["first_seq"].as_u64().unwrap() <= e["last_seq"].as_u64().unwrap(),
        "{e}"
    );
    assert_eq!(e["remote"], format!("http://127.0.0.1:{port}"));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "owod still runs"
    );
}

/// A CA, and server and client certificates signed by it, made with openssl.
fn pki(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    fs::create_dir_all(&d).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&d)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=owo test CA",
    ]);
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        fs::write(
            d.join(format!("{who}.ext")),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
    d
}

#[test]
fn https_with_a_demanded_client_certificate_and_a_wrong_ca() {
    if !bpf_available("https_with_a_demanded_client_certificate_and_a_wrong_ca") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = pki(dir.path(), "good");
    let other = pki(dir.path(), "other");
    let p = |d: &Path, f: &str| d.join(f).to_str().unwrap().to_owned();
    let receiver = Receiver::start(
        dir.path(),
        0,
        &[
            "--cert",
            &p(&good, "server.pem"),
            "--key",
            &p(&good, "server.key"),
            "--client-ca",
            &p(&good, "ca.pem"),
        ],
    );
    let tls = |ca: &str| {
        format!(
            "    tls:\n      ca_file: {ca}\n      cert_file: {}\n      key_file: {}\n",
            p(&good, "client.pem"),
            p(&good, "client.key")
        )
    };
    let mut daemon = Daemon::start(&remote_config(
        "https",
        receiver.port,
        &dir.path().join("spool"),
        &tls(&p(&good, "ca.pem")),
    ));
    let tag = marker("mtls");
    exec_marker(&tag);
    receiver.wait_for("the marked exec over mutual TLS", |r| {
        event(r)["args"][1] == tag.as_str()
    });
    assert!(daemon.stop().success());

    // A CA that did not sign the server's certificate: no handshake, a clear line, spooling.
    let mut wrong = Daemon::start(&remote_config(
        "https",
        receiver.port,
        &dir.path().join("spool2"),
        &tls(&p(&other, "ca.pem")),
    ));
    let lost = marker("wrong-ca");
    exec_marker(&lost);
    wrong.wait_for("the exec in the file", |r| {
        event(r)["args"][1] == lost.as_str()
    });
    wrong.wait_log("TLS handshake with");
    assert!(
        wrong.log().contains("spooling and retrying"),
        "{}",
        wrong.log()
    );
    assert_eq!(
        marked(&receiver.records(), &lost),
        0,
        "nothing went to a server that could not be verified"
    );
}

/// A real nats-server with JetStream, its store in `dir`.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start(dir: &Path, port: u16) -> NatsServer {
        let port = if port == 0 {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        } else {
            port
        };
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("jetstream"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        wait_until("nats-server to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        NatsServer { child, port }
    }

    /// A restart as an operator does it (SIGTERM): JetStream acknowledges a message before its
    /// store has written it, so a SIGKILL can lose acknowledged records, which no client can
    /// prevent and this test is not about.
    fn stop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + harness::DEADLINE;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Every message of the stream, parsed, in stream order.
    fn messages(&self, stream: &str) -> Vec<Value> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = async_nats::connect(format!("127.0.0.1:{}", self.port))
                .await
                .unwrap();
            let js = async_nats::jetstream::new(client);
            let Ok(mut s) = js.get_stream(stream).await else {
                return Vec::new();
            };
            let info = s.info().await.unwrap();
            let (first, last) = (info.state.first_sequence, info.state.last_sequence);
            let mut out = Vec::new();
            for seq in first..=last {
                if let Ok(m) = s.get_raw_message(seq).await {
                    out.push(serde_json::from_slice(&m.payload).unwrap());
                }
            }
            out
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn nats_jetstream_gets_every_record_once_across_an_outage() {
    if !bpf_available("nats_jetstream_gets_every_record_once_across_an_outage") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(dir.path(), 0);
    let port = nats.port;
    let stream = format!("OWO{}", marker("s").replace('-', "").to_uppercase());
    let extra = format!("    nats_subject: owo.test.{stream}\n    nats_stream: {stream}\n");
    let mut daemon = Daemon::start(&remote_config(
        "nats",
        port,
        &dir.path().join("spool"),
        &extra,
    ));
    let first = marker("nats-first");
    exec_marker(&first);
    wait_until("a record to reach JetStream", || {
        marked(&nats.messages(&stream), &first) > 0
    });
    nats.stop();
    let during = marker("nats-during");
    for _ in 0..30 {
        exec_marker(&during);
    }
    daemon.wait_for_n("the execs during the outage, in the file", 30, |r| {
        event(r)["args"][1] == during.as_str()
    });
    let nats = NatsServer::start(dir.path(), port);
    wait_until("all 30 records to reach JetStream after the outage", || {
        marked(&nats.messages(&stream), &during) >= 30
    });
    let messages = nats.messages(&stream);
    let run = &daemon.start["run_id"];
    assert_complete(&messages, run);
    // Exactly once: Nats-Msg-Id (run_id:seq) lets JetStream drop a redelivered batch.
    let mut seqs: Vec<u64> = messages
        .iter()
        .filter(|m| &m["run_id"] == run)
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a record was stored twice");
}

/// A real rsyslogd with the given inputs, writing each message's MSG part (our JSON) to a file.
struct Rsyslog {
    child: Child,
    out: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, inputs: &str) -> Rsyslog {
        let work = dir.join(format!("rsyslog-{}", marker("w")));
        fs::create_dir_all(&work).unwrap();
        let out = dir.join("rsyslog.jsonl");
        let conf = work.join("rsyslog.conf");
        fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{}\")\n{inputs}\ntemplate(name=\"msg\" type=\"string\" string=\"%msg%\\n\")\naction(type=\"omfile\" file=\"{}\" template=\"msg\")\n",
                work.display(),
                out.display()
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(work.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (apt-get install rsyslog rsyslog-relp rsyslog-gnutls)");
        Rsyslog { child, out }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn records(&self) -> Vec<Value> {
        json_lines(&self.out)
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The remote's `tls:` settings for the test CA in `pki`, with the client certificate if asked.
fn tls_block(pki: &Path, client_cert: bool) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    let mut tls = format!(
        "    tls:\n      ca_file: {}\n      server_name: localhost\n",
        p("ca.pem")
    );
    if client_cert {
        tls += &format!(
            "      cert_file: {}\n      key_file: {}\n",
            p("client.pem"),
            p("client.key")
        );
    }
    tls
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16) {
    wait_until(&format!("a listener on {port}"), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn relp_to_rsyslog_loses_nothing_across_an_outage() {
    if !bpf_available("relp_to_rsyslog_loses_nothing_across_an_outage") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let input = format!("module(load=\"imrelp\")\ninput(type=\"imrelp\" port=\"{port}\")");
    let mut rsyslog = Rsyslog::start(dir.path(), &input);
    wait_listening(port);
    let mut daemon = Daemon::start(&remote_config("relp", port, &dir.path().join("spool"), ""));
    let first = marker("relp-first");
    exec_marker(&first);
    wait_until("a record to reach rsyslog over RELP", || {
        marked(&rsyslog.records(), &first) > 0
    });
    rsyslog.stop();
    let during = marker("relp-during");
    for _ in 0..30 {
        exec_marker(&during);
    }
    daemon.wait_for_n("the execs during the outage, in the file", 30, |r| {
        event(r)["args"][1] == during.as_str()
    });
    let rsyslog = Rsyslog::start(dir.path(), &input);
    wait_until("all 30 records to reach rsyslog after the outage", || {
        marked(&rsyslog.records(), &during) >= 30
    });
    assert_complete(&rsyslog.records(), &daemon.start["run_id"]);
}

#[test]
fn syslog_over_tls_to_rsyslog() {
    if !bpf_available("syslog_over_tls_to_rsyslog") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "pki");
    let port = free_port();
    let p = |f: &str| pki.join(f).to_str().unwrap().to_owned();
    let input = format!(
        "global(DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\")\n\
         module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n\
         input(type=\"imtcp\" port=\"{port}\")",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    let rsyslog = Rsyslog::start(dir.path(), &input);
    wait_listening(port);
    let tls = tls_block(&pki, false);
    let _daemon = Daemon::start(&remote_config(
        "syslog",
        port,
        &dir.path().join("spool"),
        &tls,
    ));
    let tag = marker("syslog-tls");
    exec_marker(&tag);
    wait_until("a record to reach rsyslog over TLS", || {
        marked(&rsyslog.records(), &tag) > 0
    });
    let records = rsyslog.records();
    assert!(
        records
            .iter()
            .all(|r| r["seq"].is_u64() && r["event"].is_object()),
        "complete records"
    );
}

/// A RELP peer that answers owod's first session with a frame announcing 32 TiB of data, and
/// its second not at all; it counts the sessions owod opens.
#[test]
fn a_hostile_relp_peer_costs_a_reconnection_not_the_daemon() {
    if !bpf_available("a_hostile_relp_peer_costs_a_reconnection_not_the_daemon") {
        return;
    }
    use std::{
        io::{Read, Write},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = sessions.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let mut offer = [0u8; 256];
            let _ = stream.read(&mut offer);
            if n == 0 {
                let _ = stream.write_all(b"1 rsp 35184372088832 200 OK\n");
            }
            held.push(stream); // never answered, never closed
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&remote_config(
        "relp",
        port,
        &dir.path().join("spool"),
        "    timeout_seconds: 1\n",
    ));
    wait_until("a third RELP session", || {
        sessions.load(Ordering::SeqCst) >= 3
    });
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "owod is still running: {}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("announced 35184372088832 bytes"),
        "the refused frame is named: {log}"
    );
    // It still writes its own records.
    let tag = marker("after-hostile-relp");
    exec_marker(&tag);
    daemon.wait_for("an exec after the hostile peer", |r| {
        event(r)["args"][1] == tag.as_str()
    });
}

#[test]
fn relp_over_tls_to_rsyslog() {
    if !bpf_available("relp_over_tls_to_rsyslog") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "pki");
    let port = free_port();
    let p = |f: &str| pki.join(f).to_str().unwrap().to_owned();
    let input = format!(
        "module(load=\"imrelp\")\n\
         input(type=\"imrelp\" port=\"{port}\" tls=\"on\" tls.authMode=\"certvalid\" \
         tls.caCert=\"{}\" tls.myCert=\"{}\" tls.myPrivKey=\"{}\")",
        p("ca.pem"),
        p("server.pem"),
        p("server.key")
    );
    let rsyslog = Rsyslog::start(dir.path(), &input);
    wait_listening(port);
    // imrelp with a certificate of its own demands one of the client.
    let tls = tls_block(&pki, true);
    let _daemon = Daemon::start(&remote_config(
        "relp",
        port,
        &dir.path().join("spool"),
        &tls,
    ));
    let tag = marker("relp-tls");
    exec_marker(&tag);
    wait_until("a record to reach rsyslog over RELP and TLS", || {
        marked(&rsyslog.records(), &tag) > 0
    });
}

/// A tmpfs mounted for a test, unmounted when dropped.
#[test]
fn a_full_disk_under_the_spool_loses_only_records_it_names() {
    if !bpf_available("a_full_disk_under_the_spool_loses_only_records_it_names") {
        return;
    }
    // The collector is down and the spool is a 256 KiB tmpfs: it fills up.
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let _tmpfs = Tmpfs::mount(&spool, "256k");
    let port = free_port();
    let mut daemon = Daemon::start(&remote_config("http", port, &spool, ""));
    let during = marker("disk-full");
    for _ in 0..400 {
        exec_marker(&during);
    }
    daemon.wait_for_n("the execs while the disk is full, in the file", 400, |r| {
        event(r)["args"][1] == during.as_str()
    });
    daemon.wait_for("a loss record for the spool", |r| {
        event(r)["type"] == "loss" && event(r)["stage"] == "spool_write"
    });
    // The collector comes back: what was spooled goes out, and the disk has room again.
    let receiver = Receiver::start(dir.path(), port, &[]);
    let after = marker("disk-has-room");
    wait_until(
        "a record written after the disk has room to be delivered",
        || {
            exec_marker(&after);
            marked(&receiver.records(), &after) > 0
        },
    );
    let last = receiver
        .records()
        .iter()
        .filter(|r| event(r)["args"][1] == after.as_str())
        .filter_map(|r| r["seq"].as_u64())
        .min()
        .unwrap();
    // Every record up to there was delivered, or named by a loss record (which may reach the
    // file a moment after the record reached the collector).
    let accounted = || {
        let records = daemon.records();
        let delivered: std::collections::HashSet<u64> = receiver
            .records()
            .iter()
            .filter(|r| r["run_id"] == daemon.start["run_id"])
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        let losses: Vec<&Value> = records
            .iter()
            .filter(|r| event(r)["type"] == "loss" && event(r)["stage"] == "spool_write")
            .collect();
        // Other tests' records pass this daemon too (a storm of 16 KiB command lines): its queue
        // to the spool may drop some as well, named in remote_queue loss records.
        let named = harness::loss_runs(&records, &["spool_write", "remote_queue"]);
        let lost: u64 = losses
            .iter()
            .map(|r| event(r)["count"].as_u64().unwrap())
            .sum();
        let missing: Vec<u64> = (1..=last)
            .filter(|seq| !delivered.contains(seq))
            .filter(|seq| !named.iter().any(|(a, b)| (a..=b).contains(&seq)))
            .collect();
        (missing, lost, delivered.len() as u64)
    };
    let deadline = std::time::Instant::now() + harness::DEADLINE;
    let (missing, lost, delivered) = loop {
        let (missing, lost, delivered) = accounted();
        if missing.is_empty() || std::time::Instant::now() > deadline {
            break (missing, lost, delivered);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        missing.is_empty(),
        "{} records neither delivered nor named, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        lost > 0 && delivered + lost >= last,
        "{lost} lost, {delivered} delivered of {last}"
    );
    let log = daemon.log();
    assert!(log.contains("cannot write its spool"), "{log}");
}

#[test]
fn an_output_file_whose_writes_never_return_holds_up_no_other_sink() {
    if !bpf_available("an_output_file_whose_writes_never_return_holds_up_no_other_sink") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, &[]);
    let spool = dir.path().join("spool");
    let daemon = Daemon::start(&remote_config("http", receiver.port, &spool, ""));
    let run_id = daemon.start["run_id"].clone();
    // The output file's directory becomes a FUSE mount: owod follows its file there.
    let out = daemon.output.parent().unwrap().to_owned();
    // Its writes hang once the trigger file exists, as a stalled network mount's do.
    let trigger = dir.path().join("hold");
    let holdfs = harness::Fuse::mount("holdfs.py", &[out.as_os_str(), trigger.as_os_str()], &out);
    let onto = marker("onto-fuse");
    wait_until("owod to write to the file on the FUSE mount", || {
        exec_marker(&onto);
        fs::metadata(&daemon.output).is_ok_and(|m| m.len() > 0)
    });
    fs::write(&trigger, "").unwrap();
    let held = marker("held");
    for _ in 0..20 {
        exec_marker(&held);
    }
    // The file's writes hang; the remote gets every record all the same.
    wait_until(
        "the collector to get the 20 execs while the file hangs",
        || marked(&receiver.records(), &held) >= 20,
    );
    // The mount dies: the writes that hung fail, and owod goes back to the file under it. From
    // the first exec after the hang on, every record the collector got is in the file or named
    // in a `file_write` loss record.
    drop(holdfs);
    let after = marker("after");
    wait_until("every record in the file or named lost", || {
        exec_marker(&after);
        let remote: Vec<Value> = receiver
            .records()
            .into_iter()
            .filter(|r| r["run_id"] == run_id)
            .collect();
        let file = daemon.records();
        let named = harness::loss_runs(remote.iter().chain(&file), &["file_write"]);
        let in_file: std::collections::HashSet<u64> =
            file.iter().filter_map(|r| r["seq"].as_u64()).collect();
        let seq = |r: &Value| r["seq"].as_u64().unwrap();
        let Some(first) = remote
            .iter()
            .filter(|r| event(r)["args"][1] == held.as_str())
            .map(seq)
            .min()
        else {
            return false;
        };
        let Some(last) = remote
            .iter()
            .filter(|r| event(r)["args"][1] == after.as_str())
            .map(seq)
            .max()
        else {
            return false;
        };
        let missing: Vec<u64> = (first..=last)
            .filter(|s| !in_file.contains(s) && !named.iter().any(|&(a, b)| (a..=b).contains(s)))
            .collect();
        !named.is_empty() && missing.is_empty()
    });
}

#[test]
fn a_corrupt_spool_segment_and_cursor_cost_their_lines_named_and_nothing_else() {
    if !bpf_available("a_corrupt_spool_segment_and_cursor_cost_their_lines_named_and_nothing_else")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let port = free_port();
    // A first run spools its records: the collector is away.
    let mut first = Daemon::start(&remote_config("http", port, &spool, ""));
    let first_run = first.start["run_id"].clone();
    let tag = marker("spooled");
    for _ in 0..20 {
        exec_marker(&tag);
    }
    first.wait_for_n("the marked execs", 20, |r| {
        event(r)["args"][1] == tag.as_str()
    });
    assert!(first.stop().success());
    // The tenth marked exec's line stops being UTF-8, and the cursor points into the first line.
    let mut segments: Vec<PathBuf> = fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".jsonl"))
        .collect();
    segments.sort();
    let segment = &segments[0];
    let mut bytes = fs::read(segment).unwrap();
    let mut at = 0;
    let mut marked_lines = 0;
    let corrupted = loop {
        let end = at + bytes[at..].iter().position(|&b| b == b'\n').unwrap();
        let line: Value = serde_json::from_slice(&bytes[at..end]).unwrap();
        if event(&line)["event_type"] == "execve" && event(&line)["args"][1] == tag.as_str() {
            marked_lines += 1;
            if marked_lines == 10 {
                let text = &bytes[at..end];
                let pos = at
                    + text
                        .windows(tag.len())
                        .position(|w| w == tag.as_bytes())
                        .unwrap();
                bytes[pos] = 0xff;
                break line["seq"].as_u64().unwrap();
            }
        }
        at = end + 1;
    };
    fs::write(segment, &bytes).unwrap();
    let id: u64 = segment.file_stem().unwrap().to_str().unwrap()["seg-".len()..]
        .parse()
        .unwrap();
    fs::write(spool.join("cursor"), format!("{id} 5\n")).unwrap();
    // The next run, with the collector back, sends the rest.
    let receiver = Receiver::start(dir.path(), port, &[]);
    let second = Daemon::start(&remote_config("http", port, &spool, ""));
    let stop_seq = || {
        receiver
            .records()
            .iter()
            .find(|r| r["run_id"] == first_run && event(r)["type"] == "stop")
            .and_then(|r| r["seq"].as_u64())
    };
    wait_until("the first run's stop record", || stop_seq().is_some());
    let stop_seq = stop_seq().unwrap();
    // Every record of the first run after its first line arrives, or is named lost: exactly
    // the corrupted one. The rest of the first line is skipped and told, with no seq to name.
    wait_until("every record of the first run accounted for", || {
        let received = receiver.records();
        let losses: Vec<Value> = received
            .iter()
            .chain(&second.records())
            .filter(|r| event(r)["type"] == "loss" && event(r)["stage"] == "spool_corrupt")
            .cloned()
            .collect();
        let named = harness::loss_runs(
            losses
                .iter()
                .filter(|r| event(r)["lost_run_id"] == first_run),
            &["spool_corrupt"],
        );
        let delivered: std::collections::HashSet<u64> = received
            .iter()
            .filter(|r| r["run_id"] == first_run)
            .filter_map(|r| r["seq"].as_u64())
            .collect();
        // Each loss record is in the file and at the collector.
        !delivered.contains(&corrupted)
            && !named.is_empty()
            && named.iter().all(|&run| run == (corrupted, corrupted))
            && losses
                .iter()
                .any(|r| event(r)["first_seq"].is_null() && event(r)["count"] == 1)
            && (2..=stop_seq).all(|s| delivered.contains(&s) || s == corrupted)
    });
}

#[test]
fn an_http_collector_that_hangs_or_drops_the_connection_mid_batch_costs_retries_not_records() {
    if !bpf_available(
        "an_http_collector_that_hangs_or_drops_the_connection_mid_batch_costs_retries_not_records",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The first batch is read and never answered; the two after it are cut off halfway.
    let receiver = Receiver::start(dir.path(), 0, &["--hang-first", "1", "--drop-first", "2"]);
    let spool = dir.path().join("spool");
    let daemon = Daemon::start(&remote_config(
        "http",
        receiver.port,
        &spool,
        "    timeout_seconds: 2\n",
    ));
    let tag = marker("hostile-http");
    for _ in 0..30 {
        exec_marker(&tag);
    }
    wait_until("the 30 marked execs at the collector", || {
        marked(&receiver.records(), &tag) >= 30
    });
    // Every record of the run, in order (what was resent may come twice).
    assert_complete(&receiver.records(), &daemon.start["run_id"]);
    let log = daemon.log();
    assert!(log.contains("within 2 s"), "the hang is a timeout:\n{log}");
}
