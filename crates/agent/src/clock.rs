//! The two clocks the agent reads; the decision core receives their values as arguments.

use std::time::{SystemTime, UNIX_EPOCH};

use nix::time::{ClockId, clock_gettime};

/// Milliseconds on the system's boot-time clock: monotonic, counts time suspended, and the same
/// for every process on the host, so the agent and its fence guard agree on lease deadlines.
pub fn monotonic_ms() -> u64 {
    monotonic_us() / 1000
}

/// The same clock in microseconds, for round trips on fast networks.
pub fn monotonic_us() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        // CLOCK_BOOTTIME exists on every Linux this runs on; the fallback only keeps types total.
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the UNIX epoch (for records shown to people).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
