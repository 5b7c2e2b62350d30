//! Facts: what sources tell the core. A fact says what a source sees now;
//! the state model decides which events that makes.

use crate::model::array::Array;
use crate::model::{ActionRecord, Disk, DiskIo, Forecast, Health, Mount, Partition, PowerState, Share, Usage};

/// One observation sent by a source to the core.
#[derive(Debug, Clone)]
pub enum Fact {
    /// The complete set of block devices (coldplug, or re-enumeration after a
    /// netlink overflow). Objects missing from it are removed. With
    /// `initial`, additions are silent unless `emit_initial` is configured.
    BlockDevices { disks: Vec<Disk>, partitions: Vec<Partition>, initial: bool },
    /// A disk appeared or its properties changed.
    DiskUpsert(Disk),
    /// A disk disappeared (its partitions go with it).
    DiskRemoved { id: String },
    /// A partition appeared or its properties changed.
    PartitionUpsert(Partition),
    /// A partition disappeared.
    PartitionRemoved { id: String },
    /// The complete mount table after a re-read (already filtered).
    Mounts { mounts: Vec<Mount>, initial: bool },
    /// Changes to the mount table since the last `Mounts`/`MountsChanged`: new or changed
    /// mounts, and ids that are gone. Cheaper than a whole table for large tables.
    MountsChanged { upserts: Vec<Mount>, removed: Vec<String> },
    /// A usage sample for one mount: `usage` is `None` and `stale` true when the query timed out.
    MountUsage { id: String, usage: Option<Usage>, stale: bool },
    /// What the health source knows of a disk after a poll: its power state, its last SMART
    /// health (kept while the disk sleeps) and why it is not fresh.
    DiskHealth { id: String, power_state: PowerState, health: Option<Health>, note: Option<String> },
    /// A disk's sleep record (the wake source); `woken` is set when this fact reports a wake,
    /// which makes a `disk.woken` event.
    DiskSleep { id: String, sleep: Box<crate::model::sleep::Sleep>, woken: bool },
    /// A disk's self-test record (the self-test source); `news` makes
    /// `disk.self_test_started` / `disk.self_test_finished`.
    DiskSelfTest {
        id: String,
        self_test: Option<Box<crate::model::selftest::SelfTest>>,
        news: Option<crate::model::selftest::SelfTestNews>,
    },
    /// Time-to-full forecasts of mounts, from the forecast source (no event; fields only).
    MountForecasts { forecasts: Vec<(String, Option<Forecast>)> },
    /// I/O activity samples of disks (no event; fields only).
    DiskIo { samples: Vec<(String, DiskIo)> },
    /// The complete share set after a re-parse.
    Shares { shares: Vec<Share>, initial: bool },
    /// The complete set of arrays (md, btrfs, ZFS) after a re-read. Arrays missing from it
    /// are removed. With `initial`, additions are silent unless `emit_initial` is configured.
    Arrays { arrays: Vec<Array>, initial: bool },
    /// A source is up (registers it in health; no event).
    SourceRunning { source: String, required: bool },
    /// A source has sent its start-up facts (coldplug done): readiness waits for every source's.
    SourceReady { source: String },
    /// A source failed; the last good state it reported is kept.
    SourceFailed { source: String, message: String },
    /// A failed source works again.
    SourceRecovered { source: String },
    /// The agent has started (after coldplug).
    AgentStarted { version: String },
    /// The agent is shutting down.
    AgentStopping { reason: String },
    /// An action finished, was refused or timed out (the action engine, not a source).
    ActionFinished(Box<ActionRecord>),
    /// The owner acknowledged these reasons of an object (`disk/<id>`, `mount/<id>`,
    /// `array/<id>`): code → the value acknowledged. Replaces that object's acknowledgements.
    Acknowledge { subject: String, acks: crate::attention::Acks },
}
