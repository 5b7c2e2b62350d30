//! The action engine: unmount, eject, spin down and mount, on request of an HTTP client
//! (with the token) or of Home Assistant (an MQTT button). Off unless `[actions] enabled`
//! and the action is in `allow`.
//!
//! A request is checked at once (enabled, allowed, the object exists, nothing else running
//! on its disk) and answered with an action id; the work runs on a thread of its own in the
//! host's mount namespace, within `actions.timeout`; its outcome becomes an
//! `action.succeeded` / `action.failed` event through the core, like every other event. One
//! action at a time per disk (a mount's or partition's action locks its disk). Every request
//! and outcome is written to the log with who asked (target `diskwatch::audit`).
//!
//! - [`machine`]: the kernel's interfaces and the host mount namespace.
//! - [`holders`]: who keeps a mount busy.
//! - [`unmount`], [`eject`], [`spin`], [`mount`]: the operations.

pub mod acknowledge;
pub mod config;
pub mod eject;
pub mod holders;
pub mod machine;
pub mod mount;
pub mod siblings;
pub mod spin;
pub mod unmount;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::agent::StorageView;
use crate::model::{ActionKind, ActionRecord, Disk, Mount, Partition};
use crate::state::Fact;
pub use config::ActionsConfig;
use machine::{Failure, Machine, Progress};

/// Who asked for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requester {
    /// An HTTP client with the API token; the token's name (its file name).
    Token(String),
    /// A Home Assistant button (a publish on the command topic).
    Mqtt,
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requester::Token(name) => write!(f, "token:{name}"),
            Requester::Mqtt => f.write_str("mqtt"),
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: ActionKind,
    /// The id of the disk, mount or partition (by `kind`).
    pub object_id: String,
    /// For `mount`: read-write instead of read-only.
    pub read_write: bool,
    /// For `self_test`: which test (short when not said).
    pub self_test: Option<crate::model::selftest::SelfTestKind>,
    pub requester: Requester,
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("actions are disabled ([actions] enabled = false)")]
    Disabled,
    #[error("the action {0:?} is not in [actions] allow")]
    NotAllowed(&'static str),
    #[error("read-write mounts are not allowed ([actions] mount_read_write = false)")]
    ReadWriteNotAllowed,
    #[error("no {object} with id {id:?}")]
    NotFound { object: &'static str, id: String },
    #[error("action {running} is still running on this disk")]
    Busy { running: String },
}

impl Refusal {
    /// The reason code used in `action.failed` for a refused MQTT request.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Disabled | Refusal::NotAllowed(_) | Refusal::ReadWriteNotAllowed => "not_allowed",
            Refusal::NotFound { .. } => "not_found",
            Refusal::Busy { .. } => "busy_object",
        }
    }
}

/// The object an action works on, as the core knew it when the request came.
enum Target {
    Disk(Disk),
    Mount(Mount),
    Partition(Partition),
}

/// The engine; cheap to clone.
#[derive(Clone)]
pub struct Actions {
    inner: Arc<Inner>,
}

struct Inner {
    config: ActionsConfig,
    machine: Machine,
    facts: tokio::sync::mpsc::Sender<Fact>,
    storage: watch::Receiver<Arc<StorageView>>,
    /// Lock key (`disk/<id>` or the object) → the id of the action holding it.
    running: Mutex<HashMap<String, String>>,
    /// Action ids: `<start of this run in ms>-<n>`, unique across restarts.
    prefix: u64,
    next: AtomicU64,
    /// Where acknowledgements are kept (`state_dir/acknowledged.json`); None: memory only.
    ack_file: Option<std::path::PathBuf>,
    /// The self-test scheduler, which starts `self_test` actions (None: they fail).
    self_test: Option<crate::selftest::SelfTestHandle>,
}

impl Actions {
    pub fn new(
        config: ActionsConfig,
        machine: Machine,
        facts: tokio::sync::mpsc::Sender<Fact>,
        storage: watch::Receiver<Arc<StorageView>>,
    ) -> Self {
        let prefix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Self {
            inner: Arc::new(Inner {
                config,
                machine,
                facts,
                storage,
                running: Mutex::new(HashMap::new()),
                prefix,
                next: AtomicU64::new(1),
                ack_file: None,
                self_test: None,
            }),
        }
    }

    /// Keeps acknowledgements in this file (set right after [`Actions::new`], before cloning).
    pub fn with_ack_file(mut self, path: std::path::PathBuf) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.ack_file = Some(path);
        }
        self
    }

    /// Starts `self_test` actions through this scheduler (set right after [`Actions::new`]).
    pub fn with_self_test(mut self, handle: Option<crate::selftest::SelfTestHandle>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.self_test = handle;
        }
        self
    }

    pub fn config(&self) -> &ActionsConfig {
        &self.inner.config
    }

    /// Checks a request and starts it: its action id, or why not.
    pub fn request(&self, request: Request) -> Result<String, Refusal> {
        let inner = &self.inner;
        if !inner.config.enabled {
            return Err(Refusal::Disabled);
        }
        if !inner.config.allows(request.kind) {
            return Err(Refusal::NotAllowed(request.kind.as_str()));
        }
        if request.read_write && !inner.config.mount_read_write {
            return Err(Refusal::ReadWriteNotAllowed);
        }
        let (target, lock) = self.resolve(request.kind, &request.object_id)?;
        let id = format!("{}-{}", inner.prefix, inner.next.fetch_add(1, Ordering::Relaxed));
        {
            let mut running = inner.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = running.get(&lock) {
                return Err(Refusal::Busy { running: other.clone() });
            }
            running.insert(lock.clone(), id.clone());
        }
        info!(
            target: "diskwatch::audit",
            action_id = %id,
            action = request.kind.as_str(),
            object = %format!("{}/{}", request.kind.object(), request.object_id),
            requested_by = %request.requester,
            "action requested"
        );
        tokio::spawn(self.clone().execute(id.clone(), request, target, lock));
        Ok(id)
    }

    /// As [`Self::request`], but a refusal is also published as `action.failed` (for MQTT,
    /// where there is no one to answer).
    pub async fn request_reporting(&self, request: Request) -> Result<String, Refusal> {
        let kind = request.kind;
        let object = format!("{}/{}", kind.object(), request.object_id);
        let requested_by = request.requester.to_string();
        match self.request(request) {
            Ok(id) => Ok(id),
            Err(refusal) => {
                warn!(target: "diskwatch::audit", action = kind.as_str(), %object, %requested_by,
                    reason = refusal.reason(), "action refused: {refusal}");
                let record = ActionRecord {
                    id: String::new(),
                    action: kind,
                    object,
                    requested_by,
                    succeeded: false,
                    reason: Some(refusal.reason().to_owned()),
                    message: refusal.to_string(),
                    holders: Vec::new(),
                    unmounted: Vec::new(),
                    mount_point: None,
                    duration_ms: 0,
                    late: false,
                };
                let _ = self.inner.facts.send(Fact::ActionFinished(Box::new(record))).await;
                Err(refusal)
            }
        }
    }

    /// The object and the key of the lock it takes.
    fn resolve(&self, kind: ActionKind, id: &str) -> Result<(Target, String), Refusal> {
        let view = self.inner.storage.borrow().clone();
        let not_found = || Refusal::NotFound { object: kind.object(), id: id.to_owned() };
        match kind {
            ActionKind::Eject | ActionKind::SpinDown | ActionKind::SelfTest => {
                let disk = view.disks.iter().find(|d| d.id == id).ok_or_else(not_found)?;
                Ok((Target::Disk(disk.clone()), format!("disk/{}", disk.id)))
            }
            ActionKind::Unmount => {
                let mount = view.mounts.iter().find(|m| m.id == id).ok_or_else(not_found)?;
                let lock = match &mount.disk_id {
                    Some(disk) => format!("disk/{disk}"),
                    None => format!("mount/{}", mount.id),
                };
                Ok((Target::Mount(mount.clone()), lock))
            }
            ActionKind::Mount => {
                let partition = view.partitions.iter().find(|p| p.id == id).ok_or_else(not_found)?;
                Ok((Target::Partition(partition.clone()), format!("disk/{}", partition.disk_id)))
            }
        }
    }

    async fn execute(self, id: String, request: Request, target: Target, lock: String) {
        let started = Instant::now();
        if request.kind == ActionKind::SelfTest {
            return self.execute_self_test(id, request, lock, started).await;
        }
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        let thread_id = id.clone();
        let thread_request = request.clone();
        let spawned = std::thread::Builder::new().name(format!("action-{}", request.kind.as_str())).spawn(move || {
            let request = thread_request;
            let mut progress = Progress::default();
            let result = inner.machine.enter_host_mounts().and_then(|()| {
                let root = &inner.config.mount_root;
                match &target {
                    Target::Mount(m) => unmount::unmount(&inner.machine, m, root, &mut progress),
                    Target::Disk(d) if request.kind == ActionKind::Eject => {
                        eject::eject(&inner.machine, d, root, &mut progress)
                    }
                    Target::Disk(d) => spin::spin_down(&inner.machine, d),
                    Target::Partition(p) => mount::mount(&inner.machine, p, root, request.read_write, &mut progress),
                }
            });
            // The disk is free again only now, even when the caller stopped waiting.
            inner.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&lock);
            if let Err((result, progress)) = tx.send((result, progress)) {
                // Reported failed with reason `timeout` already: what it finally did is news
                // too (Home Assistant would go on showing a failure that did not happen).
                let mut record = outcome_record(&thread_id, &request, result, progress, started);
                record.late = true;
                record.message = format!("completed late, after it was reported as timed out: {}", record.message);
                audit(&record);
                let _ = inner.facts.blocking_send(Fact::ActionFinished(Box::new(record)));
            }
        });
        let outcome = match spawned {
            Err(e) => Err(Failure::new("error", format!("cannot start the action's thread: {e}"))),
            Ok(_) => match tokio::time::timeout(self.inner.config.timeout, rx).await {
                Ok(Ok((result, progress))) => {
                    let record = outcome_record(&id, &request, result, progress, started);
                    audit(&record);
                    let _ = self.inner.facts.send(Fact::ActionFinished(Box::new(record))).await;
                    return;
                }
                Ok(Err(_)) => Err(Failure::new("error", "the action's thread ended without an answer")),
                Err(_) => Err(Failure::new(
                    "timeout",
                    format!(
                        "no outcome within {} (actions.timeout); the disk stays locked until the kernel call \
                         returns, and its outcome is reported then",
                        humantime::format_duration(self.inner.config.timeout)
                    ),
                )),
            },
        };
        let record = outcome_record(&id, &request, outcome, Progress::default(), started);
        audit(&record);
        let _ = self.inner.facts.send(Fact::ActionFinished(Box::new(record))).await;
    }
}

impl Actions {
    /// A `self_test` action: the scheduler starts the test now, within the same rules as a
    /// scheduled one (awake, one per array, `max_parallel`); its answer is the outcome.
    async fn execute_self_test(self, id: String, request: Request, lock: String, started: Instant) {
        let kind = request.self_test.unwrap_or(crate::model::selftest::SelfTestKind::Short);
        let result = match &self.inner.self_test {
            None => Err(Failure::new("not_allowed", "self-tests need the health source ([health] enabled)")),
            Some(handle) => {
                let asked = handle.request(&request.object_id, kind, request.requester.to_string());
                match tokio::time::timeout(self.inner.config.timeout, asked).await {
                    Ok(Ok(message)) => Ok(message),
                    Ok(Err((reason, message))) => Err(Failure::new(reason, message)),
                    Err(_) => Err(Failure::new("timeout", "the self-test scheduler did not answer in time")),
                }
            }
        };
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&lock);
        let record = outcome_record(&id, &request, result, Progress::default(), started);
        audit(&record);
        let _ = self.inner.facts.send(Fact::ActionFinished(Box::new(record))).await;
    }
}

/// The outcome event's record of one action.
fn outcome_record(
    id: &str,
    request: &Request,
    result: Result<String, Failure>,
    progress: Progress,
    started: Instant,
) -> ActionRecord {
    let (succeeded, message, failure) = match result {
        Ok(message) => (true, message, None),
        Err(failure) => (false, failure.message.clone(), Some(failure)),
    };
    ActionRecord {
        id: id.to_owned(),
        action: request.kind,
        object: format!("{}/{}", request.kind.object(), request.object_id),
        requested_by: request.requester.to_string(),
        succeeded,
        reason: failure.as_ref().map(|f| f.reason.to_owned()),
        message,
        holders: failure.map(|f| f.holders).unwrap_or_default(),
        unmounted: progress.unmounted,
        mount_point: progress.mount_point,
        duration_ms: started.elapsed().as_millis() as u64,
        late: false,
    }
}

/// The audit log line of an outcome.
fn audit(record: &ActionRecord) {
    if record.succeeded {
        info!(target: "diskwatch::audit", action_id = %record.id, object = %record.object,
            requested_by = %record.requested_by, duration_ms = record.duration_ms, late = record.late,
            "action succeeded: {}", record.message);
    } else {
        warn!(target: "diskwatch::audit", action_id = %record.id, object = %record.object,
            requested_by = %record.requested_by, reason = record.reason.as_deref().unwrap_or(""),
            duration_ms = record.duration_ms, late = record.late, "action failed: {}", record.message);
    }
}

/// Capabilities (bit, name) the allowed actions need: mount/umount/BLKFLSBUF/LOOP_CLR_FD and
/// entering PID 1's mount namespace (CAP_SYS_ADMIN, CAP_SYS_CHROOT), seeing other processes'
/// files and PID 1's namespace (CAP_SYS_PTRACE), ATA commands through SG_IO (CAP_SYS_RAWIO).
pub fn needed_capabilities(config: &ActionsConfig) -> Vec<(u32, &'static str)> {
    let mut caps = vec![(21, "CAP_SYS_ADMIN"), (18, "CAP_SYS_CHROOT"), (19, "CAP_SYS_PTRACE")];
    if config.allows(ActionKind::SpinDown) {
        caps.push((17, "CAP_SYS_RAWIO"));
    }
    caps
}

/// The needed capabilities this process lacks (from `CapEff` in `/proc/self/status`).
pub fn missing_capabilities(config: &ActionsConfig) -> Vec<&'static str> {
    let effective = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_owned())))
        .and_then(|hex| u64::from_str_radix(&hex, 16).ok())
        .unwrap_or(0);
    needed_capabilities(config).into_iter().filter(|(bit, _)| effective & (1u64 << bit) == 0).map(|(_, n)| n).collect()
}

/// Says at start-up which actions are on, and warns when the process lacks what they need
/// (the unit's drop-in `actions.conf` grants it).
pub fn report_capabilities(config: &ActionsConfig) {
    let allowed: Vec<&str> = config.allowed().iter().map(|k| k.as_str()).collect();
    info!(target: "diskwatch::audit", allowed = ?allowed, mount_root = %config.mount_root.display(), "actions enabled");
    let missing = missing_capabilities(config);
    if !missing.is_empty() {
        warn!(missing = ?missing, "actions are enabled but this process lacks capabilities they need: they will fail \
            with reason \"permission\" (under systemd, install the drop-in diskwatch.service.d/actions.conf)");
    }
}
