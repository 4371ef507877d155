//! The zero-downtime replacement of a serving Odoo container (a redeploy),
//! in two halves. [`start_beside`] (starting_container) starts the new
//! container beside the old one as `{uuid}_odoo_next`, with the same router
//! labels but held out of the proxy (its drain flag is in place before it
//! starts, so its health check fails): dependencies are installed and the
//! database is upgraded in it while the old one serves. [`release`]
//! (configuring_traefik) lets it in: the flag goes, the proxy routes to it
//! once Docker calls it healthy; then the old one is drained (its health
//! check is made to fail, so the proxy stops sending it requests, and it
//! gets `OEC_DRAIN_SECS` to finish those it has), removed, and the new one
//! takes the name `{uuid}_odoo`.
//!
//! Until it is healthy, the new container has a quarter of the serving
//! one's CPU weight, so booting it does not starve the Odoo that answers.
//!
//! A new container that never becomes healthy stays held and the old one
//! keeps serving; [`abandon`] (the rollback) removes it. If the run is
//! dropped midway, a guard puts things back: before the old container is
//! removed, the new one goes and the old one is undrained; after, the new
//! one gets the name.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerUpdateBody, HealthConfig, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RenameContainerOptionsBuilder, StartContainerOptions,
    UploadToContainerOptionsBuilder,
};

use crate::pipeline::docker;
use crate::pipeline::{Stage, StageError, secs};

/// While this file exists in a container, its health check fails.
const DRAIN_FLAG: &str = "/tmp/oec-drain";
/// The CPU weight of a new container until it serves, against Docker's
/// default 1024 for the serving one: on a busy server, the Odoo that
/// answers requests gets the CPU before the one that is still booting
/// (the limit in cores stays what the plan gives each).
const BOOTING_CPU_SHARES: i64 = 256;
const SERVING_CPU_SHARES: i64 = 1024;
/// How long a drained container's Odoo gets to finish its requests and exit
/// before it is killed.
const OLD_STOP_GRACE_SECS: i32 = 10;
/// How long the proxy may take to see a health change (Traefik batches
/// provider updates for 2 s) before the next step relies on it.
const PROXY_SETTLE: Duration = Duration::from_secs(3);

/// Odoo's health check: `/web/health` answers, and the container is not
/// being drained. Every second, unhealthy after two failures. A drained
/// container fails at once; a serving one is given 5 s to answer, since
/// real Odoo under load on a busy server (its CPU share used up by 50
/// requests/s while a new container boots beside it) answered later than
/// 2 s, and the proxy then dropped the only container it had (404s).
pub fn healthcheck() -> HealthConfig {
    let probe = format!(
        "test ! -e {DRAIN_FLAG} && python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8069/web/health', timeout=5)\""
    );
    HealthConfig {
        test: Some(vec!["CMD-SHELL".into(), probe]),
        interval: Some(1_000_000_000),
        timeout: Some(6_000_000_000),
        retries: Some(2),
        start_period: Some(0),
        start_interval: None,
    }
}

/// The name of the container a switch starts beside `{uuid}_odoo`.
pub fn next_name(name: &str) -> String {
    format!("{name}_next")
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Phase {
    /// The old container serves; the new one may exist.
    Starting,
    /// The old container is gone; the new one serves under its own name.
    OldRemoved,
    Done,
}

/// Puts the server back in a serving state when the switch is dropped
/// before it ended.
pub struct Guard {
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
                    let _ = back_to_old(&docker, &name, &next).await;
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
    // As root: the hold flag was uploaded as root into the sticky /tmp.
    let out = docker::exec(docker, name, cmd, Some("root"), vec![], &mut |_| {}).await?;
    anyhow::ensure!(
        out.exit_code == 0,
        "removing {DRAIN_FLAG} in {name} failed: {}",
        out.tail.join(" ")
    );
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

async fn is_healthy(docker: &Docker, name: &str) -> bool {
    matches!(
        health(docker, name).await,
        Ok((HealthStatusEnum::HEALTHY, _))
    )
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
    let mut body = body;
    body.host_config.get_or_insert_default().cpu_shares = Some(BOOTING_CPU_SHARES);
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

/// A new container started beside the serving one, not yet serving.
pub struct Pending {
    guard: Guard,
    /// The new container's id.
    pub id: String,
    started: Instant,
}

impl Pending {
    /// The name the new container has until it takes the old one's.
    pub fn next(&self) -> &str {
        &self.guard.next
    }

    pub fn phase(&self) -> Phase {
        self.guard.phase
    }
}

/// A one-entry tar archive: the empty file `path` (relative, e.g.
/// `tmp/oec-drain`), mode 0644, as Docker's archive upload takes it.
fn tar_with_empty_file(path: &str) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put =
        |h: &mut [u8; 512], at: usize, value: &[u8]| h[at..at + value.len()].copy_from_slice(value);
    put(&mut h, 0, path.as_bytes());
    put(&mut h, 100, b"0000644\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, b"00000000000\0");
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Creates the new container beside the serving `name`, held out of the
/// proxy, and starts it.
pub async fn start_beside(
    s: &mut Stage<'_>,
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<Pending, StageError> {
    let next = next_name(name);
    // A leftover of a switch that was interrupted by a crash.
    docker::remove(docker, &next).await?;
    s.log.info(&format!(
        "Starting the new container {next} beside the serving one, held out of the proxy until it is ready..."
    ));
    let image = body.image.clone().unwrap_or_default();
    let mut body = body;
    body.host_config.get_or_insert_default().cpu_shares = Some(BOOTING_CPU_SHARES);
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&next).build()),
            body,
        )
        .await
        .map_err(|e| {
            StageError::with_data(
                format!("Failed to create container {next}"),
                serde_json::json!({"container": next, "image": image, "error": docker::message(&e)}),
            )
        })?;
    let pending = Pending {
        guard: Guard {
            docker: docker.clone(),
            name: name.to_owned(),
            next: next.clone(),
            phase: Phase::Starting,
        },
        id: created.id.clone(),
        started: Instant::now(),
    };
    let flag = DRAIN_FLAG.trim_start_matches('/');
    docker
        .upload_to_container(
            &created.id,
            Some(UploadToContainerOptionsBuilder::default().path("/").build()),
            bollard::body_full(tar_with_empty_file(flag).into()),
        )
        .await
        .map_err(|e| {
            StageError::new(format!(
                "Holding {next} out of the proxy failed: {}",
                docker::message(&e)
            ))
        })?;
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .map_err(|e| {
            StageError::with_data(
                format!("Failed to start container {next}"),
                serde_json::json!({"container": next, "image": image, "error": docker::message(&e)}),
            )
        })?;
    Ok(pending)
}

/// Lets the held new container of `s.state.switch` serve and retires the
/// old one; returns the new container's id. When the new container never
/// becomes healthy it stays held (for [`abandon`]) and the old one serves.
pub async fn release(s: &mut Stage<'_>, docker: &Docker) -> Result<String, StageError> {
    let Some(p) = s.state.switch.as_ref() else {
        return Err(StageError::new("no new container is waiting to serve"));
    };
    let (name, next, id, t0) = (
        p.guard.name.clone(),
        p.guard.next.clone(),
        p.id.clone(),
        p.started,
    );
    undrain(docker, &next)
        .await
        .map_err(|e| StageError::new(format!("Releasing {next}: {e:#}")))?;
    s.log.info(&format!(
        "Letting {next} into the proxy once its health check passes..."
    ));

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
            // Held again: no request reaches it while it waits for removal.
            let flag = vec!["touch".into(), DRAIN_FLAG.into()];
            let _ = docker::exec(docker, &next, flag, None, vec![], &mut |_| {}).await;
            return Err(StageError::with_data(
                format!(
                    "The new container did not become healthy ({why}); the previous container keeps serving"
                ),
                serde_json::json!({"container": next, "kept": name}),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let serving = ContainerUpdateBody {
        cpu_shares: Some(SERVING_CPU_SHARES),
        ..Default::default()
    };
    docker.update_container(&next, serving).await.map_err(|e| {
        StageError::new(format!(
            "Giving {next} its CPU weight: {}",
            docker::message(&e)
        ))
    })?;
    s.log.info(&format!(
        "New container healthy ({}); the proxy routes to both",
        secs(t0)
    ));
    tokio::time::sleep(PROXY_SETTLE).await;

    // 2. Drain the old one: failing health checks take it out of the proxy.
    let drain = s.settings.pipeline.drain;
    let flag = vec!["touch".into(), DRAIN_FLAG.into()];
    match docker::exec(docker, &name, flag, None, vec![], &mut |_| {}).await {
        Ok(_) => {
            let until = Instant::now() + Duration::from_secs(15);
            while Instant::now() < until {
                if health(docker, &name).await?.0 == HealthStatusEnum::UNHEALTHY {
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
    // Stopped before it is removed: Odoo closes its socket and lets each
    // worker finish the request it has, so a request the proxy still sends
    // it is refused (and retried on the new one) rather than lost with the
    // container's network, which a forced removal tears down at once.
    docker::stop(docker, &name, OLD_STOP_GRACE_SECS)
        .await
        .map_err(|e| StageError::new(format!("{e:#}")))?;
    docker::remove(docker, &name).await?;
    if let Some(p) = s.state.switch.as_mut() {
        p.guard.phase = Phase::OldRemoved;
    }
    rename(docker, &next, &name)
        .await
        .map_err(|e| StageError::new(format!("{e:#}")))?;
    if let Some(mut p) = s.state.switch.take() {
        p.guard.phase = Phase::Done;
    }
    s.log
        .info(&format!("Switched to the new container ({})", secs(t0)));
    Ok(id)
}

/// Before the old container was removed: the old one serves again and the
/// new one goes, in the order that keeps every request answered. The old
/// one may already be drained (a cancel during the drain) while the new
/// one serves: it is back in the proxy before the new one leaves it. The
/// new one is held out (its drain flag) and, if the proxy may have been
/// routing to it, removed only once its health check has failed and the
/// proxy has seen that. (A container without a health check reports none.)
async fn back_to_old(docker: &Docker, name: &str, next: &str) -> anyhow::Result<()> {
    let mut moved = false;
    let old = health(docker, name).await.map(|h| h.0);
    if matches!(
        old,
        Ok(HealthStatusEnum::UNHEALTHY | HealthStatusEnum::STARTING)
    ) {
        undrain(docker, name).await?;
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until && !is_healthy(docker, name).await {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        moved = true;
    }
    if docker::inspect(docker, next).await.ok().flatten().is_some() {
        let flag = vec!["touch".into(), DRAIN_FLAG.into()];
        let _ = docker::exec(docker, next, flag, None, vec![], &mut |_| {}).await;
        // A probe that was running when the flag appeared may still pass:
        // watch it past one interval. Healthy at any point means the proxy
        // may route to it until it is unhealthy and the proxy knows.
        let held = Instant::now();
        let until = held + Duration::from_secs(15);
        let mut served = false;
        while Instant::now() < until {
            match health(docker, next).await.map(|h| h.0) {
                Ok(HealthStatusEnum::HEALTHY) => served = true,
                Ok(HealthStatusEnum::UNHEALTHY) => break,
                _ if held.elapsed() > Duration::from_millis(1500) => break,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        moved |= served;
    }
    if moved {
        tokio::time::sleep(PROXY_SETTLE).await;
    }
    docker::remove(docker, next).await?;
    Ok(())
}

/// Ends a switch that will not complete: before the old container was
/// removed, the new one goes and the old one is undrained (true: the old
/// one serves); after, the new one takes the old one's name (false).
pub async fn abandon(mut p: Pending) -> anyhow::Result<bool> {
    let g = &mut p.guard;
    let phase = g.phase;
    g.phase = Phase::Done;
    match phase {
        Phase::Starting => {
            back_to_old(&g.docker, &g.name, &g.next).await?;
            Ok(true)
        }
        Phase::OldRemoved => {
            rename(&g.docker, &g.next, &g.name).await?;
            Ok(false)
        }
        Phase::Done => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hold_archive_is_a_valid_tar_header() {
        let t = tar_with_empty_file("tmp/oec-drain");
        assert_eq!(t.len(), 512 + 1024);
        assert_eq!(&t[..13], b"tmp/oec-drain");
        assert_eq!(&t[257..263], b"ustar\0");
        let stored = std::str::from_utf8(&t[148..154]).unwrap_or_default();
        let mut h = t[..512].to_vec();
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).ok(), Some(sum));
    }
}
