//! `oec-bench deploy --api URL --token T [--runs N]`: a fresh deployment of
//! a sample project (local git repository, the images of scripts/test-images)
//! and N redeploys with unchanged images and repositories, wall time to
//! healthy and per stage. The fresh deployment is the baseline of the same
//! run. Needs `scripts/services` and `scripts/test-images` (scripts/bench
//! runs them) and an api and worker configured for the test images.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use oec_tests::TargetEnv;
use oec_tests::git::GitHost;
use serde_json::{Value, json};

use super::arg;

struct Api {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
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

    async fn create(&self, path: &str, body: Value) -> anyhow::Result<String> {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        if status != 201 {
            bail!("POST {path}: {status} {v}");
        }
        Ok(v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Deploys and waits; the deployment's wall time and per-stage seconds.
    async fn deploy(&self, env: &str) -> anyhow::Result<(f64, BTreeMap<usize, (String, f64)>)> {
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
        if d["status"] != "success" {
            bail!(
                "deployment {id} ended {}: {}",
                d["status"],
                d["error_message"]
            );
        }
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
        Ok((wall, stages))
    }
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
    let target = TargetEnv::load();
    let git = GitHost::new();
    let repo = git.repo(
        "bench-project",
        &[
            (
                "bench_module/__manifest__.py",
                "{'name': 'Bench', 'depends': ['base']}\n",
            ),
            ("requirements.txt", "six==1.16.0\n"),
        ],
        "Bench module",
    );
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
    let project = api
        .create(
            "/projects",
            json!({"organization_id": org, "name": "Bench", "slug": "bench", "git_url": repo, "git_branch": "main"}),
        )
        .await?;
    let image = format!("{}/oec/odoo:17.0", target.registry);
    let (status, v) = api
        .call(
            reqwest::Method::POST,
            "/odoo-versions",
            Some(json!({"version": "17.0", "image": image})),
        )
        .await?;
    if status != 201 && status != 409 {
        bail!("odoo version: {status} {v}");
    }
    let env = api
        .create(
            "/environments",
            json!({"project_id": project, "server_id": server, "name": "bench", "kind": "staging",
                   "subdomain": slug, "odoo_version": "17.0", "cpu_cores": 1.0, "ram_mb": 1024, "disk_gb": 5}),
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
        let re = median(&walls);
        println!(
            "wall time to healthy: fresh {fresh:.2}s (baseline), redeploy median {re:.2}s over {runs} runs \
             (min {:.2}s, max {:.2}s) = {:.2}x the fresh deployment; target < 20 s",
            walls.first().copied().unwrap_or(0.0),
            walls.last().copied().unwrap_or(0.0),
            re / fresh
        );
        anyhow::Ok(())
    }
    .await;
    oec_tests::purge_environment(env.parse().unwrap_or_default(), None);
    result
}
