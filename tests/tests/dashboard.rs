//! The dashboard in headless Chromium against a real stack: sign in,
//! deploy from the environment page, watch the deployment page reach ✓ on
//! every stage with durations and 100 %, open a stage's logs (the same lines
//! as `/logs`), and see a failing deployment's ✗ and error. Screenshots of
//! the deployment page at desktop and phone width go to
//! `target/screenshots/` (the README shows copies in `docs/`).

use std::path::PathBuf;
use std::time::Duration;

use oec_tests::browser::Browser;
use oec_tests::stack::{ABSENT_DB_IMAGE_ERROR, Api, ServerLogin, Stack};
use oec_tests::world::*;
use oec_tests::{ADMIN_EMAIL, ADMIN_PASSWORD};
use serde_json::{Value, json};
use uuid::Uuid;

fn screenshots() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/screenshots"
    ))
}

async fn sign_in(b: &Browser, api: &Api) {
    b.goto(&format!("{}/", api.address)).await;
    b.type_into("#email", ADMIN_EMAIL).await;
    b.type_into("#password", ADMIN_PASSWORD).await;
    b.click("#signin").await;
    b.wait_until(
        "the organizations page",
        "return document.querySelector('main h1')?.textContent",
        Duration::from_secs(10),
        |v| v == "Organizations",
    )
    .await;
}

/// Clicks Deploy on the environment page; the deployment page's id.
async fn deploy_from_environment_page(b: &Browser, api: &Api, env: Uuid) -> Uuid {
    b.goto(&format!("{}/#/env/{env}", api.address)).await;
    b.click("#deploy").await;
    let hash = b
        .wait_until(
            "the deployment page",
            "return location.hash",
            Duration::from_secs(10),
            |v| v.as_str().is_some_and(|h| h.starts_with("#/deployment/")),
        )
        .await;
    Uuid::parse_str(
        hash.as_str()
            .unwrap_or_default()
            .trim_start_matches("#/deployment/"),
    )
    .expect("deployment id")
}

/// What the deployment page shows: status, percent, and each step's id,
/// status, duration and expanded state.
const PAGE: &str = r#"return {
  status: document.querySelector('#status')?.textContent,
  percent: document.querySelector('#progress')?.getAttribute('aria-valuenow'),
  error: document.querySelector('#error')?.textContent,
  toasts: document.querySelector('#toasts')?.textContent,
  steps: [...document.querySelectorAll('#steps > li')].map(li => ({
    id: li.dataset.step, status: li.dataset.status,
    icon: li.querySelector('.step-icon')?.textContent,
    time: li.querySelector('.step-time')?.textContent,
    expanded: li.querySelector('.step-head')?.getAttribute('aria-expanded'),
  })),
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_deployment_page_follows_a_deployment_to_every_stage_done_and_shows_its_logs() {
    let mut w = world(&[]).await;
    let sub = format!("ui{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (env, _purge) = w.staging(&sub).await;
    let b = Browser::start(1280, 1000).await;
    sign_in(&b, &w.stack).await;
    let id = deploy_from_environment_page(&b, &w.stack, env).await;

    // While it runs, the running stage is expanded.
    b.wait_until(
        "a running stage, expanded",
        PAGE,
        Duration::from_secs(60),
        |v| {
            v["steps"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["status"] == "running" && s["expanded"] == "true")
            })
        },
    )
    .await;
    let page = b
        .wait_until("success", PAGE, DEPLOY, |v| {
            v["status"] == "success"
                && v["percent"] == "100"
                && v["steps"].as_array().is_some_and(|s| {
                    s.len() == 16
                        && s.iter().all(|s| {
                            s["status"] == "completed"
                                || s["status"] == "warning"
                                || s["status"] == "skipped"
                        })
                })
        })
        .await;
    for s in page["steps"].as_array().expect("steps") {
        let icon = match s["status"].as_str() {
            Some("completed") => "✓",
            Some("warning") => "⚠",
            _ => "↷",
        };
        assert_eq!(s["icon"], icon, "{s}");
        assert!(
            s["time"].as_str().is_some_and(|t| t.ends_with('s')),
            "no duration: {s}"
        );
        assert_eq!(s["expanded"], "false", "a finished stage stays open: {s}");
    }
    b.wait_until("the toast", PAGE, Duration::from_secs(5), |v| {
        v["toasts"]
            .as_str()
            .is_some_and(|t| t.contains("succeeded"))
    })
    .await;

    // A stage's logs on a click: the lines /logs has for it, once each.
    let step = "cloning_project_repo";
    b.click(&format!("button[data-step={step}]")).await;
    let want: Vec<String> = w
        .get(&format!(
            "/api/v1/deployments/{id}/logs?step={step}&limit=500"
        ))
        .await
        .body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!want.is_empty());
    let shown = b
        .wait_until(
            "the stage's logs",
            &format!(
                "return [...document.querySelectorAll('#logs-{step} > div')].map(d => d.textContent.replace(/^\\S+\\s+(AM|PM)?\\s*/, ''))"
            ),
            Duration::from_secs(10),
            |v| v.as_array().is_some_and(|a| a.len() >= want.len()),
        )
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).expect("lines");
    assert_eq!(shown.len(), want.len(), "{shown:#?}");
    for (s, w) in shown.iter().zip(&want) {
        assert!(s.ends_with(w.as_str()), "{s:?} is not {w:?}");
    }

    b.screenshot(&screenshots().join("deployment-desktop.png"))
        .await;

    // The api restarted mid-deployment: the page reconnects (the spec's
    // backoff, resuming after the last event) and ends with every line of
    // every stage it shows exactly once.
    let id = deploy_from_environment_page(&b, &w.stack, env).await;
    b.wait_until("a running stage", PAGE, Duration::from_secs(60), |v| {
        v["status"] == "running"
            && v["steps"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["id"] == "creating_database" && s["status"] == "running")
            })
    })
    .await;
    let port = w.stack.address.rsplit(':').next().expect("port").to_owned();
    w.stack.api.signal("-KILL");
    b.wait_until(
        "the page to see the connection lost",
        "return document.querySelector('#connection')?.textContent",
        Duration::from_secs(10),
        |v| v.as_str().is_some_and(|t| t.contains("reconnecting")),
    )
    .await;
    w.stack.api = w
        .stack
        .spawn("oec-api", &[("OEC_BIND", &format!("127.0.0.1:{port}"))]);
    w.stack
        .api
        .wait_for("oec-api listening", Duration::from_secs(30))
        .await;
    b.wait_until("success after the restart", PAGE, DEPLOY, |v| {
        v["status"] == "success"
    })
    .await;
    let shown = b
        .js(
            "return Object.fromEntries([...document.querySelectorAll('pre.logs[data-loaded]')].map(p => \
             [p.id.slice(5), [...p.children].map(d => Number(d.dataset.seq))]))",
            json!([]),
        )
        .await;
    let shown = shown.as_object().expect("steps");
    assert!(!shown.is_empty(), "no stage's logs were shown");
    let logs = w
        .get(&format!("/api/v1/deployments/{id}/logs?limit=500"))
        .await
        .body["logs"]
        .as_array()
        .cloned()
        .expect("logs");
    for (step, seqs) in shown {
        let want: Vec<i64> = logs
            .iter()
            .filter(|l| l["step"] == step.as_str())
            .map(|l| l["seq"].as_i64().expect("seq"))
            .collect();
        let got: Vec<i64> = serde_json::from_value(seqs.clone()).expect("seqs");
        assert_eq!(got, want, "{step}: each line once, in order");
    }
    b.resize(390, 844).await;
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "wider than a phone: {overflow}"
    );
    b.screenshot(&screenshots().join("deployment-phone.png"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_deployment_shows_its_failed_stage_and_the_error() {
    // Deployments of this stack fail at creating_database.
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let b = Browser::start(1280, 1000).await;
    sign_in(&b, &stack).await;
    deploy_from_environment_page(&b, &stack, env).await;
    let page = b
        .wait_until("failed", PAGE, Duration::from_secs(60), |v| {
            v["status"] == "failed"
        })
        .await;
    let steps = page["steps"].as_array().expect("steps");
    let failed: Vec<&Value> = steps.iter().filter(|s| s["status"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{page}");
    assert_eq!(failed[0]["id"], "creating_database");
    assert_eq!(failed[0]["icon"], "✗");
    // The failed stage stays open, with its error.
    assert_eq!(failed[0]["expanded"], "true");
    assert!(
        page["error"]
            .as_str()
            .is_some_and(|e| e.contains(ABSENT_DB_IMAGE_ERROR)),
        "{page}"
    );
    b.wait_until("the toast", PAGE, Duration::from_secs(5), |v| {
        v["toasts"].as_str().is_some_and(|t| t.contains("failed"))
    })
    .await;
}
