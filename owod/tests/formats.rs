//! Real: owod's `ecs` and `ocsf` formats, as real collectors get them (ECS in Elasticsearch
//! bulk bodies, OCSF in Splunk HEC bodies, OCSF on stderr), checked against the official
//! schemas (scripts/fetch-schemas.sh) by tests/support/validate_formats.py: records of every
//! kind this kernel makes, with a path and an argument that are not UTF-8, and every seq.

mod harness;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    net::{TcpListener, TcpStream, UdpSocket},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
};

use harness::{
    bpf_available, copy_exe, dns_query, event, json_lines, marker, receiver::Receiver, s,
    wait_until, watched_dir, Daemon,
};
use serde_json::Value;

/// Where scripts/fetch-schemas.sh put the schemas (make test runs it first).
fn schemas() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemas");
    assert!(
        dir.join("ecs_flat.json").is_file() && dir.join("venv/bin/python").is_file(),
        "the official ECS and OCSF schemas are not in {}: run `make schemas` (make test does)",
        dir.display()
    );
    dir
}

/// The seqs of the run `run_id` in `records`, by where a format keeps the two.
fn seqs(records: &[Value], run_id: &str, run: &str, seq: &str) -> BTreeSet<u64> {
    records
        .iter()
        .filter(|r| r.pointer(run).and_then(Value::as_str) == Some(run_id))
        .filter_map(|r| r.pointer(seq).and_then(Value::as_u64))
        .collect()
}

#[test]
fn records_of_every_kind_are_valid_ecs_in_bulk_bodies_and_ocsf_in_hec_bodies() {
    if !bpf_available("records_of_every_kind_are_valid_ecs_in_bulk_bodies_and_ocsf_in_hec_bodies") {
        return;
    }
    let schemas = schemas();
    let dir = tempfile::tempdir().unwrap();
    let (ecs_dir, ocsf_dir) = (dir.path().join("ecs"), dir.path().join("ocsf"));
    fs::create_dir_all(&ecs_dir).unwrap();
    fs::create_dir_all(&ocsf_dir).unwrap();
    let elasticsearch = Receiver::start(&ecs_dir, 0, &["--bulk"]);
    let splunk = Receiver::start(&ocsf_dir, 0, &[]);
    let watched = watched_dir();
    let remote = |port: u16, endpoint: &str, http_format: &str, format: &str, spool: &str| {
        format!(
            "  - enabled: true\n    protocol: http\n    address: \"127.0.0.1:{port}\"\n    http_endpoint: {endpoint}\n    http_format: {http_format}\n    format: {format}\n    flush_interval_ms: 50\n    retry_interval_seconds: 1\n    spool:\n      dir: {}\n",
            dir.path().join(spool).display()
        )
    };
    // The third remote cannot make its spool: its `loss` records are OCSF's Application Error.
    let config = format!(
        "  stderr: true\n  stderr_format: ocsf\n  remotes:\n{}{}  - enabled: true\n    address: \"127.0.0.1:9\"\n    format: ocsf\n    spool:\n      dir: /dev/null/spool\nmonitor:\n  write_events: true\n  file_watch_paths: [{}]\n",
        remote(elasticsearch.port, "/_bulk", "elasticsearch_bulk", "ecs", "ecs-spool"),
        remote(splunk.port, "/services/collector/event", "splunk_hec", "ocsf", "ocsf-spool"),
        s(watched.path()),
    );
    let mut daemon = Daemon::start(&config);

    // Files, one named with bytes that are not UTF-8, and a write to it.
    let tag = marker("fmt");
    let mut bad = watched.path().as_os_str().as_bytes().to_vec();
    bad.extend_from_slice(format!("/{tag}-\u{e9}").as_bytes());
    bad.extend_from_slice(b"\xff\xfe");
    let bad = PathBuf::from(std::ffi::OsStr::from_bytes(&bad));
    fs::File::create(&bad).unwrap().write_all(b"x").unwrap();
    let moved = watched.path().join(format!("{tag}-moved"));
    fs::rename(&bad, &moved).unwrap();
    fs::remove_file(&moved).unwrap();
    // A program dropped and run at once (an alert), with an argument that is not UTF-8.
    let dropped = copy_exe(
        "/usr/bin/true",
        &watched.path().join(format!("{tag}-dropped")),
    );
    assert!(Command::new(&dropped)
        .arg(std::ffi::OsStr::from_bytes(b"\xff-arg"))
        .status()
        .unwrap()
        .success());
    // A DNS query, a TCP connect and its accept, and a change of uid.
    let name = format!("{tag}.example");
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&dns_query(&name), "127.0.0.1:53").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    drop((client, server));
    assert!(Command::new("setpriv")
        .args(["--reuid=65534", "true"])
        .status()
        .unwrap()
        .success());
    daemon.wait_for("the alert", |r| {
        event(r)["event_type"] == "behavior"
            && event(r)["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&tag))
    });
    daemon.wait_for("the uid change", |r| {
        event(r)["event_type"] == "privilege" && event(r)["new_uid"] == 65534
    });
    daemon.wait_for("the DNS query", |r| event(r)["dns_query"] == name.as_str());
    daemon.wait_for("the unavailable remote's loss", |r| {
        event(r)["stage"] == "remote_unavailable"
    });
    assert!(daemon.stop().success());

    // Every record reached both collectors.
    let owo = daemon.records();
    let run_id = owo[0]["run_id"].as_str().unwrap().to_owned();
    let all: BTreeSet<u64> = owo.iter().filter_map(|r| r["seq"].as_u64()).collect();
    let last = *all.last().unwrap();
    assert_eq!(all, (1..=last).collect(), "the owo file has every seq");
    wait_until("both collectors to have every record", || {
        seqs(
            &elasticsearch.records(),
            &run_id,
            "/agent/id",
            "/event/sequence",
        ) == all
            && seqs(
                &splunk.records(),
                &run_id,
                "/event/metadata/correlation_uid",
                "/event/metadata/sequence",
            ) == all
    });

    // OCSF on stderr too (owod's own log lines are text).
    let stderr = dir.path().join("stderr.jsonl");
    let lines: String = daemon
        .log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&stderr, lines).unwrap();
    assert_eq!(
        json_lines(&stderr).len() as u64,
        last,
        "stderr has every record"
    );

    let output = Command::new(schemas.join("venv/bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/validate_formats.py"))
        .arg("--ecs-flat")
        .arg(schemas.join("ecs_flat.json"))
        .arg("--ecs")
        .arg(&elasticsearch.out)
        .arg("--ocsf")
        .arg(&splunk.out)
        .arg("--ocsf")
        .arg(&stderr)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "records that break the schemas:\n{report:.20000}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counts: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_str(report.lines().last().unwrap()).unwrap();
    let kinds = |format: &str| -> BTreeSet<String> { counts[format].keys().cloned().collect() };
    let want =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
    // Module loads cannot happen on this kernel (no module support); all else did.
    assert_eq!(
        kinds("ecs"),
        want(&[
            "agent",
            "behavior",
            "execve",
            "exit",
            "file",
            "network",
            "privilege",
            "write"
        ]),
        "{report}"
    );
    assert_eq!(
        kinds("ocsf"),
        want(&[
            "application_error",
            "application_lifecycle",
            "detection_finding",
            "dns_activity",
            "file_activity",
            "network_activity",
            "process_activity"
        ]),
        "{report}"
    );

    // The name that is not UTF-8 is an escaped string in its field, flagged by owod's name.
    let ecs = elasticsearch.records();
    let created = ecs
        .iter()
        .find(|r| {
            r["event"]["action"] == "create"
                && r["file"]["path"].as_str().is_some_and(|p| p.contains(&tag))
        })
        .expect("the create in ECS");
    assert!(
        created["file"]["path"]
            .as_str()
            .unwrap()
            .ends_with("\\xff\\xfe"),
        "{created}"
    );
    assert_eq!(created["owo"]["path_escaped"], true, "{created}");
    let ocsf: Vec<Value> = splunk
        .records()
        .into_iter()
        .map(|r| r["event"].clone())
        .collect();
    let alert = ocsf
        .iter()
        .find(|r| r["class_uid"] == 2004)
        .expect("the alert in OCSF");
    let related = alert["finding_info"]["related_events"].as_array().unwrap();
    assert!(
        !related.is_empty()
            && related
                .iter()
                .all(|e| e["uid"].as_str().unwrap().starts_with(&run_id)),
        "{alert}"
    );
}
