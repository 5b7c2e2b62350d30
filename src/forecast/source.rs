//! The forecast source's task: samples the used space of every mount in the core's storage
//! view a few times per `[forecast] resolution`, and each time a point closes sends every
//! mount's forecast as one [`Fact::MountForecasts`]. The points are loaded from and saved to
//! `state_dir/forecast.json` (every 15 minutes and at shutdown).

use std::path::PathBuf;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};
use tracing::{debug, info, instrument, warn};

use super::predict::forecast;
use super::series::Series;
use super::{ForecastConfig, FILE, NAME};
use crate::history::unix_now;
use crate::model::{Forecast, Mount};
use crate::sources::{Source, SourceContext, SourceFuture};
use crate::state::Fact;

/// How often the points are written to state_dir.
const SAVE_EVERY: Duration = Duration::from_secs(15 * 60);

/// The forecast source.
pub struct ForecastSource {
    config: ForecastConfig,
    /// `state_dir/forecast.json`; `None` keeps the points in memory only.
    file: Option<PathBuf>,
}

impl ForecastSource {
    pub fn new(config: ForecastConfig, state_dir: Option<PathBuf>) -> Self {
        ForecastSource { config, file: state_dir.map(|d| d.join(FILE)) }
    }
}

impl Source for ForecastSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(self: Box<Self>, ctx: SourceContext) -> SourceFuture {
        Box::pin(run(self.config, self.file, ctx))
    }
}

/// Every mount's forecast from `series` at `now` (mounts without usage get `None`).
pub fn forecasts(series: &Series, mounts: &[Mount], now: u64, min_basis_s: u64) -> Vec<(String, Option<Forecast>)> {
    mounts
        .iter()
        .map(|m| {
            let f = series.points(&m.id).and_then(|(pts, total)| forecast(&pts, total, now, min_basis_s));
            (m.id.clone(), f)
        })
        .collect()
}

#[instrument(name = "forecast", skip_all)]
async fn run(config: ForecastConfig, file: Option<PathBuf>, ctx: SourceContext) {
    let resolution = config.resolution.as_secs().max(1);
    let window = config.window.as_secs();
    let mut series = load(file.clone(), resolution, window).await;
    if !ctx.ready(NAME).await {
        return;
    }
    info!(resolution = ?config.resolution, min_basis = ?config.min_basis, "forecast source started");
    let mut sample = interval(config.sample_every());
    sample.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut save = interval(SAVE_EVERY);
    save.set_missed_tick_behavior(MissedTickBehavior::Delay);
    save.tick().await;
    let mut last: Vec<(String, Option<Forecast>)> = Vec::new();
    loop {
        tokio::select! {
            _ = ctx.token.cancelled() => break,
            _ = save.tick() => save_now(&series, &file).await,
            _ = sample.tick() => {
                let view = ctx.storage.borrow().clone();
                let now = unix_now();
                let s = &mut series;
                let mut closed = false;
                for m in &view.mounts {
                    if let (Some(u), false) = (&m.usage, m.stale) {
                        closed |= s.add(&m.id, now, u.used_bytes, u.total_bytes);
                    }
                }
                if !closed {
                    continue;
                }
                s.expire(now);
                let next = forecasts(s, &view.mounts, now, config.min_basis.as_secs());
                if next != last {
                    debug!(mounts = next.len(), "forecasts");
                    if ctx.facts.send(Fact::MountForecasts { forecasts: next.clone() }).await.is_err() {
                        break;
                    }
                    last = next;
                }
            }
        }
    }
    save_now(&series, &file).await;
}

async fn load(file: Option<PathBuf>, resolution: u64, window: u64) -> Series {
    let Some(path) = file else { return Series::new(resolution, window) };
    let shown = path.clone();
    match tokio::task::spawn_blocking(move || Series::load(&path, resolution, window)).await {
        Ok(Ok(Some(s))) => {
            info!(path = %shown.display(), mounts = s.mounts.len(), "forecast history loaded");
            s
        }
        Ok(Ok(None)) => Series::new(resolution, window),
        Ok(Err(e)) => {
            warn!(path = %shown.display(), error = %e, "forecast history not loaded: starting empty");
            Series::new(resolution, window)
        }
        Err(e) => {
            warn!(error = %e, "forecast history load task failed: starting empty");
            Series::new(resolution, window)
        }
    }
}

async fn save_now(series: &Series, file: &Option<PathBuf>) {
    let Some(path) = file.clone() else { return };
    let snapshot = series.clone();
    match tokio::task::spawn_blocking(move || snapshot.save(&path)).await {
        Ok(Ok(())) => debug!("forecast history saved"),
        Ok(Err(e)) => warn!(error = %e, "cannot save forecast history"),
        Err(e) => warn!(error = %e, "forecast history save task failed"),
    }
}
