//! Live watchers (`owoctl watch`): each is the owod end of a Unix socket that the root-only
//! D-Bus method `Watch` handed the other end of. The hub gives every watcher each record's
//! `owo` line as it writes it. A watcher never slows owod down: its lines wait in a bounded
//! buffer and go out in non-blocking writes; a line that does not fit is dropped, and the next
//! line that fits is preceded by `{"watch":{"dropped":N}}`, the lines it missed since.

use std::{
    io::{self, Write},
    os::unix::net::UnixStream,
    time::Instant,
};

/// Watchers at most; another one is refused.
pub const WATCHERS_MAX: usize = 8;

/// The bytes a watcher's lines may wait in, on top of what the socket holds.
const BUFFER_MAX: usize = 1 << 20;

pub struct Watcher {
    socket: UnixStream,
    buffer: Vec<u8>,
    /// The bytes of `buffer` already written.
    sent: usize,
    /// Lines dropped and not told yet.
    dropped: u64,
    /// The watcher has gone (its end is closed), or writing to it failed.
    gone: bool,
}

impl Watcher {
    /// A watcher on `socket` (set non-blocking here).
    pub fn new(socket: UnixStream) -> io::Result<Watcher> {
        socket.set_nonblocking(true)?;
        Ok(Watcher {
            socket,
            buffer: Vec::new(),
            sent: 0,
            dropped: 0,
            gone: false,
        })
    }

    pub fn gone(&self) -> bool {
        self.gone
    }

    /// Queue a record's line, or drop it if the buffer is full.
    pub fn push(&mut self, line: &str) {
        if self.gone {
            return;
        }
        let notice =
            (self.dropped > 0).then(|| format!("{{\"watch\":{{\"dropped\":{}}}}}\n", self.dropped));
        let needed = line.len() + 1 + notice.as_ref().map_or(0, String::len);
        if self.buffer.len() - self.sent + needed > BUFFER_MAX {
            self.dropped += 1;
            return;
        }
        if let Some(notice) = notice {
            self.buffer.extend_from_slice(notice.as_bytes());
            self.dropped = 0;
        }
        self.buffer.extend_from_slice(line.as_bytes());
        self.buffer.push(b'\n');
    }

    /// At the end (owod stops): what waits, and a last notice of what was dropped, written by
    /// `deadline` at the latest.
    pub fn finish(&mut self, deadline: Instant) {
        if self.gone {
            return;
        }
        if self.dropped > 0 {
            let notice = format!("{{\"watch\":{{\"dropped\":{}}}}}\n", self.dropped);
            self.buffer.extend_from_slice(notice.as_bytes());
            self.dropped = 0;
        }
        if self.socket.set_nonblocking(false).is_err() {
            return;
        }
        while self.sent < self.buffer.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket.set_write_timeout(Some(left)).is_err() {
                return;
            }
            match self.socket.write(&self.buffer[self.sent..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => self.sent += n,
            }
        }
    }

    /// Write what waits, as far as the socket takes it now.
    pub fn flush(&mut self) {
        while !self.gone && self.sent < self.buffer.len() {
            match self.socket.write(&self.buffer[self.sent..]) {
                Ok(0) => self.gone = true,
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.gone = true,
            }
        }
        if self.sent == self.buffer.len() {
            self.buffer.clear();
            self.sent = 0;
        } else if self.sent > BUFFER_MAX / 2 {
            self.buffer.drain(..self.sent);
            self.sent = 0;
        }
        // A watcher that left is noticed even when there is nothing to write to it: its end
        // of the socket reads as closed.
        if !self.gone && self.buffer.is_empty() {
            use nix::sys::socket::{recv, MsgFlags};
            use std::os::fd::AsRawFd;
            let mut byte = [0u8; 1];
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
            if recv(self.socket.as_raw_fd(), &mut byte, flags) == Ok(0) {
                self.gone = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn a_watcher_that_does_not_read_costs_its_own_lines_and_is_told_how_many() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut watcher = Watcher::new(ours).unwrap();
        let line = "x".repeat(1000);
        // Far more than the socket and the buffer hold, none read.
        let lines = 3 * BUFFER_MAX / line.len();
        for _ in 0..lines {
            watcher.push(&line);
            watcher.flush();
        }
        assert!(watcher.dropped > 0 && !watcher.gone);
        let mut reader = BufReader::new(theirs);
        let (mut got, mut told) = (0u64, 0u64);
        let mut read = |reader: &mut BufReader<UnixStream>| {
            let mut text = String::new();
            reader.read_line(&mut text).unwrap();
            let text = text.trim_end().to_owned();
            if text == line {
                got += 1;
            } else if text != "last" {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                told += v["watch"]["dropped"].as_u64().unwrap();
            }
            text == "last"
        };
        // Read until all that waited is written; then one more line, after the notice.
        loop {
            watcher.flush();
            if watcher.buffer.is_empty() {
                break;
            }
            read(&mut reader);
        }
        watcher.push("last");
        watcher.flush();
        while !read(&mut reader) {}
        assert_eq!(got + told, lines as u64, "every line read or told dropped");
        drop(reader);
        watcher.push("after");
        watcher.flush();
        watcher.push("after");
        watcher.flush();
        assert!(watcher.gone(), "a watcher whose end closed is gone");
    }
}
