//! Mount forecasts as the state holds them: fields only, no event of their own (a forecast
//! that warns reaches the owner through the mount's attention).

use super::State;
use crate::model::Forecast;

impl State {
    /// Stores each mount's forecast; true when any changed (MQTT then republishes the state).
    pub(super) fn mount_forecasts(&mut self, forecasts: Vec<(String, Option<Forecast>)>) -> bool {
        let mut changed = false;
        for (id, forecast) in forecasts {
            if let Some(mount) = self.mounts.get_mut(&id) {
                if mount.forecast != forecast {
                    mount.forecast = forecast;
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Forecast;
    use crate::state::tests::{mount, state};
    use crate::state::Fact;

    #[test]
    fn forecasts_are_fields_kept_across_remounts() {
        let mut s = state();
        s.apply(
            Fact::Mounts { mounts: vec![mount("/mnt/data", "8:1", "rw")], initial: true },
            std::time::SystemTime::UNIX_EPOCH,
        );
        let f = Forecast {
            full_in_seconds: Some(86_400),
            low_seconds: Some(80_000),
            high_seconds: Some(90_000),
            basis_seconds: 7 * 86_400,
            bytes_per_day: 1_000_000,
        };
        let gen = s.topology_generation();
        let ev = s.apply(
            Fact::MountForecasts { forecasts: vec![("mnt_data".into(), Some(f.clone()))] },
            std::time::SystemTime::UNIX_EPOCH,
        );
        assert!(ev.is_empty());
        assert!(s.topology_generation() > gen);
        assert_eq!(s.mounts["mnt_data"].forecast.as_ref(), Some(&f));
        // The mount table re-read (same filesystem, options changed) keeps the derived forecast.
        let m = mount("/mnt/data", "8:1", "ro");
        s.apply(Fact::Mounts { mounts: vec![m], initial: false }, std::time::SystemTime::UNIX_EPOCH);
        assert_eq!(s.mounts["mnt_data"].forecast.as_ref(), Some(&f));
        // A different filesystem on the mount point starts without one.
        s.apply(
            Fact::Mounts { mounts: vec![mount("/mnt/data", "8:2", "rw")], initial: false },
            std::time::SystemTime::UNIX_EPOCH,
        );
        assert_eq!(s.mounts["mnt_data"].forecast, None);
        // An unknown mount is ignored; an unchanged forecast changes nothing.
        let gen = s.topology_generation();
        s.apply(
            Fact::MountForecasts { forecasts: vec![("nope".into(), Some(f)), ("mnt_data".into(), None)] },
            std::time::SystemTime::UNIX_EPOCH,
        );
        assert_eq!(s.topology_generation(), gen);
    }
}
