//! Heartbeat round trips: every heartbeat echoes the last one heard from its receiver (see
//! [`crate::heartbeat::Echo`]), so a node learns its round trip to each peer on each network
//! from traffic it sends anyway. Times are microseconds on the caller's monotonic clock; the
//! peer's clock never enters the sum, only how long it held our heartbeat.

use std::collections::{BTreeMap, VecDeque};

use crate::NodeId;
use crate::heartbeat::Echo;

/// At most this many of our own recent sends are remembered (and no older than the window
/// set with [`RoundTrips::keep_sends_for_us`]): an echo of anything older is stale.
const SENDS_KEPT: usize = 4096;

/// Weight of a new sample in the smoothed round trip, as in TCP's SRTT (1/8).
const SMOOTHING: u64 = 8;

#[derive(Debug, Clone, Default)]
pub struct RoundTrips {
    /// Our recent heartbeat sequences and when they left, oldest first (sequences only grow).
    sent: VecDeque<(u64, u64)>,
    /// How long a send is remembered (0: only the count bounds it).
    keep_us: u64,
    /// Per (peer, network): the last heartbeat heard from it and when it arrived.
    heard: BTreeMap<(NodeId, usize), (u64, u64)>,
    /// Per (peer, network): the latest and the smoothed round trip.
    measured: BTreeMap<(NodeId, usize), RoundTrip>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundTrip {
    pub last_us: u64,
    pub smoothed_us: u64,
    /// When the latest sample was taken.
    pub at_us: u64,
}

impl RoundTrips {
    /// Remember our sends for `keep_us`: an echo is only fresh within that window.
    pub fn keep_sends_for_us(&mut self, keep_us: u64) {
        self.keep_us = keep_us;
    }

    /// Heartbeat `sequence` left now (on every network at once).
    pub fn sent(&mut self, sequence: u64, now_us: u64) {
        debug_assert!(self.sent.back().is_none_or(|&(s, _)| s < sequence), "heartbeat sequences only grow");
        self.sent.push_back((sequence, now_us));
        while self.sent.len() > SENDS_KEPT
            || (self.keep_us > 0 && self.sent.front().is_some_and(|&(_, at)| now_us.saturating_sub(at) > self.keep_us))
        {
            self.sent.pop_front();
        }
    }

    /// When our heartbeat `sequence` left, if it is one we still remember.
    pub fn sent_at_us(&self, sequence: u64) -> Option<u64> {
        let index = self.sent.binary_search_by_key(&sequence, |&(s, _)| s).ok()?;
        self.sent.get(index).map(|&(_, at)| at)
    }

    /// A heartbeat from `peer` on `network` arrived now, echoing `echo`.
    pub fn heard(&mut self, peer: NodeId, network: usize, sequence: u64, echo: Echo, now_us: u64) {
        self.heard.insert((peer, network), (sequence, now_us));
        let Some(sent_us) = self.sent_at_us(echo.sequence).filter(|_| echo.sequence != 0) else {
            return;
        };
        let elapsed = now_us.saturating_sub(sent_us);
        // A peer claiming to have held it longer than it was gone is confused or lying.
        if echo.held_us > elapsed {
            return;
        }
        let sample = elapsed - echo.held_us;
        let smoothed = match self.measured.get(&(peer, network)) {
            Some(old) => (old.smoothed_us * (SMOOTHING - 1) + sample) / SMOOTHING,
            None => sample,
        };
        self.measured.insert((peer, network), RoundTrip { last_us: sample, smoothed_us: smoothed, at_us: now_us });
    }

    /// What to echo in the next heartbeat to `peer` on `network`.
    pub fn echo_for(&self, peer: NodeId, network: usize, now_us: u64) -> Echo {
        self.heard
            .get(&(peer, network))
            .map(|&(sequence, at)| Echo { sequence, held_us: now_us.saturating_sub(at) })
            .unwrap_or_default()
    }

    /// The measured round trip to `peer` on `network`, unless it is older than `max_age_us`
    /// (a silent path has no current round trip).
    pub fn get(&self, peer: NodeId, network: usize, now_us: u64, max_age_us: u64) -> Option<RoundTrip> {
        self.measured.get(&(peer, network)).filter(|r| now_us.saturating_sub(r.at_us) <= max_age_us).copied()
    }

    /// Forget peers that left.
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.heard.retain(|(peer, _), _| keep(*peer));
        self.measured.retain(|(peer, _), _| keep(*peer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_excludes_the_time_the_peer_held_the_heartbeat() {
        let mut mine = RoundTrips::default();
        let mut theirs = RoundTrips::default();
        mine.sent(1, 1_000);
        // It arrives at the peer (whose clock differs wildly) 300 µs later...
        theirs.heard(1, 0, 1, Echo::default(), 9_000_300);
        // ...which echoes it 50 ms later, and the echo takes 200 µs back.
        let echo = theirs.echo_for(1, 0, 9_050_300);
        assert_eq!(echo, Echo { sequence: 1, held_us: 50_000 });
        mine.heard(2, 0, 77, echo, 51_500);
        let rtt = mine.get(2, 0, 51_500, 1_000_000).expect("measured");
        assert_eq!((rtt.last_us, rtt.smoothed_us), (500, 500));
        // The other network has no sample, and a stale one is not reported.
        assert_eq!(mine.get(2, 1, 51_500, 1_000_000), None);
        assert_eq!(mine.get(2, 0, 2_000_000, 1_000_000), None);
    }

    #[test]
    fn smoothing_unknown_and_impossible_echoes() {
        let mut rt = RoundTrips::default();
        rt.sent(1, 0);
        rt.sent(2, 100_000);
        rt.heard(5, 1, 10, Echo { sequence: 1, held_us: 0 }, 800);
        rt.heard(5, 1, 11, Echo { sequence: 2, held_us: 0 }, 101_600);
        let r = rt.get(5, 1, 101_600, u64::MAX).expect("measured");
        assert_eq!((r.last_us, r.smoothed_us), (1_600, (800 * 7 + 1_600) / 8));
        // Never sent, or held longer than it was away: ignored.
        rt.heard(5, 1, 12, Echo { sequence: 99, held_us: 0 }, 200_000);
        rt.heard(5, 1, 13, Echo { sequence: 2, held_us: 500_000 }, 200_000);
        assert_eq!(rt.get(5, 1, 200_000, u64::MAX), Some(r));
        rt.keep_sends_for_us(50_000);
        for s in 3..200 {
            rt.sent(s, 200_000 + s);
        }
        rt.heard(5, 1, 14, Echo { sequence: 2, held_us: 0 }, 300_000);
        assert_eq!(rt.get(5, 1, 300_000, u64::MAX), Some(r), "an echo of a forgotten send is stale");
        rt.retain(|peer| peer != 5);
        assert_eq!(rt.get(5, 1, 300_000, u64::MAX), None);
        assert_eq!(rt.echo_for(5, 1, 300_000), Echo::default());
    }
}
