//! configuring_dns: the A record `{subdomain}.{apps_domain} -> server IP`
//! (TTL 300, DNS only) through Cloudflare's v4 API, created or updated early
//! so it propagates during the deployment. Non-fatal.

use std::time::{Duration, Instant};

use oec_common::db::plan;
use serde_json::{Value, json};

use crate::pipeline::plan::server_ip;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    s.log
        .info("Configuring DNS record (early for propagation)...");
    let plan = s.plan;
    let Some(dns) = &plan.dns else {
        let message = format!(
            "DNS setup skipped ({}): No DNS provider configured",
            secs(t0)
        );
        s.log.warning(&message);
        return Ok(Outcome::Warning(message));
    };
    let ip = server_ip(&s.ctx.server_host).await?;
    let api = &s.settings.pipeline.cloudflare_api_url;
    let name = &plan.hostname;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| StageError::new(format!("HTTP client: {e}")))?;
    let records = format!("{api}/zones/{}/dns_records", dns.zone_id);
    let fail = |what: &str, detail: String| {
        StageError::with_data(
            format!("DNS setup failed: {what}"),
            json!({"provider": "cloudflare", "record": name, "content": ip.to_string(), "error": detail}),
        )
    };
    let lookup = client
        .get(&records)
        .query(&[("type", "A"), ("name", name.as_str())]);
    let existing = call(lookup, &dns.token)
        .await
        .map_err(|(what, e)| fail(what, e))?;
    check(&existing).map_err(|e| fail("Cloudflare refused the lookup", e))?;
    let body =
        json!({"type": "A", "name": name, "content": ip.to_string(), "ttl": 300, "proxied": false});
    let found = existing["result"].as_array().and_then(|r| r.first());
    let found_id = found.and_then(|r| r["id"].as_str()).map(str::to_owned);
    let ours = plan.env.dns_record_id.clone();
    // Only a record this environment created is changed. One that already
    // points here is adopted; any other is somebody else's and stays.
    let request = match (&found_id, &ours) {
        (Some(id), Some(mine)) if id == mine => Some(client.put(format!("{records}/{id}"))),
        (Some(id), _) if found.and_then(|r| r["content"].as_str()) == Some(&ip.to_string()) => {
            remember(s, id).await?;
            None
        }
        (Some(_), _) => {
            let message = format!(
                "DNS setup skipped ({}): the record {name} exists and was not created by this environment; it was left alone",
                secs(t0)
            );
            s.log.warning(&message);
            return Ok(Outcome::Warning(message));
        }
        (None, _) => Some(client.post(&records)),
    };
    if let Some(request) = request {
        let answer = call(request.json(&body), &dns.token)
            .await
            .map_err(|(what, e)| fail(what, e))?;
        check(&answer).map_err(|e| fail("Cloudflare refused the record", e))?;
        if let Some(id) = answer["result"]["id"].as_str()
            && ours.as_deref() != Some(id)
        {
            remember(s, id).await?;
        }
    }
    let message = format!("DNS configured: {name} -> {ip} ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}

/// Stores the record as this environment's: the only one it may change.
async fn remember(s: &Stage<'_>, record_id: &str) -> Result<(), StageError> {
    plan::record_dns_record(s.pool, s.ctx.environment_id, record_id)
        .await
        .map_err(|e| StageError::new(format!("Recording the DNS record failed: {e}")))
}

/// Sends one API request; its JSON answer, or what went wrong (URLs left
/// out of the error, so no query string reaches a log).
pub(super) async fn call(
    request: reqwest::RequestBuilder,
    token: &str,
) -> Result<Value, (&'static str, String)> {
    request
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| ("Cloudflare API unreachable", e.without_url().to_string()))?
        .json()
        .await
        .map_err(|e| ("unreadable Cloudflare answer", e.without_url().to_string()))
}

/// Cloudflare's envelope: `success` and `errors[].message`.
pub(super) fn check(v: &Value) -> Result<(), String> {
    if v["success"].as_bool() == Some(true) {
        return Ok(());
    }
    let errors: Vec<String> = v["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} (code {})",
                        e["message"].as_str().unwrap_or("?"),
                        e["code"]
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Err(if errors.is_empty() {
        "no success flag in the answer".into()
    } else {
        errors.join("; ")
    })
}
