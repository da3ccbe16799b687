//! The lane merge: events of the process lane and of the activity lane, put back in the order
//! the kernel saw them, held no longer than it takes to know that nothing earlier can come.
//!
//! Each lane has a watermark: a kernel time up to which every event of that lane has been read.
//! The collector raises it after each read of a ring: to when it found the ring empty, or to the
//! time of the last event read when it stopped before the end. An event leaves once its time is
//! at or below both watermarks, so an exec leaves before the connect it came before, whichever
//! lane was read first, and nobody waits for a fixed delay.
//!
//! A program reads the clock a little before its record reaches the ring, and records from two
//! CPUs can reach it in the other order; [`SLACK`] covers that gap, so a watermark is always
//! taken [`SLACK`] back from what was seen.

use std::{cmp::Reverse, collections::BinaryHeap};

use owo_common::Event;

/// How far before being committed to its ring an event's time may lie: a program reads the clock
/// microseconds before it commits, unless an interrupt comes in between.
pub const SLACK_NS: u64 = 4_000_000;

/// Events held at most: past it the earliest leaves at once (order is then best effort; the
/// collector counts it).
const HOLD_MAX: usize = 16_384;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Process = 0,
    Activity = 1,
}

struct Held {
    ktime_ns: u64,
    /// Arrival order breaks ties, so events of one lane with one time keep their order.
    arrival: u64,
    event: Event,
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        (self.ktime_ns, self.arrival) == (other.ktime_ns, other.arrival)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Held) -> std::cmp::Ordering {
        (self.ktime_ns, self.arrival).cmp(&(other.ktime_ns, other.arrival))
    }
}

#[derive(Default)]
pub struct LaneMerge {
    held: BinaryHeap<Reverse<Held>>,
    arrivals: u64,
    /// Per lane: every event of the lane at or before this kernel time has been pushed.
    watermark: [u64; 2],
    /// Events let go before their turn because too many were held.
    pub forced: u64,
}

impl LaneMerge {
    pub fn push(&mut self, event: Event) {
        self.arrivals += 1;
        self.held.push(Reverse(Held {
            ktime_ns: event.task().ktime_ns,
            arrival: self.arrivals,
            event,
        }));
    }

    /// The lane's ring was read to its end; `now_ns` (boot-time clock) was read before the read
    /// that found it empty.
    pub fn drained(&mut self, lane: Lane, now_ns: u64) {
        self.raise(lane, now_ns.saturating_sub(SLACK_NS));
    }

    /// The lane's ring was read up to an event of time `last_ns`, and may hold more.
    pub fn read_up_to(&mut self, lane: Lane, last_ns: u64) {
        self.raise(lane, last_ns.saturating_sub(SLACK_NS));
    }

    fn raise(&mut self, lane: Lane, ns: u64) {
        let mark = &mut self.watermark[lane as usize];
        *mark = (*mark).max(ns);
    }

    /// The next event whose turn has come.
    pub fn pop_ready(&mut self) -> Option<Event> {
        let Reverse(head) = self.held.peek()?;
        let safe = self.watermark[0].min(self.watermark[1]);
        if head.ktime_ns > safe {
            if self.held.len() <= HOLD_MAX {
                return None;
            }
            self.forced += 1;
        }
        self.held.pop().map(|Reverse(h)| h.event)
    }

    /// Every event still held, in order (at shutdown, once both rings are read to the end).
    pub fn pop_any(&mut self) -> Option<Event> {
        self.held.pop().map(|Reverse(h)| h.event)
    }

    /// The kernel time of the earliest event held: it can leave once both lanes are known up to
    /// it, which an empty ring shows [`SLACK_NS`] after that time.
    pub fn earliest_ns(&self) -> Option<u64> {
        self.held.peek().map(|Reverse(h)| h.ktime_ns)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use owo_common::event::{ExitEvent, Task};

    use super::*;

    fn at(ns: u64, pid: u32) -> Event {
        Event::Exit(ExitEvent {
            task: Task {
                ktime_ns: ns,
                pid,
                ..Task::default()
            },
            ..ExitEvent::default()
        })
    }

    fn drain(merge: &mut LaneMerge) -> Vec<u32> {
        std::iter::from_fn(|| merge.pop_ready())
            .map(|e| e.task().pid)
            .collect()
    }

    #[test]
    fn an_event_waits_until_both_lanes_are_known_up_to_it() {
        let mut merge = LaneMerge::default();
        // The activity lane was read first: a connect at 20 ms, whose exec (10 ms) is still in
        // the process ring.
        merge.push(at(20_000_000, 2));
        merge.drained(Lane::Activity, 30_000_000);
        assert_eq!(
            drain(&mut merge),
            Vec::<u32>::new(),
            "the process lane is not read yet"
        );
        merge.push(at(10_000_000, 1));
        merge.drained(Lane::Process, 30_000_000);
        assert_eq!(drain(&mut merge), [1, 2], "exec, then connect");
    }

    #[test]
    fn an_event_within_the_slack_of_the_read_waits_for_the_next_read() {
        let mut merge = LaneMerge::default();
        merge.push(at(100_000_000, 1));
        merge.drained(Lane::Process, 100_000_000 + SLACK_NS / 2);
        merge.drained(Lane::Activity, 100_000_000 + SLACK_NS / 2);
        assert!(
            drain(&mut merge).is_empty(),
            "a record of another CPU may still come"
        );
        merge.drained(Lane::Process, 100_000_000 + SLACK_NS);
        merge.drained(Lane::Activity, 100_000_000 + SLACK_NS);
        assert_eq!(drain(&mut merge), [1]);
    }

    #[test]
    fn a_lane_read_part_way_is_known_up_to_its_last_event() {
        let mut merge = LaneMerge::default();
        merge.push(at(50_000_000, 1));
        merge.push(at(60_000_000, 2));
        merge.drained(Lane::Process, 200_000_000);
        merge.read_up_to(Lane::Activity, 60_000_000);
        assert_eq!(
            drain(&mut merge),
            [1],
            "the second is within the slack of the last read"
        );
        merge.read_up_to(Lane::Activity, 70_000_000);
        assert_eq!(drain(&mut merge), [2]);
    }

    #[test]
    fn equal_times_keep_their_arrival_order_and_too_many_held_go_in_order() {
        let mut merge = LaneMerge::default();
        for pid in 0..(HOLD_MAX as u32 + 2) {
            merge.push(at(1_000_000_000, pid));
        }
        // Nothing is known of either lane, yet the two past the limit leave, first in first out.
        assert_eq!(drain(&mut merge), [0, 1]);
        assert_eq!(merge.forced, 2);
        assert_eq!(merge.len(), HOLD_MAX);
        let rest: Vec<u32> = std::iter::from_fn(|| merge.pop_any())
            .map(|e| e.task().pid)
            .collect();
        assert_eq!(rest, (2..HOLD_MAX as u32 + 2).collect::<Vec<_>>());
    }
}
