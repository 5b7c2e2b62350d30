//! The SSE stream with real HTTP clients: filters, resume with Last-Event-ID
//! over 10 000 events, resync, snapshot and notify-only modes, slow clients,
//! and the clean end of streams at shutdown.

mod common;

use std::time::Duration;

use common::facts::disk;
use common::sse::SseClient;
use common::TestAgent;
use diskwatch::state::Fact;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

/// Feeds `n` facts that each make exactly one event (disk.added, then disk.changed).
async fn pump(agent: &TestAgent, n: u64) {
    for i in 0..n {
        agent.facts.send(Fact::DiskUpsert(disk("pump", 1_000 + i))).await.unwrap();
    }
}

fn seq(msg: &common::sse::Message) -> u64 {
    msg.id.as_deref().expect("id").parse().expect("numeric id")
}

#[tokio::test]
async fn type_filters_select_events() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut disks = SseClient::connect(&agent.url("/api/v1/events/stream?types=disk.added,source.*"), None).await;
    let mut all = SseClient::connect(&agent.url("/api/v1/events/stream"), None).await;
    pump(&agent, 3).await;
    agent.facts.send(Fact::SourceFailed { source: "x".into(), message: "m".into() }).await.unwrap();
    let first = disks.expect(WAIT).await;
    assert_eq!(first.event, "disk.added");
    assert_eq!(first.json()["type"], "disk.added", "data is the CloudEvent");
    assert_eq!(first.json()["id"], first.id.clone().unwrap());
    assert_eq!(disks.expect(WAIT).await.event, "source.failed", "disk.changed filtered out");
    let kinds: Vec<String> = [0; 4].iter().map(|_| String::new()).collect();
    let mut got = kinds;
    for slot in got.iter_mut() {
        *slot = all.expect(WAIT).await.event;
    }
    assert_eq!(got, ["disk.added", "disk.changed", "disk.changed", "source.failed"]);
    agent.stop().await;
}

#[tokio::test]
async fn reconnect_with_last_event_id_gets_every_event_once_in_order() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let start = agent.get_json("/api/v1/snapshot").await["last_event_id"].as_u64().unwrap();
    let total = 10_000u64;
    let url = agent.url("/api/v1/events/stream?types=disk.*");
    let producer = {
        let facts = agent.facts.clone();
        tokio::spawn(async move {
            for i in 0..total {
                facts.send(Fact::DiskUpsert(disk("pump", 1_000 + i))).await.unwrap();
                if i % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut seen: Vec<u64> = Vec::with_capacity(total as usize);
    let mut last = Some(start);
    let mut reconnects = 0;
    while (seen.len() as u64) < total {
        let mut client = SseClient::connect(&url, last).await;
        // Read a slice of the stream, then drop the connection mid-stream.
        for _ in 0..1_700 {
            if seen.len() as u64 == total {
                break;
            }
            let msg = client.expect(WAIT).await;
            assert_ne!(msg.event, "resync", "the ring holds every event");
            seen.push(seq(&msg));
            last = Some(seq(&msg));
        }
        reconnects += 1;
    }
    producer.await.unwrap();
    assert!(reconnects >= 5, "the test really reconnected ({reconnects})");
    let expected: Vec<u64> = (start + 1..=start + total).collect();
    assert_eq!(seen.len(), expected.len());
    assert!(seen == expected, "events missing, duplicated or out of order");
    agent.stop().await;
}

#[tokio::test]
async fn an_id_older_than_the_ring_is_replayed_from_the_journal() {
    let agent = TestAgent::start(|c| c.events.ring_size = 50, vec![]).await;
    pump(&agent, 200).await;
    agent.wait_snapshot(WAIT, |s| s["last_event_id"].as_u64() == Some(201)).await;
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), Some(3)).await;
    for expected in 4..=201 {
        let msg = client.expect(WAIT).await;
        assert_eq!((msg.event.as_str(), seq(&msg)), ("disk.changed", expected), "no gap, no duplicate");
        assert_eq!(msg.json()["data"]["disk"]["size_bytes"], 1_000 + expected - 2);
    }
    pump(&agent, 1).await;
    let next = client.expect(WAIT).await;
    assert_eq!(seq(&next), 202, "the replay hands over to the live stream");
    // History queries reach back into the journal too.
    let page = agent.get_json("/api/v1/events?after_id=1&limit=3").await;
    let ids: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["2", "3", "4"]);
    assert_eq!(page["last_event_id"], 202);
    // An id within the ring resumes normally.
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), Some(199)).await;
    assert_eq!(seq(&client.expect(WAIT).await), 200);
    // An id the agent never issued is answered with a resync.
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), Some(99_999)).await;
    assert_eq!(client.expect(WAIT).await.json()["reason"], "unknown_id");
    agent.stop().await;
}

#[tokio::test]
async fn an_id_gone_from_ring_and_journal_gets_resync() {
    // No rotated files kept, small files: early events leave the journal too.
    let agent = TestAgent::start(
        |c| {
            c.events.ring_size = 50;
            c.events.journal_keep = 0;
            c.events.journal_max_bytes = 16 * 1024;
        },
        vec![],
    )
    .await;
    pump(&agent, 200).await;
    agent.wait_snapshot(WAIT, |s| s["last_event_id"].as_u64() == Some(201)).await;
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), Some(3)).await;
    let resync = client.expect(WAIT).await;
    assert_eq!(resync.event, "resync");
    assert_eq!(resync.id.as_deref(), Some("201"));
    let data = resync.json();
    assert_eq!(data["reason"], "too_old");
    assert_eq!(data["snapshot"]["last_event_id"], 201);
    assert_eq!(data["snapshot"]["disks"][0]["size_bytes"], 1_199);
    pump(&agent, 1).await;
    let next = client.expect(WAIT).await;
    assert_eq!((next.event.as_str(), seq(&next)), ("disk.changed", 202), "the stream continues after the resync");
    agent.stop().await;
}

#[tokio::test]
async fn snapshot_and_notify_only_modes() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    pump(&agent, 2).await;
    agent.wait_snapshot(WAIT, |s| s["last_event_id"] == 3).await;
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream?snapshot=true"), None).await;
    let first = client.expect(WAIT).await;
    assert_eq!((first.event.as_str(), first.id.as_deref()), ("snapshot", Some("3")));
    assert_eq!(first.json()["disks"][0]["id"], "pump");
    let mut notify = SseClient::connect(&agent.url("/api/v1/events/stream?notify_only=true"), None).await;
    pump(&agent, 1).await;
    assert_eq!(seq(&client.expect(WAIT).await), 4, "no event before the snapshot is repeated");
    let n = notify.expect(WAIT).await;
    assert_eq!(n.json(), serde_json::json!({"id": "4", "type": "disk.changed", "subject": "disk/pump"}));
    // ?last_event_id= works like the header.
    let mut q = SseClient::connect(&agent.url("/api/v1/events/stream?last_event_id=2"), None).await;
    assert_eq!(seq(&q.expect(WAIT).await), 3);
    agent.stop().await;
}

#[tokio::test]
async fn keep_alive_comments_flow_while_idle() {
    let agent = TestAgent::start(|c| c.http.keepalive = Duration::from_millis(50), vec![]).await;
    let mut stream = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    stream.write_all(b"GET /api/v1/events/stream HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    while !text.contains(": keep-alive") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf)).await.expect("keep-alive within timeout").unwrap();
        assert!(n > 0, "stream closed");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"));
    agent.stop().await;
}

#[tokio::test]
async fn a_stalled_client_never_holds_back_99_others() {
    // A buffer a little under the run's length: a reader on a loaded machine may fall far behind
    // without losing events, while the client that never reads is still cut loose before the end.
    let agent = TestAgent::start(|c| c.events.client_buffer = 8_192, vec![]).await;
    let total = 10_000u64;
    // The stalled client: connects, then never reads a byte.
    let mut stalled = tokio::net::TcpStream::connect(agent.addr).await.unwrap();
    stalled.write_all(b"GET /api/v1/events/stream?types=disk.* HTTP/1.1\r\nhost: localhost\r\n\r\n").await.unwrap();
    let url = agent.url("/api/v1/events/stream?types=disk.*");
    let mut readers = Vec::new();
    for _ in 0..99 {
        let mut client = SseClient::connect(&url, None).await;
        readers.push(tokio::spawn(async move {
            // Event 1 is agent.started (filtered out); the pumped events are 2..=total+1.
            let mut next = 2u64;
            let mut resyncs = 0;
            while next <= total + 1 {
                let msg = client.expect(Duration::from_secs(60)).await;
                if msg.event == "resync" {
                    resyncs += 1;
                    next = seq(&msg) + 1;
                    continue;
                }
                assert_eq!(seq(&msg), next, "in order, no gaps");
                next += 1;
            }
            let count = next - 2;
            (count, resyncs)
        }));
    }
    while agent.get_json("/api/v1/health").await["last_event_id"].as_u64().unwrap() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 1 000 events/s in bursts of 50: far above what a NAS produces, within what 99 readers keep up with.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for burst in 0..total / 50 {
        tick.tick().await;
        for i in 0..50 {
            agent.facts.send(Fact::DiskUpsert(disk("pump", 1_000 + burst * 50 + i))).await.unwrap();
        }
    }
    let mut complete = 0;
    for reader in readers {
        let (count, resyncs) = reader.await.unwrap();
        assert_eq!(count, total);
        if resyncs == 0 {
            complete += 1;
        }
    }
    assert_eq!(complete, 99, "every reading client got every event, none needed a resync");
    // Push the stalled client past its buffer: its socket buffers absorbed part of the first run.
    pump(&agent, 10_000).await;
    let metrics = reqwest::get(agent.url("/metrics")).await.unwrap().text().await.unwrap();
    let resident: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("diskwatch_resident_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(resident < 256.0 * 1024.0 * 1024.0, "memory stays bounded: {resident} bytes");
    // Now the stalled client reads: it was resynced instead of being fed a gap.
    let mut text = String::new();
    let mut buf = vec![0u8; 1 << 16];
    while !text.contains("event: resync") {
        let n = tokio::time::timeout(WAIT, stalled.read(&mut buf)).await.expect("stalled client gets data").unwrap();
        assert!(n > 0, "stream closed before the resync");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(metrics.contains("diskwatch_sse_resyncs_total"), "{metrics}");
    agent.stop().await;
}

#[tokio::test]
async fn streams_end_cleanly_at_shutdown_after_agent_stopping() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut client = SseClient::connect(&agent.url("/api/v1/events/stream"), None).await;
    let started = std::time::Instant::now();
    let token = agent.token.clone();
    let stop = tokio::spawn(agent.stop());
    token.cancel();
    let last = client.expect(WAIT).await;
    assert_eq!(last.event, "agent.stopping");
    assert!(tokio::time::timeout(WAIT, client.next()).await.expect("stream ends").is_none(), "stream ended");
    stop.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "shutdown took {:?}", started.elapsed());
}
