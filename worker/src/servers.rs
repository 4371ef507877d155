//! Server checks: what `POST /servers/{id}/check` asks a worker to find out
//! about a server before anything is deployed there, over the same SSH
//! session and Docker engine a deployment uses: the host key (recorded on
//! first use), Docker's version and whether the SSH user may use it, CPUs,
//! memory, free disk under the deploy root and whether the user can write
//! there, and the proxy (ensured as a deployment would). A check always ends
//! `done`; `ok` says whether nothing stands in the way of deploying.

use std::sync::Arc;

use oec_common::db::server_checks::{self, Login};
use oec_common::model::ProxyState;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::pipeline::{CONNECT_TIMEOUT, Deps};
use crate::proxy;
use crate::target::Target;
use crate::target::shell::quote;
use crate::target::ssh::{Credentials, SshParams, SshTarget};

/// Runs the check `id` (a redelivered job for a check already taken is
/// skipped) and records its result.
pub async fn run_check(deps: Arc<Deps>, id: Uuid) {
    let login = match server_checks::claim(&deps.pool, id).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            tracing::info!(check = %id, "server check already taken or gone; job skipped");
            return;
        }
        Err(e) => {
            tracing::error!(check = %id, error = %e, "claiming the server check failed");
            return;
        }
    };
    let result = check(&deps, &login).await;
    let ok = result["problems"].as_array().is_some_and(Vec::is_empty);
    if let Err(e) = server_checks::finish(&deps.pool, id, ok, &result).await {
        tracing::error!(check = %id, error = %e, "recording the server check failed");
    }
    tracing::info!(check = %id, server = %login.server_id, ok, "server check done");
}

async fn check(deps: &Deps, login: &Login) -> Value {
    let mut problems: Vec<String> = Vec::new();
    let secret = match deps.settings.secret_key.open(&login.secret_encrypted) {
        Ok(s) => s,
        Err(e) => {
            return json!({"ssh": {"reachable": false, "error": format!("the stored credentials cannot be read: {e}")},
                          "problems": ["the stored credentials cannot be read; set them again (PATCH /servers/{id})"]});
        }
    };
    let params = SshParams {
        host: login.host.clone(),
        port: u16::try_from(login.ssh_port).unwrap_or(22),
        user: login.ssh_user.clone(),
        credentials: match login.auth_method.as_str() {
            "key" => Credentials::Key(secret),
            _ => Credentials::Password(secret),
        },
        connect_timeout: CONNECT_TIMEOUT,
        host_key_fingerprint: login.host_key_fingerprint.clone(),
    };
    let ssh = match SshTarget::connect(params).await {
        Ok(t) => t,
        Err(e) => {
            return json!({
                "ssh": {"reachable": false, "error_code": e.code.as_str(), "error": e.detail, "hint": e.code.hint()},
                "problems": [format!("SSH connection failed ({}): {}; {}", e.code.as_str(), e.detail, e.code.hint())],
            });
        }
    };
    let fingerprint = ssh.host_key_fingerprint.clone();
    let recorded = login.host_key_fingerprint.is_none()
        && oec_common::db::servers::record_host_key(&deps.pool, login.server_id, &fingerprint)
            .await
            .unwrap_or(false);
    let target = Target::Ssh(ssh);
    let root = deps.settings.deploy_root.clone();

    // One command for the machine's facts, one `key value` line each.
    let script = format!(
        "echo cpus $(nproc); \
         awk '/^MemTotal:/ {{print \"mem_total_kb\", $2}} /^MemAvailable:/ {{print \"mem_available_kb\", $2}}' /proc/meminfo; \
         d={root}; while [ ! -e \"$d\" ]; do d=$(dirname \"$d\"); done; \
         echo disk_free_kb $(df -Pk \"$d\" | awk 'NR==2 {{print $4}}'); \
         if mkdir -p {root} 2>/dev/null && [ -w {root} ]; then echo root_writable 1; else echo root_writable 0; fi; \
         echo user $(id -un)",
        root = quote(&root)
    );
    let mut facts = std::collections::HashMap::new();
    let out = target
        .run(&script, &mut |line| {
            if let Some((k, v)) = line.split_once(' ') {
                facts.insert(k.to_owned(), v.trim().to_owned());
            }
        })
        .await;
    if let Err(e) = &out {
        problems.push(format!("running a command on the server failed: {e:#}"));
    }
    let num = |k: &str| facts.get(k).and_then(|v| v.parse::<u64>().ok());
    let cpus = num("cpus");
    let mem_total_mb = num("mem_total_kb").map(|kb| kb / 1024);
    let mem_available_mb = num("mem_available_kb").map(|kb| kb / 1024);
    let disk_free_mb = num("disk_free_kb").map(|kb| kb / 1024);
    let root_writable = facts.get("root_writable").map(|v| v == "1");
    let user = facts.get("user").cloned().unwrap_or_default();
    if root_writable == Some(false) {
        problems.push(format!(
            "the SSH user {user} cannot write the deploy root {root}; create it and give it to {user}"
        ));
    }
    let min_mem = deps.settings.server_min_free_memory_mb;
    if let Some(m) = mem_available_mb
        && m < min_mem
    {
        problems.push(format!(
            "only {m} MB of memory available, below the {min_mem} MB minimum (OEC_SERVER_MIN_FREE_MEMORY_MB)"
        ));
    }
    let min_disk = deps.settings.server_min_free_disk_mb;
    if let Some(d) = disk_free_mb
        && d < min_disk
    {
        problems.push(format!(
            "only {d} MB free under {root}, below the {min_disk} MB minimum (OEC_SERVER_MIN_FREE_DISK_MB)"
        ));
    }

    // Docker, as the SSH user, and the proxy.
    let docker = match target.docker().version().await {
        Ok(v) => json!({"usable": true, "version": v.version, "api_version": v.api_version}),
        Err(e) => {
            let detail = e.to_string();
            problems.push(format!(
                "the SSH user {user} cannot use Docker ({}); install Docker and add {user} to the docker group",
                detail.lines().next().unwrap_or_default()
            ));
            json!({"usable": false, "error": detail})
        }
    };
    let proxy = if docker["usable"] == true {
        let mut lines = Vec::new();
        match proxy::ensure(&target, &deps.settings.pipeline.proxy, &root, &mut |l| {
            lines.push(l.to_owned())
        })
        .await
        {
            Ok(e) => json!({"state": state_of(&e.action), "container": e.container,
                            "image": e.image, "message": e.describe(), "log": lines}),
            Err(e) => {
                problems.push(format!("the proxy is not running: {e:#}"));
                json!({"state": ProxyState::Failed, "error": format!("{e:#}"), "log": lines})
            }
        }
    } else {
        json!({"state": ProxyState::Unknown})
    };
    json!({
        "ssh": {"reachable": true, "user": user, "host_key_fingerprint": fingerprint,
                "host_key_recorded": recorded},
        "docker": docker,
        "cpu_count": cpus,
        "memory_total_mb": mem_total_mb,
        "memory_available_mb": mem_available_mb,
        "deploy_root": root,
        "deploy_root_writable": root_writable,
        "disk_free_mb": disk_free_mb,
        "proxy": proxy,
        "problems": problems,
    })
}

fn state_of(a: &proxy::Action) -> ProxyState {
    match a {
        proxy::Action::UpToDate => ProxyState::UpToDate,
        proxy::Action::Started => ProxyState::Started,
        proxy::Action::Created => ProxyState::Created,
        proxy::Action::Replaced => ProxyState::Replaced,
        proxy::Action::External => ProxyState::External,
    }
}
