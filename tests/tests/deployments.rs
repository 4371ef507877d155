//! Deployments end to end: the real oec-api and two oec-workers against the
//! real PostgreSQL, Redis, sshd and Docker engine.

use std::time::Duration;

use oec_tests::stack::{ABSENT_DB_IMAGE_ERROR, ServerLogin, SseClient, Stack};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn docker_network_exists(name: &str) -> bool {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    docker
        .inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .is_ok()
}

async fn remove_network(name: &str) {
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let _ = docker.remove_network(name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_reaches_the_server_and_is_watched_live_line_by_line() {
    // Kept after the failure, so the network can be checked.
    let stack = Stack::start(2, &[("OEC_KEEP_FAILED", "1")]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    assert_eq!(
        sse.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    assert_eq!(
        sse.headers
            .get("x-accel-buffering")
            .and_then(|v| v.to_str().ok()),
        Some("no")
    );
    let first = sse.next(Duration::from_secs(5)).await.expect("connected");
    assert_eq!(first.event.as_deref(), Some("connected"));

    let r = stack
        .post("/api/v1/deployments", &t, json!({"environment_id": env}))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(
        (r.body["status"].as_str(), r.body["version"].as_i64()),
        (Some("pending"), Some(1))
    );
    let id = r.id();
    let done = stack.wait_terminal(id, WAIT).await;
    // This stack's PostgreSQL image cannot be pulled: it fails at stage 5.
    assert_eq!(done["status"], "failed");
    assert!(
        done["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with(ABSENT_DB_IMAGE_ERROR)),
        "{done}"
    );
    assert!(done["completed_at"].is_string() && done["duration_seconds"].is_number());

    // The network exists on the server (checked with the Docker API).
    let network = format!("paasportal_net_{env}");
    assert!(docker_network_exists(&network).await, "{network} missing");

    // Progress: 16 steps in order; three completed, DNS skipped with a
    // warning (no provider), the database failed.
    let p = stack
        .get(&format!("/api/v1/deployments/{id}/progress"), &t)
        .await;
    let steps = p.body["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 16);
    let statuses: Vec<&str> = steps
        .iter()
        .map(|s| s["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        &statuses[..6],
        [
            "completed",
            "completed",
            "completed",
            "warning",
            "failed",
            "pending"
        ]
    );
    assert_eq!(steps[1]["logs"][0]["message"], "Connecting to 127.0.0.1...");
    assert!(steps[0]["duration_seconds"].is_number());
    assert_eq!(p.body["progress_percent"], 25, "4 of 16 stages");

    // Every log line arrived live, in order, exactly as /logs has them.
    let logs = stack
        .get(&format!("/api/v1/deployments/{id}/logs?limit=500"), &t)
        .await;
    let stored: Vec<(i64, String)> = logs.body["logs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["seq"].as_i64().unwrap_or(-1),
                        l["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(stored.len() >= 8, "{:?}", stored);
    assert_eq!(stored[0].1, "Deployment created and queued");
    assert!(
        stored
            .iter()
            .any(|(_, m)| m == "SSH connection established (0.0s)"
                || m.starts_with("SSH connection established ("))
    );
    let events = sse
        .until(Duration::from_secs(10), |m| {
            m.json()["data"]["status"] == "failed"
        })
        .await;
    let live: Vec<(i64, String)> = events
        .iter()
        .filter(|m| m.event.as_deref() == Some("deployment_progress"))
        .map(|m| m.json()["data"].clone())
        .filter(|d| d["deployment_id"] == json!(id) && d["seq"].is_i64())
        .map(|d| {
            (
                d["seq"].as_i64().unwrap_or(-1),
                d["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(live, stored, "live lines differ from /logs");
    assert!(
        events.iter().all(|m| m.comment.is_some() || m.id.is_some()),
        "every event has an id"
    );
    let env_status = stack.get(&format!("/api/v1/environments/{env}"), &t).await;
    assert_eq!(env_status.body["status"], "failed");
    remove_network(&network).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_deployment_gets_409_and_an_idempotency_key_replays() {
    // A port that accepts and never answers keeps the first deployment in `connecting`.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = tarpit.local_addr().expect("addr").port();
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Port(port)).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let send = |key: &'static str| {
        stack
            .client
            .post(stack.url("/api/v1/deployments"))
            .bearer_auth(&t)
            .header("Idempotency-Key", key)
            .json(&json!({"environment_id": env}))
            .send()
    };
    let a: Value = send("key-1")
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let again = send("key-1").await.expect("send");
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["id"], a["id"], "same key, same deployment");
    let other = send("key-2").await.expect("send");
    assert_eq!(other.status(), 409);
    let body: Value = other.json().await.expect("json");
    assert_eq!(body["error"], "deployment_in_progress");
    assert_eq!(body["deployment_id"], a["id"]);

    // Cancel reaches the blocked stage within 2 seconds.
    let id = a["id"].as_str().unwrap_or_default().to_owned();
    // Wait until the stage blocked on the tarpit runs, then cancel it.
    let id: uuid::Uuid = id.parse().expect("uuid");
    stack
        .wait_step(id, "connecting", Duration::from_secs(20))
        .await;
    let t0 = std::time::Instant::now();
    let c = stack
        .post(&format!("/api/v1/deployments/{id}/cancel"), &t, json!({}))
        .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.body["message"], "Deployment cancelled");
    let done = stack.wait_terminal(id, Duration::from_secs(5)).await;
    let took = t0.elapsed();
    assert_eq!(done["status"], "cancelled");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    // Cancelling again: already terminal.
    let c = stack
        .post(&format!("/api/v1/deployments/{id}/cancel"), &t, json!({}))
        .await;
    assert_eq!(
        (c.status.as_u16(), c.code()),
        (400, "deployment_not_cancellable")
    );
    // The next deployment gets version 2.
    let r = stack
        .post("/api/v1/deployments", &t, json!({"environment_id": env}))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["version"].as_i64()),
        (202, Some(2))
    );
    drop(tarpit);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_ssh_password_fails_with_the_specs_error_shape() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack
        .world(
            "acme",
            ServerLogin::Password(Some("not-the-password".into())),
        )
        .await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let id = stack.deploy(env).await;
    let done = stack.wait_terminal(id, WAIT).await;
    assert_eq!(done["status"], "failed");
    // The deployment names the cause; the log line keeps the spec's shape.
    let error = done["error_message"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Failed to connect to server via SSH: ")
            && error.ends_with(" (AUTH_FAILED); check the server's SSH user and password or key"),
        "{error}"
    );
    let errors = stack
        .get(&format!("/api/v1/deployments/{id}/logs?level=error"), &t)
        .await;
    let line = errors.body["logs"][0].clone();
    assert_eq!(line["message"], "Failed to connect to server via SSH");
    assert_eq!(line["step"], "connecting");
    assert_eq!(line["data"]["error_code"], "AUTH_FAILED");
    // The text export shows each line's step, and an error's data under it.
    let txt = stack
        .get(
            &format!("/api/v1/deployments/{id}/logs/export?format=txt"),
            &t,
        )
        .await
        .text;
    assert!(
        txt.contains("] [ERROR] [connecting] Failed to connect to server via SSH\n    data: {")
            && txt.contains("] [INFO] [initializing] Deployment created and queued\n"),
        "{txt}"
    );
    let data_line = txt
        .lines()
        .find(|l| l.starts_with("    data: "))
        .expect("data line");
    let data: Value = serde_json::from_str(&data_line["    data: ".len()..]).expect("data is JSON");
    assert_eq!(data["error_code"], "AUTH_FAILED");
    assert!(!txt.contains("not-the-password"));
    assert_eq!(line["data"]["ssh_method"], "password");
    assert_eq!(line["data"]["vm_ip"], "127.0.0.1");
    assert!(line["data"]["ssh_port"].is_number());
    // The password appears nowhere.
    let all = stack
        .get(&format!("/api/v1/deployments/{id}/logs"), &t)
        .await;
    assert!(!all.text.contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread")]
async fn another_organizations_user_sees_nothing() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let (_, stranger) = stack.user("stranger").await;
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={stranger}")),
        None,
    )
    .await;
    assert_eq!(
        sse.next(Duration::from_secs(5))
            .await
            .and_then(|m| m.event)
            .as_deref(),
        Some("connected")
    );
    let id = stack.deploy(env).await;
    stack.wait_terminal(id, WAIT).await;
    for path in [
        format!("/api/v1/deployments/{id}"),
        format!("/api/v1/deployments/{id}/logs"),
        format!("/api/v1/deployments/{id}/progress"),
        format!("/api/v1/deployments/{id}/logs/export?format=txt"),
        format!("/api/v1/deployments/environment/{env}/latest"),
        format!("/api/v1/deployments/project/{project}/stats"),
    ] {
        let r = stack.get(&path, &stranger).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text);
    }
    let r = stack
        .post(
            &format!("/api/v1/deployments/{id}/cancel"),
            &stranger,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = stack
        .post(
            "/api/v1/deployments",
            &stranger,
            json!({"environment_id": env}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = stack.get("/api/v1/deployments", &stranger).await;
    assert_eq!(r.body, json!([]));
    let sse404 = SseClient::connect(
        &stack.url(&format!("/api/v1/deployments/{id}/events?token={stranger}")),
        None,
    )
    .await;
    assert_eq!(sse404.status, 404);
    // Nothing but keepalives reached the stranger's stream.
    while let Some(m) = sse.next(Duration::from_millis(500)).await {
        assert!(m.comment.is_some(), "stranger received {m:?}");
    }
    remove_network(&format!("paasportal_net_{env}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn last_event_id_resume_delivers_exactly_the_missed_events() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let url = stack.url(&format!("/api/v1/events/stream?token={t}"));
    let mut watcher = SseClient::connect(&url, None).await;
    let mut resumer = SseClient::connect(&url, None).await;
    // Both see the first deployment; the resumer then disconnects.
    let id1 = stack.deploy(env).await;
    let is_end = |id: uuid::Uuid| {
        move |m: &oec_tests::stack::SseMessage| {
            m.json()["data"]["deployment_id"] == json!(id)
                && m.json()["data"]["status"] == "failed"
                && m.json()["data"]["seq"].is_null()
        }
    };
    let seen = resumer.until(WAIT, is_end(id1)).await;
    let last_id = seen.iter().rev().find_map(|m| m.id.clone()).expect("an id");
    drop(resumer);
    watcher.until(WAIT, is_end(id1)).await;
    // While it is away, a second deployment runs.
    let id2 = stack.deploy(env).await;
    let missed: Vec<String> = watcher
        .until(WAIT, is_end(id2))
        .await
        .into_iter()
        .filter_map(|m| m.id)
        .collect();
    assert!(missed.len() > 5);
    let mut back = SseClient::connect(&url, Some(&last_id)).await;
    let got: Vec<String> = back
        .until(Duration::from_secs(10), |m| {
            m.id.as_deref() == missed.last().map(String::as_str)
        })
        .await
        .into_iter()
        .filter_map(|m| m.id)
        .collect();
    assert_eq!(
        got, missed,
        "resume must deliver exactly the missed events, in order"
    );
    remove_network(&format!("paasportal_net_{env}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_viewer_of_one_deployment_gets_the_whole_story() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let id = stack.deploy(env).await;
    stack.wait_terminal(id, WAIT).await;
    let logs = stack
        .get(&format!("/api/v1/deployments/{id}/logs"), &t)
        .await;
    let stored: Vec<i64> = logs.body["logs"]
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["seq"].as_i64()).collect())
        .unwrap_or_default();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/deployments/{id}/events?token={t}")),
        None,
    )
    .await;
    let msgs = sse
        .until(Duration::from_secs(10), |m| {
            m.event.as_deref() == Some("deployment_finished")
        })
        .await;
    assert_eq!(
        msgs.first().and_then(|m| m.event.as_deref()),
        Some("connected")
    );
    let seqs: Vec<i64> = msgs
        .iter()
        .filter_map(|m| m.id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(seqs, stored);
    let last = msgs.last().expect("finished");
    assert_eq!(last.json()["data"]["status"], "failed");
    // Resuming from the middle gives the rest.
    let mid = stored[stored.len() / 2].to_string();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/deployments/{id}/events?token={t}")),
        Some(&mid),
    )
    .await;
    let rest: Vec<i64> = sse
        .until(Duration::from_secs(10), |m| {
            m.event.as_deref() == Some("deployment_finished")
        })
        .await
        .iter()
        .filter_map(|m| m.id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(rest, stored[stored.len() / 2 + 1..].to_vec());
    // The text export has the spec's header and one line per log line.
    let txt = stack
        .client
        .get(stack.url(&format!("/api/v1/deployments/{id}/logs/export?format=txt")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export");
    let txt = txt.text().await.expect("text");
    assert!(txt.starts_with(&format!("=== Deployment Logs ===\nDeployment ID: {id}\nProject: acme project\nEnvironment: staging\nExported: ")));
    assert!(txt.contains("] [INFO] [initializing] Deployment created and queued\n"));
    assert_eq!(
        txt.lines().filter(|l| l.starts_with('[')).count(),
        stored.len()
    );
    let js: Value = stack
        .client
        .get(stack.url(&format!("/api/v1/deployments/{id}/logs/export?format=json")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("export")
        .json()
        .await
        .expect("valid json");
    assert_eq!(js["logs"].as_array().map(Vec::len), Some(stored.len()));
    assert_eq!(js["project_name"], "acme project");
    remove_network(&format!("paasportal_net_{env}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_deployments_on_two_workers_each_run_exactly_once() {
    let stack = Stack::start(2, &[("OEC_WORKER_CONCURRENCY", "4")]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let mut ids = Vec::new();
    let mut envs = Vec::new();
    for i in 0..20 {
        let env = stack.environment(project, server, &format!("env{i}")).await;
        envs.push(env);
        ids.push(stack.deploy(env).await);
    }
    for id in &ids {
        let d = stack.wait_terminal(*id, Duration::from_secs(120)).await;
        assert!(
            d["error_message"]
                .as_str()
                .is_some_and(|e| e.starts_with(ABSENT_DB_IMAGE_ERROR)),
            "{d}"
        );
    }
    let runs: Vec<(i64,)> = sqlx::query_as(
        "SELECT count(*) FROM deployment_logs WHERE message LIKE 'Deploying %' GROUP BY deployment_id",
    )
    .fetch_all(&stack.pool)
    .await
    .expect("count");
    assert_eq!(runs.len(), 20);
    assert!(runs.iter().all(|(n,)| *n == 1), "{runs:?}");
    let workers: i64 = sqlx::query_scalar("SELECT count(DISTINCT worker_id) FROM deployments")
        .fetch_one(&stack.pool)
        .await
        .expect("workers");
    assert_eq!(workers, 2, "both workers took jobs");
    for env in envs {
        remove_network(&format!("paasportal_net_{env}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_grace_period_run_then_fails_what_is_left() {
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = tarpit.local_addr().expect("addr").port();
    let mut stack = Stack::start(1, &[("OEC_WORKER_GRACE_SECS", "2")]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Port(port)).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let id = stack.deploy(env).await;
    // Wait until the blocked stage (connecting, against the tarpit) runs.
    stack
        .wait_step(id, "connecting", Duration::from_secs(20))
        .await;
    let t0 = std::time::Instant::now();
    stack.workers[0].signal("-TERM");
    let exit = stack.workers[0]
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("worker exits");
    assert!(exit.success(), "{}", stack.workers[0].log());
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "the grace period was honoured"
    );
    let d = stack
        .get(&format!("/api/v1/deployments/{id}"), &t)
        .await
        .body;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Worker shut down before the deployment finished"),
        "{d}"
    );
    let steps = stack
        .get(&format!("/api/v1/deployments/{id}/progress"), &t)
        .await
        .body;
    assert_eq!(
        steps["steps"][1]["status"], "failed",
        "the running step is not left running"
    );
    // A worker that stopped takes no new job: the next deployment stays pending.
    let env2 = stack.environment(project, server, "other").await;
    let id2 = stack.deploy(env2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        stack
            .get(&format!("/api/v1/deployments/{id2}"), &t)
            .await
            .body["status"],
        "pending"
    );
    drop(tarpit);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_event_stream_gets_a_keepalive_comment_every_period() {
    let stack = Stack::start(0, &[("OEC_SSE_KEEPALIVE_SECS", "1")]).await;
    let t = stack.admin_token.clone();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let first = sse.next(Duration::from_secs(5)).await.expect("connected");
    assert_eq!(first.event.as_deref(), Some("connected"));
    let started = std::time::Instant::now();
    let mut comments = 0;
    while comments < 2 {
        let m = sse.next(Duration::from_secs(3)).await.expect("a keepalive");
        assert_eq!(
            m.comment.as_deref(),
            Some("keepalive"),
            "only keepalives on an idle stream"
        );
        comments += 1;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

/// The fingerprint of the test sshd's host key, as `ssh-keygen -l` prints it.
fn sshd_host_key_fingerprint() -> String {
    let key_path = oec_tests::TargetEnv::load().key_path;
    let dir = std::path::Path::new(&key_path)
        .parent()
        .expect("keys dir")
        .to_path_buf();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(dir.join("ssh_host_ed25519_key.pub"))
        .output()
        .expect("ssh-keygen");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_host_keys_are_trusted_on_first_use_then_pinned_and_reset_by_an_org_admin() {
    let stack = Stack::start(1, &[]).await;
    let (org, project, server) = stack.world("acme", ServerLogin::Password(None)).await;
    let t = stack.admin_token.clone();
    let expected = sshd_host_key_fingerprint();
    assert!(expected.starts_with("SHA256:"), "{expected}");
    let server_path = format!("/api/v1/servers/{server}");
    assert_eq!(
        stack.get(&server_path, &t).await.body["host_key_fingerprint"],
        Value::Null
    );

    // First connection: the key is recorded (the deployment then stops at
    // creating_database, as every deployment of this stack does).
    let env = stack.environment(project, server, "staging").await;
    let id = stack.deploy(env).await;
    stack.wait_terminal(id, WAIT).await;
    let steps = stack
        .get(&format!("/api/v1/deployments/{id}/progress"), &t)
        .await;
    assert_eq!(
        steps.body["steps"][1]["status"], "completed",
        "{}",
        steps.text
    );
    assert_eq!(
        stack.get(&server_path, &t).await.body["host_key_fingerprint"],
        expected
    );
    let messages = stack
        .get(&format!("/api/v1/deployments/{id}/logs"), &t)
        .await
        .text;
    assert!(messages.contains(&format!(
        "Host key recorded on first connection (trust on first use): {expected}"
    )));

    // Another key is refused before any credential is sent.
    sqlx::query("UPDATE servers SET host_key_fingerprint = $2 WHERE id = $1")
        .bind(server)
        .bind("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .execute(&stack.pool)
        .await
        .expect("pin another key");
    let id = stack.deploy(env).await;
    let done = stack.wait_terminal(id, WAIT).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Failed to connect to server via SSH: ")
                && e.contains("(HOST_KEY_MISMATCH)")),
        "{done}"
    );
    let errors = stack
        .get(&format!("/api/v1/deployments/{id}/logs?level=error"), &t)
        .await;
    assert_eq!(
        errors.body["logs"][0]["data"]["error_code"],
        "HOST_KEY_MISMATCH"
    );

    // Only the organization's owners and admins may forget the key.
    let (member, member_token) = stack.user("member").await;
    let r = stack
        .post(
            &format!("/api/v1/organizations/{org}/members"),
            &t,
            json!({"user_id": member, "role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let reset = format!("{server_path}/host-key/reset");
    let r = stack.post(&reset, &member_token, json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = stack.post(&reset, &t, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["host_key_fingerprint"], Value::Null);
    let id = stack.deploy(env).await;
    stack.wait_terminal(id, WAIT).await;
    assert_eq!(
        stack.get(&server_path, &t).await.body["host_key_fingerprint"],
        expected
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_stream_follows_its_users_permissions_within_a_second() {
    // No worker: the deployments stay pending, so their streams stay live.
    let stack = Stack::start(0, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let other_env = stack.environment(project, server, "prod").await;
    let t = stack.admin_token.clone();
    let (member, token) = stack.user("viewer").await;
    let r = stack
        .post(
            &format!("/api/v1/projects/{project}/members"),
            &t,
            json!({"user_id": member, "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mut all = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={token}")),
        None,
    )
    .await;
    assert_eq!(
        all.next(Duration::from_secs(5))
            .await
            .and_then(|m| m.event)
            .as_deref(),
        Some("connected")
    );
    let id = stack.deploy(env).await;
    let seen = all
        .until(Duration::from_secs(5), |m| m.data.contains(&id.to_string()))
        .await;
    assert!(
        seen.iter().any(|m| m.data.contains(&id.to_string())),
        "the viewer sees the project's deployment: {seen:?}"
    );
    let mut one = SseClient::connect(
        &stack.url(&format!("/api/v1/deployments/{id}/events?token={token}")),
        None,
    )
    .await;
    let backlog = one
        .until(Duration::from_secs(5), |m| {
            m.data.contains("Deployment created")
        })
        .await;
    assert!(
        backlog
            .iter()
            .any(|m| m.data.contains("Deployment created"))
    );

    // Removed from the project: both streams follow within a second.
    let removed_at = std::time::Instant::now();
    let r = stack
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/projects/{project}/members/{member}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let notice = all
        .until(Duration::from_secs(3), |m| {
            m.event.as_deref() == Some("permissions_changed")
        })
        .await;
    assert!(
        notice
            .iter()
            .any(|m| m.event.as_deref() == Some("permissions_changed")),
        "{notice:?}"
    );
    let ended = one.until(Duration::from_secs(3), |_| false).await;
    assert!(
        ended
            .iter()
            .any(|m| m.comment.as_deref() == Some("access revoked")),
        "{ended:?}"
    );
    // until() returned when the stream closed.
    assert!(
        removed_at.elapsed() < Duration::from_millis(1_500),
        "the deployment stream ended {:?} after the removal",
        removed_at.elapsed()
    );
    // Nothing of the project reaches the open stream any more.
    let r = stack
        .post(
            "/api/v1/deployments",
            &t,
            json!({"environment_id": other_env}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let later = all.until(Duration::from_secs(2), |_| false).await;
    assert!(
        later.iter().all(|m| !m.data.contains(&project.to_string())),
        "{later:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_stream_ends_when_its_token_expires() {
    let stack = Stack::start(0, &[("OEC_ACCESS_TOKEN_TTL_SECS", "10")]).await;
    let (_, token) = stack.user("short").await;
    let opened = std::time::Instant::now();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={token}")),
        None,
    )
    .await;
    let frames = sse.until(Duration::from_secs(15), |_| false).await;
    let lived = opened.elapsed();
    assert!(
        frames.iter().any(|m| m
            .comment
            .as_deref()
            .is_some_and(|c| c.starts_with("token expired"))),
        "{frames:?}"
    );
    assert!(
        lived >= Duration::from_secs(8) && lived < Duration::from_secs(13),
        "the stream lived {lived:?} with a 10 s token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_answers_only_its_own_request_and_never_another_organizations() {
    let stack = Stack::start(0, &[]).await;
    let t = stack.admin_token.clone();
    let (x, px, sx) = stack.world("xorg", ServerLogin::Key).await;
    let (y, py, sy) = stack.world("yorg", ServerLogin::Key).await;
    let ex = stack.environment(px, sx, "staging").await;
    let ey = stack.environment(py, sy, "staging").await;
    let (u, token) = stack.user("dev").await;
    for org in [x, y] {
        let r = stack
            .post(
                &format!("/api/v1/organizations/{org}/members"),
                &t,
                json!({"user_id": u, "role": "admin"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let deploy = |env: uuid::Uuid, trigger: &'static str| {
        let stack = &stack;
        let token = token.clone();
        async move {
            let r = stack
                .client
                .post(stack.url("/api/v1/deployments"))
                .bearer_auth(&token)
                .header("Idempotency-Key", "same-key-1")
                .json(&json!({"environment_id": env, "trigger": trigger}))
                .send()
                .await
                .expect("deploy");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, first) = deploy(ex, "manual").await;
    assert_eq!(status, 202, "{first}");
    // The same request replays.
    let (status, again) = deploy(ex, "manual").await;
    assert_eq!((status, &again["id"]), (202, &first["id"]));
    // Another trigger, or another environment, with the key: refused.
    let (status, body) = deploy(ex, "api").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{body}"
    );
    // Removed from the first organization, the user reuses the key in the
    // second: nothing of the first comes back.
    let r = stack
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/organizations/{x}/members/{u}"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (status, body) = deploy(ey, "manual").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{body}"
    );
    assert!(
        !body
            .to_string()
            .contains(first["id"].as_str().unwrap_or("-"))
    );
    // And the first organization's environment is now invisible to them.
    let (status, _) = deploy(ex, "manual").await;
    assert_eq!(status, 404);
}

/// `seq` → the `data:` of each `deployment_progress` frame of `id`.
fn lines_of(frames: &[oec_tests::stack::SseMessage], id: uuid::Uuid) -> Vec<(i64, String)> {
    frames
        .iter()
        .filter(|m| m.event.as_deref() == Some("deployment_progress"))
        .filter(|m| m.json()["data"]["deployment_id"] == json!(id))
        .map(|m| {
            (
                m.json()["data"]["seq"].as_i64().expect("seq"),
                m.data.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_line_is_the_same_json_live_and_replayed_on_both_streams() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let global_url = stack.url(&format!("/api/v1/events/stream?token={t}"));
    let mut global = SseClient::connect(&global_url, None).await;
    assert_eq!(
        global.next(WAIT).await.and_then(|m| m.event).as_deref(),
        Some("connected")
    );
    let id = stack.deploy(env).await;
    let deployment_url = stack.url(&format!("/api/v1/deployments/{id}/events?token={t}"));
    let mut one = SseClient::connect(&deployment_url, None).await;
    let finished = |m: &oec_tests::stack::SseMessage| {
        m.event.as_deref() == Some("deployment_finished")
            && m.json()["data"]["deployment_id"] == json!(id)
    };
    let global_live = lines_of(&global.until(WAIT, finished).await, id);
    let one_live = lines_of(&one.until(WAIT, finished).await, id);
    // Both again, from the start: the global stream from Redis, the
    // deployment's from PostgreSQL.
    let mut global_again = SseClient::connect(&global_url, Some("0-0")).await;
    let global_replayed = lines_of(&global_again.until(WAIT, finished).await, id);
    let mut one_again = SseClient::connect(&deployment_url, Some("0")).await;
    let one_replayed = lines_of(&one_again.until(WAIT, finished).await, id);

    let stored = stack
        .get(&format!("/api/v1/deployments/{id}/logs?limit=500"), &t)
        .await
        .body["logs"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_default();
    assert!(stored > 5, "{stored} lines");
    assert_eq!(
        global_live.len(),
        stored,
        "every line live on the global stream"
    );
    assert_eq!(one_replayed.len(), stored, "every line replayed");
    assert_eq!(
        global_live, one_replayed,
        "live (global) and replayed (deployment) differ"
    );
    assert_eq!(
        global_live, global_replayed,
        "live and replayed (global) differ"
    );
    // The deployment's stream, connected after the first line, had it from
    // PostgreSQL and the rest live: the same text either way.
    assert_eq!(global_live, one_live, "the two live streams differ");

    // Each line carries the deployment's state when it was written: the
    // first pending, the stages running, the last lines the final status.
    let states: Vec<(String, i64)> = one_replayed
        .iter()
        .map(|(_, d)| {
            let v: Value = serde_json::from_str(d).expect("json");
            (
                v["data"]["status"].as_str().unwrap_or_default().to_owned(),
                v["data"]["progress_percent"].as_i64().expect("progress"),
            )
        })
        .collect();
    assert_eq!(states.first().map(|s| s.0.as_str()), Some("pending"));
    assert!(
        states[1..states.len() - 1].iter().all(|s| s.0 == "running"),
        "{states:?}"
    );
    assert_eq!(states.last().map(|s| s.0.as_str()), Some("failed"));
    assert!(states.iter().any(|s| s.1 > 0), "progress moves: {states:?}");
    let last: Value = serde_json::from_str(&one_replayed.last().expect("lines").1).expect("json");
    assert_eq!(last["data"]["step"], "completed");
    for field in [
        "environment_id",
        "project_id",
        "project_name",
        "environment_name",
        "branch",
        "triggered_by",
    ] {
        assert!(!last["data"][field].is_null(), "{field} in {last}");
    }
    remove_network(&format!("paasportal_net_{env}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_matches_the_documented_schema() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    // The schema is served as documented.
    let r = stack
        .client
        .get(stack.url("/api/v1/events/schema"))
        .send()
        .await
        .expect("schema");
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.expect("json");
    assert_eq!(
        served,
        serde_json::from_str::<Value>(oec_common::events::SCHEMA).expect("json")
    );

    let (user, token) = stack.user("newcomer").await;
    let mut theirs = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={token}")),
        None,
    )
    .await;
    let mut all = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let id = stack.deploy(env).await;
    let mut one = SseClient::connect(
        &stack.url(&format!("/api/v1/deployments/{id}/events?token={t}")),
        None,
    )
    .await;
    let finished =
        |m: &oec_tests::stack::SseMessage| m.event.as_deref() == Some("deployment_finished");
    let mut frames = all.until(WAIT, finished).await;
    // The environment's status follows the deployment's end.
    frames.extend(
        all.until(Duration::from_secs(5), |m| {
            m.event.as_deref() == Some("environment_status")
                && m.json()["data"]["status"] == "failed"
        })
        .await,
    );
    frames.extend(one.until(WAIT, finished).await);
    let r = stack
        .post(
            &format!("/api/v1/projects/{project}/members"),
            &t,
            json!({"user_id": user, "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    frames.extend(
        theirs
            .until(Duration::from_secs(5), |m| {
                m.event.as_deref() == Some("permissions_changed")
            })
            .await,
    );

    let schema = oec_tests::schema::Schema::documented();
    let mut kinds = std::collections::BTreeSet::new();
    for m in &frames {
        let Some(kind) = m.event.as_deref() else {
            continue;
        };
        schema
            .check_frame(kind, &m.data)
            .unwrap_or_else(|e| panic!("{e}: {}", m.data));
        kinds.insert(kind.to_owned());
    }
    let want: std::collections::BTreeSet<String> = [
        "connected",
        "deployment_progress",
        "deployment_finished",
        "environment_status",
        "permissions_changed",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, want);

    // The check can fail: a missing field, a field the schema does not
    // know, a value outside a closed set, a wrong type.
    let line = frames
        .iter()
        .find(|m| m.event.as_deref() == Some("deployment_progress"))
        .expect("a line")
        .json();
    let broken = |change: &dyn Fn(&mut Value)| {
        let mut v = line.clone();
        change(&mut v);
        schema.check_event(&v)
    };
    assert!(schema.check_event(&line).is_ok());
    assert!(
        broken(&|v| {
            v["data"]
                .as_object_mut()
                .expect("data")
                .remove("progress_percent");
        })
        .is_err()
    );
    assert!(broken(&|v| v["data"]["extra"] = json!(1)).is_err());
    assert!(broken(&|v| v["data"]["status"] = json!("exploded")).is_err());
    assert!(broken(&|v| v["data"]["seq"] = json!("7")).is_err());
    assert!(broken(&|v| v["data"]["deployment_id"] = json!("not-a-uuid")).is_err());
    remove_network(&format!("paasportal_net_{env}")).await;
}
