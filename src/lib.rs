//! diskwatch: a storage-device monitoring agent for NAS boxes and Home Assistant hosts.
//!
//! Layout (SPEC §1): sources observe the machine and send [`state::Fact`]s
//! over a channel; the [`core`] loop is the only writer of the
//! [`state::State`], which turns facts into CloudEvents; every event is
//! appended to the [`events::log::EventLog`] (ring + journal) and fanned out
//! to the sinks: the [`http`] API with SSE, and MQTT.
//!
//! - [`config`]: layered configuration (defaults, file, env, flags).
//! - [`model`]: disks, partitions, mounts, shares, snapshots.
//! - [`state`]: the pure state model.
//! - [`events`]: CloudEvents, the type catalogue, ring and journal.
//! - [`agent`]: the handle the core and sinks share (state, log, metrics, typed watches).
//! - [`fsutil`]: crash-safe replacement of state files.
//! - [`core`]: the loop that applies facts and publishes events.
//! - [`service`]: starts everything in order (core, HTTP, sources, MQTT, readiness).
//! - [`http`]: REST, SSE, metrics and OpenAPI with axum.
//! - [`sources`]: what a source gets to work with.
//! - [`udev`]: the block-device source (netlink, sysfs, blkid).
//! - [`mounts`]: the mount-table source with usage sampling.
//! - [`shares`]: the Samba and NFS share source.
//! - [`actions`]: unmount, eject, spin down and mount on request (off by default).
//! - [`health`]: SMART, temperature and power state without waking disks.
//! - [`smartctl`]: running and reading smartctl (version, `-n` form, JSON), for health and udev.
//! - [`selftest`]: scheduled SMART self-tests that never wake a disk.
//! - [`attention`]: the attention verdict: a pure rule table over an object (SPEC §9).
//! - [`activity`]: I/O rates and idle time from `/sys/block/*/stat`.
//! - [`history`]: per-object series of usage, temperature and I/O, persisted.
//! - [`forecast`]: time to full of every mount, from a robust trend over days.
//! - [`arrays`]: the md RAID, multi-device btrfs and ZFS source.
//! - [`mqtt`]: the MQTT sink with Home Assistant discovery.
//! - [`client`]: the CLI's client of a running agent (`snapshot`, `events`).
//! - [`systemd`]: readiness, watchdog and status notifications.
//! - [`node`]: the node id (configured, remembered, or from the machine id).

pub mod actions;
pub mod activity;
pub mod agent;
pub mod arrays;
pub mod attention;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod events;
pub mod forecast;
pub mod fsutil;
pub mod health;
pub mod heap;
pub mod history;
pub mod http;
pub mod metrics;
pub mod model;
pub mod mounts;
pub mod mqtt;
pub mod node;
pub mod secret;
pub mod selftest;
pub mod service;
pub mod shares;
pub mod smartctl;
pub mod sources;
pub mod state;
pub mod systemd;
pub mod text;
pub mod udev;
pub mod wake;

pub use crate::agent::Agent;
pub use crate::service::{run, start, RunOptions, Running};
