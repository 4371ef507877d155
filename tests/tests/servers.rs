//! Server onboarding for real: `POST /servers/{id}/check` through the api and
//! a worker, over this machine's sshd to its Docker engine, and the capacity
//! that check sets for the server's environments.

use oec_tests::TargetEnv;
use oec_tests::stack::{ServerLogin, Stack};
use serde_json::{Value, json};
use uuid::Uuid;

/// A server of `org` on this machine, logging in as `user` with the key.
async fn server_as(s: &Stack, org: Uuid, name: &str, user: &str) -> Uuid {
    let target = TargetEnv::load();
    let r = s
        .post(
            "/api/v1/servers",
            &s.admin_token,
            json!({"organization_id": org, "name": name, "host": target.host,
                   "ssh_port": target.port, "ssh_user": user, "auth_method": "key",
                   "private_key": target.private_key()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.id()
}

async fn check(s: &Stack, server: Uuid) -> Value {
    let r = s
        .post(
            &format!("/api/v1/servers/{server}/check"),
            &s.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "done", "{}", r.body);
    r.body
}

fn problems(c: &Value) -> String {
    c["result"]["problems"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_server_checks_ok_and_get_shows_the_check() {
    let s = Stack::start_full(1, &[]).await;
    let (_, _, server) = s.world("chk", ServerLogin::Key).await;
    let before = s
        .get(&format!("/api/v1/servers/{server}"), &s.admin_token)
        .await;
    assert_eq!(before.body["last_check"], Value::Null);
    assert_eq!(before.body["host_key_fingerprint"], Value::Null);

    let c = check(&s, server).await;
    assert_eq!(c["ok"], true, "{}", c);
    let r = &c["result"];
    assert_eq!(r["ssh"]["reachable"], true);
    assert_eq!(r["ssh"]["host_key_recorded"], true);
    assert_eq!(r["docker"]["usable"], true);
    assert!(
        r["docker"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        r["docker"]["api_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1."))
    );
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    assert_eq!(r["cpu_count"], json!(nproc));
    let mem = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    let total_kb: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("MemTotal");
    assert_eq!(r["memory_total_mb"], json!(total_kb / 1024));
    assert!(r["memory_available_mb"].as_u64().is_some_and(|m| m > 0));
    assert!(r["disk_free_mb"].as_u64().is_some_and(|d| d > 0));
    assert_eq!(r["deploy_root_writable"], true);
    assert!(
        ["up_to_date", "created", "replaced", "started"]
            .contains(&r["proxy"]["state"].as_str().unwrap_or_default()),
        "{}",
        r["proxy"]
    );
    assert_eq!(r["proxy"]["container"], "oec-traefik");

    // The server now shows the check and the host key it recorded.
    let after = s
        .get(&format!("/api/v1/servers/{server}"), &s.admin_token)
        .await;
    assert_eq!(after.body["last_check"]["id"], c["id"]);
    assert_eq!(after.body["last_check"]["ok"], true);
    assert_eq!(
        after.body["host_key_fingerprint"],
        r["ssh"]["host_key_fingerprint"]
    );
    assert!(
        after.body["host_key_fingerprint"]
            .as_str()
            .is_some_and(|f| f.starts_with("SHA256:"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_user_cannot_use_docker_fails_its_check_and_says_why() {
    let s = Stack::start_full(1, &[]).await;
    let (org, _, _) = s.world("nodock", ServerLogin::Key).await;
    let target = TargetEnv::load();
    let server = server_as(&s, org, "no-docker", &target.user_no_docker).await;
    let c = check(&s, server).await;
    assert_eq!(c["ok"], false, "{c}");
    let r = &c["result"];
    assert_eq!(r["ssh"]["reachable"], true, "{r}");
    assert_eq!(r["docker"]["usable"], false);
    let p = problems(&c);
    assert!(
        p.contains(&format!(
            "the SSH user {} cannot use Docker",
            target.user_no_docker
        )) && p.contains("docker group"),
        "{p}"
    );
    assert_eq!(r["proxy"]["state"], "unknown");
    // The facts that need no Docker are still there.
    assert!(r["cpu_count"].as_u64().is_some_and(|n| n > 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_enough_free_memory_fails_its_check() {
    let s = Stack::start_full(1, &[("OEC_SERVER_MIN_FREE_MEMORY_MB", "1000000000")]).await;
    let (_, _, server) = s.world("lowmem", ServerLogin::Key).await;
    let c = check(&s, server).await;
    assert_eq!(c["ok"], false, "{c}");
    let available = c["result"]["memory_available_mb"].as_u64().expect("memory");
    let p = problems(&c);
    assert!(
        p.contains(&format!(
            "only {available} MB of memory available, below the 1000000000 MB minimum"
        )),
        "{p}"
    );
    // Docker and the rest are fine: memory is the one problem.
    assert_eq!(c["result"]["problems"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn environments_may_not_take_more_than_the_checked_server_has() {
    let s = Stack::start_full(1, &[]).await;
    let (org, project, server) = s.world("cap", ServerLogin::Key).await;
    let t = s.admin_token.clone();
    let env = |name: &str, server: Uuid, cpu: f64, ram: i64| {
        json!({"project_id": project, "server_id": server, "name": name, "kind": "staging",
               "subdomain": format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..6]),
               "odoo_version": "18.0", "cpu_cores": cpu, "ram_mb": ram})
    };
    // Never checked: nothing to measure against.
    let unchecked = server_as(&s, org, "unchecked", &TargetEnv::load().user).await;
    let r = s
        .post(
            "/api/v1/environments",
            &t,
            env("big", unchecked, 64.0, 262_144),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let c = check(&s, server).await;
    let cpus = c["result"]["cpu_count"].as_f64().expect("cpus");
    let mem = c["result"]["memory_total_mb"].as_f64().expect("memory");
    // CPU may be overcommitted twice by default, memory not at all.
    let first = s
        .post(
            "/api/v1/environments",
            &t,
            env("one", server, cpus * 2.0 - 1.0, 1024),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let first = first.id();
    let r = s
        .post("/api/v1/environments", &t, env("two", server, 2.0, 1024))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"], "server_capacity", "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("1.00 CPU cores") && message.contains("left"),
        "{message}"
    );
    let ram = (mem as i64 - 1024 + 1).min(262_144);
    if ram > 1024 && (mem as i64 - 1024) < 262_144 {
        let r = s
            .post("/api/v1/environments", &t, env("fat", server, 0.5, ram))
            .await;
        assert_eq!(r.status, 422, "{}", r.text);
        assert_eq!(r.body["error"], "server_capacity");
    }
    let r = s
        .post("/api/v1/environments", &t, env("fits", server, 1.0, 1024))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Resizing past what is left is refused; an unrelated change is not.
    let r = s
        .patch(
            &format!("/api/v1/environments/{first}"),
            &t,
            json!({"cpu_cores": cpus * 2.0}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["error"], "server_capacity");
    let r = s
        .patch(
            &format!("/api/v1/environments/{first}"),
            &t,
            json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_is_validated_renamed_moved_rotated_and_deleted_only_when_unused() {
    let s = Stack::start_full(1, &[]).await;
    let (org, project, server) = s.world("srv", ServerLogin::Key).await;
    let t = s.admin_token.clone();
    let target = TargetEnv::load();

    // A key is checked when the server is created, not at the first deployment.
    let dir = tempfile_dir();
    let encrypted = format!("{dir}/enc");
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "a passphrase",
            "-f",
            &encrypted,
        ])
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let new_server = |key: String| {
        json!({"organization_id": org, "name": format!("k-{}", Uuid::new_v4().simple()),
               "host": target.host, "ssh_port": target.port, "ssh_user": target.user,
               "auth_method": "key", "private_key": key})
    };
    let r = s
        .post(
            "/api/v1/servers",
            &t,
            new_server(std::fs::read_to_string(&encrypted).expect("key")),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["field"], "private_key");
    assert!(r.text.contains("passphrase"), "{}", r.text);
    let r = s
        .post(
            "/api/v1/servers",
            &t,
            new_server(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAnotakey\n-----END OPENSSH PRIVATE KEY-----"
                    .into(),
            ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.text.contains("cannot be read as a private key"),
        "{}",
        r.text
    );
    let _ = std::fs::remove_dir_all(&dir);

    let path = format!("/api/v1/servers/{server}");
    let patch = |body: Value| s.patch(&path, &t, body);
    let r = patch(json!({"name": "renamed"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["name"], "renamed");
    // The check records the host key; moving the server forgets it.
    assert_eq!(check(&s, server).await["ok"], true);
    let r = patch(json!({"ssh_port": target.port})).await;
    assert!(
        r.body["host_key_fingerprint"].as_str().is_some(),
        "same port: kept"
    );
    let r = patch(json!({"host": "localhost"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["host"], "localhost");
    assert_eq!(r.body["host_key_fingerprint"], Value::Null);

    // Rotating to a password login needs the password; with it, the server
    // checks fine again.
    let r = patch(json!({"auth_method": "password"})).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["field"], "password");
    let r = patch(json!({"auth_method": "password", "password": target.password})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["has_password"], true);
    assert_eq!(r.body["has_private_key"], false);
    assert!(
        !r.text.contains(&target.password),
        "the secret is never returned"
    );
    let c = check(&s, server).await;
    assert_eq!(c["ok"], true, "{c}");
    let r = patch(json!({"bogus": 1})).await;
    assert_eq!(r.status, 422, "{}", r.text);

    // Deleting: refused while an environment uses the server.
    let env = s.environment(project, server, "uses-it").await;
    let r = s.delete(&format!("/api/v1/servers/{server}"), &t).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "server_in_use");
    let r = s
        .delete(&format!("/api/v1/environments/{env}?delete_data=true"), &t)
        .await;
    assert_eq!(r.status, 422, "delete_data needs teardown: {}", r.text);
    let r = s.delete(&format!("/api/v1/environments/{env}"), &t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["teardown"], false, "{}", r.text);
    assert_eq!(
        r.body["left_on_server"]["network"],
        format!("paasportal_net_{env}"),
        "a plain DELETE says what stays: {}",
        r.text
    );
    let r = s.delete(&format!("/api/v1/servers/{server}"), &t).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        s.get(&format!("/api/v1/servers/{server}"), &t).await.status,
        404
    );
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("oec-keys-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.to_string_lossy().into_owned()
}
