//! One file per stage. Stages not built yet fail the deployment honestly.

mod connecting;
mod creating_network;
mod initializing;

use oec_common::model::steps::Step;

use super::{Outcome, Run, StageError};

pub async fn run(step: Step, run: &mut Run) -> Result<Outcome, StageError> {
    match step {
        Step::Initializing => initializing::run(run).await,
        Step::Connecting => connecting::run(run).await,
        Step::CreatingNetwork => creating_network::run(run).await,
        other => Err(StageError::not_implemented(other)),
    }
}

/// The environment's Docker network: `paasportal_net_{uuid}`.
pub fn network_name(env: uuid::Uuid) -> String {
    format!("paasportal_net_{env}")
}
