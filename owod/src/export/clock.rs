//! Kernel timestamps (`bpf_ktime_get_boot_ns`, CLOCK_BOOTTIME) to wall-clock RFC 3339 in UTC.
//! The offset between the two clocks is re-read every second, so NTP steps show up promptly.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use nix::time::{clock_gettime, ClockId};

pub struct BootClock {
    offset_ns: i128,
    refreshed: Instant,
    /// The second last written, and its text up to the seconds: a record's timestamp is that
    /// text and its nanoseconds, with no allocation and no date arithmetic per record.
    second: Option<i64>,
    prefix: String,
}

fn ns(clock: ClockId) -> i128 {
    let t = clock_gettime(clock).expect("CLOCK_REALTIME and CLOCK_BOOTTIME always exist on Linux");
    t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128
}

impl BootClock {
    pub fn new() -> BootClock {
        BootClock {
            offset_ns: Self::offset(),
            refreshed: Instant::now(),
            second: None,
            prefix: String::new(),
        }
    }

    fn offset() -> i128 {
        ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME)
    }

    /// RFC 3339 (UTC, nanoseconds) of a boot-clock time, in `out` (cleared first); returns the
    /// same time in nanoseconds since the Unix epoch.
    pub fn wall_clock(&mut self, boot_ns: u64, out: &mut String) -> i128 {
        if self.refreshed.elapsed() > Duration::from_secs(1) {
            self.offset_ns = Self::offset();
            self.refreshed = Instant::now();
        }
        self.format(boot_ns as i128 + self.offset_ns, out)
    }

    /// The time now, as [`BootClock::wall_clock`] writes it.
    pub fn now(&mut self, out: &mut String) -> i128 {
        self.format(ns(ClockId::CLOCK_REALTIME), out)
    }

    fn format(&mut self, unix_ns: i128, out: &mut String) -> i128 {
        let secs = unix_ns.div_euclid(1_000_000_000) as i64;
        let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
        if self.second != Some(secs) {
            let time = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
            self.prefix.clear();
            // Writing to a String cannot fail.
            let _ = write!(self.prefix, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
            self.second = Some(secs);
        }
        out.clear();
        out.push_str(&self.prefix);
        let _ = write!(out, ".{nanos:09}Z");
        unix_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_now_is_wall_time_now() {
        let mut clock = BootClock::new();
        let boot_now = ns(ClockId::CLOCK_BOOTTIME) as u64;
        let mut text = String::new();
        clock.wall_clock(boot_now, &mut text);
        let wall = DateTime::parse_from_rfc3339(&text).unwrap();
        let skew = (Utc::now() - wall.with_timezone(&Utc))
            .num_milliseconds()
            .abs();
        assert!(skew < 1000, "boot clock conversion is off by {skew} ms");
        // The text of a second is kept; the next second and an earlier one get theirs.
        for (unix_ns, expected) in [
            (1_500_000_000_123_456_789, "2017-07-14T02:40:00.123456789Z"),
            (1_500_000_000_000_000_007, "2017-07-14T02:40:00.000000007Z"),
            (1_500_000_001_000_000_000, "2017-07-14T02:40:01.000000000Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
        ] {
            clock.format(unix_ns, &mut text);
            assert_eq!(text, expected);
        }
    }
}
