//! A real HTTP(S) collector on loopback (tests/support/receiver.py), for the remote tests.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde_json::Value;

use super::{json_lines, wait_until};

/// A receiver that keeps the body of every POST in `out`.
pub struct Receiver {
    pub child: Child,
    pub port: u16,
    pub out: PathBuf,
}

impl Receiver {
    /// Start one on `port` (0: any), with more of receiver.py's flags; it keeps what it gets in
    /// `dir`/received.jsonl.
    pub fn start(dir: &Path, port: u16, flags: &[&str]) -> Receiver {
        let out = dir.join("received.jsonl");
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/receiver.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the receiver did not start: {line:?}"));
        Receiver { child, port, out }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Records received so far.
    pub fn records(&self) -> Vec<Value> {
        json_lines(&self.out)
    }

    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) {
        wait_until(&format!("the collector to get {what}"), || {
            self.records().iter().any(&pred)
        });
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}
