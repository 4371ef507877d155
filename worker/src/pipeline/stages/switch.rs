//! The zero-downtime replacement of a serving Odoo container (a redeploy):
//! the new container starts beside the old one as `{uuid}_odoo_next`, with
//! the same router labels; the proxy routes only to containers Docker calls
//! healthy, so it gets traffic once its health check passes. Then the old
//! one is drained (its health check is made to fail, so the proxy stops
//! sending it requests, and it gets `OEC_DRAIN_SECS` to finish those it
//! has), removed, and the new one takes the name `{uuid}_odoo`.
//!
//! A new container that never becomes healthy is removed and the old one
//! keeps serving. If the stage is dropped midway (a cancel), a guard puts
//! things back: before the old container is removed, the new one goes and
//! the old one is undrained; after, the new one gets the name.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HealthConfig, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RenameContainerOptionsBuilder, StartContainerOptions,
};

use crate::pipeline::docker;
use crate::pipeline::{Stage, StageError, secs};

/// While this file exists in a container, its health check fails.
const DRAIN_FLAG: &str = "/tmp/oec-drain";
/// How long the proxy may take to see a health change (Traefik batches
/// provider updates for 2 s) before the next step relies on it.
const PROXY_SETTLE: Duration = Duration::from_secs(3);

/// Odoo's health check: `/web/health` answers, and the container is not
/// being drained. Every second, unhealthy after two failures.
pub fn healthcheck() -> HealthConfig {
    let probe = format!(
        "test ! -e {DRAIN_FLAG} && python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8069/web/health', timeout=2)\""
    );
    HealthConfig {
        test: Some(vec!["CMD-SHELL".into(), probe]),
        interval: Some(1_000_000_000),
        timeout: Some(3_000_000_000),
        retries: Some(2),
        start_period: Some(0),
        start_interval: None,
    }
}

/// The name of the container a switch starts beside `{uuid}_odoo`.
pub fn next_name(name: &str) -> String {
    format!("{name}_next")
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// The old container serves; the new one may exist.
    Starting,
    /// The old container is gone; the new one serves under its own name.
    OldRemoved,
    Done,
}

/// Puts the server back in a serving state when the switch is dropped
/// before it ended.
struct Guard {
    docker: Docker,
    name: String,
    next: String,
    phase: Phase,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let (docker, name, next, phase) = (
            self.docker.clone(),
            self.name.clone(),
            self.next.clone(),
            self.phase,
        );
        if phase == Phase::Done {
            return;
        }
        tokio::spawn(async move {
            match phase {
                Phase::Starting => {
                    let _ = docker::remove(&docker, &next).await;
                    let _ = undrain(&docker, &name).await;
                }
                Phase::OldRemoved => {
                    let _ = rename(&docker, &next, &name).await;
                }
                Phase::Done => {}
            }
        });
    }
}

async fn undrain(docker: &Docker, name: &str) -> anyhow::Result<()> {
    let cmd = vec!["rm".into(), "-f".into(), DRAIN_FLAG.into()];
    docker::exec(docker, name, cmd, None, vec![], &mut |_| {}).await?;
    Ok(())
}

async fn rename(docker: &Docker, from: &str, to: &str) -> anyhow::Result<()> {
    docker
        .rename_container(
            from,
            RenameContainerOptionsBuilder::default().name(to).build(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("renaming {from} to {to}: {}", docker::message(&e)))
}

/// The container's health now: its status and the last probe's output.
async fn health(docker: &Docker, name: &str) -> Result<(HealthStatusEnum, String), StageError> {
    let Some(c) = docker::inspect(docker, name).await? else {
        return Err(StageError::new(format!("Container {name} is gone")));
    };
    if !docker::is_running(&c) {
        let code = c
            .state
            .as_ref()
            .and_then(|s| s.exit_code)
            .unwrap_or_default();
        return Ok((
            HealthStatusEnum::UNHEALTHY,
            format!("it exited with code {code}"),
        ));
    }
    let h = c.state.and_then(|s| s.health);
    let last = h
        .as_ref()
        .and_then(|h| h.log.as_ref())
        .and_then(|l| l.last())
        .and_then(|l| l.output.clone())
        .unwrap_or_default();
    let status = h.and_then(|h| h.status).unwrap_or(HealthStatusEnum::NONE);
    Ok((status, last.trim().chars().take(300).collect()))
}

/// Creates and starts the container `name`; returns its id.
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, StageError> {
    let image = body.image.clone().unwrap_or_default();
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await
        .map_err(|e| {
            StageError::with_data(
                format!("Failed to create container {name}"),
                serde_json::json!({"container": name, "image": image, "error": docker::message(&e)}),
            )
        })?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .map_err(|e| {
            StageError::with_data(
                format!("Failed to start container {name}"),
                serde_json::json!({"container": name, "image": image, "error": docker::message(&e)}),
            )
        })?;
    Ok(created.id)
}

/// Replaces the serving container `name` with one made from `body`;
/// returns the new container's id.
pub async fn replace(
    s: &mut Stage<'_>,
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<String, StageError> {
    let t0 = Instant::now();
    let next = next_name(name);
    // A leftover of a switch that was interrupted by a crash.
    docker::remove(docker, &next).await?;
    s.log.info(&format!(
        "Starting the new container {next} beside the serving one (no downtime)..."
    ));
    let mut guard = Guard {
        docker: docker.clone(),
        name: name.to_owned(),
        next: next.clone(),
        phase: Phase::Starting,
    };
    let id = create_and_start(docker, &next, body).await?;

    // 1. The new container must become healthy; until then the old one
    //    serves alone.
    let timeout = s.settings.pipeline.health_timeout;
    let deadline = Instant::now() + timeout;
    loop {
        let (status, last) = health(docker, &next).await?;
        if status == HealthStatusEnum::HEALTHY {
            break;
        }
        let exited = last.starts_with("it exited");
        if exited || Instant::now() >= deadline {
            let why = if exited {
                last
            } else {
                format!(
                    "not healthy within {}s; last check: {last}",
                    timeout.as_secs()
                )
            };
            let _ = docker::remove(docker, &next).await;
            guard.phase = Phase::Done;
            return Err(StageError::with_data(
                format!(
                    "The new container did not become healthy ({why}); the previous container keeps serving"
                ),
                serde_json::json!({"container": next, "kept": name}),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s.log.info(&format!(
        "New container healthy ({}); the proxy routes to both",
        secs(t0)
    ));
    tokio::time::sleep(PROXY_SETTLE).await;

    // 2. Drain the old one: failing health checks take it out of the proxy.
    let drain = s.settings.pipeline.drain;
    let flag = vec!["touch".into(), DRAIN_FLAG.into()];
    match docker::exec(docker, name, flag, None, vec![], &mut |_| {}).await {
        Ok(_) => {
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until {
                if health(docker, name).await?.0 == HealthStatusEnum::UNHEALTHY {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            tokio::time::sleep(PROXY_SETTLE.max(drain)).await;
        }
        // A container from before health checks: the proxy's retry
        // middleware covers the moment it goes away.
        Err(e) => s.log.debug(&format!("Draining {name}: {e:#}")),
    }
    s.log.info(&format!(
        "Previous container drained ({}s); removing it",
        drain.as_secs()
    ));
    docker::remove(docker, name).await?;
    guard.phase = Phase::OldRemoved;
    rename(docker, &next, name)
        .await
        .map_err(|e| StageError::new(format!("{e:#}")))?;
    guard.phase = Phase::Done;
    s.log
        .info(&format!("Switched to the new container ({})", secs(t0)));
    Ok(id)
}
