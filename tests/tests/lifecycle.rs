//! Environment lifecycle for real (issue 13): stop, start and restart as
//! short runs with their own steps and logs, on this machine's Docker
//! through SSH; a teardown that leaves the server clean (the database
//! volume kept unless asked), the DNS record oec created deleted at the
//! Cloudflare imitation; a plain DELETE that says what stays.

use std::time::{Duration, Instant};

use oec_tests::TargetEnv;
use oec_tests::edge::{client, deployed};
use oec_tests::world::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// When `name` last started, and whether it runs.
async fn started(name: &str) -> (String, bool) {
    let c = inspect(name).await.expect(name);
    let state = c.state.expect("state");
    (
        state.started_at.unwrap_or_default(),
        state.running.unwrap_or(false),
    )
}

async fn run(w: &World, env: Uuid, action: &str) -> (Uuid, Value) {
    let r = w
        .stack
        .post(
            &format!("/api/v1/environments/{env}/{action}"),
            &w.stack.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{action}: {}", r.text);
    assert_eq!(r.body["action"], action, "{}", r.text);
    let id = r.id();
    let d = w.stack.wait_terminal(id, DEPLOY).await;
    assert_eq!(
        d["status"],
        "success",
        "{action}: {d}\n{}",
        w.messages(id).await.join("\n")
    );
    (id, d)
}

async fn step_ids(w: &World, id: Uuid) -> Vec<(String, String)> {
    w.steps(id)
        .await
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn completed(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|i| ((*i).to_owned(), "completed".to_owned()))
        .collect()
}

async fn env_status(w: &World, env: Uuid) -> String {
    w.get(&format!("/api/v1/environments/{env}")).await.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_environment_is_stopped_started_and_restarted_as_short_runs() {
    let (w, env, _purge, host, roots) = deployed("life", &[]).await;
    let t = w.stack.admin_token.clone();
    let (odoo, db) = (format!("{env}_odoo"), format!("{env}_db"));

    // Never deployed: nothing to stop.
    let fresh = w
        .environment(json!({"name": "fresh", "subdomain": format!("fresh-{}", &Uuid::new_v4().simple().to_string()[..6])}))
        .await;
    let r = w
        .stack
        .post(&format!("/api/v1/environments/{fresh}/stop"), &t, json!({}))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "not_deployed", "{}", r.text);

    let (stop, _) = run(&w, env, "stop").await;
    assert_eq!(
        step_ids(&w, stop).await,
        completed(&["initializing", "connecting", "stopping_container"])
    );
    let messages = w.messages(stop).await;
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&format!("Stopped {odoo} ("))),
        "{messages:#?}"
    );
    assert_eq!(env_status(&w, env).await, "stopped");
    assert!(!started(&odoo).await.1, "Odoo stopped");
    assert!(!started(&db).await.1, "its database stopped");
    let https = client(&host, &roots, false);
    assert!(
        https
            .get(format!("https://{host}/web/health"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true),
        "a stopped environment does not answer"
    );
    // A lifecycle run is not a deployment to repeat.
    let r = w
        .stack
        .post(
            &format!("/api/v1/deployments/{stop}/redeploy"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["error"], "not_a_deployment", "{}", r.text);

    let (start, _) = run(&w, env, "start").await;
    assert_eq!(
        step_ids(&w, start).await,
        completed(&[
            "initializing",
            "connecting",
            "starting_container",
            "health_check"
        ])
    );
    assert_eq!(env_status(&w, env).await, "running");
    let (odoo_started, running) = started(&odoo).await;
    assert!(running);
    let db_started = started(&db).await.0;
    let r = https
        .get(format!("https://{host}/web/health"))
        .send()
        .await
        .expect("HTTPS after start");
    assert_eq!(r.status(), 200);

    let (restart, _) = run(&w, env, "restart").await;
    assert_eq!(
        step_ids(&w, restart).await,
        completed(&[
            "initializing",
            "connecting",
            "stopping_container",
            "starting_container",
            "health_check"
        ])
    );
    let (again, running) = started(&odoo).await;
    assert!(running);
    assert_ne!(again, odoo_started, "Odoo was restarted");
    assert_eq!(started(&db).await.0, db_started, "its database was not");
    assert_eq!(env_status(&w, env).await, "running");

    // History shows each run with its action; a deployment's baseline is
    // still the last deployment (an unchanged redeploy upgrades nothing).
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    assert_eq!(d["action"], "deploy");
    assert_eq!(d["module_changes"]["changed"], json!([]), "{d}");
}

/// Tears `env` down (`delete_data` or not) and waits until it is gone.
async fn teardown(w: &World, env: Uuid, delete_data: bool) -> Uuid {
    let r = w
        .stack
        .delete(
            &format!("/api/v1/environments/{env}?teardown=true&delete_data={delete_data}"),
            &w.stack.admin_token,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["action"], "teardown", "{}", r.text);
    let id = r.id();
    let deadline = Instant::now() + DEPLOY;
    loop {
        let d = w.get(&format!("/api/v1/deployments/{id}")).await;
        if d.status == 404 {
            break;
        }
        assert!(
            !matches!(d.body["status"].as_str(), Some("failed" | "cancelled")),
            "{}\n{}",
            d.text,
            w.messages(id).await.join("\n")
        );
        assert!(
            Instant::now() < deadline,
            "teardown never ended: {}",
            d.text
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        w.get(&format!("/api/v1/environments/{env}")).await.status,
        404,
        "a torn-down environment is gone"
    );
    id
}

/// What of `env` is left on this machine, by kind.
fn leftovers(env: Uuid) -> Vec<String> {
    let sh = |cmd: String| {
        let out = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .output()
            .expect("sh");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
    };
    let mut left = sh(format!(
        "docker ps -a --format 'container {{{{.Names}}}}' | grep {env}"
    ));
    left.extend(sh(format!(
        "docker network ls --format 'network {{{{.Name}}}}' | grep {env}"
    )));
    left.extend(sh(format!(
        "docker images --format 'image {{{{.Repository}}}}' | grep {env}"
    )));
    left.extend(sh(format!(
        "docker volume ls --format 'volume {{{{.Name}}}}' | grep {env}"
    )));
    if std::path::Path::new(&format!("/opt/paasportal/{env}")).exists() {
        left.push(format!("directory /opt/paasportal/{env}"));
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn a_teardown_leaves_the_server_clean_and_keeps_the_volume_unless_asked() {
    let (w, env, _purge, host, _) = deployed("tear", &[]).await;
    let hosts_file = format!("{}/{host}", TargetEnv::load().dns_hosts_dir);
    assert!(std::path::Path::new(&hosts_file).exists(), "record created");
    // Something root-owned in its directory, as backups are.
    let backups = format!("/opt/paasportal/{env}/backups/x");
    std::fs::create_dir_all(&backups).expect("backups dir");
    let id = teardown(&w, env, false).await;
    assert_eq!(
        leftovers(env),
        [format!("volume paasportal_pgdata_{env}")],
        "only the database volume stays (teardown {id})"
    );
    let deletes: Vec<String> = w
        .cloudflare
        .requests()
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(deletes.len(), 1, "the record oec created: {deletes:?}");
    assert!(
        !std::path::Path::new(&hosts_file).exists(),
        "the record is gone"
    );

    // With delete_data=true the volume goes too.
    let sub = format!("tear2-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let (env2, _purge2) = w.staging(&sub).await;
    let (id, d) = w.deploy_and_wait(env2).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    teardown(&w, env2, true).await;
    assert_eq!(leftovers(env2), Vec::<String>::new(), "nothing stays");
}
