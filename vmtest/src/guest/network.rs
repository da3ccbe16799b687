//! The network monitor: a TCP connection on 127.0.0.1 and on ::1 (its `connect` and `accept`
//! show the same four values), and a DNS question for a unique name sent to 127.0.0.1:53.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

use super::{marker, Check, Context};
use crate::{records::Expect, verdict::Verdict};

fn tcp(cx: &Context, host: &'static str, family: &'static str) -> anyhow::Result<Check> {
    let listener = TcpListener::bind((host, 0))?;
    let server: SocketAddr = listener.local_addr()?;
    let client = TcpStream::connect(server)?;
    let client_port = client.local_addr()?.port();
    let (_accepted, _) = listener.accept()?;
    let me = cx.me;
    let port = server.port();
    Ok(Box::new(move |run| {
        for kind in ["connect", "accept"] {
            let r = run
                .records
                .find(|e| e["event_type"] == "network" && e["type"] == kind && e["dport"] == port)
                .ok_or_else(|| format!("no {kind} record to {host} port {port}"))?;
            let mut x = Expect::new(format!("the {kind}"), r);
            x.eq("family", family)
                .eq("protocol", "tcp")
                .eq("saddr", host)
                .eq("sport", client_port)
                .eq("daddr", host)
                .eq("dport", port)
                .eq("pid", me)
                .eq("is_dns", false);
            if kind == "connect" {
                x.eq("ret", 0);
            }
            x.done()?;
        }
        Ok(Verdict::pass(format!(
            "{host} port {client_port} to {port}, both ends"
        )))
    }))
}

pub fn tcp_v4(cx: &Context) -> anyhow::Result<Check> {
    tcp(cx, "127.0.0.1", "ipv4")
}

pub fn tcp_v6(cx: &Context) -> anyhow::Result<Check> {
    tcp(cx, "::1", "ipv6")
}

/// A DNS query (RFC 1035 §4.1) for `name`, type A, class IN.
fn question(name: &str) -> Vec<u8> {
    let mut q = vec![0x4f, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Nothing answers on the guest's port 53; the question is seen on its way out.
pub fn dns_query(cx: &Context) -> anyhow::Result<Check> {
    let name = format!("{}.example", marker("dns"));
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.send_to(&question(&name), "127.0.0.1:53")?;
    let sport = socket.local_addr()?.port();
    let me = cx.me;
    Ok(Box::new(move |run| {
        let r = run
            .records
            .find(|e| e["event_type"] == "network" && e["dns_query"] == name.as_str())
            .ok_or_else(|| format!("no network record with dns_query {name}"))?;
        Expect::new("the DNS query", r)
            .eq("type", "sendto")
            .eq("family", "ipv4")
            .eq("protocol", "udp")
            .eq("is_dns", true)
            .eq("saddr", "127.0.0.1")
            .eq("sport", sport)
            .eq("daddr", "127.0.0.1")
            .eq("dport", 53)
            .eq("pid", me)
            .done()?;
        Ok(Verdict::pass(name))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_is_a_well_formed_query() {
        let q = question("ab.c");
        assert_eq!(
            &q[..12],
            &[0x4f, 0x57, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0],
            "one question, RD"
        );
        assert_eq!(&q[12..], &[2, b'a', b'b', 1, b'c', 0, 0, 1, 0, 1]);
    }
}
