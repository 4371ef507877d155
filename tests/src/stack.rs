//! The real processes: one `oec-api` and any number of `oec-worker`s on a
//! fresh database and Redis prefix, driven over HTTP and SSE like a user.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    ADMIN_EMAIL, ADMIN_PASSWORD, RedisPrefix, Resp, TargetEnv, TestDatabase, binary, process_env,
};

/// A child process whose output is kept, and which is killed on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    pub fn spawn(name: &str, env: &[(String, String)]) -> Proc {
        let mut child = Command::new(binary(name))
            .env_clear()
            .envs(env.iter().cloned())
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push_str(&line);
                        l.push('\n');
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `text`.
    pub async fn wait_for(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{} did not log {text:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image no registry has: deployments with it fail at creating_database.
pub const ABSENT_DB_IMAGE: &str = "127.0.0.1:5000/oec/absent:1";
/// The error such a deployment ends with.
pub const ABSENT_DB_IMAGE_ERROR: &str = "Failed to pull image 127.0.0.1:5000/oec/absent:1";

pub struct Stack {
    pub api: Proc,
    pub workers: Vec<Proc>,
    pub http: Api,
    pub env: Vec<(String, String)>,
    pub pool: sqlx::PgPool,
    pub redis_keys: RedisPrefix,
    pub db: TestDatabase,
}

impl Stack {
    /// A stack whose deployments stop at creating_database, quickly and
    /// deterministically ([`ABSENT_DB_IMAGE`] cannot be pulled): for tests of
    /// the runner, the queue and the event stream rather than of the stages.
    pub async fn start(workers: usize, extra: &[(&str, &str)]) -> Stack {
        let mut base: Vec<(&str, &str)> = vec![("OEC_POSTGRES_IMAGE", ABSENT_DB_IMAGE)];
        base.extend_from_slice(extra);
        Stack::start_full(workers, &base).await
    }

    /// A stack that deploys for real with the images of scripts/test-images
    /// from the local registry, DNS verified against the local dnsmasq.
    pub async fn start_full(workers: usize, extra: &[(&str, &str)]) -> Stack {
        let db = TestDatabase::create().await;
        let target = TargetEnv::load();
        let postgres = format!("{}/oec/postgres:15", target.registry);
        let pgbouncer = format!("{}/oec/pgbouncer:1", target.registry);
        let mut base: Vec<(&str, &str)> = vec![
            ("OEC_ALLOW_FILE_REPOS", "1"),
            ("OEC_HEARTBEAT_MS", "300"),
            ("RUST_LOG", "info"),
            ("OEC_POSTGRES_IMAGE", &postgres),
            ("OEC_PGBOUNCER_IMAGE", &pgbouncer),
            ("OEC_DNS_NAMESERVERS", &target.dns),
            ("OEC_DNS_VERIFY_INTERVAL_SECS", "1"),
            ("OEC_DNS_VERIFY_TIMEOUT_SECS", "15"),
            ("OEC_HEALTH_TIMEOUT_SECS", "60"),
            // The server's proxy: Traefik from scripts/test-images, Pebble as
            // its ACME CA (scripts/services).
            ("OEC_PROXY_IMAGE", &target.proxy_image),
            ("OEC_ACME_DIRECTORY", &target.acme_directory),
            ("OEC_ACME_CA_CERTIFICATES", &target.acme_ca),
            ("OEC_ACME_ROOTS", &target.acme_roots),
            ("OEC_CERTIFICATE_TIMEOUT_SECS", "30"),
            // Redeploys drain the previous container briefly.
            ("OEC_DRAIN_SECS", "2"),
        ];
        for (k, v) in extra {
            base.retain(|(name, _)| name != k);
            base.push((k, v));
        }
        let env = process_env(&db.url, &base);
        let api = Proc::spawn("oec-api", &env);
        api.wait_for("oec-api listening", Duration::from_secs(60))
            .await;
        let port = api
            .log()
            .lines()
            .find_map(|l| l.split("port=").nth(1).map(|p| p.trim().to_owned()))
            .expect("api port");
        let address = format!("http://127.0.0.1:{port}");
        let mut procs = Vec::new();
        for _ in 0..workers {
            let w = Proc::spawn("oec-worker", &env);
            procs.push(w);
        }
        for w in &procs {
            w.wait_for("oec-worker started", Duration::from_secs(60))
                .await;
        }
        let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
        let prefix = env
            .iter()
            .find(|(k, _)| k == "OEC_REDIS_PREFIX")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let redis_keys = RedisPrefix(prefix);
        Stack {
            api,
            workers: procs,
            http: Api::login(address).await,
            env,
            pool,
            redis_keys,
            db,
        }
    }

    /// Another process on the same database and Redis prefix.
    pub fn spawn(&self, name: &str, extra: &[(&str, &str)]) -> Proc {
        let mut env = self.env.clone();
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        Proc::spawn(name, &env)
    }

    /// The value of one variable of the stack's environment.
    pub fn var(&self, name: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

impl std::ops::Deref for Stack {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.http
    }
}

/// An oec API as a user drives it: its address and the portal admin's
/// token. A [`Stack`] is one; so is any other deployment of oec (the
/// compose test's, behind nginx).
pub struct Api {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

impl Api {
    /// The API at `address` (`http://host:port`), signed in as the portal
    /// admin the test settings bootstrap.
    pub async fn login(address: String) -> Api {
        let mut a = Api {
            address,
            client: reqwest::Client::new(),
            admin_token: String::new(),
        };
        let r = a
            .send(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(r.status, 200, "admin login at {}: {}", a.address, r.text);
        a.admin_token = r.body["access_token"].as_str().expect("token").to_owned();
        a
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
        crate::request(&self.client, self.url(path), method, token, body).await
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

    /// Creates a user and logs them in.
    pub async fn user(&self, name: &str) -> (Uuid, String) {
        let email = format!("{name}@oec.test");
        let r = self
            .post(
                "/api/v1/users",
                &self.admin_token,
                json!({"email": email, "name": name, "password": "password-123"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let login = self
            .send(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"email": email, "password": "password-123"})),
            )
            .await;
        (
            r.id(),
            login.body["access_token"]
                .as_str()
                .expect("token")
                .to_owned(),
        )
    }

    /// An organization with a project, this machine as a server (reached over
    /// SSH with the given credentials) and an Odoo version. Returns
    /// (org, project, server).
    pub async fn world(&self, slug: &str, server: ServerLogin) -> (Uuid, Uuid, Uuid) {
        let t = &self.admin_token;
        let org = self
            .post(
                "/api/v1/organizations",
                t,
                json!({"name": slug, "slug": slug}),
            )
            .await
            .id();
        let project = self
            .post(
                "/api/v1/projects",
                t,
                json!({"organization_id": org, "name": format!("{slug} project"), "slug": "proj",
                       "git_url": "https://git.example.com/acme/proj.git", "git_branch": "main"}),
            )
            .await
            .id();
        let target = TargetEnv::load();
        let mut body = json!({"organization_id": org, "name": "this-machine", "host": target.host,
                              "ssh_port": target.port, "ssh_user": target.user});
        match server {
            ServerLogin::Key => {
                body["auth_method"] = json!("key");
                body["private_key"] = json!(target.private_key());
            }
            ServerLogin::Password(p) => {
                body["auth_method"] = json!("password");
                body["password"] = json!(p.unwrap_or(target.password.clone()));
            }
            ServerLogin::Port(port) => {
                body["auth_method"] = json!("password");
                body["password"] = json!("irrelevant");
                body["ssh_port"] = json!(port);
            }
        }
        let r = self.post("/api/v1/servers", t, body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let server = r.id();
        let _ = self
            .post(
                "/api/v1/odoo-versions",
                t,
                json!({"version": "18.0", "image": "odoo:18.0"}),
            )
            .await;
        (org, project, server)
    }

    pub async fn environment(&self, project: Uuid, server: Uuid, name: &str) -> Uuid {
        let r = self
            .post(
                "/api/v1/environments",
                &self.admin_token,
                json!({"project_id": project, "server_id": server, "name": name, "kind": "staging",
                       "subdomain": format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..8]), "odoo_version": "18.0"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.id()
    }

    /// Triggers a deployment of `env` as the portal admin.
    pub async fn deploy(&self, env: Uuid) -> Uuid {
        let r = self
            .post(
                "/api/v1/deployments",
                &self.admin_token,
                json!({"environment_id": env}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        r.id()
    }

    /// Polls a deployment until `step` is its current step.
    pub async fn wait_step(&self, deployment: Uuid, step: &str, within: Duration) {
        self.poll(deployment, within, &format!("reached {step}"), |d| {
            d["current_step"] == step
        })
        .await;
    }

    /// Polls a deployment until it is terminal.
    pub async fn wait_terminal(&self, deployment: Uuid, within: Duration) -> Value {
        self.poll(deployment, within, "ended", |d| {
            matches!(
                d["status"].as_str(),
                Some("success" | "failed" | "cancelled")
            )
        })
        .await
    }

    /// The deployment once `done` holds for it; fails the test after `within`.
    async fn poll(
        &self,
        deployment: Uuid,
        within: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let r = self
                .get(
                    &format!("/api/v1/deployments/{deployment}"),
                    &self.admin_token,
                )
                .await;
            if done(&r.body) {
                return r.body;
            }
            assert!(
                Instant::now() < deadline,
                "deployment {deployment} never {what}: {}",
                r.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub enum ServerLogin {
    Key,
    Password(Option<String>),
    /// A password login to another port on this machine.
    Port(u16),
}

/// One SSE message as a client sees it.
#[derive(Debug, Clone, Default)]
pub struct SseMessage {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
    pub comment: Option<String>,
}

impl SseMessage {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A live SSE connection; messages arrive on `rx`. Dropping it disconnects.
/// Every frame with an `event:` is checked against the documented event
/// schema as it arrives; a test whose client got a frame that does not match
/// fails when the client is dropped.
pub struct SseClient {
    pub rx: mpsc::UnboundedReceiver<SseMessage>,
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    task: tokio::task::JoinHandle<()>,
    violations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        self.task.abort();
        if !std::thread::panicking() {
            let v = self.violations.lock().expect("violations");
            assert!(v.is_empty(), "frames that break the event schema: {v:#?}");
        }
    }
}

impl SseClient {
    pub async fn connect(url: &str, last_event_id: Option<&str>) -> SseClient {
        let mut req = reqwest::Client::new()
            .get(url)
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("sse connect");
        let status = resp.status();
        let headers = resp.headers().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = violations.clone();
        let schema = crate::schema::Schema::documented();
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(pos) = buf.find("\n\n") {
                    let frame: String = buf.drain(..pos + 2).collect();
                    let mut m = SseMessage::default();
                    for line in frame.lines() {
                        if let Some(c) = line.strip_prefix(':') {
                            m.comment = Some(c.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            m.event = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("id:") {
                            m.id = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            if !m.data.is_empty() {
                                m.data.push('\n');
                            }
                            m.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    if let Some(event) = &m.event
                        && status.is_success()
                        && let Err(e) = schema.check_frame(event, &m.data)
                    {
                        seen.lock()
                            .expect("violations")
                            .push(format!("{e} in {}", m.data));
                    }
                    if tx.send(m).is_err() {
                        return;
                    }
                }
            }
        });
        SseClient {
            rx,
            status,
            headers,
            task,
            violations,
        }
    }

    /// Whether the server closed the stream (messages may still be queued).
    pub fn closed(&self) -> bool {
        self.task.is_finished()
    }

    /// The next message, or `None` after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseMessage> {
        tokio::time::timeout(within, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages until one matches `stop` (included), or until `within` passes.
    pub async fn until(
        &mut self,
        within: Duration,
        stop: impl Fn(&SseMessage) -> bool,
    ) -> Vec<SseMessage> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Some(m) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            let done = stop(&m);
            out.push(m);
            if done {
                break;
            }
        }
        out
    }
}
