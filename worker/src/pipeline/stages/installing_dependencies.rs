//! installing_dependencies: the merged apt.txt and requirements.txt of every
//! repository, installed as root inside the container; then the container
//! is committed as `oec-deps-{uuid}:{fingerprint}`, which the next deployment
//! starts from when the merged set and the base image are unchanged, so an
//! unchanged set is never installed twice. Non-fatal.

use std::time::Instant;

use bollard::models::ContainerConfig;
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptions,
};
use serde_json::json;

use crate::names::deps_image;
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let log = s.log.clone();
    log.info("Checking ALL repositories for dependencies (apt.txt, requirements.txt)...");
    log.info("Scanning all repos for apt.txt and requirements.txt...");
    let Some((deps, fingerprint)) = s.state.deps.clone() else {
        return Err(StageError::new("dependencies were not scanned"));
    };
    for line in &deps.ignored {
        log.warning(&format!("Ignored: {line}"));
    }
    if deps.is_empty() {
        let message = format!("No dependencies to install ({})", secs(t0));
        log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    if s.state.deps_cached {
        let message = format!(
            "Dependencies unchanged since the last install ({} apt, {} pip), skipped ({})",
            deps.apt.len(),
            deps.pip.len(),
            secs(t0)
        );
        log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    let docker = s.target.docker().clone();
    let container = s.state.odoo_container(env);
    if !deps.apt.is_empty() {
        exec(
            &docker,
            &container,
            &log,
            "apt-get update",
            vec!["apt-get".into(), "update".into(), "-qq".into()],
        )
        .await?;
        let mut argv: Vec<String> = [
            "apt-get",
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "--",
        ]
        .map(str::to_owned)
        .to_vec();
        argv.extend(deps.apt.iter().cloned());
        exec(&docker, &container, &log, "apt-get install", argv).await?;
    }
    if !deps.pip.is_empty() {
        // Debian 12+ marks its Python as externally managed; the container is ours.
        let script = "if pip3 install --help 2>/dev/null | grep -q -- --break-system-packages; then \
                        exec pip3 install --no-cache-dir --break-system-packages \"$@\"; \
                      else exec pip3 install --no-cache-dir \"$@\"; fi";
        let mut argv: Vec<String> = vec!["sh".into(), "-c".into(), script.into(), "pip".into()];
        argv.extend(deps.pip.iter().cloned());
        exec(&docker, &container, &log, "pip3 install", argv).await?;
    }
    log.info(&format!(
        "Dependencies installed from: {}",
        deps.sources.join(", ")
    ));
    log.info(&format!("Total apt packages: {}", deps.apt.len()));
    log.info(&format!("Total pip packages: {}", deps.pip.len()));
    // Keep the result for the next deployment, and only the newest one.
    let tag = deps_image(env, &fingerprint);
    let (repo, tag_name) = docker::split_image(&tag);
    let commit = CommitContainerOptionsBuilder::default()
        .container(&container)
        .repo(repo)
        .tag(tag_name)
        .comment("oec: dependencies installed")
        .pause(false)
        .build();
    // The image keeps the base image's entrypoint and command, not the
    // held form the container runs them in (`starting_container::held`).
    let (entrypoint, cmd) = s.state.image_command.clone().unwrap_or_default();
    let config = ContainerConfig {
        entrypoint: Some(entrypoint),
        cmd: Some(cmd),
        ..Default::default()
    };
    match docker.commit_container(commit, config).await {
        Ok(_) => {
            let opts = ListImagesOptionsBuilder::default()
                .filters(&std::collections::HashMap::from([(
                    "reference",
                    vec![repo],
                )]))
                .build();
            if let Ok(images) = docker.list_images(Some(opts)).await {
                for img in images {
                    if img.repo_tags.iter().any(|t| t == &tag) {
                        continue;
                    }
                    for t in img.repo_tags {
                        let _ = docker
                            .remove_image(&t, None::<RemoveImageOptions>, None)
                            .await;
                    }
                }
            }
        }
        Err(e) => log.warning(&format!(
            "Keeping the installed dependencies for the next deployment failed: {}",
            docker::message(&e)
        )),
    }
    let message = format!("All dependencies installed ({})", secs(t0));
    log.info(&message);
    Ok(Outcome::Completed(message))
}

/// Runs one install command as root in the container.
async fn exec(
    docker: &bollard::Docker,
    container: &str,
    log: &crate::log::StepLog,
    what: &str,
    argv: Vec<String>,
) -> Result<(), StageError> {
    let out = docker::exec(
        docker,
        container,
        argv,
        Some("root"),
        vec!["DEBIAN_FRONTEND=noninteractive".into()],
        &mut |l| log.debug(l),
    )
    .await?;
    if out.exit_code == 0 {
        Ok(())
    } else {
        Err(StageError::with_data(
            format!("{what} failed (exit {})", out.exit_code),
            json!({"container": container, "output": out.tail}),
        ))
    }
}
