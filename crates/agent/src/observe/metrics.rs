//! The series the agent accumulates between scrapes (how long resource actions took, lease
//! lapses); everything else `/metrics` shows is read at scrape time (`api::metrics`).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub(crate) type Labels = Vec<(&'static str, String)>;

/// The series the agent accumulates between scrapes.
pub struct Metrics {
    /// Resource actions by resource kind, action and result.
    pub(crate) actions: Family<Labels, Histogram>,
    /// Times this node's lease ran out while it held one (the heartbeat sender notices).
    pub lease_lapses: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        // 5 ms to about 80 s: a Dummy monitor to a guest's shutdown.
        Self {
            actions: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 15))),
            lease_lapses: Counter::default(),
        }
    }
}

impl Metrics {
    /// An agent action (start, stop, monitor, probe, migrate...) of a resource finished.
    pub fn action(&self, kind: &halo_core::resource_kind::ResourceKind, action: &str, ok: bool, took: Duration) {
        let labels = vec![("kind", kind.to_string()), ("action", action.to_string()), ("result", result(ok))];
        self.actions.get_or_create(&labels).observe(took.as_secs_f64());
    }
}

fn result(ok: bool) -> String {
    if ok { "ok" } else { "error" }.to_string()
}
