//! io_uring: the test program `owod/tests/support/uring.c` (built static) opens, connects,
//! accepts and sends through a ring. Each request must have its record, marked
//! `via: io_uring`, with what could not be read at submission listed in `unread`.

use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    process::Command,
};

use anyhow::{ensure, Context as _};
use serde_json::{json, Value};

use super::{marker, text, Check, Context};
use crate::verdict::Verdict;

pub fn requests(cx: &Context) -> anyhow::Result<Check> {
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    let tcp_port = tcp.local_addr()?.port();
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let udp_port = udp.local_addr()?.port();
    let dir = Path::new("/tmp").join(marker("uring"));
    std::fs::create_dir(&dir)?;
    let name = format!("{}.example", marker("uring"));
    let output = Command::new(&cx.uring)
        .arg(&dir)
        .arg(tcp_port.to_string())
        .arg(udp_port.to_string())
        .arg(&name)
        .output()?;
    ensure!(
        output.status.success(),
        "{}: {output:?}",
        cx.uring.display()
    );
    let own_port: u16 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("the listener's port")?;
    let dir = text(&dir);
    Ok(Box::new(move |run| {
        let seen: Vec<&Value> = run.records.filter(|e| e["via"] == "io_uring");
        let row = |e: &Value| {
            let what = match e["event_type"].as_str() {
                Some("file") => e["path"].as_str().unwrap_or("").replace(&dir, "DIR"),
                _ => format!("{}:{}", e["daddr"].as_str().unwrap_or(""), e["dport"]),
            };
            json!([e["type"], e["syscall"], what, e["unread"]])
        };
        let got: Vec<Value> = seen.iter().map(|r| row(&r["event"])).collect();
        let want = vec![
            json!(["create", "openat", "DIR/openat", ["ret"]]),
            json!(["create", "openat2", "DIR/openat2", ["ret"]]),
            json!([
                "connect",
                "connect",
                format!("127.0.0.1:{tcp_port}"),
                ["saddr", "sport", "ret"]
            ]),
            json!([
                "connect",
                "connect",
                format!("127.0.0.1:{tcp_port}"),
                ["protocol", "saddr", "sport", "ret"]
            ]),
            json!([
                "accept",
                "accept",
                format!("127.0.0.1:{own_port}"),
                ["saddr", "sport", "ret"]
            ]),
            json!([
                "sendto",
                "sendmsg",
                format!("127.0.0.1:{udp_port}"),
                ["saddr", "sport", "ret"]
            ]),
            json!(["sendto", "sendto", "127.0.0.1:53", ["ret"]]),
        ];
        if got != want {
            return Err(format!("the io_uring records are {got:?}, not {want:?}"));
        }
        if seen[6]["event"]["dns_query"] != name.as_str() {
            return Err(format!("the DNS question is not named: {}", seen[6]));
        }
        Ok(Verdict::pass(
            "openat, openat2, connect (and fixed), accept, sendmsg, send",
        ))
    }))
}
