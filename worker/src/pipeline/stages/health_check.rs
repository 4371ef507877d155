//! health_check: polls `http://{container_ip}:8069/web/health` (from the
//! server, through the SSH session) until it answers 200 or the deadline
//! passes, instead of a blind sleep. Non-fatal.

use std::time::{Duration, Instant};

use crate::names::network;
use crate::names::odoo_container;
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    s.log.info("Performing health check...");
    let target = s.target;
    let name = odoo_container(env);
    let timeout = s.settings.pipeline.health_timeout;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    let mut ip = None;
    while Instant::now() < deadline {
        let Some(c) = docker::inspect(target.docker(), &name).await? else {
            return Err(StageError::new(format!("Container {name} is gone")));
        };
        if !docker::is_running(&c) {
            let state = c.state.as_ref();
            last = format!(
                "container not running (status {}, exit code {})",
                state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                state.and_then(|s| s.exit_code).unwrap_or_default()
            );
        } else if ip.is_none() {
            ip = c
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .and_then(|n| n.get(&network(env)))
                .and_then(|n| n.ip_address.clone())
                .and_then(|a| a.parse().ok());
        }
        if let Some(ip) = ip {
            match target.http_status(ip, 8069, "/web/health").await {
                Ok(200) => {
                    let message = format!("Health check passed! ({})", secs(t0));
                    s.log.info(&message);
                    return Ok(Outcome::Completed(message));
                }
                Ok(code) => last = format!("http://{ip}:8069/web/health answered {code}"),
                Err(e) => last = format!("http://{ip}:8069/web/health: {e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    s.log.debug(&format!("Last attempt: {last}"));
    let message = format!(
        "Health check did not pass within {}s ({last})",
        timeout.as_secs()
    );
    s.log.warning(&message);
    s.log
        .warning("Environment may need a few more minutes to become fully responsive");
    Ok(Outcome::Warning(message))
}
