//! Acknowledging an object's attention reasons (SPEC §9), on request of HTTP or MQTT: the
//! current reasons (code and value) are recorded in `state_dir` and sent to the core as
//! [`Fact::Acknowledge`]. Not an action on the hardware: it needs no `[actions]` permission.
//! Disks, mounts and arrays alike: the caller hands in the object's verdict as the state holds
//! it ([`crate::state::State::attention_of`]).

use super::Actions;
use crate::attention::{acknowledge_all, store, Acknowledgeable};
use crate::model::attention::Attention;
use crate::state::Fact;

/// Why an acknowledgement was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error("no {} {id}", kind.as_str())]
    NotFound { kind: Acknowledgeable, id: String },
    #[error("{} {id} has no attention verdict yet (nothing was read of it)", kind.as_str())]
    NotAssessed { kind: Acknowledgeable, id: String },
    #[error("cannot record the acknowledgement in {path}: {source}")]
    Store { path: String, source: std::io::Error },
    #[error("the agent is shutting down")]
    Closed,
}

/// What was acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledged {
    /// `disk/<id>`, `mount/<id>` or `array/<id>`.
    pub subject: String,
    /// The reason codes now acknowledged (at their current values).
    pub codes: Vec<String>,
}

impl Actions {
    /// Acknowledges every current reason of object `id` of `kind`, whose verdict is `current`
    /// (`None`: no such object; `Some(None)`: not assessed yet).
    pub async fn acknowledge(
        &self,
        kind: Acknowledgeable,
        id: &str,
        current: Option<Option<Attention>>,
    ) -> Result<Acknowledged, AckError> {
        let attention = current
            .ok_or_else(|| AckError::NotFound { kind, id: id.to_owned() })?
            .ok_or_else(|| AckError::NotAssessed { kind, id: id.to_owned() })?;
        let acks = acknowledge_all(&attention);
        let subject = kind.subject(id);
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
