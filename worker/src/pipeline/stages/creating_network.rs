//! creating_network: the environment's isolated bridge network
//! `paasportal_net_{uuid}`, reused when it exists, and the server's proxy:
//! created, replaced or started when it is missing, changed or stopped
//! (`proxy::ensure`, logged here). Our proxy is on the host's network and
//! reaches the environment's network as it is; a Traefik of the server's own
//! is attached to it. Fatal.

use std::time::Instant;

use bollard::models::NetworkCreateRequest;

use crate::names::network;
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::proxy;

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
        edge(s, &name).await?;
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
    edge(s, &name).await?;
    Ok(Outcome::Completed(message))
}

/// The server's proxy, running with the configured spec, and able to reach
/// the environment's network.
async fn edge(s: &mut Stage<'_>, network: &str) -> Result<(), StageError> {
    let log = s.log.clone();
    let ensured = proxy::ensure(
        s.target,
        &s.settings.pipeline.proxy,
        &s.settings.deploy_root,
        &mut |l| log.info(l),
    )
    .await
    .map_err(|e| StageError::new(format!("The server's proxy is not running: {e:#}")))?;
    if ensured.action != proxy::Action::Created && ensured.action != proxy::Action::Replaced {
        s.log.debug(&ensured.describe());
    }
    if ensured.action == proxy::Action::External {
        proxy::attach(s.target.docker(), &ensured.container, network)
            .await
            .map_err(|e| StageError::new(format!("{e:#}")))?;
        s.log.info(&format!(
            "The server's own Traefik {} attached to {network}",
            ensured.container
        ));
    }
    s.state.proxy = Some(ensured);
    Ok(())
}
