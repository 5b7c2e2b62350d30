//! The sink task: follows the event log and the topology, queues events while
//! the broker is away and publishes them in order afterwards, keeps retained
//! state and discovery in step with the snapshot. The rumqttc event loop runs
//! in its own task ([`drive`]) and reports to the sink over a channel, because
//! `EventLoop::poll` is not cancel-safe and must never lose a `select!` race.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use rumqttc::{AsyncClient, ClientError, Event, EventLoop, Packet, QoS};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};

use super::config::MqttConfig;
use super::connection::{backoff, options};
use super::discovery::{plan, LastEvent};
use super::queue::EventQueue;
use super::retained::{Outgoing, Removal, Retainer};
use super::topics::Naming;
use crate::agent::{Agent, SinkState, SinkStatus};
use crate::events::Published;

/// Requests the client may hand the event loop before `try_publish` reports full.
const CHANNEL: usize = 512;
/// Channel slots left to requests the sink does not track (subscriptions, acknowledgements).
const CHANNEL_SPARE: usize = 16;
/// How long shutdown waits for the last messages and the goodbye to leave.
const DRAIN: Duration = Duration::from_secs(3);
/// Re-announce delay after Home Assistant's birth message: random in this range (a fleet
/// spreads out), and never pushed back by further births, so repeated births cannot
/// postpone it forever.
const REANNOUNCE_MIN_MS: u64 = 200;
const REANNOUNCE_MAX_MS: u64 = 2000;
/// Name of the file in `state_dir` that remembers published objects.
pub const STATE_FILE: &str = "mqtt-objects.json";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn status(agent: &Agent, status: SinkState, message: Option<String>) {
    agent.set_sink_status(SinkStatus { name: "mqtt".into(), status, message, required: false });
}

/// What the event-loop task tells the sink.
#[derive(Debug)]
enum Notice {
    ConnAck,
    Incoming {
        topic: String,
        payload: bytes::Bytes,
        /// Delivered from the broker's retained store (never a button press).
        retain: bool,
    },
    /// A publish left for the broker with this packet id (in the order they were handed over).
    Written(u16),
    /// The broker acknowledged a publish.
    Acked(u16),
    /// The connection failed. The loop reconnects after `delay`, once `resume` is answered
    /// (or dropped): by then the sink has taken back what it handed over, and the loop drops
    /// rumqttc's own copies so nothing is sent twice.
    Lost {
        error: String,
        delay: Duration,
        resume: oneshot::Sender<()>,
    },
    /// The clean disconnect at shutdown went out.
    Disconnected,
}

/// Runs the rumqttc event loop until `token` is cancelled or the disconnect is sent.
async fn drive(mut eventloop: EventLoop, notices: mpsc::Sender<Notice>, token: CancellationToken) {
    let mut attempt: u32 = 0;
    loop {
        // Cancelling `poll` abandons the loop for good, which is the only safe way to cancel it.
        let polled = tokio::select! {
            _ = token.cancelled() => return,
            polled = eventloop.poll() => polled,
        };
        let notice = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                attempt = 0;
                Notice::ConnAck
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                Notice::Incoming { topic: p.topic, payload: p.payload, retain: p.retain }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => Notice::Acked(ack.pkid),
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Notice::Written(pkid),
            Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                let _ = notices.send(Notice::Disconnected).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let delay = backoff(attempt, rand::rng().random::<f64>());
                attempt = attempt.saturating_add(1);
                let (resume, resumed) = oneshot::channel();
                if notices.send(Notice::Lost { error: e.to_string(), delay, resume }).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                let _ = resumed.await;
                // The sink queues again what was not acknowledged; rumqttc's retry copies would
                // duplicate it.
                eventloop.clean();
                eventloop.pending.clear();
                continue;
            }
        };
        if notices.send(notice).await.is_err() {
            return;
        }
    }
}

/// A publish handed to the client, until the broker acknowledges it.
#[derive(Debug)]
enum InFlight {
    Event(Arc<Published>),
    /// A retained state or discovery message: sent again by the next full announce if lost.
    Retained,
    /// An empty retained message clearing this topic.
    Clear(String),
}

/// Everything the task keeps between loop turns.
struct Sink {
    agent: Arc<Agent>,
    naming: Naming,
    client: AsyncClient,
    retainer: Retainer,
    state_path: PathBuf,
    /// Events not yet handed to the client, oldest first.
    queue: EventQueue,
    /// Events dropped because the queue was full.
    overflow: u64,
    /// Clears not yet handed to the client.
    clears: VecDeque<Outgoing>,
    /// Retained messages not yet handed to the client.
    outbox: VecDeque<Outgoing>,
    /// Handed to the client, not yet written (no packet id yet), in order.
    handed: VecDeque<InFlight>,
    /// Written, waiting for the broker's acknowledgement.
    inflight: HashMap<u16, InFlight>,
    /// Sequence number of the newest event taken from the log.
    last_seq: u64,
    /// The newest event, for the host's retained state ("Last storage event"); read once
    /// per reconcile, not per event.
    last_event: Option<Arc<Published>>,
    removal: Removal,
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
        self.last_event = Some(event.clone());
        debug!(id = event.seq, kind = %event.kind(), "event queued for MQTT");
        let dropped = self.queue.push_back(event);
        self.drop_events(dropped);
        self.dirty = true;
    }

    fn drop_events(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        if self.overflow == 0 {
            let (queue_size, queue_max_bytes) = self.queue.limits();
            warn!(queue_size, queue_max_bytes, "MQTT event queue full: oldest events dropped (counted in /metrics)");
        }
        self.overflow += n;
        self.agent.metrics.mqtt_events_dropped.inc_by(n);
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
                self.drop_events(missed);
                warn!(missed, "MQTT sink fell behind the event ring: events lost, states resynced");
                self.last_seq = self.agent.log.last_seq();
            }
        }
        self.dirty = true;
    }

    /// Brings retained state and discovery to the snapshot: changes only, or everything.
    fn reconcile(&mut self, full: bool) {
        let snapshot = self.agent.snapshot();
        let last = self.last_event.as_ref().and_then(|e| LastEvent::from_json(e.json()));
        let msgs = self.retainer.update(plan(&snapshot, &self.naming, last.as_ref()), now_ms(), full);
        if full {
            // Retained messages not yet handed over are superseded by the full set; clears are
            // not (they are kept until acknowledged) and go first.
            self.outbox.clear();
            self.clears = self.retainer.pending_clears().into();
            self.outbox.push_back(Outgoing { topic: self.naming.availability(), payload: "online".into() });
            info!(messages = msgs.len(), clears = self.clears.len(), "MQTT: announcing discovery and states");
        }
        for msg in msgs {
            if msg.payload.is_empty() {
                self.clears.push_back(msg);
            } else {
                self.outbox.push_back(msg);
            }
        }
        self.dirty = false;
        self.save();
    }

    fn expire(&mut self) {
        let cleared = self.retainer.expire(now_ms(), &self.removal);
        if !cleared.is_empty() {
            info!(topics = cleared.len(), "MQTT: clearing topics of objects removed past their removal delay");
            self.clears.extend(cleared);
            self.save();
        }
    }

    fn save(&mut self) {
        if let Err(e) = self.retainer.save_if_dirty(&self.state_path) {
            warn!(error = %e, "cannot remember MQTT objects");
        }
    }

    fn publish(&mut self, topic: &str, payload: &str, retain: bool, tracked: InFlight) -> bool {
        // QoS 1 for retained messages too: rumqttc cannot set TCP_NODELAY, and without
        // PUBACKs carrying the broker's TCP acknowledgements back, Nagle's algorithm meets
        // delayed ACKs and stalls the following writes (events included) by up to 40 ms.
        match self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload.to_owned()) {
            Ok(()) => {
                self.handed.push_back(tracked);
                true
            }
            Err(ClientError::TryRequest(_)) | Err(ClientError::Request(_)) => false,
        }
    }

    /// Hands an event over without copying it: the payload shares the event's one serialized
    /// form with the ring and SSE, so events waiting for their PUBACK cost no second copy.
    fn publish_event(&mut self, topic: &str, event: &Arc<Published>) -> bool {
        use futures_util::FutureExt;
        // `publish_bytes` has no `try_` form in rumqttc 0.24. Everything in the client's channel
        // is in `handed` (a request leaves `handed` only once written), so below this bound the
        // channel has room and the send completes on its first poll.
        if self.handed.len() + CHANNEL_SPARE >= CHANNEL {
            return false;
        }
        let mut send = Box::pin(self.client.publish_bytes(topic, QoS::AtLeastOnce, false, event.json_bytes()));
        match (&mut send).now_or_never() {
            Some(Ok(())) => {}
            Some(Err(_)) => return false,
            None => {
                // Cannot happen below the bound; should it, the request waits in the channel's
                // queue of senders and goes out in turn: keep it there (dropping the future could
                // withdraw it or not, and either way it would be sent twice or lost).
                std::mem::forget(send);
            }
        }
        self.handed.push_back(InFlight::Event(event.clone()));
        true
    }

    /// Hands queued messages to the client until its channel is full.
    fn flush(&mut self) {
        if !self.connected {
            return;
        }
        while let Some(msg) = self.clears.front().cloned() {
            if !self.publish(&msg.topic, "", true, InFlight::Clear(msg.topic.clone())) {
                return;
            }
            self.clears.pop_front();
        }
        while let Some(msg) = self.outbox.front().cloned() {
            if !self.publish(&msg.topic, &msg.payload, true, InFlight::Retained) {
                return;
            }
            self.outbox.pop_front();
        }
        let topic = self.naming.events();
        while let Some(event) = self.queue.front().cloned() {
            if !self.publish_event(&topic, &event) {
                return;
            }
            debug!(id = event.seq, "event handed to MQTT");
            self.queue.hand_front();
        }
    }

    fn written(&mut self, pkid: u16) {
        match self.handed.pop_front() {
            Some(InFlight::Retained) => {}
            Some(tracked) => {
                self.inflight.insert(pkid, tracked);
            }
            None => debug!(pkid, "MQTT publish written that the sink did not hand over"),
        }
    }

    fn acked(&mut self, pkid: u16) {
        match self.inflight.remove(&pkid) {
            Some(InFlight::Clear(topic)) => {
                self.retainer.cleared(&topic);
                self.save();
            }
            Some(InFlight::Event(event)) => self.queue.acknowledged(&event),
            _ => {}
        }
    }

    /// The connection is gone: events not acknowledged go back to the front of the queue
    /// (in order), clears stay pending in the retainer; retained state is re-sent in full.
    fn lost(&mut self) {
        self.connected = false;
        let mut events: Vec<Arc<Published>> = Vec::new();
        for tracked in self.handed.drain(..).chain(self.inflight.drain().map(|(_, t)| t)) {
            if let InFlight::Event(e) = tracked {
                events.push(e);
            }
        }
        events.sort_by_key(|e| e.seq);
        let dropped = self.queue.requeue(events);
        self.drop_events(dropped);
        self.clears.clear();
        self.outbox.clear();
    }

    fn next_expiry(&self) -> Option<Instant> {
        let at = self.retainer.next_expiry_ms(&self.removal)?;
        Some(Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())))
    }
}

/// Runs the MQTT sink until the agent has published its last event.
#[instrument(name = "mqtt", skip_all)]
pub async fn run(agent: Arc<Agent>, config: MqttConfig, state_dir: PathBuf, actions: crate::actions::Actions) {
    let mut naming = Naming::new(&config, &agent.node_id);
    // Buttons only for actions that may run, and only those Home Assistant shows as buttons.
    naming.actions = actions.config().allowed().into_iter().filter(|k| *k != crate::model::ActionKind::Mount).collect();
    let opts = match options(&config, &agent.node_id, &naming.availability()) {
        Ok(o) => o,
        Err(e) => {
            warn!(error = %e, "MQTT sink cannot start");
            status(&agent, SinkState::Disconnected, Some(e.to_string()));
            return;
        }
    };
    let (client, eventloop) = AsyncClient::new(opts, CHANNEL);
    let (notice_tx, mut notices) = mpsc::channel(CHANNEL);
    let driver = CancellationToken::new();
    let driver_task = tokio::spawn(drive(eventloop, notice_tx, driver.clone()));
    let state_path = state_dir.join(STATE_FILE);
    let retainer = Retainer::load(&state_path).unwrap_or_else(|e| {
        warn!(error = %e, "MQTT object memory unreadable: starting afresh");
        Retainer::default()
    });
    let mut events = agent.log.subscribe();
    let mut topology = agent.topology();
    let last_seq = agent.log.last_seq();
    // The newest event of an earlier run (read back from the journal) until a new one comes.
    let last_event = agent.log.recent(last_seq.saturating_sub(1), |_| true).pop();
    let (removable, fixed) = config.removal_delays();
    let url = config.url.clone();
    let mut sink = Sink {
        agent: agent.clone(),
        queue: EventQueue::new(config.queue_size, config.queue_max_bytes),
        naming,
        client,
        retainer,
        state_path,
        overflow: 0,
        clears: VecDeque::new(),
        outbox: VecDeque::new(),
        handed: VecDeque::new(),
        inflight: HashMap::new(),
        last_seq,
        last_event,
        removal: Removal::new(removable, fixed),
        connected: false,
        dirty: true,
    };
    status(&agent, SinkState::Connecting, Some(url.clone()));
    info!(url = %url, "MQTT sink starting");
    let mut reannounce_at: Option<Instant> = None;
    // The cancellation this loop follows is `streams_done`: it fires once the core has
    // published `agent.stopping` after the agent's token, so that last event still goes out.
    let done = agent.streams_done.clone();
    loop {
        let expiry = sink.next_expiry();
        // A discovery config held back (retained::CONFIG_GAP_MS) goes out when its gap ends.
        let held =
            sink.retainer.held_until_ms().map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
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
            // Objects added without an event (start-up facts) are announced too.
            changed = topology.changed() => {
                if changed.is_ok() {
                    sink.dirty = true;
                }
            }
            notice = notices.recv() => match notice {
                Some(Notice::ConnAck) => {
                    info!("MQTT connected");
                    agent.metrics.mqtt_connections.inc();
                    sink.connected = true;
                    status(&agent, SinkState::Connected, None);
                    if let Err(e) = sink.client.try_subscribe(sink.naming.ha_status(), QoS::AtLeastOnce) {
                        warn!(error = %e, "cannot subscribe to Home Assistant's status");
                    }
                    // Always: the acknowledge buttons need no action to be allowed.
                    if let Err(e) = sink.client.try_subscribe(sink.naming.commands(), QoS::AtLeastOnce) {
                        warn!(error = %e, "cannot subscribe to the command topics");
                    }
                    sink.retainer.forget_published();
                    sink.reconcile(true);
                    reannounce_at = None;
                }
                Some(Notice::Incoming { topic, payload, retain }) => {
                    if let Some((kind, id)) = sink.naming.parse_acknowledge(&topic) {
                        acknowledge(&agent, &actions, kind, id, &payload, retain);
                    } else if let Some((kind, id, action)) = sink.naming.parse_command(&topic) {
                        press(&actions, kind, id, action, &payload, retain);
                    } else if topic == sink.naming.ha_status() && payload.as_ref() == b"online" && reannounce_at.is_none() {
                        let delay = Duration::from_millis(rand::rng().random_range(REANNOUNCE_MIN_MS..REANNOUNCE_MAX_MS));
                        debug!(?delay, "Home Assistant is online: re-announcing soon");
                        reannounce_at = Some(Instant::now() + delay);
                    }
                }
                Some(Notice::Written(pkid)) => sink.written(pkid),
                Some(Notice::Acked(pkid)) => sink.acked(pkid),
                Some(Notice::Lost { error, delay, resume }) => {
                    if sink.connected {
                        warn!(error = %error, "MQTT connection lost");
                    } else {
                        debug!(error = %error, ?delay, "MQTT connect failed");
                    }
                    sink.lost();
                    let message = if sink.overflow > 0 {
                        format!("{error}; {} events dropped while the broker was away", sink.overflow)
                    } else {
                        error
                    };
                    status(&agent, SinkState::Disconnected, Some(message));
                    let _ = resume.send(());
                }
                Some(Notice::Disconnected) | None => break,
            },
            _ = sleep_until(reannounce_at) => {
                reannounce_at = None;
                if sink.connected {
                    sink.reconcile(true);
                }
            }
            _ = sleep_until(expiry) => sink.expire(),
            _ = sleep_until(held) => sink.dirty = true,
        }
        if sink.connected && sink.dirty {
            sink.reconcile(false);
        }
        sink.flush();
    }
    while let Ok(event) = events.try_recv() {
        sink.enqueue(event);
    }
    drain(&mut sink, &mut notices).await;
    driver.cancel();
    let _ = driver_task.await;
    status(&agent, SinkState::Disconnected, Some("stopped".into()));
}

/// Sends what is queued, then `offline` and a clean disconnect, within [`DRAIN`].
async fn drain(sink: &mut Sink, notices: &mut mpsc::Receiver<Notice>) {
    if !sink.connected {
        if !sink.queue.is_empty() {
            warn!(
                events = sink.queue.len(),
                bytes = sink.queue.bytes().0,
                "MQTT broker unreachable at shutdown: queued events not sent"
            );
        }
        return;
    }
    sink.reconcile(false);
    let deadline = Instant::now() + DRAIN;
    let mut said_goodbye = false;
    loop {
        sink.flush();
        if !said_goodbye && sink.queue.is_empty() && sink.outbox.is_empty() && sink.clears.is_empty() {
            let availability = sink.naming.availability();
            if sink.publish(&availability, "offline", true, InFlight::Retained) {
                let _ = sink.client.try_disconnect();
                said_goodbye = true;
            }
        }
        match tokio::time::timeout_at(deadline, notices.recv()).await {
            Ok(Some(Notice::Disconnected)) | Ok(None) => break,
            Ok(Some(Notice::Written(pkid))) => sink.written(pkid),
            Ok(Some(Notice::Acked(pkid))) => sink.acked(pkid),
            Ok(Some(Notice::Lost { error, .. })) => {
                debug!(error = %error, "MQTT drain ended");
                break;
            }
            Ok(Some(_)) => {}
            Err(_) => {
                warn!("MQTT drain timed out");
                break;
            }
        }
    }
    info!(overflow = sink.overflow, "MQTT sink stopped");
}

/// A publish on a command topic: a button press runs the action (a refusal is reported as
/// `action.failed`). Retained messages are ignored, so a stray retained `PRESS` cannot eject
/// a disk again at every reconnect; so are commands for another kind of object.
fn press(
    actions: &crate::actions::Actions,
    kind: &str,
    id: &str,
    action: crate::model::ActionKind,
    payload: &[u8],
    retain: bool,
) {
    if retain {
        warn!(kind, id, action = action.as_str(), "retained message on a command topic ignored (clear it)");
        return;
    }
    if kind != action.object() {
        warn!(kind, id, action = action.as_str(), "command topic not for this action's object: ignored");
        return;
    }
    if payload != b"PRESS" {
        warn!(kind, id, action = action.as_str(), "command payload is not PRESS: ignored");
        return;
    }
    let request = crate::actions::Request {
        kind: action,
        object_id: id.to_owned(),
        read_write: false,
        // The button runs the short test (a long one is asked for over HTTP).
        self_test: None,
        requester: crate::actions::Requester::Mqtt,
    };
    let actions = actions.clone();
    tokio::spawn(async move {
        let _ = actions.request_reporting(request).await;
    });
}

/// A press of an acknowledge button (SPEC §9: disks, mounts, arrays): the object's current
/// reasons are acknowledged. Retained messages and other payloads are ignored, as for the
/// action buttons.
fn acknowledge(agent: &Agent, actions: &crate::actions::Actions, kind: &str, id: &str, payload: &[u8], retain: bool) {
    let Some(kind) = crate::attention::Acknowledgeable::from_wire(kind).filter(|_| !retain && payload == b"PRESS")
    else {
        warn!(kind, id, retain, "acknowledge command ignored (retained, not PRESS, or not a disk, mount or array)");
        return;
    };
    let current = agent.state().attention_of(kind, id);
    let (actions, id) = (actions.clone(), id.to_owned());
    tokio::spawn(async move {
        match actions.acknowledge(kind, &id, current).await {
            Ok(done) => info!(subject = %done.subject, reasons = ?done.codes, "acknowledged from Home Assistant"),
            Err(e) => warn!(kind = kind.as_str(), id = %id, error = %e, "acknowledge from Home Assistant failed"),
        }
    });
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
