//! The harness itself: an in-process agent fed facts through its channel.

mod common;

use std::time::Duration;

use common::sse::SseClient;
use common::TestAgent;
use diskwatch::state::Fact;

#[tokio::test]
async fn facts_fed_to_a_running_agent_reach_sse() {
    let agent = TestAgent::start(|_| {}, vec![]).await;
    let mut sse = SseClient::connect(&agent.url("/api/v1/events/stream?types=source.*"), None).await;
    agent.facts.send(Fact::SourceRunning { source: "x".into(), required: false }).await.unwrap();
    agent.facts.send(Fact::SourceFailed { source: "x".into(), message: "boom".into() }).await.unwrap();
    let msg = sse.expect(Duration::from_secs(5)).await;
    assert_eq!(msg.event, "source.failed");
    assert_eq!(msg.json()["data"]["message"], "boom");
    agent.stop().await;
}
