//! The three binaries as an operator runs them: configuration errors, start,
//! migrations, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use oec_tests::{TestDatabase, binary, process_env};

const BINARIES: [&str; 3] = ["oec-api", "oec-worker", "oec-scheduler"];

#[test]
fn a_bad_configuration_stops_each_binary_naming_every_bad_variable() {
    for name in BINARIES {
        let out = Command::new(binary(name))
            .env_clear()
            .env("OEC_BIND", "not-an-address")
            .env("OEC_SECRET_KEY", "dG9vIHNob3J0")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for var in [
            "DATABASE_URL: missing",
            "REDIS_URL: missing",
            "OEC_SECRET_KEY",
            "OEC_BIND",
        ] {
            assert!(stderr.contains(var), "{name}: {var} not named in {stderr}");
        }
        // Only the api signs tokens: the others do not ask for its secret.
        assert_eq!(
            stderr.contains("OEC_JWT_SECRET: missing"),
            name == "oec-api",
            "{name}: {stderr}"
        );
        assert_eq!(
            stderr
                .lines()
                .filter(|l| l.contains("invalid configuration"))
                .count(),
            1,
            "one message"
        );
    }
}

/// Starts `name`, waits for `ready` in its log, sends SIGTERM and returns its
/// whole log once it has exited with success.
fn run_until_sigterm(name: &str, database_url: &str, ready: &str) -> String {
    let mut child = Command::new(binary(name))
        .env_clear()
        .envs(process_env(database_url, &[]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = mpsc::channel();
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
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains(ready) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("{name} did not log {ready:?} in time:\n{log}");
            }
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not stop on SIGTERM:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The readers end at EOF, after the exit: collect everything they still hold.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while let Ok(line) = rx.recv_timeout(drain_until.saturating_duration_since(Instant::now())) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(exit.success(), "{name} exited with {exit}:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread")]
async fn each_binary_migrates_starts_and_stops_cleanly_on_sigterm() {
    let db = TestDatabase::create().await;
    for (name, ready) in [
        ("oec-worker", "oec-worker started"),
        ("oec-scheduler", "oec-scheduler started"),
        ("oec-api", "oec-api listening"),
    ] {
        let url = db.url.clone();
        let log = tokio::task::spawn_blocking(move || run_until_sigterm(name, &url, ready))
            .await
            .expect("join");
        assert!(
            log.contains("stopped"),
            "{name} did not log its stop:\n{log}"
        );
    }
    // The migrations were applied (by whichever binary came first).
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('deployments', 'deployment_steps', 'deployment_logs', 'environments')",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(tables, 4);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_response_carries_a_request_id_and_the_access_log_never_holds_a_token() {
    let stack = oec_tests::stack::Stack::start(0, &[]).await;
    let t = stack.admin_token.clone();
    let me = |id: Option<&'static str>| {
        let mut r = stack
            .client
            .get(stack.url("/api/v1/auth/me"))
            .bearer_auth(&t);
        if let Some(id) = id {
            r = r.header("X-Request-Id", id);
        }
        r.send()
    };
    let header = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let own = me(Some("support-ticket_42.a")).await.expect("send");
    assert_eq!(own.status(), 200);
    assert_eq!(
        header(&own),
        "support-ticket_42.a",
        "the caller's id is kept"
    );
    let made = me(None).await.expect("send");
    let made_id = header(&made);
    assert!(
        made_id.len() == 32 && made_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{made_id:?}"
    );
    let refused = me(Some("two words")).await.expect("send");
    assert_ne!(header(&refused), "two words", "an unsafe id is replaced");
    assert_eq!(header(&refused).len(), 32);
    // Errors carry one too.
    let missing = stack
        .client
        .get(stack.url("/api/v1/deployments/not-a-uuid"))
        .bearer_auth(&t)
        .header("X-Request-Id", "bad-path-1")
        .send()
        .await
        .expect("send");
    assert_eq!(missing.status(), 400);
    assert_eq!(header(&missing), "bad-path-1");
    // An event stream authenticated by `?token=`: logged without the query.
    let sse = stack
        .client
        .get(stack.url(&format!("/api/v1/events/stream?token={t}")))
        .header("X-Request-Id", "sse-1")
        .send()
        .await
        .expect("send");
    assert_eq!(sse.status(), 200);
    drop(sse);
    stack
        .api
        .wait_for("GET /api/v1/events/stream 200", Duration::from_secs(10))
        .await;
    let log = stack.api.log();
    for line in [
        "request_id=support-ticket_42.a",
        &format!("request_id={made_id}"),
        "GET /api/v1/auth/me 200",
        "request_id=bad-path-1",
        "GET /api/v1/deployments/not-a-uuid 400",
        "request_id=sse-1",
    ] {
        assert!(log.contains(line), "{line:?} not in:\n{log}");
    }
    assert!(!log.contains(&t), "the token is in the log:\n{log}");
    assert!(!log.contains("two words"));
}
