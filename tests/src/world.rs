//! The world of the full-pipeline tests: a stack with two workers, this
//! machine as a server, local git repositories, the Cloudflare imitation and
//! Odoo 17.0 from the local registry.

use std::time::Duration;

use bollard::Docker;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::git::GitHost;
use crate::imitation::{self, Imitation};
use crate::stack::{ServerLogin, Stack};
use crate::{Resp, TargetEnv};

pub const DEPLOY: Duration = Duration::from_secs(240);
pub const CF_TOKEN: &str = "cf-token-7f3a9b2c5d";
pub const ZONE: &str = "zone0123456789";
pub const REPO_TOKEN: &str = "ghp_repoToken5e8d1c";

pub fn docker() -> Docker {
    Docker::connect_with_local_defaults().expect("docker")
}

pub fn registry() -> String {
    TargetEnv::load().registry
}

/// Removes everything of an environment when dropped (also when the test
/// fails): its subdomain names its DNS host file.
pub struct Purge(pub Uuid, pub String);

impl Drop for Purge {
    fn drop(&mut self) {
        crate::purge_environment(self.0, Some(&format!("{}.apps.oec.test", self.1)));
    }
}

pub async fn inspect(name: &str) -> Option<bollard::models::ContainerInspectResponse> {
    docker()
        .inspect_container(
            name,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .ok()
}

/// Runs a command in a container; its standard output.
pub async fn exec(container: &str, cmd: &[&str], user: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["exec", "-u", user, container])
        .args(cmd)
        .output()
        .await
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One SQL query in the environment's database, on `container`.
pub async fn psql(container: &str, env: Uuid, sql: &str) -> String {
    exec(
        container,
        &["psql", "-U", "odoo", "-d", &env.to_string(), "-tAc", sql],
        "postgres",
    )
    .await
}

pub struct World {
    pub stack: Stack,
    pub cloudflare: Imitation,
    pub git: GitHost,
    pub org: Uuid,
    pub project: Uuid,
    pub server: Uuid,
    /// An initialized Odoo 17.0 database, for environments whose tests are
    /// not about initialization.
    pub initialized: Initialized,
}

/// An organization with a DNS provider, platform/organization/project
/// repositories, this machine as a server and Odoo 17.0 from the registry.
pub async fn world(extra: &[(&str, &str)]) -> World {
    let target = TargetEnv::load();
    let cloudflare = Imitation::start(
        "127.0.0.1:0",
        imitation::cloudflare(CF_TOKEN, ZONE, &target.dns_hosts_dir),
    )
    .await;
    let cf_url = format!("http://{}/client/v4", cloudflare.addr);
    let mut env: Vec<(&str, &str)> = vec![("OEC_CLOUDFLARE_API_URL", &cf_url)];
    env.extend_from_slice(extra);
    let stack = Stack::start_full(2, &env).await;
    let (org, project, server) = stack.world("acme", ServerLogin::Key).await;
    let t = stack.admin_token.clone();
    let git = GitHost::new();
    let mut files = crate::odoo::Module::new("shop_portal", "1.0").files();
    files.push(("requirements.txt".into(), "# shop\nsix==1.16.0\n".into()));
    let project_url = git.repo(
        "shop",
        &crate::odoo::refs(&files),
        "Add customer portal module",
    );
    let r = stack
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/projects/{project}"),
            Some(&t),
            Some(json!({"git_url": project_url, "git_branch": "main"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for (scope, name, extra_files) in [
        (
            "platform",
            "platform-utils",
            vec![("requirements.txt", "six==1.16.0  # again\n")],
        ),
        ("organization", "org-modules", vec![]),
    ] {
        let mut files = vec![("README.md", "addons\n")];
        files.extend(extra_files);
        let url = git.repo(name, &files, &format!("{name} initial"));
        let mut body = json!({"scope": scope, "name": name, "git_url": url, "branch": "main"});
        if scope == "organization" {
            body["organization_id"] = json!(org);
            body["token"] = json!(REPO_TOKEN);
        }
        let r = stack.post("/api/v1/repositories", &t, body).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = stack
        .post(
            "/api/v1/dns-providers",
            &t,
            json!({"organization_id": org, "kind": "cloudflare", "api_token": CF_TOKEN,
                   "zone_id": ZONE, "apps_domain": "apps.oec.test"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = stack
        .post(
            "/api/v1/odoo-versions",
            &t,
            json!({"version": "17.0", "image": format!("{}/oec/odoo:17.0", registry())}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    World {
        stack,
        cloudflare,
        git,
        org,
        project,
        server,
        initialized: Initialized::serve().await,
    }
}

impl World {
    /// Makes Odoo `series` (`18.0`) deploy the local registry's real Odoo
    /// image, whether or not the version was registered before.
    pub async fn real_odoo(&self, series: &str) {
        let image = format!("{}/oec/odoo:{series}", registry());
        let r = self
            .stack
            .post(
                "/api/v1/odoo-versions",
                &self.stack.admin_token,
                json!({"version": series, "image": image}),
            )
            .await;
        if r.status != 201 {
            sqlx::query("UPDATE odoo_versions SET image = $1 WHERE version = $2")
                .bind(&image)
                .bind(series)
                .execute(&self.stack.pool)
                .await
                .expect("update version");
        }
    }

    pub async fn environment(&self, body: Value) -> Uuid {
        let mut b = json!({"project_id": self.project, "server_id": self.server, "kind": "staging",
                           "odoo_version": "17.0", "cpu_cores": 1.0, "ram_mb": 1024, "disk_gb": 5});
        if let (Some(b), Some(extra)) = (b.as_object_mut(), body.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        let r = self
            .stack
            .post("/api/v1/environments", &self.stack.admin_token, b)
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.id()
    }

    /// A staging environment on `sub` whose first deployment restores an
    /// initialized database, removed from the server when the returned
    /// guard drops.
    pub async fn staging(&self, sub: &str) -> (Uuid, Purge) {
        let env = self
            .environment(json!({"name": "staging", "subdomain": sub,
                                "migration_source_url": self.initialized.url}))
            .await;
        (env, Purge(env, sub.to_owned()))
    }

    /// A staging environment on `sub` whose first deployment initializes
    /// its database (`-i base`), removed when the guard drops.
    pub async fn fresh_staging(&self, sub: &str) -> (Uuid, Purge) {
        let env = self
            .environment(json!({"name": "staging", "subdomain": sub}))
            .await;
        (env, Purge(env, sub.to_owned()))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.stack.get(path, &self.stack.admin_token).await
    }

    pub async fn deploy_and_wait(&self, env: Uuid) -> (Uuid, Value) {
        let id = self.stack.deploy(env).await;
        let d = self.stack.wait_terminal(id, DEPLOY).await;
        (id, d)
    }

    pub async fn steps(&self, id: Uuid) -> Vec<Value> {
        self.get(&format!("/api/v1/deployments/{id}/progress"))
            .await
            .body["steps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn logs(&self, id: Uuid) -> Vec<Value> {
        self.get(&format!("/api/v1/deployments/{id}/logs?limit=500"))
            .await
            .body["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn messages(&self, id: Uuid) -> Vec<String> {
        self.logs(id)
            .await
            .iter()
            .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Fails if any of `secrets` appears in `text`.
pub fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "{what} leaks a secret ({}...)", &s[..4]);
    }
}

/// A backup as the migration tooling makes it: manifest.json, dump.sql and
/// filestore.tar.gz in a zip (built with Python's standard library). Its
/// database is real Odoo 17.0 with `base` (scripts/test-images made it),
/// whose company is `Migrated Co`, with an old database uuid and an
/// enterprise code that the restore must not keep.
pub fn backup_zip() -> Vec<u8> {
    base_zip(
        "
SET search_path = public;
UPDATE res_partner SET name = 'Migrated Co' WHERE id = 1;
UPDATE ir_config_parameter SET value = 'old-uuid' WHERE key = 'database.uuid';
UPDATE ir_config_parameter SET value = 'https://old.example.com' WHERE key = 'web.base.url';
INSERT INTO ir_config_parameter (key, value) VALUES ('database.enterprise_code', 'M123456');
",
        true,
    )
}

/// The real Odoo 17.0 `base` database (scripts/test-images made it) as a
/// migration backup, then `extra_sql`; with a one-file filestore if asked.
fn base_zip(extra_sql: &str, filestore: bool) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("oec-backup-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let script = r#"
import io, json, sys, tarfile, zipfile
out, base, extra, filestore = sys.argv[1:5]
dump = open(base).read() + extra
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("manifest.json", json.dumps({"odoo_version": "17.0", "db_name": "old", "version": 1}))
    z.writestr("dump.sql", dump)
    if filestore == "yes":
        fs = io.BytesIO()
        with tarfile.open(fileobj=fs, mode="w:gz") as t:
            data = b"attachment bytes"
            info = tarfile.TarInfo("ab/ab12cd34")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        z.writestr("filestore.tar.gz", fs.getvalue())
"#;
    let out = dir.join("backup.zip");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            out.to_str().unwrap_or_default(),
            &crate::TargetEnv::load().odoo_base_dump,
            extra_sql,
            if filestore { "yes" } else { "no" },
        ])
        .status()
        .expect("python3");
    assert!(status.success());
    let bytes = std::fs::read(&out).expect("zip");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

/// An initialized real Odoo 17.0 database for tests that are about what
/// happens after initialization (redeploys, load, lifecycle): the
/// environment restores it as a migration backup (a few seconds) instead
/// of running `-i base` (10-20 s on this machine). Served while it lives.
pub struct Initialized {
    _server: Imitation,
    /// The `migration_source_url` to create the environment with.
    pub url: String,
}

impl Initialized {
    pub async fn serve() -> Initialized {
        // On all interfaces: the download runs inside the Odoo container,
        // which reaches this machine through Docker's default bridge.
        let server = Imitation::start("0.0.0.0:0", imitation::file(base_zip("", true))).await;
        let url = format!(
            "http://{}:{}/initialized.zip",
            docker_gateway().await,
            server.addr.port()
        );
        Initialized {
            _server: server,
            url,
        }
    }
}

/// The address of Docker's default bridge on this machine, where a
/// container reaches an imitation served on all interfaces.
pub async fn docker_gateway() -> String {
    let out = tokio::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .await
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("docker0 address")
        .to_owned()
}

/// Something sampled on a thread every 20 ms until [`Sampler::stop`], e.g.
/// every process's command line while a deployment runs.
pub struct Sampler<T> {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<T>,
}

impl<T: Default + Send + 'static> Sampler<T> {
    pub fn start(mut sample: impl FnMut(&mut T) + Send + 'static) -> Sampler<T> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = T::default();
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                sample(&mut seen);
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        });
        Sampler { stop, thread }
    }

    pub fn stop(self) -> T {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("sampler")
    }
}

/// Every process's command line (`ps -eo args`), sampled until stopped.
pub fn command_lines() -> Sampler<String> {
    Sampler::start(|seen: &mut String| {
        if let Ok(out) = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
        {
            seen.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    })
}
