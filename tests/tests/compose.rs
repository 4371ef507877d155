//! docker/compose.yaml as a platform team runs it: the oec image built from
//! this build's binaries on the runtime base of docker/build-local, the
//! stack up with 3 workers, and deployments through nginx to this machine's
//! sshd. The images compose names that cannot be pulled here come from
//! scripts/test-images (PostgreSQL, the runtime base, Redis and nginx).
//!
//! The test's server is this machine's loopback sshd, which a container on
//! compose's network cannot reach, so an override puts the workers on the
//! host's network (PostgreSQL and Redis published on loopback ports for
//! them); the api replicas, the schedulers and nginx run as compose has them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use oec_tests::git::GitHost;
use oec_tests::stack::{Api, SseClient};
use oec_tests::world::Purge;
use oec_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TargetEnv, binary};
use serde_json::json;
use uuid::Uuid;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker/Dockerfile --target runtime-local` from the test build's
/// binaries (stripped of their debug information) on the runtime base.
fn build_image(tag: &str, dir: &Path) {
    let ctx = dir.join("context");
    std::fs::create_dir_all(ctx.join("bin")).expect("context");
    for name in ["oec-api", "oec-worker", "oec-scheduler"] {
        run(Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(ctx.join("bin").join(name))
            .arg(binary(name)));
    }
    run(Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--target", "runtime-local"])
        .args(["--build-arg", "RUNTIME_BASE=oec/runtime-base:bookworm"])
        .args([
            "--build-arg",
            "INSTALL_PACKAGES=0",
            "--build-arg",
            "BINARIES=bin",
        ])
        .arg("-f")
        .arg(Path::new(REPO).join("docker/Dockerfile"))
        .args(["-t", tag])
        .arg(&ctx));
}

/// A compose project of docker/compose.yaml plus the test's override; taken
/// down with its volumes when dropped (its logs printed if the test failed).
struct Compose {
    project: String,
    override_file: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    image: String,
}

impl Compose {
    fn cmd(&self) -> Command {
        let mut c = Command::new("docker-compose");
        c.envs(self.env.iter().cloned())
            .args(["--no-ansi", "-p", &self.project, "-f"])
            .arg(Path::new(REPO).join("docker/compose.yaml"))
            .arg("-f")
            .arg(&self.override_file);
        c
    }

    /// The ids of one service's running containers.
    fn containers(&self, service: &str) -> Vec<String> {
        run(Command::new("docker").args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
    }

    fn logs(container: &str) -> String {
        let out = Command::new("docker")
            .args(["logs", container])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(out) = self.cmd().args(["logs", "--tail", "40"]).output()
        {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
        let _ = self
            .cmd()
            .args(["down", "-v", "--remove-orphans", "-t", "5"])
            .output();
        let _ = Command::new("docker").args(["rmi", &self.image]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_stack_deploys_through_nginx_shares_a_burst_and_recovers_a_killed_worker() {
    let t0 = Instant::now();
    let target = TargetEnv::load();
    let id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let dir = std::env::temp_dir().join(format!("oec-compose-{id}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let image = format!("oec:compose-{id}");
    build_image(&image, &dir);
    let built = t0.elapsed();

    let (http, pg, redis) = (free_port(), free_port(), free_port());
    let password = Uuid::new_v4().simple().to_string();
    let mut key = Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(Uuid::new_v4().as_bytes());
    let registry = &target.registry;
    let pebble = Path::new(&target.acme_roots)
        .parent()
        .expect("pebble dir")
        .display()
        .to_string();
    let override_file = dir.join("compose.test.yaml");
    std::fs::write(
        &override_file,
        format!(
            r#"version: "2.4"
services:
  postgres:
    ports: ["127.0.0.1:{pg}:5432"]
  redis:
    ports: ["127.0.0.1:{redis}:6379"]
  api:
    environment:
      OEC_ALLOW_FILE_REPOS: "1"
  scheduler:
    environment:
      OEC_REAPER_SCHEDULE: "* * * * * *"
      OEC_REAPER_STALE_SECS: "4"
  worker:
    network_mode: host
    environment:
      DATABASE_URL: postgres://oec:{password}@127.0.0.1:{pg}/oec
      REDIS_URL: redis://127.0.0.1:{redis}
      OEC_METRICS_BIND: 127.0.0.1:0
      OEC_WORKER_CONCURRENCY: "1"
      OEC_HEARTBEAT_MS: "300"
      OEC_ALLOW_FILE_REPOS: "1"
      OEC_POSTGRES_IMAGE: {registry}/oec/postgres:15
      OEC_PGBOUNCER_IMAGE: {registry}/oec/pgbouncer:1
      OEC_DNS_NAMESERVERS: {dns}
      OEC_DNS_VERIFY_INTERVAL_SECS: "1"
      OEC_HEALTH_TIMEOUT_SECS: "60"
      OEC_PROXY_IMAGE: {proxy}
      OEC_ACME_DIRECTORY: {acme}
      OEC_ACME_CA_CERTIFICATES: {acme_ca}
      OEC_ACME_ROOTS: {acme_roots}
      OEC_CERTIFICATE_TIMEOUT_SECS: "30"
      OEC_DRAIN_SECS: "2"
    volumes:
      - {pebble}:{pebble}:ro
"#,
            dns = target.dns,
            proxy = target.proxy_image,
            acme = target.acme_directory,
            acme_ca = target.acme_ca,
            acme_roots = target.acme_roots,
        ),
    )
    .expect("override");
    let env: Vec<(String, String)> = [
        ("POSTGRES_PASSWORD", password.clone()),
        (
            "OEC_SECRET_KEY",
            base64::engine::general_purpose::STANDARD.encode(&key),
        ),
        ("OEC_JWT_SECRET", Uuid::new_v4().simple().to_string()),
        ("OEC_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("OEC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ("OEC_IMAGE", image.clone()),
        ("OEC_POSTGRES_IMAGE", format!("{registry}/oec/postgres:15")),
        ("OEC_REDIS_IMAGE", "oec/redis:local".to_owned()),
        ("OEC_NGINX_IMAGE", "oec/nginx:local".to_owned()),
        ("OEC_HTTP_PORT", http.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let compose = Compose {
        project: format!("oectest{id}"),
        override_file,
        env,
        dir,
        image,
    };
    run(compose.cmd().args(["up", "-d", "--scale", "worker=3"]));
    let up = t0.elapsed() - built;

    // Through nginx: the api replicas answer once they are ready.
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !matches!(reqwest::get(format!("{base}/readyz")).await, Ok(r) if r.status() == 200) {
        assert!(Instant::now() < deadline, "nginx never answered /readyz");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let workers = compose.containers("worker");
    assert_eq!(workers.len(), 3, "{workers:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !workers
        .iter()
        .all(|w| Compose::logs(w).contains("oec-worker started"))
    {
        assert!(Instant::now() < deadline, "the workers never started");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(compose.containers("api").len(), 2);
    assert_eq!(compose.containers("scheduler").len(), 2);
    let ready = t0.elapsed() - built;
    let api = Api::login(base.clone()).await;
    let t = api.admin_token.clone();

    // An organization, this machine as its server, a project with an addon.
    let git = GitHost::new();
    let files = oec_tests::odoo::Module::new("shop_portal", "1.0").files();
    let repo = git.repo("shop", &oec_tests::odoo::refs(&files), "Shop portal");
    let org = api
        .post(
            "/api/v1/organizations",
            &t,
            json!({"name": "Compose", "slug": format!("compose{id}")}),
        )
        .await;
    assert_eq!(org.status, 201, "{}", org.text);
    let server = api
        .post(
            "/api/v1/servers",
            &t,
            json!({"organization_id": org.id(), "name": "this-machine", "host": target.host,
                   "ssh_port": target.port, "ssh_user": target.user, "auth_method": "key",
                   "private_key": target.private_key()}),
        )
        .await;
    assert_eq!(server.status, 201, "{}", server.text);
    let project = api
        .post(
            "/api/v1/projects",
            &t,
            json!({"organization_id": org.id(), "name": "Shop", "slug": "shop",
                   "git_url": repo, "git_branch": "main"}),
        )
        .await;
    assert_eq!(project.status, 201, "{}", project.text);
    let r = api
        .post(
            "/api/v1/odoo-versions",
            &t,
            json!({"version": "17.0", "image": format!("{registry}/oec/odoo:17.0")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut envs = Vec::new();
    let mut purges = Vec::new();
    for n in 0..3 {
        let sub = format!("compose{id}-{n}");
        let r = api
            .post(
                "/api/v1/environments",
                &t,
                json!({"project_id": project.id(), "server_id": server.id(), "name": format!("staging{n}"),
                       "kind": "staging", "subdomain": sub, "odoo_version": "17.0",
                       "cpu_cores": 0.5, "ram_mb": 512, "disk_gb": 2}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        envs.push(r.id());
        purges.push(Purge(r.id(), sub));
    }

    // The live stream through nginx: each event's id is its Redis stream
    // id, whose first part is the publish time (ms) on the same clock.
    let mut sse =
        SseClient::connect(&api.url(&format!("/api/v1/events/stream?token={t}")), None).await;
    assert_eq!(sse.status, 200);
    let connected_at = now_ms();
    let arrivals: Arc<Mutex<Vec<(u64, u64, String)>>> = Arc::default();
    let reader = {
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Some(m) = sse.next(Duration::from_secs(600)).await {
                let at = now_ms();
                let published =
                    m.id.as_deref()
                        .and_then(|i| i.split('-').next())
                        .and_then(|ms| ms.parse::<u64>().ok());
                if let Some(p) = published.filter(|p| *p >= connected_at) {
                    let kind = m.event.clone().unwrap_or_default();
                    arrivals.lock().expect("arrivals").push((p, at, kind));
                }
            }
        })
    };

    // A burst: one deployment per environment at once. With one slot per
    // worker, the three run on three workers.
    let posts = futures_util::future::join_all(
        envs.iter()
            .map(|e| api.post("/api/v1/deployments", &t, json!({"environment_id": e}))),
    )
    .await;
    let mut burst = Vec::new();
    for r in &posts {
        assert_eq!(r.status, 202, "{}", r.text);
        burst.push(r.id());
    }
    let burst_t0 = Instant::now();
    for d in &burst {
        let end = api.wait_terminal(*d, Duration::from_secs(300)).await;
        assert_eq!(end["status"], "success", "{end}");
    }
    let burst_wall = burst_t0.elapsed();
    let db = sqlx::PgPool::connect(&format!("postgres://oec:{password}@127.0.0.1:{pg}/oec"))
        .await
        .expect("compose's database");
    let ran_on: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT worker_id FROM deployments WHERE id = ANY($1)")
            .bind(&burst)
            .fetch_all(&db)
            .await
            .expect("worker ids")
            .into_iter()
            .collect();
    assert_eq!(ran_on.len(), 3, "the burst ran on {ran_on:?}");

    // Every event of the burst came through nginx unbuffered.
    let seen = arrivals.lock().expect("arrivals").clone();
    assert!(!seen.is_empty(), "no live event reached the stream");
    let first = seen.iter().min_by_key(|(p, _, _)| *p).expect("first");
    let first_lag = first.1.saturating_sub(first.0);
    assert!(
        first_lag <= 100,
        "the first event ({}) reached the client {first_lag} ms after its publish",
        first.2
    );
    let mut lags: Vec<u64> = seen.iter().map(|(p, a, _)| a.saturating_sub(*p)).collect();
    lags.sort_unstable();

    // A worker killed mid-deployment: the reaper fails its deployment, and
    // the environment deploys again on the others.
    let d = api.deploy(envs[0]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let worker_id = loop {
        let w: Option<String> =
            sqlx::query_scalar("SELECT worker_id FROM deployments WHERE id = $1")
                .bind(d)
                .fetch_one(&db)
                .await
                .expect("worker id");
        if let Some(w) = w {
            break w;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {d} was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    api.wait_step(d, "cloning_project_repo", Duration::from_secs(60))
        .await;
    let victim = workers
        .iter()
        .find(|w| Compose::logs(w).contains(&worker_id))
        .unwrap_or_else(|| panic!("no container logged worker {worker_id}"))
        .clone();
    run(Command::new("docker").args(["kill", &victim]));
    let killed = Instant::now();
    let end = api.wait_terminal(d, Duration::from_secs(60)).await;
    let reaped = killed.elapsed();
    assert_eq!(end["status"], "failed", "{end}");
    let message = end["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("Worker lost"), "{end}");
    let again = api.deploy(envs[0]).await;
    let end = api.wait_terminal(again, Duration::from_secs(300)).await;
    assert_eq!(end["status"], "success", "{end}");
    let redeployed_on: String =
        sqlx::query_scalar("SELECT worker_id FROM deployments WHERE id = $1")
            .bind(again)
            .fetch_one(&db)
            .await
            .expect("worker id");
    assert_ne!(redeployed_on, worker_id);
    reader.abort();

    eprintln!(
        "compose: image built in {:.1}s, stack up in {:.1}s and ready in {:.1}s; burst of 3 on {} workers in {:.1}s; \
         {} live events through nginx, first {first_lag} ms after its publish, p50 {} ms, p99 {} ms, max {} ms; \
         killed worker's deployment failed by the reaper {:.1}s after the kill",
        built.as_secs_f64(),
        up.as_secs_f64(),
        ready.as_secs_f64(),
        ran_on.len(),
        burst_wall.as_secs_f64(),
        lags.len(),
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or_default(),
        reaped.as_secs_f64(),
    );
    drop(purges);
}
