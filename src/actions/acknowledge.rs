//! Acknowledging an object's attention reasons (SPEC §9), on request of HTTP or MQTT: the
//! current reasons (code and value) are recorded in `state_dir` and sent to the core as
//! [`Fact::Acknowledge`]. Not an action on the hardware: it needs no `[actions]` permission.

use super::Actions;
use crate::attention::{acknowledge_all, store};
use crate::state::Fact;

/// Why an acknowledgement was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no disk {0}")]
    NotFound(String),
    #[error("disk {0} has no attention verdict yet (nothing was read of it)")]
    NotAssessed(String),
    #[error("cannot record the acknowledgement in {path}: {source}")]
    Store { path: String, source: std::io::Error },
    #[error("the agent is shutting down")]
    Closed,
}

/// What was acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledged {
    /// `disk/<id>`.
    pub subject: String,
    /// The reason codes now acknowledged (at their current values).
    pub codes: Vec<String>,
}

impl Actions {
    /// Acknowledges every current reason of disk `id`.
    pub async fn acknowledge_disk(&self, id: &str) -> Result<Acknowledged, AckError> {
        let attention = {
            let view = self.inner.storage.borrow();
            let disk = view.disks.iter().find(|d| d.id == id).ok_or_else(|| AckError::NotFound(id.to_owned()))?;
            disk.attention.clone().ok_or_else(|| AckError::NotAssessed(id.to_owned()))?
        };
        let acks = acknowledge_all(&attention);
        let subject = format!("disk/{id}");
        if let Some(path) = &self.inner.ack_file {
            let path = path.clone();
            let (s, a) = (subject.clone(), acks.clone());
            tokio::task::spawn_blocking(move || store::record(&path, &s, &a).map_err(|e| (path, e)))
                .await
                .map_err(|_| AckError::Closed)?
                .map_err(|(path, source)| AckError::Store { path: path.display().to_string(), source })?;
        }
        let codes = acks.keys().cloned().collect();
        self.inner
            .facts
            .send(Fact::Acknowledge { subject: subject.clone(), acks })
            .await
            .map_err(|_| AckError::Closed)?;
        Ok(Acknowledged { subject, codes })
    }
}
