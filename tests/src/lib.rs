//! The test harness: real PostgreSQL, Redis and the real API server.
//!
//! [`TestApp::spawn`] creates a fresh database named by a UUID, starts the api
//! on a free port against it with its own Redis key prefix, and drops the
//! database when the test ends, so tests run in parallel without sharing state.

pub mod browser;
pub mod edge;
pub mod git;
pub mod imitation;
pub mod odoo;
pub mod schema;
pub mod stack;
pub mod world;

use std::collections::HashMap;

use oec_api::startup::Application;
use oec_common::config::Settings;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@oec.test";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The secret key of every test app (base64 of 32 bytes).
pub const SECRET_KEY_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// The PostgreSQL server tests create their databases on.
pub fn base_database_url() -> String {
    std::env::var("OEC_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://oec:oec@127.0.0.1:5432/oec".into())
}

pub fn redis_url() -> String {
    std::env::var("OEC_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{db}")
}

/// A database that exists for one test and is dropped with it.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let name = format!("oec_test_{}", Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&base_database_url())
            .await
            .expect("connect to PostgreSQL (run scripts/services)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = with_database(&base_database_url(), &name);
        TestDatabase { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context: use a short-lived runtime on a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base_database_url())
                    .await
                    .ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The settings a test app runs with; `extra` overrides or adds variables.
pub fn test_settings(database_url: &str, extra: &[(&str, &str)]) -> Settings {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let mut vars: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", &redis_url()),
        ("OEC_REDIS_PREFIX", &prefix),
        ("OEC_BIND", "127.0.0.1:0"),
        ("OEC_JWT_SECRET", "test-jwt-secret-test-jwt-secret-0123"),
        ("OEC_SECRET_KEY", SECRET_KEY_B64),
        ("OEC_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("OEC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("OEC_DB_MAX_CONNECTIONS", "5"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    Settings::from_vars(oec_common::config::Process::Api, vars).expect("valid test settings")
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// One JSON request as tests make them.
pub async fn request(
    client: &reqwest::Client,
    url: String,
    method: reqwest::Method,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut req = client.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

impl Resp {
    /// The `error` code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn id(&self) -> Uuid {
        self.body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no id in {}", self.text))
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub settings: Settings,
    pub db: sqlx::PgPool,
    pub redis_keys: RedisPrefix,
    // Dropped last: the database outlives the pool above.
    pub database: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(extra: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create().await;
        let settings = test_settings(&database.url, extra);
        let app = Application::build(settings.clone())
            .await
            .expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        tokio::spawn(app.run_until_stopped());
        let db = sqlx::PgPool::connect(&database.url)
            .await
            .expect("test pool");
        let client = reqwest::Client::new();
        let redis_keys = RedisPrefix(settings.redis_prefix.clone());
        let mut t = TestApp {
            address,
            client,
            admin_token: String::new(),
            settings,
            db,
            redis_keys,
            database,
        };
        t.admin_token = t.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        t
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        request(&self.client, self.url(path), method, token, body).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send(reqwest::Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Posts raw bytes with a content type, for malformed-body cases.
    pub async fn post_raw(
        &self,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        self.login_tokens(email, password).await.0
    }

    /// Logs in: a new session's (access token, refresh token).
    pub async fn login_tokens(&self, email: &str, password: &str) -> (String, String) {
        let r = self
            .send(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {email}: {}", r.text);
        let token = |k: &str| r.body[k].as_str().expect("token").to_owned();
        (token("access_token"), token("refresh_token"))
    }

    /// Creates a user (as the portal admin) and logs them in.
    pub async fn user(&self, name: &str) -> (Uuid, String) {
        let email = format!("{name}@oec.test");
        let r = self
            .post(
                "/api/v1/users",
                &self.admin_token,
                json!({"email": email, "name": name, "password": "password-123"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (r.id(), self.login(&email, "password-123").await)
    }
}

/// A small world to test against: an organization with a project, a server,
/// an Odoo version and an environment, all created by the portal admin.
pub struct World {
    pub org: Uuid,
    pub project: Uuid,
    pub server: Uuid,
    pub environment: Uuid,
}

impl World {
    pub async fn build(app: &TestApp, slug: &str) -> World {
        let t = &app.admin_token;
        let org = app
            .post(
                "/api/v1/organizations",
                t,
                json!({"name": slug, "slug": slug}),
            )
            .await;
        assert_eq!(org.status, StatusCode::CREATED, "{}", org.text);
        let org = org.id();
        let project = app
            .post(
                "/api/v1/projects",
                t,
                json!({"organization_id": org, "name": "My Project", "slug": "my-project",
                       "git_url": "https://git.example.com/acme/my-project.git", "git_branch": "main"}),
            )
            .await;
        assert_eq!(project.status, StatusCode::CREATED, "{}", project.text);
        let server = app
            .post(
                "/api/v1/servers",
                t,
                json!({"organization_id": org, "name": "srv", "host": "127.0.0.1", "ssh_port": 2222,
                       "ssh_user": "oecdeploy", "auth_method": "password", "password": "server-pass-secret"}),
            )
            .await;
        assert_eq!(server.status, StatusCode::CREATED, "{}", server.text);
        // The version may exist already when a second world is built in one app.
        let v = app
            .post(
                "/api/v1/odoo-versions",
                t,
                json!({"version": "18.0", "image": "odoo:18.0"}),
            )
            .await;
        assert!(
            v.status == StatusCode::CREATED || v.code() == "version_exists",
            "{}",
            v.text
        );
        let env = app
            .post(
                "/api/v1/environments",
                t,
                json!({"project_id": project.id(), "server_id": server.id(), "name": "staging", "kind": "staging",
                       "subdomain": format!("{slug}-staging"), "odoo_version": "18.0", "cpu_cores": 2.0,
                       "ram_mb": 2048, "disk_gb": 20}),
            )
            .await;
        assert_eq!(env.status, StatusCode::CREATED, "{}", env.text);
        World {
            org,
            project: project.id(),
            server: server.id(),
            environment: env.id(),
        }
    }
}

/// The path of a workspace binary (`oec-api`, `oec-worker`, `oec-scheduler`),
/// built on first use so that the tests never run a stale one.
pub fn binary(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"))
            .args([
                "build",
                "-q",
                "-p",
                "oec-api",
                "-p",
                "oec-worker",
                "-p",
                "oec-scheduler",
                "-p",
                "oec-cli",
                "--bins",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> → target/debug/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join(name)
}

/// The environment a real process runs with in tests (as `test_settings`).
pub fn process_env(database_url: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let mut vars: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("REDIS_URL", &redis_url()),
        ("OEC_REDIS_PREFIX", &prefix),
        ("OEC_BIND", "127.0.0.1:0"),
        ("OEC_JWT_SECRET", "test-jwt-secret-test-jwt-secret-0123"),
        ("OEC_SECRET_KEY", SECRET_KEY_B64),
        ("OEC_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
        ("OEC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ("NO_COLOR", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}

/// This machine as a deployment target, from `.oec/target.env` (written by
/// scripts/services) or the environment.
pub struct TargetEnv {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_path: String,
    pub password: String,
    /// The local registry with the images of scripts/test-images.
    pub registry: String,
    /// dnsmasq (`ip:port`) and the folder of its host files.
    pub dns: String,
    pub dns_hosts_dir: String,
    /// A second account with the same key, not allowed to use Docker.
    pub user_no_docker: String,
    /// Pebble: its directory, the CA of its own TLS listener, and the roots
    /// it issues certificates under (fetched when it started).
    pub acme_directory: String,
    pub acme_ca: String,
    pub acme_roots: String,
    /// Traefik v3, built by scripts/test-images.
    pub proxy_image: String,
    /// The schemathesis command (a venv of scripts/services).
    pub schemathesis: String,
    /// A real Odoo 17.0 database with `base`, as plain SQL (scripts/test-images).
    pub odoo_base_dump: String,
}

impl TargetEnv {
    pub fn load() -> TargetEnv {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        for file in [
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.oec/target.env"),
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.oec/images.env"),
        ] {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            for line in text.lines() {
                if let Some((k, v)) = line.split_once('=') {
                    vars.entry(k.to_owned()).or_insert_with(|| v.to_owned());
                }
            }
        }
        let get = |k: &str| {
            vars.get(k).cloned().unwrap_or_else(|| {
                panic!("{k} missing: run scripts/services and scripts/test-images")
            })
        };
        TargetEnv {
            host: get("OEC_TEST_SSH_HOST"),
            port: get("OEC_TEST_SSH_PORT").parse().expect("port"),
            user: get("OEC_TEST_SSH_USER"),
            key_path: get("OEC_TEST_SSH_KEY"),
            password: get("OEC_TEST_SSH_PASSWORD"),
            registry: get("OEC_TEST_REGISTRY"),
            dns: get("OEC_TEST_DNS"),
            dns_hosts_dir: get("OEC_TEST_DNS_HOSTS_DIR"),
            user_no_docker: get("OEC_TEST_SSH_USER_NO_DOCKER"),
            acme_directory: get("OEC_TEST_ACME_DIRECTORY"),
            acme_ca: get("OEC_TEST_ACME_CA"),
            acme_roots: get("OEC_TEST_ACME_ROOTS"),
            proxy_image: get("OEC_TEST_PROXY_IMAGE"),
            schemathesis: get("OEC_TEST_SCHEMATHESIS"),
            odoo_base_dump: get("OEC_TEST_ODOO_BASE_DUMP"),
        }
    }

    pub fn private_key(&self) -> String {
        std::fs::read_to_string(&self.key_path).expect("read the test private key")
    }
}

/// Deletes every Redis key under a test's prefix when dropped, so test runs
/// leave nothing behind in the shared Redis.
pub struct RedisPrefix(pub String);

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.0);
        let _ = std::thread::spawn(move || -> Option<()> {
            let client = redis::Client::open(redis_url()).ok()?;
            let mut conn = client.get_connection().ok()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).ok()?;
            for chunk in keys.chunks(500) {
                let _: Option<i64> = redis::cmd("DEL").arg(chunk).query(&mut conn).ok();
            }
            Some(())
        })
        .join();
    }
}

/// A running deployment row to write logs for (organization, project,
/// server, version, environment and deployment inserted directly);
/// returns (deployment, organization).
pub async fn bare_deployment(pool: &sqlx::PgPool) -> anyhow::Result<(Uuid, Uuid)> {
    let (org, project, server, env, dep) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let slug = format!("bench-{}", &org.simple().to_string()[..8]);
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'bench', $2)")
        .bind(org)
        .bind(&slug)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO projects (id, organization_id, name, slug, git_url, git_branch) VALUES ($1, $2, 'bench', 'bench', 'https://h.example/r.git', 'main')")
        .bind(project).bind(org).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO servers (id, organization_id, name, host, ssh_port, ssh_user, auth_method, secret_encrypted) VALUES ($1, $2, 'bench', '127.0.0.1', 22, 'x', 'password', 'x')")
        .bind(server).bind(org).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO odoo_versions (id, version, image) VALUES ($1, '99.0', 'odoo:99.0') ON CONFLICT DO NOTHING")
        .bind(Uuid::new_v4()).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO environments (id, project_id, server_id, name, kind, subdomain, odoo_version, branch, cpu_cores, ram_mb, disk_gb)
                 VALUES ($1, $2, $3, 'bench', 'staging', $4, '99.0', 'main', 1, 1024, 10)")
        .bind(env).bind(project).bind(server).bind(&slug).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO deployments (id, project_id, environment_id, version, status, started_at) VALUES ($1, $2, $3, 1, 'running', now())")
        .bind(dep).bind(project).bind(env).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((dep, org))
}

/// Removes what deploying environment `env` on this machine created:
/// containers (replica included), network, volumes, the dependencies image,
/// its folder under /opt/paasportal and, given its host name, its dnsmasq
/// host file. Best effort: what is not there is skipped.
pub fn purge_environment(env: Uuid, hostname: Option<&str>) {
    let hosts = hostname
        .map(|h| format!("rm -f {}/{h}", TargetEnv::load().dns_hosts_dir))
        .unwrap_or_default();
    let script = format!(
        "docker rm -f {env}_odoo {env}_odoo_next {env}_pgbouncer {env}_db {env}_oec_chown {env}_oec_snapshot postgres-replica-{env} \
           {env}_pgbouncer-replica; \
         docker network rm paasportal_net_{env}; \
         docker volume rm paasportal_pgdata_{env} paasportal_pgdata_replica_{env}; \
         docker rmi $(docker images -q oec-deps-{env}); rm -rf /opt/paasportal/{env}; {hosts}"
    );
    let _ = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// A fresh unencrypted ed25519 private key (OpenSSH format), made by
/// ssh-keygen: what a server's `private_key` must be since keys are read
/// when a server is created.
pub fn generated_private_key() -> String {
    let dir = std::env::temp_dir().join(format!("oec-key-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("id");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
    let key = std::fs::read_to_string(&path).expect("read the key");
    let _ = std::fs::remove_dir_all(&dir);
    key
}
