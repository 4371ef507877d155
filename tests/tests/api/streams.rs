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

#[tokio::test(flavor = "multi_thread")]
async fn sixty_concurrent_resumes_each_deliver_only_what_their_user_may_see() {
    let app = TestApp::spawn().await;
    let w = oec_tests::World::build(&app, "acme").await;
    let redis = deadpool_redis::Config::from_url(oec_tests::redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("redis");
    let publisher = oec_common::events::Publisher::new(
        redis,
        &app.settings.redis_prefix,
        app.settings.event_replay_max,
    );
    let first = publisher
        .publish(w.org, "environment_status", serde_json::json!({"n": 0}))
        .await
        .expect("publish");
    // Many events of another organization, a few of the user's own in between.
    let stranger_org = uuid::Uuid::new_v4();
    let events: Vec<(uuid::Uuid, &str, serde_json::Value)> = (1..=5_000)
        .map(|n| {
            let org = if n % 1_000 == 0 { w.org } else { stranger_org };
            (org, "environment_status", serde_json::json!({"n": n}))
        })
        .collect();
    for chunk in events.chunks(500) {
        publisher.publish_many(chunk).await.expect("publish");
    }
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
            assert_eq!(s.status, StatusCode::OK);
            s.until(Duration::from_secs(3), |_| false).await
        }
    };
    let mut tasks = Vec::new();
    for i in 0..60 {
        let token = if i % 2 == 0 {
            &nobody_token
        } else {
            &member_token
        };
        tasks.push(tokio::spawn(resume(token.clone())));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let frames = t.await.expect("resume");
        let events: Vec<String> = frames
            .iter()
            .filter(|m| m.event.as_deref() == Some("environment_status"))
            .map(|m| m.data.clone())
            .collect();
        if i % 2 == 0 {
            assert!(events.is_empty(), "the stranger got {events:?}");
        } else {
            let ns: Vec<i64> = events
                .iter()
                .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .filter_map(|v| v["data"]["n"].as_i64())
                .collect();
            assert_eq!(ns, vec![1_000, 2_000, 3_000, 4_000, 5_000]);
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
