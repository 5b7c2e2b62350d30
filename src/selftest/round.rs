//! One scheduling round over the disks, shared by the task and the bench: read the logs that
//! are wanted, start what the [`Engine`] plans, and say what is news. The drives are behind
//! [`Drives`] (smartctl in the agent, simulated drives replaying real logs in the bench), the
//! time is an argument.

use std::time::SystemTime;

use tracing::{debug, info, warn};

use super::engine::{Change, DiskView, Engine};
use crate::model::selftest::{SelfTestKind, SelfTestNews};
use crate::smartctl::selftest::{LogAnswer, StartAnswer};

/// A disk the scheduler may test: its view and its device node.
#[derive(Debug, Clone)]
pub struct Target {
    pub view: DiskView,
    pub devnode: String,
}

/// How the scheduler reaches the drives: every call carries the power check unless `wake`.
// Used with concrete types only (the agent's smartctl, the bench's simulation): no `dyn`, so
// the futures' auto traits follow from the implementation.
#[allow(async_fn_in_trait)]
pub trait Drives {
    async fn log(&self, disk: &str, devnode: &str) -> Result<LogAnswer, String>;
    async fn start(&self, disk: &str, devnode: &str, kind: SelfTestKind, wake: bool) -> Result<StartAnswer, String>;
}

/// Reads the logs that are wanted (`all`: running tests too, else only first reads); returns
/// the disks whose test ended, with the result.
pub async fn read_logs<D: Drives>(
    engine: &mut Engine,
    drives: &D,
    targets: &[Target],
    all: bool,
    now: SystemTime,
) -> Vec<(String, SelfTestNews)> {
    let mut news = Vec::new();
    for t in targets {
        let id = &t.view.id;
        let first = engine.tracks.get(id).is_some_and(|tr| !tr.log_read);
        if !engine.wants_log(&t.view) || !(all || first) {
            continue;
        }
        match drives.log(id, &t.devnode).await {
            Ok(LogAnswer::Log(log)) => {
                if let Change::Finished(last) = engine.observe(id, &log, now) {
                    info!(disk = %id, kind = last.kind.as_str(), result = last.result.as_str(),
                        lba = ?last.lba_first_error, "self-test finished");
                    news.push((id.clone(), SelfTestNews::Finished(last)));
                }
            }
            // Asleep since: a running test is read again once the disk is awake.
            Ok(LogAnswer::LowPower(_)) => {}
            Ok(LogAnswer::Unsupported(why)) => {
                debug!(disk = %id, reason = %why, "no self-tests on this device");
                engine.unsupported(id, why);
            }
            Ok(LogAnswer::Error(why)) => warn!(disk = %id, error = %why, "self-test log not understood"),
            Err(e) => debug!(disk = %id, error = %e, "self-test log not read"),
        }
    }
    news
}

/// Starts one test: the news, or a reason code and why not.
pub async fn start<D: Drives>(
    engine: &mut Engine,
    drives: &D,
    t: &Target,
    kind: SelfTestKind,
    wake: bool,
    by: &str,
    now: SystemTime,
) -> Result<SelfTestNews, (&'static str, String)> {
    let id = &t.view.id;
    match drives.start(id, &t.devnode, kind, wake).await {
        Ok(StartAnswer::Started) => {
            engine.started(id, kind, now);
            info!(disk = %id, kind = kind.as_str(), by, woke = wake, "self-test started");
            Ok(SelfTestNews::Started { kind, by: by.to_owned(), woke: wake })
        }
        Ok(StartAnswer::LowPower(p)) => {
            Err(("asleep", format!("{} is in {}: a self-test never wakes a disk", t.devnode, p.as_str())))
        }
        Ok(StartAnswer::Refused(why)) => {
            engine.refused(id, now);
            warn!(disk = %id, kind = kind.as_str(), reason = %why, "self-test not started");
            Err(("refused", why))
        }
        Err(e) => {
            engine.refused(id, now);
            Err(("error", e))
        }
    }
}

/// One round: follow the disks, read logs, start what is due. Returns the news by disk.
pub async fn round<D: Drives>(
    engine: &mut Engine,
    drives: &D,
    targets: &[Target],
    all: bool,
    now: SystemTime,
) -> Vec<(String, SelfTestNews)> {
    let views: Vec<DiskView> = targets.iter().map(|t| t.view.clone()).collect();
    engine.set_disks(&views, now);
    let mut news = read_logs(engine, drives, targets, all, now).await;
    let starts: Vec<(String, SelfTestKind, bool)> =
        engine.plan(&views, now).into_iter().map(|s| (s.id.to_owned(), s.kind, s.wake)).collect();
    for (id, kind, wake) in starts {
        let Some(t) = targets.iter().find(|t| t.view.id == id) else { continue };
        if let Ok(n) = start(engine, drives, t, kind, wake, "schedule", now).await {
            news.push((id, n));
        }
    }
    news
}

/// A start on request: the same rules as a scheduled one, the power check always.
pub async fn request<D: Drives>(
    engine: &mut Engine,
    drives: &D,
    targets: &[Target],
    disk: &str,
    kind: SelfTestKind,
    by: &str,
    now: SystemTime,
) -> Result<SelfTestNews, (&'static str, String)> {
    let views: Vec<DiskView> = targets.iter().map(|t| t.view.clone()).collect();
    engine.set_disks(&views, now);
    let Some(t) = targets.iter().find(|t| t.view.id == disk) else {
        return Err(("not_found", format!("no disk {disk:?} is watched by the health source")));
    };
    engine.may_start(&t.view, &views).map_err(|r| (r.reason(), r.to_string()))?;
    start(engine, drives, t, kind, false, by, now).await
}
