//! Event-stream limits against the real api: concurrent streams per user
//! and per address, and what a resume may cost.

use std::time::Duration;

use oec_tests::TestApp;
use oec_tests::stack::SseClient;
use reqwest::StatusCode;

async fn open(app: &TestApp, token: &str) -> SseClient {
    SseClient::connect(
        &app.url(&format!("/api/v1/events/stream?token={token}")),
        None,
    )
    .await
}

/// A 429 `too_many_streams` with `Retry-After`.
async fn refused(app: &TestApp, token: &str) {
    let r = reqwest::get(app.url(&format!("/api/v1/events/stream?token={token}")))
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"], "too_many_streams");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_streams_are_capped_per_user_and_per_address_with_a_429() {
    let app = TestApp::spawn_with(&[
        ("OEC_SSE_MAX_STREAMS_PER_IP", "40"),
        ("OEC_SSE_KEEPALIVE_SECS", "1"),
    ])
    .await;
    let (_, token) = app.user("many").await;
    let mut streams = Vec::new();
    for _ in 0..32 {
        let s = open(&app, &token).await;
        assert_eq!(s.status, StatusCode::OK);
        streams.push(s);
    }
    refused(&app, &token).await;
    // Closing one frees its place once the server notices, at the next
    // write (the keepalive at the latest).
    drop(streams.pop());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let s = open(&app, &token).await;
    assert_eq!(s.status, StatusCode::OK);
    streams.push(s);
    // Another user from the same address: its own 32, but the address has 40.
    let (_, other) = app.user("other").await;
    for _ in 0..8 {
        let s = open(&app, &other).await;
        assert_eq!(s.status, StatusCode::OK);
        streams.push(s);
    }
    refused(&app, &other).await;
}

/// Appends `environment_status` events to the api's replay stream as raw
/// JSON (the contract on the wire), event `n` naming deployment `n`.
async fn append_events(app: &TestApp, events: &[(uuid::Uuid, u128)]) -> Vec<String> {
    let client = redis::Client::open(oec_tests::redis_url()).expect("redis");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let stream = format!("{}sse:stream", app.settings.redis_prefix);
    let mut ids = Vec::new();
    for chunk in events.chunks(1_000) {
        let mut pipe = redis::pipe();
        for (org, n) in chunk {
            let body = serde_json::json!({"org_id": org, "type": "environment_status", "data": {
                "environment_id": uuid::Uuid::from_u128(*n), "project_id": uuid::Uuid::nil(),
                "deployment_id": uuid::Uuid::from_u128(*n), "status": "running"}});
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("e")
                .arg(body.to_string());
        }
        let got: Vec<String> = pipe.query_async(&mut conn).await.expect("xadd");
        ids.extend(got);
    }
    ids
}

/// This process's resident memory, and its peak so far, in MiB (nextest
/// runs each test in a process of its own).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .expect("a memory field")
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_concurrent_resumes_each_deliver_only_what_their_user_may_see() {
    let app = TestApp::spawn().await;
    let w = oec_tests::World::build(&app, "acme").await;
    let first = append_events(&app, &[(w.org, 0)]).await.remove(0);
    // As many events as a resume may scan (OEC_EVENT_REPLAY_MAX), nearly
    // all of another organization, a few of the user's own in between.
    let max = app.settings.event_replay_max as u128;
    let stranger_org = uuid::Uuid::new_v4();
    let events: Vec<(uuid::Uuid, u128)> = (1..=max)
        .map(|n| (if n % 10_000 == 0 { w.org } else { stranger_org }, n))
        .collect();
    append_events(&app, &events).await;
    let (member, member_token) = app.user("member").await;
    let r = app
        .post(
            &format!("/api/v1/organizations/{}/members", w.org),
            &app.admin_token,
            serde_json::json!({"user_id": member, "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (_, nobody_token) = app.user("nobody").await;

    // 30 resumes at once by a user with no memberships, 30 by an org admin.
    let url = app.url("/api/v1/events/stream");
    let resume = |token: String| {
        let url = format!("{url}?token={token}");
        let first = first.clone();
        async move {
            let mut s = SseClient::connect(&url, Some(&first)).await;
            let status = s.status;
            (status, s.until(Duration::from_secs(5), |_| false).await)
        }
    };
    let (rss_before, _) = memory_mib();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let token = if i % 2 == 0 {
            &nobody_token
        } else {
            &member_token
        };
        tasks.push(tokio::spawn(resume(token.clone())));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("resume"));
    }
    let (_, peak) = memory_mib();
    // A resume costs what it delivers, not the stream: 60 of them over
    // 50,000 stored events stay within a few MiB (before the fix, each
    // decoded the whole stream at once: hundreds of MiB, and 500s).
    let grew = peak - rss_before;
    eprintln!("memory during the resumes: {rss_before:.0} -> {peak:.0} MiB (+{grew:.1})");
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| s.as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        grew < 64.0,
        "memory grew by {grew:.0} MiB during the resumes ({rss_before:.0} -> {peak:.0} MiB)"
    );
    for (i, (_, frames)) in answers.iter().enumerate() {
        let ns: Vec<u128> = frames
            .iter()
            .filter(|m| m.event.as_deref() == Some("environment_status"))
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m.data).ok())
            .filter_map(|v| {
                v["data"]["deployment_id"]
                    .as_str()?
                    .parse::<uuid::Uuid>()
                    .ok()
            })
            .map(|u| u.as_u128())
            .collect();
        if i % 2 == 0 {
            assert!(ns.is_empty(), "the stranger got {ns:?}");
        } else {
            let want: Vec<u128> = (1..=max).filter(|n| n % 10_000 == 0).collect();
            assert_eq!(ns, want);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_last_event_id_is_a_400_naming_the_endpoints_id_scheme() {
    let app = TestApp::spawn().await;
    let t = &app.admin_token;
    let (deployment, _) = oec_tests::bare_deployment(&app.db)
        .await
        .expect("deployment");
    let get = |path: String, last: &'static str| {
        let url = app.url(&path);
        async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("Last-Event-ID", last)
                .send()
                .await
                .expect("request");
            let status = r.status();
            let body: serde_json::Value = if status == StatusCode::OK {
                serde_json::Value::Null
            } else {
                r.json().await.expect("json")
            };
            (status, body)
        }
    };
    let global = format!("/api/v1/events/stream?token={t}");
    let one = format!("/api/v1/deployments/{deployment}/events?token={t}");
    for (path, bad, scheme) in [
        (&global, "42", "{milliseconds}-{sequence}"),
        (&global, "1700000000000-x", "{milliseconds}-{sequence}"),
        (&one, "1700000000000-0", "sequence number"),
        (&one, "-3", "sequence number"),
    ] {
        let (status, body) = get(path.clone(), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_last_event_id", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(scheme),
            "{body}"
        );
    }
    // Each endpoint's own scheme, and an empty header, are accepted.
    for (path, good) in [(&global, "1700000000000-0"), (&one, "7"), (&one, "")] {
        let (status, body) = get(path.clone(), good).await;
        assert_eq!(status, StatusCode::OK, "{good:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_stream_reads_its_token_exactly_as_the_rest_api_does() {
    let app = TestApp::spawn().await;
    let t = &app.admin_token;
    let open = |auth: Option<String>, query: &str| {
        let mut req = reqwest::Client::new().get(app.url(&format!("/api/v1/events/stream{query}")));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.expect("request");
            let status = r.status();
            let code = if status == StatusCode::OK {
                String::new()
            } else {
                let body: serde_json::Value = r.json().await.expect("json");
                body["error"].as_str().unwrap_or_default().to_owned()
            };
            (status, code)
        }
    };
    // Any case of the scheme, as for every other endpoint.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = open(Some(format!("{scheme} {t}")), "").await;
        assert_eq!(r.0, StatusCode::OK, "{scheme}: {r:?}");
    }
    assert_eq!(open(None, &format!("?token={t}")).await.0, StatusCode::OK);
    assert_eq!(
        open(None, "").await,
        (StatusCode::UNAUTHORIZED, "missing_token".to_owned())
    );
    // A header of another scheme is refused like anywhere else, not skipped.
    assert_eq!(
        open(Some("Basic abc".into()), &format!("?token={t}")).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".to_owned())
    );
}
