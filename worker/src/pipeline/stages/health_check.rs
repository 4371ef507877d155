//! health_check: polls `http://{container_ip}:8069/web/health` (from the
//! server, through the SSH session) until it answers 200 or the deadline
//! passes, instead of a blind sleep; then the public URL: the hostname's A
//! record (the configured nameservers), and `https://{host}/web/health` at
//! that address until it answers 200 with a certificate issued for the
//! hostname, within `OEC_CERTIFICATE_TIMEOUT_SECS`. Non-fatal: a container
//! that does not answer, or a certificate not issued yet, is a warning.

use std::time::{Duration, Instant};

use crate::names::network;
use crate::names::odoo_container;
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::probe::{Certificate, Prober};

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
                Ok(200) => return public_url(s, t0).await,
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

/// The container answers: now the URL its users open. Its outcome is the
/// stage's.
async fn public_url(s: &mut Stage<'_>, t0: Instant) -> Result<Outcome, StageError> {
    let host = s.plan.hostname.clone();
    let url = format!("https://{host}");
    let settings = &s.settings.pipeline;
    let passed = |t0: Instant| format!("Health check passed! ({})", secs(t0));
    let not_yet = |s: &mut Stage<'_>, why: String, data: serde_json::Value| {
        let message = format!("{}, but {url} has no certificate yet: {why}", passed(t0));
        s.log
            .line(oec_common::model::LogLevel::Warning, &message, Some(data));
        s.log.warning("SSL may take longer to provision");
        Ok(Outcome::Warning(message))
    };
    let resolver = super::verifying_dns::resolver(&settings.dns_nameservers)?;
    let ips = super::verifying_dns::lookup_a(&resolver, &host)
        .await
        .unwrap_or_default();
    let Some(ip) = ips.first().copied() else {
        return not_yet(
            s,
            format!("{host} does not resolve"),
            serde_json::json!({"public_url": url, "answered": false, "certificate": "not_issued"}),
        );
    };
    let prober = Prober::new(settings.proxy.acme_roots_pem.as_deref())
        .map_err(|e| StageError::new(format!("{e:#}")))?;
    let c0 = Instant::now();
    let deadline = c0 + settings.proxy.certificate_timeout;
    let mut last: String;
    let mut answered: Option<u16> = None;
    loop {
        let attempt = async {
            let stream = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect((ip, 443)),
            )
            .await
            .map_err(|_| anyhow::anyhow!("connecting to {ip}:443 timed out"))??;
            prober
                .get(
                    Box::new(stream),
                    &host,
                    "/web/health",
                    Duration::from_secs(5),
                )
                .await
        };
        match attempt.await {
            Ok(a) => {
                answered = Some(a.status);
                match (a.status, a.certificate) {
                    (200, Certificate::Issued) => {
                        s.log.line(
                            oec_common::model::LogLevel::Info,
                            &format!(
                                "{url} answered 200 with a certificate issued for {host} ({:.1}s)",
                                c0.elapsed().as_secs_f64()
                            ),
                            Some(
                                serde_json::json!({"public_url": url, "address": ip.to_string(),
                                "answered": true, "status": 200, "certificate": "issued"}),
                            ),
                        );
                        let message = passed(t0);
                        s.log.info(&message);
                        return Ok(Outcome::Completed(message));
                    }
                    (status, Certificate::Issued) => {
                        last = format!("it answered {status}");
                    }
                    (_, Certificate::NotIssued(why)) => last = why,
                }
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    not_yet(
        s,
        last,
        serde_json::json!({"public_url": url, "address": ip.to_string(),
            "answered": answered.is_some(), "status": answered, "certificate": "not_issued"}),
    )
}
