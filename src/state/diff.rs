//! Field-level comparison of two versions of an object, for the `changed`
//! list of `*.changed`, `*.updated` and `mount.remounted` events.

use serde::Serialize;

/// Fields the state model derives itself; a change in them is not a change
/// the source reported, so it never makes a `*.changed` event on its own.
pub const DERIVED: &[&str] = &[
    "partitions",
    "mounts",
    "partition_id",
    "disk_id",
    "shares",
    "usage",
    "stale",
    "mount_id",
    "available",
    "power_state",
    "health",
    "health_note",
    "io",
    "arrays",
    "array_id",
    "attention",
    "forecast",
];

/// Names of the top-level fields whose values differ, in serialisation order,
/// leaving out `ignore`.
pub fn changed_fields<T: Serialize>(old: &T, new: &T, ignore: &[&str]) -> Vec<String> {
    let (Ok(serde_json::Value::Object(old)), Ok(serde_json::Value::Object(new))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return Vec::new();
    };
    new.iter()
        .filter(|(key, value)| !ignore.contains(&key.as_str()) && old.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect()
}
