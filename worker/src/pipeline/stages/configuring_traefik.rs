//! configuring_traefik: Traefik's Docker provider routes by the container's
//! labels; this stage checks on the running container that the router, TLS
//! resolver, service port and rate-limit middleware are what the spec says
//! and that it is on `traefik-public`, and logs what was applied. Fatal.

use std::time::Instant;

use serde_json::json;

use super::starting_container::traefik_labels;
use crate::names::{TRAEFIK_NETWORK, odoo_container};
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    s.log.info("Configuring Traefik routing...");
    let docker = s.target.docker().clone();
    let name = odoo_container(env);
    let Some(c) = docker::inspect(&docker, &name).await? else {
        return Err(StageError::new(format!("Container {name} is gone")));
    };
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let wanted = traefik_labels(env, &s.plan.hostname);
    let wrong: Vec<String> = wanted
        .iter()
        .filter(|(k, v)| labels.get(k) != Some(v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !wrong.is_empty() {
        return Err(StageError::with_data(
            "Traefik labels missing on the container",
            json!({"container": name, "missing": wrong}),
        ));
    }
    let on_traefik = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .is_some_and(|n| n.contains_key(TRAEFIK_NETWORK));
    if !on_traefik {
        return Err(StageError::new(format!(
            "Container {name} is not on the {TRAEFIK_NETWORK} network"
        )));
    }
    for (k, v) in &wanted {
        s.log.debug(&format!("{k}: {v}"));
    }
    s.log.info(&format!(
            "Router {env}: Host(`{}`) on websecure, TLS via letsencrypt, port 8069, middleware {env}-ratelimit (average 100, burst 50)",
            s.plan.hostname
        ),
    );
    let message = format!("Traefik configured ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}
