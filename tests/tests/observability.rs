//! What ops watch: Prometheus text on the api's `/metrics` and on the
//! worker's and scheduler's `OEC_METRICS_BIND` listener, moving during a
//! deployment; the JSON access log's fields; CORS for configured origins.

use std::time::{Duration, Instant};

use oec_tests::stack::{ServerLogin, Stack};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The value of one series (`name{labels}` exactly as rendered), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(url: &str) -> String {
    let r = reqwest::get(url).await.expect("scrape");
    assert_eq!(r.status(), 200, "{url}");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4"),
        "{url}"
    );
    r.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_during_a_deployment_on_the_api_and_the_worker() {
    let port = free_port();
    let worker_metrics = format!("http://127.0.0.1:{port}/metrics");
    let bind = format!("127.0.0.1:{port}");
    let stack = Stack::start(1, &[("OEC_METRICS_BIND", &bind)]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let api_metrics = stack.url("/metrics");

    let failed = r#"oec_deployments{status="failed",trigger="manual"}"#;
    let before = scrape(&api_metrics).await;
    assert_eq!(sample(&before, failed), 0.0, "{before}");
    let worker_before = scrape(&worker_metrics).await;
    let stage = r#"oec_stage_duration_seconds_count{stage="connecting",status="completed"}"#;
    assert_eq!(sample(&worker_before, stage), 0.0);

    let id = stack.deploy(env).await;
    // While it runs: a pending or running deployment, then stages counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut during = String::new();
    while Instant::now() < deadline {
        during = scrape(&worker_metrics).await;
        if sample(&during, stage) >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sample(&during, stage), 1.0, "{during}");
    assert!(
        during.contains("# TYPE oec_stage_duration_seconds histogram"),
        "{during}"
    );
    assert!(
        during.contains(r#"oec_stage_duration_seconds_bucket{stage="connecting",status="completed",le="+Inf"} 1"#),
        "{during}"
    );
    let d = stack.wait_terminal(id, Duration::from_secs(120)).await;
    assert_eq!(d["status"], "failed", "{d}");

    let after = scrape(&api_metrics).await;
    assert_eq!(sample(&after, failed), 1.0, "{after}");
    assert_eq!(sample(&after, "oec_queue_pending_deployments"), 0.0);
    assert!(
        sample(
            &after,
            r#"oec_http_requests_total{method="POST",route="/api/v1/deployments",status="202"}"#
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains(r#"oec_http_request_duration_seconds_count{method="GET",route="/api/v1/deployments/{id}"}"#),
        "routes are patterns, not paths: {after}"
    );
    assert!(!after.contains(&id.to_string()), "an id became a label");
    let worker_after = scrape(&worker_metrics).await;
    assert_eq!(
        sample(
            &worker_after,
            r#"oec_deployments_finished_total{action="deploy",status="failed"}"#
        ),
        1.0,
        "{worker_after}"
    );
    assert_eq!(
        sample(
            &worker_after,
            r#"oec_stage_duration_seconds_count{stage="creating_database",status="failed"}"#
        ),
        1.0,
        "{worker_after}"
    );
    assert!(sample(&worker_after, "oec_log_lines_written_total") >= 5.0);
    assert_eq!(sample(&worker_after, "oec_worker_running_deployments"), 0.0);
    let r = reqwest::get(format!("http://127.0.0.1:{port}/other"))
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_access_log_has_its_fields_and_cors_answers_only_configured_origins() {
    let stack = Stack::start(0, &[]).await;
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let api = stack.spawn(
        "oec-api",
        &[
            ("OEC_BIND", &bind),
            ("OEC_LOG_FORMAT", "json"),
            (
                "OEC_CORS_ORIGINS",
                "https://dash.example.com, http://localhost:5173",
            ),
        ],
    );
    api.wait_for("oec-api listening", Duration::from_secs(60))
        .await;
    let base = format!("http://{bind}");
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&stack.admin_token)
        .header("X-Request-Id", "json-log-1")
        .header("Origin", "https://dash.example.com")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap_or_default()
            .contains("x-total-count")
    );
    assert!(h.get("access-control-allow-credentials").is_none());

    // A preflight from a configured origin is answered; another origin gets
    // no CORS header at all.
    let pre = client
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/api/v1/deployments"),
        )
        .header("Origin", "http://localhost:5173")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(
        pre.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap_or_default()
            .contains("POST")
    );
    assert!(
        pre.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap_or_default()
            .contains("authorization")
    );
    for origin in [
        "https://evil.example.com",
        "https://dash.example.com.evil.test",
    ] {
        let r = client
            .get(format!("{base}/api/v1/auth/me"))
            .bearer_auth(&stack.admin_token)
            .header("Origin", origin)
            .send()
            .await
            .expect("send");
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
        let pre = client
            .request(
                reqwest::Method::OPTIONS,
                format!("{base}/api/v1/deployments"),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .expect("preflight");
        assert!(
            pre.headers().get("access-control-allow-origin").is_none(),
            "{origin}"
        );
    }

    // The access line, as JSON, with its fields.
    api.wait_for("json-log-1", Duration::from_secs(10)).await;
    let line: Value = api
        .log()
        .lines()
        .filter(|l| l.contains("json-log-1") && l.contains("\"route\""))
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON access line in:\n{}", api.log()));
    let f = &line["fields"];
    assert_eq!(f["request_id"], "json-log-1", "{line}");
    assert_eq!(f["method"], "GET", "{line}");
    assert_eq!(f["route"], "/api/v1/auth/me", "{line}");
    assert_eq!(f["path"], "/api/v1/auth/me", "{line}");
    assert_eq!(f["status"], 200, "{line}");
    assert!(
        f["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    assert!(!api.log().contains(&stack.admin_token));
}
