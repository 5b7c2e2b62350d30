//! The sink task: owns the rumqttc event loop, follows the event log, queues
//! events while the broker is away and publishes them in order afterwards,
//! keeps retained state and discovery in step with the snapshot.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rumqttc::{AsyncClient, ClientError, Event, EventLoop, Packet, QoS};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tracing::{debug, info, instrument, warn};

use super::connection::{backoff, options};
use super::discovery::plan;
use super::retained::{Outgoing, Retainer};
use super::topics::Naming;
use crate::core::{Agent, SinkStatus};
use crate::events::Published;

/// Requests the client may hand the event loop before `try_publish` reports full.
const CHANNEL: usize = 512;
/// How long shutdown waits for the last messages and the goodbye to leave.
const DRAIN: Duration = Duration::from_secs(3);
/// Name of the file in `state_dir` that remembers published objects.
pub const STATE_FILE: &str = "mqtt-objects.json";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn status(agent: &Agent, status: &str, message: Option<String>) {
    agent.set_sink_status(SinkStatus { name: "mqtt".into(), status: status.into(), message, required: false });
}

/// Everything the task keeps between loop turns.
struct Sink {
    agent: Arc<Agent>,
    naming: Naming,
    client: AsyncClient,
    retainer: Retainer,
    state_path: std::path::PathBuf,
    /// Events not yet handed to the client, oldest first.
    queue: VecDeque<Arc<Published>>,
    queue_size: usize,
    /// Events dropped because the queue was full.
    overflow: u64,
    /// Retained messages not yet handed to the client.
    outbox: VecDeque<Outgoing>,
    /// Sequence number of the newest event taken from the log.
    last_seq: u64,
    connected: bool,
    /// The snapshot changed since the last reconcile.
    dirty: bool,
}

impl Sink {
    fn enqueue(&mut self, event: Arc<Published>) {
        if event.seq <= self.last_seq {
            return;
        }
        self.last_seq = event.seq;
        debug!(id = event.seq, kind = %event.kind(), "event queued for MQTT");
        if self.queue.len() >= self.queue_size {
            self.queue.pop_front();
            self.overflow += 1;
            warn!(
                overflow = self.overflow,
                queue_size = self.queue_size,
                "MQTT event queue full: oldest event dropped"
            );
        }
        self.queue.push_back(event);
        self.dirty = true;
    }

    /// After a lag on the broadcast channel: take the missed events from the ring.
    fn catch_up(&mut self, missed: u64) {
        match self.agent.log.resume(self.last_seq) {
            Ok(sub) => {
                for e in sub.backlog {
                    self.enqueue(e);
                }
            }
            Err(_) => {
                self.overflow += missed;
                warn!(missed, "MQTT sink fell behind the event ring: events lost, states resynced");
                self.last_seq = self.agent.log.last_seq();
            }
        }
        self.dirty = true;
    }

    /// Brings retained state and discovery to the snapshot: changes only, or everything.
    fn reconcile(&mut self, full: bool) {
        let snapshot = self.agent.snapshot();
        let msgs = self.retainer.update(plan(&snapshot, &self.naming), now_ms(), full);
        if full {
            self.outbox.clear();
            self.outbox.push_back(Outgoing { topic: self.naming.availability(), payload: "online".into() });
            info!(messages = msgs.len(), "MQTT: announcing discovery and states");
        }
        self.outbox.extend(msgs);
        self.dirty = false;
        self.save();
    }

    fn expire(&mut self) {
        let retention = self.agent.config.mqtt.retention.as_millis() as u64;
        let cleared = self.retainer.expire(now_ms(), retention);
        if !cleared.is_empty() {
            info!(topics = cleared.len(), "MQTT: clearing topics of objects removed past the retention");
            self.outbox.extend(cleared);
            self.save();
        }
    }

    fn save(&mut self) {
        if let Err(e) = self.retainer.save_if_dirty(&self.state_path) {
            warn!(error = %e, "cannot remember MQTT objects");
        }
    }

    /// Hands queued messages to the client until its channel is full.
    fn flush(&mut self) {
        if !self.connected {
            return;
        }
        while let Some(msg) = self.outbox.front() {
            // QoS 1 for retained messages too: rumqttc cannot set TCP_NODELAY, and without
            // PUBACKs carrying the broker's TCP acknowledgements back, Nagle's algorithm meets
            // delayed ACKs and stalls the following writes (events included) by up to 40 ms.
            match self.client.try_publish(&msg.topic, QoS::AtLeastOnce, true, msg.payload.clone()) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => return,
            }
        }
        let topic = self.naming.events();
        while let Some(event) = self.queue.front() {
            match self.client.try_publish(&topic, QoS::AtLeastOnce, false, event.json_bytes().to_vec()) {
                Ok(()) => {
                    debug!(id = event.seq, "event handed to MQTT");
                    self.queue.pop_front();
                }
                Err(_) => return,
            }
        }
    }

    fn next_expiry(&self) -> Option<Instant> {
        let retention = self.agent.config.mqtt.retention.as_millis() as u64;
        let at = self.retainer.next_expiry_ms(retention)?;
        Some(Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())))
    }
}

/// Runs the MQTT sink until the agent has published its last event.
#[instrument(name = "mqtt", skip_all)]
pub async fn run(agent: Arc<Agent>) {
    let naming = Naming::new(&agent.config, &agent.node_id);
    let cfg = agent.config.mqtt.clone();
    let opts = match options(&cfg, &agent.node_id, &naming.availability()) {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "MQTT sink cannot start");
            status(&agent, "disconnected", Some(e.to_string()));
            return;
        }
    };
    let (client, mut eventloop) = AsyncClient::new(opts, CHANNEL);
    let state_path = agent.config.state_dir.join(STATE_FILE);
    let retainer = Retainer::load(&state_path).unwrap_or_else(|e| {
        warn!(error = %e, "MQTT object memory unreadable: starting afresh");
        Retainer::default()
    });
    let mut events = agent.log.subscribe();
    let last_seq = agent.log.last_seq();
    let mut sink = Sink {
        agent: agent.clone(),
        naming,
        client,
        retainer,
        state_path,
        queue: VecDeque::new(),
        queue_size: cfg.queue_size.max(1),
        overflow: 0,
        outbox: VecDeque::new(),
        last_seq,
        connected: false,
        dirty: true,
    };
    status(&agent, "connecting", Some(cfg.url.clone()));
    info!(url = %cfg.url, "MQTT sink starting");
    let mut attempt: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    let mut reannounce_at: Option<Instant> = None;
    // The cancellation this loop follows is `streams_done`: it fires once the core has
    // published `agent.stopping` after the agent's token, so that last event still goes out.
    let done = agent.streams_done.clone();
    loop {
        let expiry = sink.next_expiry();
        tokio::select! {
            _ = done.cancelled() => break,
            received = events.recv() => match received {
                Ok(event) => {
                    sink.enqueue(event);
                    // Take what else is already waiting, so one reconcile covers a burst.
                    while let Ok(event) = events.try_recv() {
                        sink.enqueue(event);
                    }
                }
                Err(RecvError::Lagged(n)) => sink.catch_up(n),
                Err(RecvError::Closed) => break,
            },
            polled = eventloop.poll(), if retry_at.is_none() => match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    info!(attempts = attempt, "MQTT connected");
                    attempt = 0;
                    sink.connected = true;
                    status(&agent, "connected", None);
                    if let Err(e) = sink.client.try_subscribe(sink.naming.ha_status(), QoS::AtLeastOnce) {
                        warn!(error = %e, "cannot subscribe to Home Assistant's status");
                    }
                    sink.retainer.forget_published();
                    sink.reconcile(true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == sink.naming.ha_status() && p.payload.as_ref() == b"online" {
                        let delay = Duration::from_millis(rand::rng().random_range(200..2000));
                        debug!(?delay, "Home Assistant is online: re-announcing soon");
                        reannounce_at = Some(Instant::now() + delay);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let delay = backoff(attempt, rand::rng().random::<f64>());
                    attempt = attempt.saturating_add(1);
                    if sink.connected {
                        warn!(error = %e, "MQTT connection lost");
                    } else {
                        debug!(error = %e, attempt, ?delay, "MQTT connect failed");
                    }
                    sink.connected = false;
                    status(&agent, "disconnected", Some(e.to_string()));
                    retry_at = Some(Instant::now() + delay);
                }
            },
            _ = sleep_until(retry_at) => {
                retry_at = None;
                status(&agent, "connecting", Some(cfg.url.clone()));
            }
            _ = sleep_until(reannounce_at) => {
                reannounce_at = None;
                if sink.connected {
                    sink.reconcile(true);
                }
            }
            _ = sleep_until(expiry) => sink.expire(),
        }
        if sink.connected && sink.dirty {
            sink.reconcile(false);
        }
        sink.flush();
    }
    while let Ok(event) = events.try_recv() {
        sink.enqueue(event);
    }
    drain(&mut sink, &mut eventloop).await;
    status(&agent, "disconnected", Some("stopped".into()));
}

/// Sends what is queued, then `offline` and a clean disconnect, within [`DRAIN`].
async fn drain(sink: &mut Sink, eventloop: &mut EventLoop) {
    if !sink.connected {
        if !sink.queue.is_empty() {
            warn!(events = sink.queue.len(), "MQTT broker unreachable at shutdown: queued events not sent");
        }
        return;
    }
    sink.reconcile(false);
    let deadline = Instant::now() + DRAIN;
    let mut said_goodbye = false;
    loop {
        sink.flush();
        if !said_goodbye && sink.queue.is_empty() && sink.outbox.is_empty() {
            let availability = sink.naming.availability();
            let _ = sink.client.try_publish(availability, QoS::AtLeastOnce, true, "offline");
            let _ = sink.client.try_disconnect();
            said_goodbye = true;
        }
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "MQTT drain ended");
                break;
            }
            Err(_) => {
                warn!("MQTT drain timed out");
                break;
            }
        }
    }
    info!(overflow = sink.overflow, "MQTT sink stopped");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
