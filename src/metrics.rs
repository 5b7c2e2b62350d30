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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Counters and gauges updated by the core and the sinks.
pub struct Metrics {
    registry: Registry,
    pub events: Family<TypeLabel, Counter>,
    pub facts: Counter,
    pub sse_clients: Gauge,
    pub sse_resyncs: Counter,
    pub journal_errors: Counter,
    pub udev_resyncs: Counter,
    /// Events the MQTT sink dropped (its outage queue was full, or it fell behind the ring).
    pub mqtt_events_dropped: Counter,
    /// Connections the MQTT sink established (a reconnect adds one).
    pub mqtt_connections: Counter,
    pub last_event_id: Gauge<u64, AtomicU64>,
    pub resident_bytes: Gauge,
    /// HTTP limit hits: connections, evicted, header_read_timeout, idle_timeout, sse_clients, accept_errors.
    pub http_limits: Family<LimitLabel, Counter>,
    /// Requests refused by the guard: allow_from, host, token.
    pub http_rejected: Family<ReasonLabel, Counter>,
    pub http_connections: Gauge,
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
        let mqtt_events_dropped = Counter::default();
        let mqtt_connections = Counter::default();
        let last_event_id = Gauge::<u64, AtomicU64>::default();
        let resident_bytes = Gauge::default();
        let http_limits = Family::<LimitLabel, Counter>::default();
        let http_rejected = Family::<ReasonLabel, Counter>::default();
        let http_connections = Gauge::default();
        registry.register("events", "Events emitted, by type", events.clone());
        registry.register("facts", "Facts received from sources", facts.clone());
        registry.register("sse_clients", "SSE clients connected", sse_clients.clone());
        registry.register("sse_resyncs", "SSE clients resynced after falling behind", sse_resyncs.clone());
        registry.register("journal_errors", "Failed journal writes", journal_errors.clone());
        registry.register(
            "udev_resyncs",
            "Block-device re-enumerations after the event socket overflowed",
            udev_resyncs.clone(),
        );
        registry.register(
            "mqtt_events_dropped",
            "Events the MQTT sink dropped while the broker was away or the sink fell behind",
            mqtt_events_dropped.clone(),
        );
        registry.register("mqtt_connections", "MQTT connections established", mqtt_connections.clone());
        registry.register("last_event_id", "Sequence number of the last event", last_event_id.clone());
        registry.register("resident_memory_bytes", "Resident memory of the agent", resident_bytes.clone());
        registry.register("http_limit_hits", "HTTP connection and stream limits hit, by limit", http_limits.clone());
        registry.register("http_rejected", "HTTP requests refused by the guard, by reason", http_rejected.clone());
        registry.register("http_connections", "HTTP connections open", http_connections.clone());
        Self {
            registry,
            events,
            facts,
            sse_clients,
            sse_resyncs,
            journal_errors,
            udev_resyncs,
            mqtt_events_dropped,
            mqtt_connections,
            last_event_id,
            resident_bytes,
            http_limits,
            http_rejected,
            http_connections,
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
