//! Time to full for every mount (SPEC §9): a robust trend over days of usage history, not the
//! last hour, so a burst or a cleanup does not make a false alarm.
//!
//! - [`trend`]: Theil–Sen with Sen's confidence interval (pure).
//! - [`predict`]: the rules turning a usage series into a `Forecast` (pure).
//! - [`series`]: per-mount usage points, kept for `[forecast] window` and saved to state_dir.
//! - [`source`]: the task: samples the core's mounts, sends `Fact::MountForecasts`.
//! - [`config`]: the `[forecast]` section.

pub mod config;
pub mod predict;
pub mod series;
pub mod source;
pub mod trend;

pub use config::ForecastConfig;
pub use source::ForecastSource;

/// Source name in health and `source.*` events.
pub const NAME: &str = "forecast";

/// The file under state_dir.
pub const FILE: &str = "forecast.json";
