//! connecting: opens the SSH session to the server (password or key) and
//! checks that its Docker engine answers through it. Fatal.

use std::time::Instant;

use oec_common::model::steps::Step;
use serde_json::json;

use crate::pipeline::{CONNECT_TIMEOUT, Outcome, Run, StageError, secs};
use crate::target::Target;
use crate::target::ssh::{Credentials, SshParams, SshTarget};

pub async fn run(run: &mut Run) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let ctx = &run.ctx;
    run.log.info(
        Step::Connecting,
        &format!("Connecting to {}...", ctx.server_host),
    );
    let credentials = match ctx.auth_method.as_str() {
        "key" => Credentials::Key(run.secret.clone()),
        _ => Credentials::Password(run.secret.clone()),
    };
    let params = SshParams {
        host: ctx.server_host.clone(),
        port: u16::try_from(ctx.ssh_port).unwrap_or(22),
        user: ctx.ssh_user.clone(),
        credentials,
        connect_timeout: CONNECT_TIMEOUT,
        host_key_fingerprint: ctx.host_key_fingerprint.clone(),
    };
    let target = SshTarget::connect(params).await.map_err(|e| {
        StageError::with_data(
            "Failed to connect to server via SSH",
            json!({
                "vm_ip": ctx.server_host,
                "ssh_port": ctx.ssh_port,
                "error_code": e.code.as_str(),
                "ssh_method": ctx.auth_method,
                "error": e.detail,
                "hint": e.code.hint(),
            }),
        )
    })?;
    if ctx.host_key_fingerprint.is_none() {
        let fp = &target.host_key_fingerprint;
        let recorded = oec_common::db::servers::record_host_key(&run.pool, ctx.server_id, fp)
            .await
            .map_err(|e| StageError::new(format!("Recording the host key failed: {e}")))?;
        if recorded {
            run.log.info(
                Step::Connecting,
                &format!("Host key recorded on first connection (trust on first use): {fp}"),
            );
        }
    }
    let message = format!("SSH connection established ({})", secs(t0));
    run.log.info(Step::Connecting, &message);
    let version = target.docker().version().await.map_err(|e| {
        StageError::with_data(
            "Docker engine not reachable on the server",
            json!({"vm_ip": ctx.server_host, "error": e.to_string(),
                   "hint": "install Docker on the server and add the SSH user to the docker group"}),
        )
    })?;
    run.log.debug(
        Step::Connecting,
        &format!(
            "Docker engine {} (API {})",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default()
        ),
    );
    let log = run.log.clone();
    let probe = target
        .run("id -un && uname -sr", &mut |line| {
            log.debug(Step::Connecting, line)
        })
        .await
        .map_err(|e| StageError::new(format!("Running a command on the server failed: {e:#}")))?;
    if !probe.success() {
        return Err(StageError::new(format!(
            "Running a command on the server failed (exit {})",
            probe.exit_code
        )));
    }
    run.target = Some(Target::Ssh(target));
    Ok(Outcome::Completed(message))
}
