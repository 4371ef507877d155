//! `oec-bench deploy --api URL --token T [--runs N]`: a fresh deployment of
//! a sample project (local git repository, the images of scripts/test-images)
//! and N redeploys with unchanged images and repositories, wall time to
//! healthy and per stage; then, under HTTPS load through the server's
//! Traefik (50 requests/s), side by side: a stop-then-start replacement of
//! the Odoo container done here through the Docker API (the old product's
//! path, the baseline) and oec's redeploys, failed requests and wall time;
//! the snapshot of an upgrade and the rollback of a failing one. Needs
//! `scripts/services` and `scripts/test-images` (scripts/bench runs them)
//! and an api and worker configured for the test images and the proxy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, NetworkingConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use oec_tests::TargetEnv;
use oec_tests::edge::{Load, client};
use oec_tests::git::GitHost;
use oec_tests::odoo::{Module, refs};
use serde_json::{Value, json};

use super::arg;

/// The api as the bench drives it: `base` ends in `/api/v1`.
pub(crate) struct Api {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) token: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// POSTs `body` and expects a 201: the new resource's id.
    pub(crate) async fn create(&self, path: &str, body: Value) -> anyhow::Result<String> {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        if status != 201 {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Deploys and waits for success; the deployment's wall time and per-stage seconds.
    async fn deploy(&self, env: &str) -> anyhow::Result<(f64, BTreeMap<usize, (String, f64)>)> {
        let (wall, stages, d) = self.deploy_any(env).await?;
        if d["status"] != "success" {
            bail!(
                "deployment {} ended {}: {}",
                d["id"],
                d["status"],
                d["error_message"]
            );
        }
        Ok((wall, stages))
    }

    /// Deploys and waits for the end; wall time, per-stage seconds, the final row.
    async fn deploy_any(
        &self,
        env: &str,
    ) -> anyhow::Result<(f64, BTreeMap<usize, (String, f64)>, Value)> {
        let t0 = Instant::now();
        let (status, d) = self
            .call(
                reqwest::Method::POST,
                "/deployments",
                Some(json!({"environment_id": env})),
            )
            .await?;
        if status != 202 {
            bail!("deploy: {status} {d}");
        }
        let id = d["id"].as_str().unwrap_or_default().to_owned();
        let d = loop {
            let (_, d) = self
                .call(reqwest::Method::GET, &format!("/deployments/{id}"), None)
                .await?;
            if ["success", "failed", "cancelled"].contains(&d["status"].as_str().unwrap_or("")) {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let wall = t0.elapsed().as_secs_f64();
        let (_, p) = self
            .call(
                reqwest::Method::GET,
                &format!("/deployments/{id}/progress"),
                None,
            )
            .await?;
        let mut stages = BTreeMap::new();
        for (i, s) in p["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            stages.insert(
                i,
                (
                    s["id"].as_str().unwrap_or_default().to_owned(),
                    s["duration_seconds"].as_f64().unwrap_or(0.0),
                ),
            );
        }
        Ok((wall, stages, d))
    }

    /// Seconds from the deployment's creation to the new container passing
    /// its health check (the switch's line), if it got there.
    async fn to_healthy(&self, d: &Value) -> Option<f64> {
        let id = d["id"].as_str()?;
        let (_, logs) = self
            .call(
                reqwest::Method::GET,
                &format!("/deployments/{id}/logs?limit=500"),
                None,
            )
            .await
            .ok()?;
        let created = chrono::DateTime::parse_from_rfc3339(d["created_at"].as_str()?).ok()?;
        let line = logs["logs"].as_array()?.iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("New container healthy ("))
        })?;
        let at = chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str()?).ok()?;
        Some((at - created).num_milliseconds() as f64 / 1000.0)
    }
}

/// The old product's redeploy, done here as the baseline: stop and remove
/// the serving container, then create and start the same one again, with
/// its image's own entrypoint and command (oec runs them held until the
/// database is ready; a stop-then-start has nothing to wait for).
async fn stop_then_start(docker: &Docker, name: &str) -> anyhow::Result<()> {
    let c = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await?;
    let config = c.config.context("no config")?;
    let image = docker
        .inspect_image(config.image.as_deref().unwrap_or_default())
        .await?
        .config
        .unwrap_or_default();
    let endpoints = c.network_settings.and_then(|n| n.networks).map(|n| {
        n.into_iter()
            .map(|(net, e)| {
                (
                    net,
                    bollard::models::EndpointSettings {
                        aliases: e.aliases,
                        ..Default::default()
                    },
                )
            })
            .collect()
    });
    docker
        .stop_container(
            name,
            Some(StopContainerOptionsBuilder::default().t(10).build()),
        )
        .await?;
    docker
        .remove_container(name, None::<RemoveContainerOptions>)
        .await?;
    let body = ContainerCreateBody {
        image: config.image,
        env: config.env,
        labels: config.labels,
        cmd: image.cmd,
        entrypoint: image.entrypoint,
        user: config.user,
        exposed_ports: config.exposed_ports,
        healthcheck: config.healthcheck,
        working_dir: config.working_dir,
        host_config: c.host_config,
        networking_config: Some(NetworkingConfig {
            endpoints_config: endpoints,
        }),
        ..Default::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            body,
        )
        .await?;
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await?;
    Ok(())
}

/// Waits until `https://{host}/web/health` answers 200 through the proxy.
async fn answers(host: &str, roots: &str, within: Duration) -> anyhow::Result<()> {
    let http = client(host, roots, false);
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(format!("https://{host}/web/health")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{host} did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bench's real Odoo module at `version`.
fn bench_module(version: &str) -> Module {
    Module::new("bench_module", version)
}

/// The redeploy paths side by side under HTTPS load, then the snapshot of
/// an upgrade and the rollback of a failing one.
async fn under_load(
    api: &Api,
    git: &GitHost,
    repo: &str,
    env: &str,
    slug: &str,
    runs: usize,
) -> anyhow::Result<()> {
    let target = TargetEnv::load();
    let roots = std::fs::read_to_string(&target.acme_roots)?;
    let host = format!("{slug}.oec.localhost");
    let docker = Docker::connect_with_local_defaults()?;
    let odoo = format!("{env}_odoo");
    answers(&host, &roots, Duration::from_secs(30)).await?;
    println!("\n-- under load: GET https://{host}/web/health 50/s through Traefik --");
    println!(
        "{:<40} {:>8} {:>8} {:>12}",
        "replacement", "ok", "failed", "wall (s)"
    );
    let settle = Duration::from_secs(1);
    // The baseline: stop-then-start through the Docker API.
    let mut base_failed = 0;
    for n in 0..runs {
        let load = Load::start(&host, &roots);
        tokio::time::sleep(settle).await;
        let t0 = Instant::now();
        stop_then_start(&docker, &odoo).await?;
        answers(&host, &roots, Duration::from_secs(120)).await?;
        let wall = t0.elapsed().as_secs_f64();
        tokio::time::sleep(settle).await;
        let (ok, failed) = load.stop().await;
        base_failed += failed.len();
        println!(
            "{:<40} {ok:>8} {:>8} {wall:>12.2}",
            format!("stop-then-start (baseline) #{}", n + 1),
            failed.len()
        );
    }
    // oec's redeploy, unchanged inputs.
    let mut oec_failed = 0;
    let mut healthy = Vec::new();
    for n in 0..runs {
        let load = Load::start(&host, &roots);
        tokio::time::sleep(settle).await;
        let (wall, _, d) = api.deploy_any(env).await?;
        tokio::time::sleep(settle).await;
        let (ok, failed) = load.stop().await;
        if d["status"] != "success" {
            bail!("redeploy ended {}: {}", d["status"], d["error_message"]);
        }
        oec_failed += failed.len();
        let h = api.to_healthy(&d).await;
        if let Some(h) = h {
            healthy.push(h);
        }
        println!(
            "{:<40} {ok:>8} {:>8} {wall:>12.2}   new container healthy after {}",
            format!("oec redeploy #{}", n + 1),
            failed.len(),
            h.map_or("?".to_owned(), |h| format!("{h:.2}s"))
        );
    }
    healthy.sort_by(f64::total_cmp);
    println!(
        "failed requests: baseline {base_failed}, oec {oec_failed} (target 0); unchanged redeploy to healthy: median {:.2}s (target < 5 s)",
        healthy.get(healthy.len() / 2).copied().unwrap_or(f64::NAN)
    );

    // A snapshot: an installed module changes, so it is upgraded.
    let status = tokio::process::Command::new("docker")
        .args(["exec", "-u", "odoo", &odoo, "odoo", "-d", env])
        .args(["-i", "bench_module", "--stop-after-init", "--no-http"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    if !status.success() {
        bail!("installing bench_module failed");
    }
    let m11 = bench_module("1.1").field("note", "Char").files();
    git.push(repo, &refs(&m11), "Bench 1.1");
    let load = Load::start(&host, &roots);
    let (wall, _, d) = api.deploy_any(env).await?;
    let (ok, failed) = load.stop().await;
    if d["status"] != "success" {
        bail!("upgrade ended {}: {}", d["status"], d["error_message"]);
    }
    println!(
        "upgrade of 1 module: {wall:.2}s, snapshot {} bytes in {:.2}s; {ok} ok, {} failed requests",
        d["snapshot"]["bytes"],
        d["snapshot"]["seconds"].as_f64().unwrap_or(f64::NAN),
        failed.len()
    );
    // A rollback: the next upgrade's migration raises.
    let m12 = bench_module("1.2")
        .migration(
            "1.2",
            "pre",
            "raise Exception('bench: this migration fails')",
        )
        .files();
    git.push(repo, &refs(&m12), "Bench 1.2 (failing migration)");
    let load = Load::start(&host, &roots);
    let (wall, _, d) = api.deploy_any(env).await?;
    tokio::time::sleep(settle).await;
    let (ok, failed) = load.stop().await;
    println!(
        "failing upgrade: ended {} after {wall:.2}s, rolled_back {}, rollback {:.2}s; {ok} ok, {} failed requests",
        d["status"],
        d["rolled_back"],
        d["rollback_seconds"].as_f64().unwrap_or(f64::NAN),
        failed.len()
    );
    Ok(())
}

/// Odoo's own `odoo -i base --stop-after-init` on `image`, timed: a
/// PostgreSQL container of the test images and a one-off Odoo container on
/// a network of their own, with the CPU and memory oec gives an
/// environment's Odoo (`cpus`, `memory_mb`). The baseline a fresh
/// deployment is measured against. `extra` is what oec adds to `-i base`
/// for the environment (no demo data on a staging one).
async fn odoo_init_baseline(
    image: &str,
    postgres: &str,
    cpus: f64,
    memory_mb: u64,
    extra: &[&str],
) -> anyhow::Result<f64> {
    let tag = format!(
        "oec-bench-init-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let docker = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("docker")
            .args(&args)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        anyhow::Ok(())
    };
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let result = async {
        docker(owned(&["network", "create", &tag])).await?;
        docker(owned(&[
            "run",
            "-d",
            "--name",
            &format!("{tag}-db"),
            "--network",
            &tag,
            "-e",
            "POSTGRES_USER=odoo",
            "-e",
            "POSTGRES_PASSWORD=odoo",
            postgres,
        ]))
        .await?;
        let ready = Instant::now();
        while docker(owned(&[
            "exec",
            &format!("{tag}-db"),
            "pg_isready",
            "-U",
            "odoo",
            "-h",
            "127.0.0.1",
        ]))
        .await
        .is_err()
        {
            if ready.elapsed() > Duration::from_secs(60) {
                bail!("the baseline's PostgreSQL did not start");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let t0 = Instant::now();
        docker(owned(
            &[
                "run",
                "--rm",
                "--network",
                &tag,
                "-e",
                &format!("HOST={tag}-db"),
                "--cpus",
                &format!("{cpus}"),
                "--memory",
                &format!("{memory_mb}m"),
                image,
                "odoo",
                "-d",
                "bench",
                "-i",
                "base",
                "--stop-after-init",
                "--no-http",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        ))
        .await?;
        Ok(t0.elapsed().as_secs_f64())
    }
    .await;
    let _ = docker(owned(&["rm", "-f", &format!("{tag}-db")])).await;
    let _ = docker(owned(&["network", "rm", &tag])).await;
    result
}

pub async fn deploy(args: &[String]) -> anyhow::Result<()> {
    let api = Api {
        client: reqwest::Client::new(),
        base: arg(args, "--api").context("--api URL")?,
        token: arg(args, "--token").context("--token T")?,
    };
    let runs: usize = arg(args, "--runs")
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(3);
    let series = arg(args, "--series").unwrap_or_else(|| "17.0,18.0".to_owned());
    let target = TargetEnv::load();
    let git = GitHost::new();
    let slug = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let org = api
        .create("/organizations", json!({"name": slug, "slug": slug}))
        .await?;
    let key = std::fs::read_to_string(&target.key_path)?;
    let server = api
        .create(
            "/servers",
            json!({"organization_id": org, "name": "this-machine", "host": target.host, "ssh_port": target.port,
                   "ssh_user": target.user, "auth_method": "key", "private_key": key}),
        )
        .await?;
    for series in series.split(',') {
        println!("\n== real Odoo {series} ==");
        let bench = Bench {
            api: &api,
            git: &git,
            target: &target,
            org: &org,
            server: &server,
            slug: &slug,
            runs,
        };
        bench.one_series(series).await?;
    }
    Ok(())
}

/// What every series' run shares: the api, the git host, this machine as
/// the server of one organization, the hostnames' prefix and the runs.
struct Bench<'a> {
    api: &'a Api,
    git: &'a GitHost,
    target: &'a TargetEnv,
    org: &'a str,
    server: &'a str,
    slug: &'a str,
    runs: usize,
}

impl Bench<'_> {
    async fn one_series(&self, series: &str) -> anyhow::Result<()> {
        let Bench {
            api,
            git,
            target,
            org,
            server,
            slug,
            runs,
        } = *self;
        let short = series.replace('.', "");
        let repo_name = format!("bench-project-{short}");
        let mut files = bench_module("1.0").files();
        files.push(("requirements.txt".into(), "six==1.16.0\n".into()));
        let repo = git.repo(&repo_name, &refs(&files), "Bench module");
        let project = api
        .create(
            "/projects",
            json!({"organization_id": org, "name": format!("Bench {series}"), "slug": format!("bench{short}"),
                   "git_url": repo, "git_branch": "main"}),
        )
        .await?;
        let image = format!("{}/oec/odoo:{series}", target.registry);
        let (status, v) = api
            .call(
                reqwest::Method::POST,
                "/odoo-versions",
                Some(json!({"version": series, "image": image})),
            )
            .await?;
        if status != 201 && status != 409 {
            bail!("odoo version: {status} {v}");
        }
        // The environment's Odoo gets 70% of 2 cores and 2048 MB; the
        // baseline's one-off container gets the same.
        let postgres = format!("{}/oec/postgres:15", target.registry);
        // The environment is staging: oec initializes it without demo data
        // (`--without-demo=all` before 19, which loads none by default).
        let major: u32 = series
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let no_demo: &[&str] = if major < 19 {
            &["--without-demo=all"]
        } else {
            &[]
        };
        let init = odoo_init_baseline(&image, &postgres, 1.4, 1433, no_demo).await?;
        let sub = format!("{slug}-{short}");
        let env = api
        .create(
            "/environments",
            json!({"project_id": project, "server_id": server, "name": format!("bench{short}"), "kind": "staging",
                   "subdomain": sub, "odoo_version": series, "cpu_cores": 2.0, "ram_mb": 2048, "disk_gb": 5}),
        )
        .await?;
        let result = async {
        let (fresh, fresh_stages) = api.deploy(&env).await?;
        let mut walls = Vec::new();
        let mut stage_runs: BTreeMap<usize, (String, Vec<f64>)> = BTreeMap::new();
        for _ in 0..runs {
            let (wall, stages) = api.deploy(&env).await?;
            walls.push(wall);
            for (i, (id, secs)) in stages {
                stage_runs.entry(i).or_insert_with(|| (id, Vec::new())).1.push(secs);
            }
        }
        walls.sort_by(f64::total_cmp);
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        println!("{:<26} {:>10} {:>18}", "stage", "fresh (s)", "redeploy median (s)");
        for (i, (id, secs)) in &fresh_stages {
            let re = stage_runs.get(i).map(|(_, v)| median(v)).unwrap_or(0.0);
            println!("{id:<26} {secs:>10.2} {re:>18.2}");
        }
        println!(
            "Odoo {series}: Odoo's own -i base (baseline, same CPU and memory) {init:.2}s; \
             fresh deployment to HTTPS {fresh:.2}s = {:.2}x the baseline (target <= 1.5x)",
            fresh / init
        );
        let re = median(&walls);
        println!(
            "unchanged redeploy wall time: median {re:.2}s over {runs} runs (min {:.2}s, max {:.2}s)",
            walls.first().copied().unwrap_or(0.0),
            walls.last().copied().unwrap_or(0.0),
        );
        under_load(api, git, &repo_name, &env, &sub, runs).await
    }
    .await;
        oec_tests::purge_environment(env.parse().unwrap_or_default(), None);
        result
    }
}
