//! REST endpoints through a real socket: shapes, filters, error bodies,
//! health, metrics and the OpenAPI document.

mod common;

use std::time::Duration;

use common::facts::disk;
use common::TestAgent;
use diskwatch::state::Fact;
use serde_json::Value;

async fn get(agent: &TestAgent, path: &str) -> (u16, Value) {
    let resp = reqwest::get(agent.url(path)).await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

async fn fed_agent() -> TestAgent {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    agent.facts.send(Fact::DiskUpsert(disk("a", 1000))).await.unwrap();
    agent.facts.send(Fact::DiskUpsert(disk("b", 2000))).await.unwrap();
    agent.facts.send(Fact::DiskUpsert(disk("a", 1500))).await.unwrap();
    agent.wait_snapshot(Duration::from_secs(5), |s| s["last_event_id"] == 4).await;
    agent
}

#[tokio::test]
async fn snapshot_and_object_lists() {
    let agent = fed_agent().await;
    let (status, snap) = get(&agent, "/api/v1/snapshot").await;
    assert_eq!(status, 200);
    assert_eq!(snap["node_id"], "test");
    assert_eq!(snap["last_event_id"], 4, "agent.started + 2 added + 1 changed");
    for key in ["disks", "partitions", "mounts", "shares", "sources"] {
        assert!(snap[key].is_array(), "{key} missing: {snap}");
    }
    let (_, disks) = get(&agent, "/api/v1/disks").await;
    assert_eq!(disks.as_array().unwrap().len(), 2);
    let (status, a) = get(&agent, "/api/v1/disks/a").await;
    assert_eq!(status, 200);
    assert_eq!(a["size_bytes"], 1500);
    for path in ["/api/v1/partitions", "/api/v1/mounts", "/api/v1/shares"] {
        let (status, list) = get(&agent, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(list, Value::Array(vec![]), "{path}");
    }
    agent.stop().await;
}

#[tokio::test]
async fn errors_are_json_with_fitting_status() {
    let agent = fed_agent().await;
    let cases = [
        ("/api/v1/disks/nope", 404, "not_found"),
        ("/api/v1/nothing", 404, "not_found"),
        ("/api/v1/events?limit=many", 400, "bad_request"),
        ("/api/v1/events?types=%5B", 400, "bad_request"),
        ("/api/v1/events?since=yesterday", 400, "bad_request"),
        ("/api/v1/events/stream?types=%5B", 400, "bad_request"),
    ];
    for (path, status, code) in cases {
        let (got, body) = get(&agent, path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {body}");
    }
    let resp = reqwest::Client::new().post(agent.url("/api/v1/snapshot")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    agent.stop().await;
}

#[tokio::test]
async fn event_history_filters() {
    let agent = fed_agent().await;
    let (_, page) = get(&agent, "/api/v1/events").await;
    let ids: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    assert_eq!(page["last_event_id"], 4);
    let (_, page) = get(&agent, "/api/v1/events?types=disk.*").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let (_, page) = get(&agent, "/api/v1/events?types=disk.changed").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["changed"], serde_json::json!(["size_bytes"]));
    assert_eq!(events[0]["subject"], "disk/a");
    let (_, page) = get(&agent, "/api/v1/events?after_id=2&limit=1").await;
    assert_eq!(page["events"][0]["id"], "3");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let (_, page) = get(&agent, "/api/v1/events?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 4);
    let (_, page) = get(&agent, "/api/v1/events?until=2000-01-01T00:00:00Z").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    let (_, types) = get(&agent, "/api/v1/events/types").await;
    let names: Vec<&str> = types.as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap()).collect();
    for expected in ["disk.added", "mount.remounted", "share.unavailable", "source.recovered", "agent.stopping"] {
        assert!(names.contains(&expected), "{expected} missing from catalogue");
    }
    agent.stop().await;
}

fn status_of(snapshot: &Value, source: &str) -> String {
    let sources = snapshot["sources"].as_array().unwrap();
    sources.iter().find(|s| s["name"] == source).map(|s| s["status"].as_str().unwrap().to_owned()).unwrap_or_default()
}

#[tokio::test]
async fn health_turns_503_when_a_required_source_fails() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    agent.facts.send(Fact::SourceRunning { source: "udev".into(), required: true }).await.unwrap();
    agent.facts.send(Fact::SourceRunning { source: "shares".into(), required: false }).await.unwrap();
    agent.wait_snapshot(Duration::from_secs(5), |s| s["sources"].as_array().unwrap().len() == 2).await;
    let (status, health) = get(&agent, "/api/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    assert_eq!(health["sinks"][0]["name"], "mqtt");
    assert_eq!(health["sinks"][0]["status"], "disabled", "a disabled sink is shown, and is not a fault");
    agent.facts.send(Fact::SourceFailed { source: "shares".into(), message: "smb.conf line 3".into() }).await.unwrap();
    agent.wait_snapshot(Duration::from_secs(5), |s| status_of(s, "shares") == "failed").await;
    let (status, health) = get(&agent, "/api/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));
    agent.facts.send(Fact::SourceFailed { source: "udev".into(), message: "netlink closed".into() }).await.unwrap();
    agent.wait_snapshot(Duration::from_secs(5), |s| status_of(s, "udev") == "failed").await;
    let (status, health) = get(&agent, "/api/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (503, Some("down")));
    let udev = health["sources"].as_array().unwrap().iter().find(|s| s["name"] == "udev").unwrap().clone();
    assert_eq!(udev["message"], "netlink closed");
    agent.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let agent = fed_agent().await;
    let resp = reqwest::get(agent.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = resp.text().await.unwrap();
    assert!(text.contains("diskwatch_events_total{type=\"disk.added\"} 2"), "{text}");
    assert!(text.contains("diskwatch_last_event_id 4"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("diskwatch_resident_memory_bytes ") && !l.ends_with(" 0")), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    agent.stop().await;
}

/// Collects every `$ref` in a JSON document.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.extend(v.as_str());
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_is_valid_and_complete() {
    let agent = fed_agent().await;
    let (status, doc) = get(&agent, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "diskwatch");
    // It parses back into utoipa's typed model of OpenAPI 3.
    let _: utoipa::openapi::OpenApi = serde_json::from_value(doc.clone()).expect("OpenAPI model");
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/snapshot",
        "/api/v1/disks",
        "/api/v1/disks/{id}",
        "/api/v1/partitions",
        "/api/v1/mounts",
        "/api/v1/shares",
        "/api/v1/events",
        "/api/v1/events/types",
        "/api/v1/events/stream",
        "/api/v1/health",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} not documented");
        // Every documented path is served (the stream is checked elsewhere).
        if path != "/api/v1/events/stream" {
            let status = reqwest::get(agent.url(&path.replace("{id}", "a"))).await.unwrap().status();
            assert_eq!(status, 200, "{path}");
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "dangling $ref {r}");
    }
    agent.stop().await;
}
