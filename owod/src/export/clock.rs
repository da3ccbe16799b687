//! Kernel timestamps (`bpf_ktime_get_boot_ns`, CLOCK_BOOTTIME) to wall-clock RFC 3339 in UTC.
//! The offset between the two clocks is re-read every second, so NTP steps show up promptly.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use nix::time::{clock_gettime, ClockId};

pub struct BootClock {
    offset_ns: i128,
    refreshed: Instant,
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
        }
    }

    fn offset() -> i128 {
        ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_BOOTTIME)
    }

    /// RFC 3339 (UTC, nanoseconds) of a boot-clock time.
    pub fn wall_clock(&mut self, boot_ns: u64) -> String {
        if self.refreshed.elapsed() > Duration::from_secs(1) {
            self.offset_ns = Self::offset();
            self.refreshed = Instant::now();
        }
        format_ns(boot_ns as i128 + self.offset_ns)
    }

    pub fn now(&self) -> String {
        format_ns(ns(ClockId::CLOCK_REALTIME))
    }
}

fn format_ns(unix_ns: i128) -> String {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_now_is_wall_time_now() {
        let mut clock = BootClock::new();
        let boot_now = ns(ClockId::CLOCK_BOOTTIME) as u64;
        let wall = DateTime::parse_from_rfc3339(&clock.wall_clock(boot_now)).unwrap();
        let skew = (Utc::now() - wall.with_timezone(&Utc))
            .num_milliseconds()
            .abs();
        assert!(skew < 1000, "boot clock conversion is off by {skew} ms");
        assert_eq!(
            format_ns(1_500_000_000_123_456_789),
            "2017-07-14T02:40:00.123456789Z"
        );
    }
}
