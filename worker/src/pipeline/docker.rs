//! Docker operations the stages share: containers by name, images, exec with
//! streamed output, one-off helper containers.

use anyhow::Context as _;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt as _;

/// True for Docker's "no such ..." answer.
pub fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Docker's message without the transport's wrapping.
pub fn message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub async fn inspect(
    docker: &Docker,
    name: &str,
) -> anyhow::Result<Option<ContainerInspectResponse>> {
    match docker
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(anyhow::anyhow!("inspecting {name}: {}", message(&e))),
    }
}

pub fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

/// Removes a container (stopping it first); absent is fine. Tells whether
/// there was one.
pub async fn remove(docker: &Docker, name: &str) -> anyhow::Result<bool> {
    let opts = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("removing {name}: {}", message(&e))),
    }
}

/// Stops `name` as `docker stop` does: its main process gets SIGTERM and
/// `grace_secs` to exit before SIGKILL. Gone or already stopped is fine.
pub async fn stop(docker: &Docker, name: &str, grace_secs: i32) -> anyhow::Result<()> {
    let opts = StopContainerOptionsBuilder::default().t(grace_secs).build();
    match docker.stop_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(DockerError::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("stopping {name}: {}", message(&e))),
    }
}

/// Creates and starts a container named `name`.
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> anyhow::Result<String> {
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    let created = docker
        .create_container(Some(opts), body)
        .await
        .map_err(|e| anyhow::anyhow!("creating {name}: {}", message(&e)))?;
    docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting {name}: {}", message(&e)))?;
    Ok(created.id)
}

/// Whether the image is present on the machine.
pub async fn has_image(docker: &Docker, image: &str) -> anyhow::Result<bool> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("inspecting image {image}: {}", message(&e))),
    }
}

/// Pulls `image`; each distinct status line goes to `on_line`.
async fn pull(
    docker: &Docker,
    image: &str,
    auth: Option<&(String, String)>,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    let (repo, tag) = split_image(image);
    let opts = CreateImageOptionsBuilder::default()
        .from_image(repo)
        .tag(tag)
        .build();
    let credentials = auth.map(|(user, pw)| DockerCredentials {
        username: Some(user.clone()),
        password: Some(pw.clone()),
        serveraddress: registry_of(image),
        ..Default::default()
    });
    let mut stream = docker.create_image(Some(opts), None, credentials);
    let mut last = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| message(&e))?;
        if let Some(err) = info.error_detail.and_then(|d| d.message) {
            return Err(err);
        }
        let line = match (info.id, info.status) {
            (Some(id), Some(status)) => format!("{id}: {status}"),
            (None, Some(status)) => status,
            _ => continue,
        };
        // Progress bars repeat their status many times: log changes only.
        if line != last {
            on_line(&line);
            last = line;
        }
    }
    Ok(())
}

/// Makes `image` present on the machine, pulling it (with `auth`) when it is
/// not; true when it was there already. A failed pull is the stage's error,
/// with the spec's error data.
pub async fn ensure_image(
    docker: &Docker,
    image: &str,
    auth: Option<&(String, String)>,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> Result<bool, super::StageError> {
    if has_image(docker, image).await? {
        return Ok(true);
    }
    pull(docker, image, auth, on_line).await.map_err(|e| {
        let not_found = e.contains("not found") || e.contains("manifest unknown");
        let denied = e.contains("unauthorized") || e.contains("denied");
        let (code, hint) = if not_found {
            ("IMAGE_NOT_FOUND", "check the image name and tag")
        } else if denied {
            ("REGISTRY_AUTH_FAILED", "check the registry credentials")
        } else {
            (
                "PULL_FAILED",
                "check that the server can reach the registry",
            )
        };
        super::StageError::with_data(
            format!("Failed to pull image {image}"),
            serde_json::json!({"image": image, "error_code": code, "error": e, "hint": hint}),
        )
    })?;
    Ok(false)
}

/// `repo:tag` (the tag defaults to latest; a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (without_digest, "latest"),
    }
}

/// The registry host of an image reference, if it names one.
fn registry_of(image: &str) -> Option<String> {
    let first = image.split('/').next()?;
    (image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost"))
        .then(|| first.to_owned())
}

/// The outcome of a command run in a container.
pub struct ExecOutput {
    pub exit_code: i64,
    pub tail: Vec<String>,
}

/// Runs `cmd` (an argv, never a shell line unless the caller asks for `sh
/// -c`) in a running container; each output line goes to `on_line`.
pub async fn exec(
    docker: &Docker,
    container: &str,
    cmd: Vec<String>,
    user: Option<&str>,
    env: Vec<String>,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<ExecOutput> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd),
                user: user.map(str::to_owned),
                env: Some(env),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("exec in {container}: {}", message(&e)))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| anyhow::anyhow!("exec in {container}: {}", message(&e)))?;
    let mut tail: Vec<String> = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = started {
        let mut splitter = crate::target::ssh::LineSplitter::default();
        while let Some(chunk) = output.next().await {
            let chunk = chunk.context("reading exec output")?;
            for line in splitter.push(&chunk.into_bytes()) {
                on_line(&line);
                push_tail(&mut tail, line);
            }
        }
        if let Some(line) = splitter.finish() {
            on_line(&line);
            push_tail(&mut tail, line);
        }
    }
    let inspected = docker
        .inspect_exec(&created.id)
        .await
        .map_err(|e| anyhow::anyhow!("exec in {container}: {}", message(&e)))?;
    Ok(ExecOutput {
        exit_code: inspected.exit_code.unwrap_or(-1),
        tail,
    })
}

fn push_tail(tail: &mut Vec<String>, line: String) {
    if tail.len() == 20 {
        tail.remove(0);
    }
    tail.push(line);
}

/// A one-off helper container, run as root to its end and removed.
pub struct OneShot {
    pub name: String,
    pub image: String,
    pub argv: Vec<String>,
    pub binds: Vec<String>,
    /// The network it joins; none when unset.
    pub network: Option<String>,
    /// Its environment (secrets travel here, never in `argv`).
    pub env: Vec<String>,
}

/// Runs `job` to its end; returns its exit code and its output's lines.
pub async fn run_once(docker: &Docker, job: OneShot) -> anyhow::Result<(i64, Vec<String>)> {
    let name = job.name.as_str();
    remove(docker, name).await?;
    let body = ContainerCreateBody {
        image: Some(job.image.clone()),
        entrypoint: Some(job.argv),
        cmd: Some(Vec::new()),
        user: Some("0:0".into()),
        env: Some(job.env),
        network_disabled: Some(job.network.is_none()),
        host_config: Some(HostConfig {
            binds: Some(job.binds),
            network_mode: job.network.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    create_and_start(docker, name, body).await?;
    let mut wait = docker.wait_container(name, None::<WaitContainerOptions>);
    let code = match wait.next().await {
        Some(Ok(r)) => r.status_code,
        Some(Err(DockerError::DockerContainerWaitError { code, .. })) => code,
        Some(Err(e)) => {
            let _ = remove(docker, name).await;
            anyhow::bail!("waiting for {name}: {}", message(&e));
        }
        None => -1,
    };
    let mut output = String::new();
    let opts = bollard::query_parameters::LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(name, Some(opts));
    while let Some(Ok(chunk)) = logs.next().await {
        output.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    remove(docker, name).await?;
    Ok((code, output.lines().map(str::to_owned).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_split_into_repo_and_tag() {
        assert_eq!(split_image("odoo:18.0"), ("odoo", "18.0"));
        assert_eq!(split_image("odoo"), ("odoo", "latest"));
        assert_eq!(
            split_image("127.0.0.1:5000/oec/odoo:17.0"),
            ("127.0.0.1:5000/oec/odoo", "17.0")
        );
        assert_eq!(
            split_image("127.0.0.1:5000/oec/odoo"),
            ("127.0.0.1:5000/oec/odoo", "latest")
        );
        assert_eq!(
            registry_of("registry.example.com/ns/odoo:18.0").as_deref(),
            Some("registry.example.com")
        );
        assert_eq!(registry_of("odoo:18.0"), None);
        assert_eq!(registry_of("library/odoo:18.0"), None);
    }
}
