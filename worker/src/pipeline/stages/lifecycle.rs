//! The short lifecycle runs of a deployed environment (`POST
//! /environments/{id}/stop|start|restart`, `DELETE ?teardown=true`): their
//! stages after `connecting`. A stop stops the environment's containers
//! (Odoo first, the database last; a restart only Odoo) and they stay
//! stopped across a Docker restart (`unless-stopped`); a start starts what
//! exists in the opposite order and never creates anything (a missing Odoo
//! container means deploy); a teardown removes every object the pipeline
//! made for the environment: its containers, dependencies images, network,
//! DNS record (only one oec created), its directory, and its database
//! volumes only when asked.

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    ListImagesOptionsBuilder, RemoveImageOptions, RemoveVolumeOptions, StartContainerOptions,
};
use oec_common::model::Action;
use oec_common::model::ids::EnvironmentId;

use super::switch::next_name;
use crate::names;
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

/// Seconds Odoo gets to finish its requests before it is killed.
const STOP_GRACE_SECS: i32 = 10;

/// The environment's containers, in the order they start.
fn start_order(env: EnvironmentId) -> [String; 5] {
    [
        names::db_container(env),
        names::replica_container(env),
        names::pgbouncer_container(env),
        names::replica_pgbouncer_container(env),
        names::odoo_container(env),
    ]
}

pub async fn stop(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let docker = s.target.docker();
    let mut names: Vec<String> = start_order(env).into_iter().rev().collect();
    if s.ctx.action == Action::Restart {
        names.truncate(1);
    }
    s.log.info(&format!("Stopping {}...", names.join(", ")));
    let mut stopped = 0;
    for name in &names {
        let Some(c) = docker::inspect(docker, name).await? else {
            continue;
        };
        if !docker::is_running(&c) {
            s.log.info(&format!("{name} is already stopped"));
            continue;
        }
        let t = Instant::now();
        docker::stop(docker, name, STOP_GRACE_SECS)
            .await
            .map_err(|e| StageError::new(format!("{e:#}")))?;
        stopped += 1;
        s.log.info(&format!("Stopped {name} ({})", secs(t)));
    }
    let message = format!("{stopped} container(s) stopped ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}

pub async fn start(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let docker = s.target.docker();
    let odoo = names::odoo_container(env);
    if docker::inspect(docker, &odoo).await?.is_none() {
        return Err(StageError::new(format!(
            "Container {odoo} does not exist on the server; deploy the environment to create it"
        )));
    }
    let mut started = 0;
    for name in start_order(env) {
        let Some(c) = docker::inspect(docker, &name).await? else {
            continue;
        };
        if docker::is_running(&c) {
            continue;
        }
        docker
            .start_container(&name, None::<StartContainerOptions>)
            .await
            .map_err(|e| StageError::new(format!("Starting {name}: {}", docker::message(&e))))?;
        started += 1;
        s.log.info(&format!("Started {name}"));
    }
    let message = format!("{started} container(s) started ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}

pub async fn teardown(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let mut removed = Vec::new();
    let odoo = names::odoo_container(env);
    for name in [
        next_name(&odoo),
        odoo,
        names::replica_pgbouncer_container(env),
        names::pgbouncer_container(env),
        names::replica_container(env),
        names::db_container(env),
        names::chown_container(env),
        names::snapshot_container(env),
    ] {
        if docker::remove(&docker, &name).await? {
            removed.push(name);
        }
    }
    s.log.info(&format!(
        "Removed containers: {}",
        if removed.is_empty() {
            "none left".to_owned()
        } else {
            removed.join(", ")
        }
    ));
    let images = remove_deps_images(&docker, env).await;
    if images > 0 {
        s.log
            .info(&format!("Removed {images} dependencies image(s)"));
    }
    crate::proxy::remove_network(&docker, &names::network(env)).await?;
    s.log
        .info(&format!("Removed network {}", names::network(env)));
    remove_dns_record(s).await;
    remove_directory(s, &docker).await?;
    let volumes = [names::volume(env), names::replica_volume(env)];
    let kept = if s.ctx.delete_data {
        for v in &volumes {
            match docker.remove_volume(v, None::<RemoveVolumeOptions>).await {
                Ok(()) => s.log.info(&format!("Removed volume {v}")),
                Err(e) if docker::is_not_found(&e) => {}
                Err(e) => {
                    return Err(StageError::new(format!(
                        "Removing volume {v}: {}",
                        docker::message(&e)
                    )));
                }
            }
        }
        String::from("nothing kept")
    } else {
        format!(
            "database volume {} kept (delete_data=true removes it)",
            volumes[0]
        )
    };
    let message = format!("Environment removed from the server; {kept} ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}

/// Removes the images that carried the environment's installed
/// dependencies; returns how many went.
async fn remove_deps_images(docker: &Docker, env: EnvironmentId) -> usize {
    let repo = names::deps_image(env, "");
    let repo = repo.trim_end_matches(':').to_owned();
    let opts = ListImagesOptionsBuilder::default()
        .filters(&std::collections::HashMap::from([(
            "reference",
            vec![repo],
        )]))
        .build();
    let Ok(images) = docker.list_images(Some(opts)).await else {
        return 0;
    };
    let mut n = 0;
    for img in images {
        for t in img.repo_tags {
            if docker
                .remove_image(&t, None::<RemoveImageOptions>, None)
                .await
                .is_ok()
            {
                n += 1;
            }
        }
    }
    n
}

/// Deletes the environment's A record when oec created it; any other
/// record is somebody else's and stays. A failure is a warning: the record
/// is named so it can be removed by hand.
async fn remove_dns_record(s: &Stage<'_>) {
    let plan = s.plan;
    let (Some(dns), Some(id)) = (&plan.dns, &plan.env.dns_record_id) else {
        s.log.info("No DNS record created by oec to remove");
        return;
    };
    let url = format!(
        "{}/zones/{}/dns_records/{id}",
        s.settings.pipeline.cloudflare_api_url, dns.zone_id
    );
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            s.log.warning(&format!("HTTP client: {e}"));
            return;
        }
    };
    match super::configuring_dns::call(client.delete(url), &dns.token).await {
        Ok(v) => match super::configuring_dns::check(&v) {
            Ok(()) => s
                .log
                .info(&format!("Removed DNS record {} ({id})", plan.hostname)),
            Err(e) => s.log.warning(&format!(
                "Cloudflare refused to delete the DNS record {} ({id}): {e}; remove it by hand",
                plan.hostname
            )),
        },
        Err((what, e)) => s.log.warning(&format!(
            "Deleting the DNS record {} ({id}): {what}: {e}; remove it by hand",
            plan.hostname
        )),
    }
}

/// Removes `{root}/{uuid}`. Parts of it (backups, the filestore) belong to
/// root or Odoo's user, so a one-off root container removes it.
async fn remove_directory(s: &Stage<'_>, docker: &Docker) -> Result<(), StageError> {
    let root = &s.settings.deploy_root;
    let env = s.ctx.environment_id;
    let (code, out) = docker::run_once(
        docker,
        docker::OneShot {
            name: names::chown_container(env),
            image: s.settings.pipeline.postgres_image.clone(),
            argv: vec![
                "rm".into(),
                "-rf".into(),
                "--".into(),
                format!("/oec-root/{env}"),
            ],
            binds: vec![format!("{root}:/oec-root")],
            network: None,
            env: Vec::new(),
        },
    )
    .await?;
    if code != 0 {
        return Err(StageError::new(format!(
            "Removing {}: exit code {code}: {}",
            names::env_dir(root, env),
            out.join(" / ")
        )));
    }
    s.log
        .info(&format!("Removed {}", names::env_dir(root, env)));
    Ok(())
}
