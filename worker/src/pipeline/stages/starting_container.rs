//! starting_container: `{uuid}_odoo` through the Docker API as the spec's
//! `docker run`: 70% of CPU and RAM, `unless-stopped`, json-file log
//! rotation, the four mounts, `ODOO_RC`, data and log directories owned by
//! uid 100 / gid 101, the environment's network (which the server's proxy
//! joined in creating_network; environments share no network), and the
//! Traefik labels. On a redeploy the new container starts beside the
//! serving one, held out of the proxy (`switch`). When the merged
//! dependencies were installed before on this image, the image with them
//! (`oec-deps-{uuid}:{fingerprint}`) is started instead. Odoo's server in
//! it is held (see [`held`]) until initializing_database has made the
//! database ready and calls [`serve`]. Fatal.

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::{ContainerCreateBody, HostConfig};
use oec_common::db::plan;

use super::switch;
use crate::dependencies::{self, DepFile};
use crate::names::{deps_image, network, odoo_container};
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::target::shell::quote;

/// While this file is missing in a new Odoo container, the container waits
/// instead of running its image's command.
const SERVE_FLAG: &str = "/tmp/oec-serve";

/// The image's entrypoint and command, as a container created by oec runs
/// them: held until [`SERVE_FLAG`] exists. An Odoo server that started
/// before its database was initialized (or upgraded) keeps the registry it
/// loaded then (Odoo 17 answers every request with `KeyError: 'ir.http'`),
/// and one that started before its dependencies were installed cannot
/// import them; held, it starts once, on a ready database, with its
/// dependencies in place. The flag lives in the container's own layer, so
/// a restart (the restart policy, `docker restart`, a lifecycle start)
/// runs the command at once.
pub fn held(entrypoint: &[String], cmd: &[String]) -> (Vec<String>, Vec<String>) {
    let wait = format!("until [ -e {SERVE_FLAG} ]; do sleep 0.2; done; exec \"$@\"");
    let entry = vec!["/bin/sh".into(), "-c".into(), wait, "oec-held".into()];
    (entry, entrypoint.iter().chain(cmd).cloned().collect())
}

/// Lets a held container run its image's command (Odoo's server).
pub async fn serve(docker: &bollard::Docker, container: &str) -> Result<(), StageError> {
    let argv = vec!["touch".to_owned(), SERVE_FLAG.to_owned()];
    let out = docker::exec(docker, container, argv, None, Vec::new(), &mut |_| {}).await?;
    if out.exit_code != 0 {
        return Err(StageError::new(format!(
            "Starting Odoo's server in {container} failed: {}",
            out.tail.join(" ")
        )));
    }
    Ok(())
}

/// The spec's Traefik labels (stage 15), rate limit included.
pub fn traefik_labels(
    env: oec_common::model::ids::EnvironmentId,
    hostname: &str,
) -> Vec<(String, String)> {
    let r = format!("traefik.http.routers.{env}");
    let m = format!("traefik.http.middlewares.{env}-ratelimit.ratelimit");
    vec![
        ("traefik.enable".into(), "true".into()),
        ("traefik.docker.network".into(), network(env)),
        (format!("{r}.rule"), format!("Host(`{hostname}`)")),
        (format!("{r}.entrypoints"), "websecure".into()),
        (format!("{r}.tls"), "true".into()),
        (format!("{r}.tls.certresolver"), "letsencrypt".into()),
        (
            format!("{r}.middlewares"),
            format!("{env}-ratelimit,{env}-retry"),
        ),
        (
            format!("traefik.http.services.{env}.loadbalancer.server.port"),
            "8069".into(),
        ),
        (format!("{m}.average"), "100".into()),
        (format!("{m}.burst"), "50".into()),
        // A request that reaches a container as it goes away is sent to
        // another one (a connection error only; nothing is sent twice).
        (
            format!("traefik.http.middlewares.{env}-retry.retry.attempts"),
            "3".into(),
        ),
    ]
}

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let name = odoo_container(env);
    let root = crate::names::env_dir(&s.settings.deploy_root, env);
    s.log.info(&format!("Starting Odoo container {name}..."));
    let docker = s.target.docker().clone();
    let plan = s.plan;
    let base_image = plan.env.odoo_image.clone();
    let odoo = plan.split.odoo;
    let hostname = plan.hostname.clone();

    // 1. The dependencies the repositories ask for, and whether an image
    //    with exactly them on this base image exists.
    let deps = dependencies::merge(&read_dependency_files(s).await?);
    let inspected = docker.inspect_image(&base_image).await.map_err(|e| {
        StageError::new(format!(
            "Image {base_image} is not on the server: {}",
            docker::message(&e)
        ))
    })?;
    let base_id = inspected
        .id
        .filter(|id| id.starts_with("sha256:"))
        .ok_or_else(|| StageError::new(format!("Image {base_image} has no content id")))?;
    let config = inspected.config.unwrap_or_default();
    let command = (
        config.entrypoint.unwrap_or_default(),
        config.cmd.unwrap_or_default(),
    );
    if command.0.is_empty() && command.1.is_empty() {
        return Err(StageError::new(format!(
            "Image {base_image} has neither an entrypoint nor a command: it cannot start Odoo"
        )));
    }
    let fingerprint = dependencies::fingerprint(&deps.canonical(&base_id));
    let cached = deps_image(env, &fingerprint);
    let image = if !deps.is_empty() && docker::has_image(&docker, &cached).await? {
        s.state.deps_cached = true;
        cached.clone()
    } else {
        base_image.clone()
    };
    s.state.deps = Some((deps, fingerprint));
    s.state.image_command = Some(command.clone());

    // 2. A serving previous container stays until its successor is
    //    healthy (`switch`); a stopped one goes now.
    let serving = match docker::inspect(&docker, &name).await? {
        Some(c) if docker::is_running(&c) => true,
        Some(_) => {
            s.log.info("Removing the stopped previous container...");
            docker::remove(&docker, &name).await?;
            false
        }
        None => false,
    };

    // 3. Directories, owned by Odoo's uid 100 / gid 101 (through Docker, so
    //    the SSH user needs no root).
    let target = s.target;
    let log = s.log.clone();
    let mk = format!(
        "mkdir -p {}/data {}/logs {}/addons",
        quote(&root),
        quote(&root),
        quote(&root)
    );
    let out = target.run(&mk, &mut |l| log.debug(l)).await?;
    if !out.success() {
        return Err(StageError::new(format!(
            "Creating {root} failed: {}",
            out.tail.join(" ")
        )));
    }
    // The helper runs as root, so it runs from the configured base image
    // pinned by its id (never from an image a deployment built, which a
    // repository's code may have changed) and sees only what it changes.
    let (code, _) = docker::run_once(
        &docker,
        docker::OneShot {
            name: crate::names::chown_container(env),
            image: base_id.clone(),
            argv: [
                "find",
                "/env/data",
                "/env/logs",
                "/env/odoo.conf",
                "(",
                "!",
                "-user",
                "100",
                "-o",
                "!",
                "-group",
                "101",
                ")",
                "-exec",
                "chown",
                "-h",
                "100:101",
                "{}",
                "+",
            ]
            .map(str::to_owned)
            .to_vec(),
            binds: vec![
                format!("{root}/data:/env/data"),
                format!("{root}/logs:/env/logs"),
                format!("{root}/odoo.conf:/env/odoo.conf"),
            ],
            network: None,
            env: Vec::new(),
        },
    )
    .await?;
    if code != 0 {
        return Err(StageError::new(format!(
            "Setting the owner of {root}/data and {root}/logs to 100:101 failed (exit {code})"
        )));
    }

    // 4. The container, on the environment's network only.
    s.log.info(&format!(
        "Applying Odoo resource limits: CPU={} cores, RAM={}m (70% of allocated)",
        odoo.cpu_cores, odoo.ram_mb
    ));
    let net = network(env);
    let mut labels: HashMap<String, String> = traefik_labels(env, &hostname).into_iter().collect();
    labels.insert("oec.environment".into(), env.to_string());
    labels.insert("oec.deployment".into(), s.ctx.deployment_id.to_string());
    let (entrypoint, cmd) = held(&command.0, &command.1);
    let body = ContainerCreateBody {
        image: Some(image.clone()),
        entrypoint: Some(entrypoint),
        cmd: Some(cmd),
        env: Some(vec!["ODOO_RC=/etc/odoo/odoo.conf".into()]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: Some(vec![
                format!("{root}/odoo.conf:/etc/odoo/odoo.conf:ro"),
                format!("{root}/addons:/mnt/extra-addons:ro"),
                format!("{root}/data:/var/lib/odoo"),
                format!("{root}/logs:/var/log/odoo"),
            ]),
            network_mode: Some(net.clone()),
            memory: Some(odoo.memory_bytes()),
            nano_cpus: Some(odoo.nano_cpus()),
            restart_policy: Some(super::unless_stopped()),
            log_config: Some(super::json_file_logs()),
            ..Default::default()
        }),
        healthcheck: Some(switch::healthcheck()),
        ..Default::default()
    };
    let id = if serving {
        let pending = switch::start_beside(s, &docker, &name, body).await?;
        let id = pending.id.clone();
        s.state.switch = Some(pending);
        id
    } else {
        switch::create_and_start(&docker, &name, body).await?
    };
    let short: String = id.chars().take(12).collect();
    let message = format!("Container started: {short} ({})", secs(t0));
    s.log.info(&message);
    s.log.info(&format!(
        "Odoo container started on internal network: {net}"
    ));
    s.log.info(&format!(
        "Container routed by the server's proxy over {net} (no network shared with other environments)"
    ));
    s.log
        .info("Odoo's server starts once the database is ready (initializing_database)");
    plan::record_container(s.pool, s.ctx.deployment_id, &id, &base_image)
        .await
        .map_err(|e| StageError::new(format!("Recording the container failed: {e}")))?;
    Ok(Outcome::Completed(message))
}

/// The largest dependency file read; a larger one is ignored with a warning.
pub const MAX_DEPENDENCY_FILE: u64 = 64 * 1024;

/// Every repository's apt.txt and requirements.txt, read in one command
/// from the checked-out commit's git objects (never by following a path on
/// the server, so a symlink in a repository reads nothing outside it).
async fn read_dependency_files(s: &Stage<'_>) -> Result<Vec<DepFile>, StageError> {
    let plan = s.plan;
    let addons = format!(
        "{}/addons",
        crate::names::env_dir(&s.settings.deploy_root, s.ctx.environment_id)
    );
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let dirs: Vec<(String, String)> = plan
        .repos
        .iter()
        .map(|r| (r.dir.clone(), format!("{addons}/{}", r.dir)))
        .collect();
    let cmd = dependency_files_command(&dirs, &nonce);
    let mut files: Vec<DepFile> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let marker = format!("@@oec-{nonce} ");
    let out = s
        .target
        .run(&cmd, &mut |line| {
            if let Some(rest) = line.strip_prefix(&marker) {
                let mut parts = rest.splitn(3, ' ');
                let (what, repo, kind) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                match what {
                    "file" => files.push(DepFile {
                        repo: repo.to_owned(),
                        kind: kind.to_owned(),
                        content: String::new(),
                    }),
                    "large" => refused.push(format!(
                        "{repo}/{kind} is larger than {MAX_DEPENDENCY_FILE} bytes, ignored"
                    )),
                    _ => refused.push(format!("{repo}/{kind} is not a regular file, ignored")),
                }
            } else if let Some(f) = files.last_mut() {
                f.content.push_str(line);
                f.content.push('\n');
            }
        })
        .await?;
    if !out.success() {
        return Err(StageError::new(format!(
            "Reading apt.txt and requirements.txt failed: {}",
            out.tail.join(" ")
        )));
    }
    for r in refused {
        s.log.warning(&r);
    }
    Ok(files)
}

/// The command that prints each repository's dependency files from `HEAD`'s
/// tree: a regular file (mode 100644/100755) of at most
/// [`MAX_DEPENDENCY_FILE`] bytes follows a `@@oec-{nonce} file` line; a
/// symlink, submodule or directory by that name, or a larger file, is only
/// named. The nonce makes the markers unguessable by a file's content.
fn dependency_files_command(dirs: &[(String, String)], nonce: &str) -> String {
    let mut cmd = String::from(super::cloning::GIT_PRELUDE);
    for (name, path) in dirs {
        for f in ["apt.txt", "requirements.txt"] {
            let d = quote(path);
            let m = |what: &str| quote(&format!("@@oec-{nonce} {what} {name} {f}"));
            cmd.push_str(&format!(
                "set -- $(g -C {d} ls-tree -l HEAD -- {f} 2>/dev/null); \
                 if [ \"$1\" = 100644 ] || [ \"$1\" = 100755 ]; then \
                   if [ \"$4\" -le {MAX_DEPENDENCY_FILE} ]; then echo {file}; g -C {d} cat-file blob \"$3\"; echo; \
                   else echo {large}; fi; \
                 elif [ -n \"$1\" ]; then echo {other}; fi; ",
                file = m("file"),
                large = m("large"),
                other = m("other"),
            ));
        }
    }
    cmd.push_str("true");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_container_runs_its_images_entrypoint_and_command_once_the_flag_exists() {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let (entry, cmd) = held(&own(&["/entrypoint.sh"]), &own(&["odoo"]));
        assert_eq!(entry[..2], own(&["/bin/sh", "-c"]));
        assert_eq!(entry[3], "oec-held");
        assert!(
            entry[2].starts_with("until [ -e /tmp/oec-serve ]"),
            "{}",
            entry[2]
        );
        assert_eq!(cmd, own(&["/entrypoint.sh", "odoo"]));
        // An image with a command and no entrypoint.
        let (_, cmd) = held(&[], &own(&["odoo", "--dev=all"]));
        assert_eq!(cmd, own(&["odoo", "--dev=all"]));
        // The wait ends once the flag exists, and the command gets its
        // arguments as they were.
        let script = entry[2].replace(SERVE_FLAG, "/");
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "oec-held", "printf", "%s|", "a b", "c"])
            .output()
            .expect("sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|c|");
    }

    #[test]
    fn labels_are_the_specs() {
        let env = oec_common::model::ids::EnvironmentId(
            "3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c"
                .parse()
                .unwrap_or_default(),
        );
        let labels: HashMap<_, _> = traefik_labels(env, "staging-myproject.oecsh.com")
            .into_iter()
            .collect();
        let get = |k: &str| labels.get(k).map(String::as_str);
        assert_eq!(get("traefik.enable"), Some("true"));
        assert_eq!(
            get("traefik.http.routers.3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c.rule"),
            Some("Host(`staging-myproject.oecsh.com`)")
        );
        assert_eq!(
            get("traefik.http.routers.3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c.tls.certresolver"),
            Some("letsencrypt")
        );
        assert_eq!(
            get(
                "traefik.http.services.3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c.loadbalancer.server.port"
            ),
            Some("8069")
        );
        assert_eq!(
            get(
                "traefik.http.middlewares.3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c-ratelimit.ratelimit.average"
            ),
            Some("100")
        );
        assert_eq!(
            get(
                "traefik.http.middlewares.3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c-ratelimit.ratelimit.burst"
            ),
            Some("50")
        );
    }
}
