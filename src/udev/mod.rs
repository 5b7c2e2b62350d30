//! The block-device source: coldplug from sysfs, then hot-plug from the
//! kernel's uevents (kernel mode) or systemd-udevd's (udev mode).
//!
//! - [`uevent`]: parsing netlink messages and uevent files.
//! - [`netlink`]: the raw kernel uevent socket; [`udevd`]: the udevd monitor and database.
//! - [`sysfs`]: reading devices; [`probe`]: libblkid; [`describe`], [`identity`]: the model objects and ids.
//! - [`tracker`]: devpath → id memory, events → facts; [`coalesce`]: change storms; [`watch`]: inotify on nodes;
//!   [`parallel`]: probing several devices at once.

pub mod coalesce;
pub mod config;
pub mod describe;
pub mod error;
pub mod identity;
pub mod netlink;
pub mod parallel;
pub mod probe;
pub mod sleep;
pub mod sysfs;
pub mod tables;
pub mod tracker;
pub mod udevd;
pub mod uevent;
pub mod watch;

mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::sources::{Source, SourceContext, SourceFuture};
use config::{UdevConfig, UdevMode};

pub use error::UdevError;

/// Counters of the running source, for health checks and tests.
#[derive(Debug, Default)]
pub struct UdevStats {
    /// Re-enumerations after the event socket overflowed.
    pub resyncs: AtomicU64,
    /// Block-device events received.
    pub events: AtomicU64,
    /// Devices reported after the last coldplug or resync, or event.
    pub devices: AtomicU64,
    /// Microseconds the coldplug enumeration took.
    pub coldplug_micros: AtomicU64,
    /// 1 kernel, 2 udev, 0 not started yet.
    pub mode: AtomicU64,
    /// Set once the coldplug fact is on its way to the core: later events are hot-plug.
    pub ready: AtomicBool,
}

impl UdevStats {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// The mode in force once the source has started.
    pub fn mode(&self) -> Option<UdevMode> {
        match self.mode.load(Ordering::Relaxed) {
            1 => Some(UdevMode::Kernel),
            2 => Some(UdevMode::Udev),
            _ => None,
        }
    }
}

/// The `udev` source.
pub struct UdevSource {
    config: UdevConfig,
    stats: Arc<UdevStats>,
    sleep: SleepSetup,
}

/// The probe cache's file name in the state directory.
pub const PROBE_CACHE_FILE: &str = "probe-cache.json";

/// What kernel mode needs to leave sleeping disks alone (the `sleep` module).
#[derive(Debug, Clone, Default)]
pub struct SleepSetup {
    /// smartctl, for CHECK POWER MODE before probing a spinning disk; None: runtime PM only.
    pub smartctl: Option<std::path::PathBuf>,
    /// The disks smartctl may be sent to (the health source's include/exclude); None: all.
    pub smartctl_disks: Option<crate::text::KernelNameFilter>,
    /// smartctl's `-d` type (the health source's `device_type`); None: autodetection.
    pub smartctl_device_type: Option<String>,
    /// The smartctl helper's socket (the health source's `smartctl_socket`); None: run smartctl.
    pub smartctl_socket: Option<std::path::PathBuf>,
    /// Where probe results are kept across restarts; None: in memory only.
    pub cache: Option<std::path::PathBuf>,
}

impl UdevSource {
    pub fn new(config: UdevConfig) -> Self {
        Self { config, stats: Arc::default(), sleep: SleepSetup::default() }
    }

    /// Kernel mode: ask disks' power state before probing them, keep probe results here.
    pub fn sleep_aware(mut self, sleep: SleepSetup) -> Self {
        self.sleep = sleep;
        self
    }

    /// The source's counters (shared with the running task).
    pub fn stats(&self) -> Arc<UdevStats> {
        self.stats.clone()
    }
}

impl Source for UdevSource {
    fn name(&self) -> &'static str {
        "udev"
    }

    fn required(&self) -> bool {
        true
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(task::run_on_own_thread(self.config, self.stats, self.sleep, ctx))
    }
}

/// The mode `auto` resolves to: udev when udevd runs.
pub fn resolve_mode(mode: UdevMode) -> UdevMode {
    match mode {
        UdevMode::Auto if udevd::udevd_running() => UdevMode::Udev,
        UdevMode::Auto => UdevMode::Kernel,
        m => m,
    }
}
