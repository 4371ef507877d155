//! configuring_traefik: Traefik's Docker provider routes by the container's
//! labels. This stage checks the labels are the spec's, then proves the
//! route: an HTTPS request to the server's proxy, made by the server itself
//! on its loopback (through the SSH session), with the environment's
//! hostname as SNI and `Host`, until `/web/health` answers 200 through it.
//! The certificate served may still be the proxy's default one (the ACME CA
//! issues the real one in the background); health_check reports it. Fatal
//! when the proxy never routes the hostname; a warning when it routes but
//! Odoo does not answer through it yet.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::json;

use super::starting_container::traefik_labels;
use crate::names::odoo_container;
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::probe::{Certificate, Prober};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    s.log.info("Configuring Traefik routing...");
    let docker = s.target.docker().clone();
    if s.state.switch.is_some() {
        super::switch::release(s, &docker).await?;
    }
    let name = odoo_container(env);
    let Some(c) = docker::inspect(&docker, &name).await? else {
        return Err(StageError::new(format!("Container {name} is gone")));
    };
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    let host = s.plan.hostname.clone();
    let wanted = traefik_labels(env, &host);
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
    for (k, v) in &wanted {
        s.log.debug(&format!("{k}: {v}"));
    }
    s.log.info(&format!(
        "Router {env}: Host(`{host}`) on websecure, TLS via letsencrypt, port 8069, middlewares {env}-ratelimit (average 100, burst 50) and {env}-retry (3 attempts)"
    ));

    // The route, as a client sees it, from the server's own loopback.
    let settings = &s.settings.pipeline.proxy;
    let prober = Prober::new(settings.acme_roots_pem.as_deref())
        .map_err(|e| StageError::new(format!("{e:#}")))?;
    let proxy = s
        .state
        .proxy
        .as_ref()
        .map(|p| p.container.clone())
        .unwrap_or_else(|| crate::proxy::CONTAINER.to_owned());
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let deadline = Instant::now() + settings.route_timeout;
    let mut last: Result<u16, String>;
    loop {
        let attempt = async {
            let stream = s.target.connect(loopback, 443).await?;
            prober
                .get(stream, &host, "/web/health", Duration::from_secs(5))
                .await
        };
        match attempt.await {
            Ok(answer) if answer.status == 200 => {
                s.log.info(&format!(
                    "Route verified: https://{host}/web/health answered 200 through {proxy} ({})",
                    secs(t0)
                ));
                match answer.certificate {
                    Certificate::Issued => s.log.info(&format!("Certificate for {host} issued")),
                    Certificate::NotIssued(why) => s.log.debug(&format!(
                        "Certificate for {host} not issued yet ({why}); requested from the ACME CA"
                    )),
                }
                let message = format!("Traefik configured ({})", secs(t0));
                s.log.info(&message);
                return Ok(Outcome::Completed(message));
            }
            Ok(answer) => last = Ok(answer.status),
            Err(e) => last = Err(format!("{e:#}")),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let waited = settings.route_timeout.as_secs();
    match last {
        // 404 is Traefik's "no router for this host"; a refused or failed
        // connection means no proxy answers at all.
        Ok(status) if status != 404 => {
            let message = format!(
                "Traefik configured ({}), but Odoo does not answer through it yet (HTTP {status})",
                secs(t0)
            );
            s.log.warning(&message);
            Ok(Outcome::Warning(message))
        }
        other => {
            let why = match other {
                Ok(status) => format!("the proxy answered {status}: it has no route for {host}"),
                Err(e) => e,
            };
            Err(StageError::with_data(
                format!("Traefik did not route {host} within {waited}s: {why}"),
                json!({"proxy": proxy, "hostname": host, "container": name,
                       "hint": format!("docker logs {proxy}")}),
            ))
        }
    }
}
