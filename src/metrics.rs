//! Prometheus metrics of the agent, rendered in the text exposition format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub r#type: String,
}

/// Counters and gauges updated by the core and the sinks.
pub struct Metrics {
    registry: Registry,
    pub events: Family<TypeLabel, Counter>,
    pub facts: Counter,
    pub sse_clients: Gauge,
    pub sse_resyncs: Counter,
    pub journal_errors: Counter,
    pub journal_reopen_failures: Counter,
    pub ring_events: Gauge,
    pub ring_bytes: Gauge,
    pub udev_resyncs: Counter,
    pub last_event_id: Gauge<u64, AtomicU64>,
    pub resident_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("diskwatch");
        let events = Family::<TypeLabel, Counter>::default();
        let facts = Counter::default();
        let sse_clients = Gauge::default();
        let sse_resyncs = Counter::default();
        let journal_errors = Counter::default();
        let udev_resyncs = Counter::default();
        let journal_reopen_failures = Counter::default();
        let ring_events = Gauge::default();
        let ring_bytes = Gauge::default();
        let last_event_id = Gauge::<u64, AtomicU64>::default();
        let resident_bytes = Gauge::default();
        registry.register("events", "Events emitted, by type", events.clone());
        registry.register("facts", "Facts received from sources", facts.clone());
        registry.register("sse_clients", "SSE clients connected", sse_clients.clone());
        registry.register("sse_resyncs", "SSE clients resynced after falling behind", sse_resyncs.clone());
        registry.register("journal_errors", "Failed journal writes", journal_errors.clone());
        registry.register(
            "journal_reopen_failures",
            "Failed attempts to open the journal again (rotation, recovery after a write error)",
            journal_reopen_failures.clone(),
        );
        registry.register("event_ring_events", "Events held in memory", ring_events.clone());
        registry.register("event_ring_bytes", "Bytes the events held in memory take", ring_bytes.clone());
        registry.register(
            "udev_resyncs",
            "Block-device re-enumerations after the event socket overflowed",
            udev_resyncs.clone(),
        );
        registry.register("last_event_id", "Sequence number of the last event", last_event_id.clone());
        registry.register("resident_memory_bytes", "Resident memory of the agent", resident_bytes.clone());
        Self {
            registry,
            events,
            facts,
            sse_clients,
            sse_resyncs,
            journal_errors,
            journal_reopen_failures,
            ring_events,
            ring_bytes,
            udev_resyncs,
            last_event_id,
            resident_bytes,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.resident_bytes.set(resident_bytes().unwrap_or(0) as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Resident set size of this process, from /proc/self/statm.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok().flatten()? as u64;
    Some(pages * page)
}
