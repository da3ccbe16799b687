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
//! CPUs can reach it in the other order; [`SLACK_NS`] covers that gap, so a watermark is always
//! taken [`SLACK_NS`] back from what was seen. The collector reads only at its polls, so an event
//! waits at most one poll interval plus the slack.

use std::collections::VecDeque;

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
    /// Arrival order breaks ties, so events with one time keep the order they were read in.
    arrival: u64,
    event: Event,
}

impl Held {
    fn order(&self) -> (u64, u64) {
        (self.ktime_ns, self.arrival)
    }
}

/// Each lane's events in time order. A ring gives them almost in order (only records of two
/// CPUs committed in the other order differ), so an event is put in place from the back, and
/// usually stays there; the merge takes the earlier of the two fronts.
#[derive(Default)]
pub struct LaneMerge {
    lanes: [VecDeque<Held>; 2],
    arrivals: u64,
    /// Per lane: every event of the lane at or before this kernel time has been pushed.
    watermark: [u64; 2],
    /// Events let go before their turn because too many were held.
    pub forced: u64,
}

impl LaneMerge {
    pub fn push(&mut self, lane: Lane, event: Event) {
        self.arrivals += 1;
        let held = Held {
            ktime_ns: event.task().ktime_ns,
            arrival: self.arrivals,
            event,
        };
        let queue = &mut self.lanes[lane as usize];
        let mut at = queue.len();
        while at > 0 && queue[at - 1].ktime_ns > held.ktime_ns {
            at -= 1;
        }
        queue.insert(at, held);
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

    /// The lane whose front event is the earliest held.
    fn first(&self) -> Option<usize> {
        match (self.lanes[0].front(), self.lanes[1].front()) {
            (Some(a), Some(b)) => Some(if a.order() <= b.order() { 0 } else { 1 }),
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        }
    }

    fn held(&self) -> usize {
        self.lanes[0].len() + self.lanes[1].len()
    }

    /// The next event whose turn has come.
    pub fn pop_ready(&mut self) -> Option<Event> {
        let lane = self.first()?;
        let safe = self.watermark[0].min(self.watermark[1]);
        if self.lanes[lane].front()?.ktime_ns > safe {
            if self.held() <= HOLD_MAX {
                return None;
            }
            self.forced += 1;
        }
        self.lanes[lane].pop_front().map(|h| h.event)
    }

    /// Every event still held, in order (at shutdown, once both rings are read to the end).
    pub fn pop_any(&mut self) -> Option<Event> {
        let lane = self.first()?;
        self.lanes[lane].pop_front().map(|h| h.event)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held()
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
        merge.push(Lane::Activity, at(20_000_000, 2));
        merge.drained(Lane::Activity, 30_000_000);
        assert_eq!(
            drain(&mut merge),
            Vec::<u32>::new(),
            "the process lane is not read yet"
        );
        merge.push(Lane::Process, at(10_000_000, 1));
        merge.drained(Lane::Process, 30_000_000);
        assert_eq!(drain(&mut merge), [1, 2], "exec, then connect");
    }

    #[test]
    fn an_event_within_the_slack_of_the_read_waits_for_the_next_read() {
        let mut merge = LaneMerge::default();
        merge.push(Lane::Process, at(100_000_000, 1));
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
        merge.push(Lane::Process, at(50_000_000, 1));
        merge.push(Lane::Activity, at(60_000_000, 2));
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
    fn a_lane_read_out_of_order_leaves_in_order() {
        let mut merge = LaneMerge::default();
        // Two CPUs committed to the activity ring in the other order of their clocks.
        for (ns, pid) in [(30, 3), (10, 1), (40, 4), (20, 2)] {
            merge.push(Lane::Activity, at(ns * 1_000_000, pid));
        }
        merge.push(Lane::Process, at(25_000_000, 5));
        merge.drained(Lane::Process, 1_000_000_000);
        merge.drained(Lane::Activity, 1_000_000_000);
        assert_eq!(drain(&mut merge), [1, 2, 5, 3, 4]);
    }

    #[test]
    fn equal_times_keep_their_arrival_order_and_too_many_held_go_in_order() {
        let mut merge = LaneMerge::default();
        for pid in 0..(HOLD_MAX as u32 + 2) {
            let lane = [Lane::Process, Lane::Activity][pid as usize % 2];
            merge.push(lane, at(1_000_000_000, pid));
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
