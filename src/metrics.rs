//! Prometheus metrics of the agent, rendered in the text exposition format, and the
//! degradation conditions that turn `/api/v1/health` to `degraded` while they hold.
//!
//! Every place that drops work, saturates or fails to write counts it here, and a condition that
//! lasts (a journal that cannot write, a usage pool whose threads are all hung) is also raised as
//! a [`Conditions`] entry, so an operator sees it in health and as `diskwatch_degraded{condition}`.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

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
pub struct ConditionLabel {
    pub condition: String,
}

/// A condition that makes the agent `degraded`, as `/api/v1/health` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Degradation {
    /// Stable name, e.g. `journal_write`, `usage_pool_saturated`.
    pub condition: String,
    pub message: String,
    /// When the condition was first raised (RFC 3339).
    pub since: String,
}

/// The degradation conditions holding now; cheap to clone, shared by whoever raises them.
#[derive(Clone, Default)]
pub struct Conditions {
    held: Arc<Mutex<BTreeMap<&'static str, (String, SystemTime)>>>,
    gauge: Family<ConditionLabel, Gauge>,
}

impl Conditions {
    /// Raises `condition` (or updates its message; `since` stays the first time).
    pub fn raise(&self, condition: &'static str, message: impl Into<String>) {
        let message = message.into();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.get_mut(condition) {
            Some((m, _)) => *m = message,
            None => {
                held.insert(condition, (message, SystemTime::now()));
            }
        }
        self.gauge.get_or_create(&ConditionLabel { condition: condition.to_owned() }).set(1);
    }

    /// Clears `condition`; true when it was held.
    pub fn clear(&self, condition: &'static str) -> bool {
        let was = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(condition).is_some();
        if was {
            self.gauge.get_or_create(&ConditionLabel { condition: condition.to_owned() }).set(0);
        }
        was
    }

    pub fn is_raised(&self, condition: &str) -> bool {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).contains_key(condition)
    }

    /// The conditions holding now, by name.
    pub fn list(&self) -> Vec<Degradation> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.iter()
            .map(|(name, (message, since))| Degradation {
                condition: (*name).to_owned(),
                message: message.clone(),
                since: humantime::format_rfc3339_millis(*since).to_string(),
            })
            .collect()
    }
}

/// Counters of the statvfs usage pool (cheap to clone into the mounts source).
#[derive(Clone, Default)]
pub struct UsageMetrics {
    /// Threads running now, hung ones included.
    pub threads: Gauge,
    /// Threads stuck in a call older than the usage timeout.
    pub threads_hung: Gauge,
    /// Times a query found every thread hung and the pool at its cap.
    pub saturated: Counter,
    /// Queries that waited for a thread past their deadline: their mounts were marked stale.
    pub queue_expired: Counter,
    /// Queries that ran past the timeout: their mounts were marked stale.
    pub timeouts: Counter,
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
    pub journal_reopen_failures: Counter,
    pub ring_events: Gauge,
    pub ring_bytes: Gauge,
    pub udev_resyncs: Counter,
    /// Events the MQTT sink dropped (its outage queue was full, or it fell behind the ring).
    pub mqtt_events_dropped: Counter,
    /// Connections the MQTT sink established (a reconnect adds one).
    pub mqtt_connections: Counter,
    pub last_event_id: Gauge<u64, AtomicU64>,
    pub resident_bytes: Gauge,
    pub usage: UsageMetrics,
    /// File-system notifications of the share configuration dropped by a full queue (each
    /// overflow is followed by a full re-read).
    pub shares_notify_dropped: Counter,
    pub conditions: Conditions,
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
        let journal_reopen_failures = Counter::default();
        let ring_events = Gauge::default();
        let ring_bytes = Gauge::default();
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
        registry.register(
            "mqtt_events_dropped",
            "Events the MQTT sink dropped while the broker was away or the sink fell behind",
            mqtt_events_dropped.clone(),
        );
        registry.register("mqtt_connections", "MQTT connections established", mqtt_connections.clone());
        registry.register("last_event_id", "Sequence number of the last event", last_event_id.clone());
        registry.register("resident_memory_bytes", "Resident memory of the agent", resident_bytes.clone());
        let usage = UsageMetrics::default();
        registry.register("usage_threads", "statvfs threads running, hung ones included", usage.threads.clone());
        registry.register(
            "usage_threads_hung",
            "statvfs threads stuck in a call older than mounts.usage_timeout",
            usage.threads_hung.clone(),
        );
        registry.register(
            "usage_pool_saturated",
            "Usage queries that found every statvfs thread hung and the pool at its cap",
            usage.saturated.clone(),
        );
        registry.register(
            "usage_queue_expired",
            "Usage queries that waited for a free thread past mounts.usage_timeout (mount marked stale)",
            usage.queue_expired.clone(),
        );
        registry.register(
            "usage_timeouts",
            "Usage queries that ran past mounts.usage_timeout (mount marked stale)",
            usage.timeouts.clone(),
        );
        let shares_notify_dropped = Counter::default();
        registry.register(
            "shares_notify_dropped",
            "Share configuration change notifications dropped by a full queue (a full re-read follows)",
            shares_notify_dropped.clone(),
        );
        let conditions = Conditions::default();
        registry.register(
            "degraded",
            "1 while a degradation condition holds (it is listed in /api/v1/health)",
            conditions.gauge.clone(),
        );
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
            journal_reopen_failures,
            ring_events,
            ring_bytes,
            udev_resyncs,
            mqtt_events_dropped,
            mqtt_connections,
            last_event_id,
            resident_bytes,
            usage,
            shares_notify_dropped,
            conditions,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_show_in_health_and_metrics_until_cleared() {
        let m = Metrics::new();
        assert!(m.conditions.list().is_empty());
        m.conditions.raise("journal_write", "No space left on device");
        m.conditions.raise("journal_write", "still full");
        let held = m.conditions.list();
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].condition.as_str(), held[0].message.as_str()), ("journal_write", "still full"));
        assert!(m.render().contains("diskwatch_degraded{condition=\"journal_write\"} 1"), "{}", m.render());
        assert!(m.conditions.clear("journal_write"));
        assert!(!m.conditions.clear("journal_write"));
        assert!(m.conditions.list().is_empty());
        assert!(m.render().contains("diskwatch_degraded{condition=\"journal_write\"} 0"));
        m.usage.saturated.inc();
        assert!(m.render().contains("diskwatch_usage_pool_saturated_total 1"), "{}", m.render());
    }
}
