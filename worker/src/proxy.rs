//! The server's edge: one Traefik v3 (`oec-traefik`) per Docker engine,
//! which oec creates and keeps to its configuration. It runs on the host's
//! network: it listens on the server's ports 80 and 443 itself and reaches
//! each Odoo container at its address on the environment's own network
//! (`traefik.docker.network`), so environments share no network and none
//! reaches another's container. (A proxy attached to many bridge networks
//! instead would see its default route move to whichever network sorts
//! first, breaking its open connections, e.g. to the ACME CA.)
//!
//! The proxy's configuration (image, flags, environment, mounts) hashes into
//! the label `oec.proxy.config`; a proxy whose label differs is replaced. A
//! Traefik that oec did not create (any running container of a `traefik`
//! image) is used as it is: oec only attaches it to each environment's
//! network, which a proxy on a bridge network needs to reach the container.

use std::collections::HashMap;
use std::time::Instant;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, NetworkConnectRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectNetworkOptions, ListContainersOptionsBuilder,
    StartContainerOptions,
};
use oec_common::config::ProxySettings;
use sha2::{Digest as _, Sha256};

use crate::pipeline::docker;
use crate::target::Target;

/// The proxy container oec runs.
pub const CONTAINER: &str = "oec-traefik";
/// Its ACME account and certificates (`/letsencrypt/acme.json`).
pub const ACME_VOLUME: &str = "oec-traefik-acme";
/// The resolver name the environments' routers ask for (the spec's).
pub const RESOLVER: &str = "letsencrypt";
const CONFIG_LABEL: &str = "oec.proxy.config";
const CA_IN_CONTAINER: &str = "/etc/oec/acme-ca.pem";

/// What the proxy container is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub image: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// Digest of everything above and of the CA file's content.
    pub hash: String,
}

/// Where the proxy's copy of the ACME directory's CA lives on the server.
pub fn ca_path(deploy_root: &str) -> String {
    format!(
        "{}/.oec-proxy/acme-ca.pem",
        deploy_root.trim_end_matches('/')
    )
}

pub fn spec(p: &ProxySettings, deploy_root: &str) -> Spec {
    let mut cmd: Vec<String> = [
        "--providers.docker=true",
        "--providers.docker.exposedbydefault=false",
        "--entrypoints.web.address=:80",
        "--entrypoints.web.http.redirections.entrypoint.to=websecure",
        "--entrypoints.web.http.redirections.entrypoint.scheme=https",
        "--entrypoints.websecure.address=:443",
        // Odoo is a WSGI application: a header spelled X_Forwarded_For must
        // not pass for the X-Forwarded-For the proxy sets.
        "--entrypoints.web.http.aliasheadersstrategy=delete",
        "--entrypoints.websecure.http.aliasheadersstrategy=delete",
        "--certificatesresolvers.letsencrypt.acme.httpchallenge=true",
        "--certificatesresolvers.letsencrypt.acme.httpchallenge.entrypoint=web",
        "--certificatesresolvers.letsencrypt.acme.storage=/letsencrypt/acme.json",
        "--log.level=INFO",
        "--log.nocolor=true",
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
    ]
    .map(str::to_owned)
    .to_vec();
    cmd.push(format!(
        "--certificatesresolvers.letsencrypt.acme.caserver={}",
        p.acme_directory
    ));
    if let Some(email) = &p.acme_email {
        cmd.push(format!(
            "--certificatesresolvers.letsencrypt.acme.email={email}"
        ));
    }
    let mut env = Vec::new();
    let mut binds = vec![
        "/var/run/docker.sock:/var/run/docker.sock:ro".to_owned(),
        format!("{ACME_VOLUME}:/letsencrypt"),
    ];
    if p.acme_ca_pem.is_some() {
        env.push(format!("LEGO_CA_CERTIFICATES={CA_IN_CONTAINER}"));
        binds.push(format!("{}:{CA_IN_CONTAINER}:ro", ca_path(deploy_root)));
    }
    let mut h = Sha256::new();
    for part in std::iter::once(&p.image)
        .chain(&cmd)
        .chain(&env)
        .chain(&binds)
        .chain(p.acme_ca_pem.as_ref())
    {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Spec {
        image: p.image.clone(),
        cmd,
        env,
        binds,
        hash,
    }
}

/// What [`ensure`] found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    UpToDate,
    Started,
    Created,
    /// Its configuration changed: the old container was replaced.
    Replaced,
    /// A Traefik oec did not create runs there and is used as it is.
    External,
}

#[derive(Debug, Clone)]
pub struct Ensured {
    /// The container that routes (ours or the server's own).
    pub container: String,
    pub action: Action,
    pub image: String,
}

impl Ensured {
    /// One line for a log or a check: what the proxy is and what was done.
    pub fn describe(&self) -> String {
        match self.action {
            Action::UpToDate => format!("Proxy {} ({}) is up to date", self.container, self.image),
            Action::Started => format!(
                "Proxy {} ({}) was stopped: started",
                self.container, self.image
            ),
            Action::Created => format!("Proxy {} ({}) created", self.container, self.image),
            Action::Replaced => format!(
                "Proxy {} ({}) replaced: its configuration changed",
                self.container, self.image
            ),
            Action::External => format!(
                "Using the server's own Traefik {} ({}) as it is",
                self.container, self.image
            ),
        }
    }
}

/// The server's Traefik as it is now, without changing anything: ours (with
/// whether it is running and current), another one, or none.
pub async fn inspect(docker: &Docker, spec: &Spec) -> anyhow::Result<Option<Ensured>> {
    if let Some(c) = docker::inspect(docker, CONTAINER).await? {
        let label = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(CONFIG_LABEL).cloned());
        let running = docker::is_running(&c);
        let current = label.as_deref() == Some(spec.hash.as_str());
        let action = match (current, running) {
            (true, true) => Action::UpToDate,
            (true, false) => Action::Started,
            (false, _) => Action::Replaced,
        };
        let image = c
            .config
            .and_then(|c| c.image)
            .unwrap_or_else(|| spec.image.clone());
        return Ok(Some(Ensured {
            container: CONTAINER.into(),
            action,
            image,
        }));
    }
    external(docker).await
}

/// A running Traefik that oec did not create.
pub async fn external(docker: &Docker) -> anyhow::Result<Option<Ensured>> {
    let filters: HashMap<&str, Vec<&str>> = [("status", vec!["running"])].into();
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .map_err(|e| anyhow::anyhow!("listing containers: {}", docker::message(&e)))?;
    Ok(list.into_iter().find_map(|c| {
        let image = c.image?;
        let repo = docker::split_image(&image).0;
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if last != "traefik" {
            return None;
        }
        let name = c.names?.first()?.trim_start_matches('/').to_owned();
        (name != CONTAINER).then_some(Ensured {
            container: name,
            action: Action::External,
            image,
        })
    }))
}

/// Makes the server's proxy run with `spec`: creates it when missing,
/// replaces it when its configuration changed, starts it when stopped.
/// Lines worth logging go to `on_line`. Safe to run from several deployments
/// at once: they converge on one container (one that finds the container it
/// made removed by another's replacement looks again, up to three times).
pub async fn ensure(
    target: &Target,
    p: &ProxySettings,
    deploy_root: &str,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Ensured> {
    let mut attempt = 1;
    loop {
        match ensure_once(target, p, deploy_root, on_line).await {
            Ok(e) => return Ok(e),
            Err(e) if attempt < 3 => {
                on_line(&format!("{e:#}; looking at the proxy again"));
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn ensure_once(
    target: &Target,
    p: &ProxySettings,
    deploy_root: &str,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Ensured> {
    let spec = spec(p, deploy_root);
    let docker = target.docker();
    let found = inspect(docker, &spec).await?;
    let action = match &found {
        Some(e) if matches!(e.action, Action::UpToDate | Action::External) => {
            return Ok(e.clone());
        }
        Some(e) => e.action.clone(),
        None => Action::Created,
    };
    let t0 = Instant::now();
    if action == Action::Started {
        on_line(&format!("Starting the stopped proxy {CONTAINER}..."));
        start(docker).await?;
    } else {
        if action == Action::Replaced {
            on_line(&format!(
                "Replacing the proxy {CONTAINER}: its configuration changed"
            ));
            docker::remove(docker, CONTAINER).await?;
        } else {
            on_line(&format!(
                "Creating the proxy {CONTAINER} ({}) on ports 80 and 443...",
                spec.image
            ));
        }
        if let Some(pem) = &p.acme_ca_pem {
            target
                .write_file(&ca_path(deploy_root), pem.as_bytes(), 0o644)
                .await?;
        }
        let mut pulled = |l: &str| on_line(l);
        docker::ensure_image(docker, &spec.image, None, &mut pulled)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {:?}", e.message, e.data))?;
        create(docker, &spec).await?;
        start(docker).await?;
    }
    on_line(&format!(
        "Proxy {CONTAINER} running on the server's ports 80 and 443 ({:.1}s)",
        t0.elapsed().as_secs_f64()
    ));
    Ok(Ensured {
        container: CONTAINER.into(),
        action,
        image: spec.image,
    })
}

async fn create(docker: &Docker, spec: &Spec) -> anyhow::Result<()> {
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: Some(spec.cmd.clone()),
        env: Some(spec.env.clone()),
        labels: Some(
            [
                (CONFIG_LABEL.to_owned(), spec.hash.clone()),
                ("oec.proxy".to_owned(), "true".to_owned()),
            ]
            .into(),
        ),
        host_config: Some(HostConfig {
            binds: Some(spec.binds.clone()),
            network_mode: Some("host".into()),
            restart_policy: Some(crate::pipeline::stages::unless_stopped()),
            log_config: Some(crate::pipeline::stages::json_file_logs()),
            ..Default::default()
        }),
        ..Default::default()
    };
    match docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::default()
                    .name(CONTAINER)
                    .build(),
            ),
            body,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Another deployment created it in the meantime: the same spec wins
        // either way (checked by the caller's next inspect).
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409, ..
        }) => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "creating the proxy {CONTAINER}: {}",
            docker::message(&e)
        )),
    }
}

async fn start(docker: &Docker) -> anyhow::Result<()> {
    match docker
        .start_container(CONTAINER, None::<StartContainerOptions>)
        .await
    {
        Ok(()) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(e) => {
            let m = docker::message(&e);
            let hint = if m.contains("address already in use")
                || m.contains("port is already allocated")
            {
                ": another program holds port 80 or 443 on the server; stop it, or run Traefik yourself (see the README's \"Using your own Traefik\")"
            } else {
                ""
            };
            anyhow::bail!("starting the proxy {CONTAINER} failed: {m}{hint}");
        }
    }
    Ok(())
}

/// Connects `proxy` to `network` (nothing when it is connected already).
pub async fn attach(docker: &Docker, proxy: &str, network: &str) -> anyhow::Result<()> {
    let net = docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
        .map_err(|e| anyhow::anyhow!("inspecting {network}: {}", docker::message(&e)))?;
    let present = net
        .containers
        .unwrap_or_default()
        .values()
        .any(|c| c.name.as_deref() == Some(proxy));
    if present {
        return Ok(());
    }
    match docker
        .connect_network(
            network,
            NetworkConnectRequest {
                container: proxy.to_owned(),
                ..Default::default()
            },
        )
        .await
    {
        Ok(()) => Ok(()),
        // Connected by a concurrent deployment.
        Err(e) if docker::message(&e).contains("already exists") => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "connecting the proxy {proxy} to {network}: {}",
            docker::message(&e)
        )),
    }
}

/// Removes an environment's network, detaching the proxy (and anything else
/// still on it) first.
pub async fn remove_network(docker: &Docker, network: &str) -> anyhow::Result<()> {
    let net = match docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
    {
        Ok(n) => n,
        Err(e) if docker::is_not_found(&e) => return Ok(()),
        Err(e) => anyhow::bail!("inspecting {network}: {}", docker::message(&e)),
    };
    for id in net.containers.unwrap_or_default().into_keys() {
        let _ = docker
            .disconnect_network(
                network,
                NetworkDisconnectRequest {
                    container: id,
                    force: Some(true),
                },
            )
            .await;
    }
    docker
        .remove_network(network)
        .await
        .map_err(|e| anyhow::anyhow!("removing {network}: {}", docker::message(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProxySettings {
        ProxySettings {
            image: "traefik:v3".into(),
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_email: None,
            acme_ca_pem: None,
            acme_roots_pem: None,
            route_timeout: std::time::Duration::from_secs(60),
            certificate_timeout: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn the_spec_is_the_issues_proxy_and_its_hash_follows_every_input() {
        let s = spec(&settings(), "/opt/paasportal");
        for flag in [
            "--providers.docker.exposedbydefault=false",
            "--entrypoints.web.address=:80",
            "--entrypoints.websecure.address=:443",
            "--entrypoints.web.http.redirections.entrypoint.to=websecure",
            "--certificatesresolvers.letsencrypt.acme.httpchallenge.entrypoint=web",
            "--certificatesresolvers.letsencrypt.acme.caserver=https://acme-v02.api.letsencrypt.org/directory",
        ] {
            assert!(s.cmd.iter().any(|c| c == flag), "{flag} missing");
        }
        assert!(s.binds.contains(&format!("{ACME_VOLUME}:/letsencrypt")));
        assert!(s.env.is_empty());
        assert_eq!(s, spec(&settings(), "/opt/paasportal"));

        let mut with_email = settings();
        with_email.acme_email = Some("ops@example.com".into());
        let mut with_ca = settings();
        with_ca.acme_ca_pem = Some("-----BEGIN CERTIFICATE-----\nA\n".into());
        let mut other_ca = settings();
        other_ca.acme_ca_pem = Some("-----BEGIN CERTIFICATE-----\nB\n".into());
        let mut other_image = settings();
        other_image.image = "traefik:v3.7".into();
        let hashes: std::collections::HashSet<String> = [
            settings(),
            with_email,
            with_ca.clone(),
            other_ca,
            other_image,
        ]
        .iter()
        .map(|p| spec(p, "/opt/paasportal").hash)
        .collect();
        assert_eq!(hashes.len(), 5, "every input changes the hash");
        let ca = spec(&with_ca, "/opt/paasportal");
        assert!(
            ca.env
                .contains(&format!("LEGO_CA_CERTIFICATES={CA_IN_CONTAINER}"))
        );
        assert!(ca.binds.contains(&format!(
            "/opt/paasportal/.oec-proxy/acme-ca.pem:{CA_IN_CONTAINER}:ro"
        )));
    }
}
