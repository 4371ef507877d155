//! creating_network: the environment's isolated bridge network
//! `paasportal_net_{uuid}`, reused when it exists. Fatal.

use std::time::Instant;

use bollard::models::NetworkCreateRequest;

use crate::names::network;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let name = network(s.ctx.environment_id);
    s.log.info(&format!("Creating network {name}..."));
    let docker = s.target.docker();
    if docker
        .inspect_network(
            &name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
    {
        let message = format!("Network exists, reusing ({})", secs(t0));
        s.log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    let request = NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(
            [(
                "oec.environment".to_owned(),
                s.ctx.environment_id.to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    if let Err(e) = docker.create_network(request).await {
        // Another deployment may have created it in the meantime.
        if docker
            .inspect_network(
                &name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_err()
        {
            return Err(StageError::new(format!(
                "Failed to create network {name}: {e}"
            )));
        }
    }
    let message = format!("Network created ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}
