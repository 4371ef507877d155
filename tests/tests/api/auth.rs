use oec_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn login_returns_bearer_tokens_that_work_on_me() {
    let app = TestApp::spawn().await;
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["expires_in"], 900);
    let me = app
        .get(
            "/api/v1/auth/me",
            r.body["access_token"].as_str().unwrap_or_default(),
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], ADMIN_EMAIL);
    assert_eq!(me.body["is_portal_admin"], true);
    assert!(me.body.get("password_hash").is_none());
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = TestApp::spawn().await;
    for body in [
        json!({"email": ADMIN_EMAIL, "password": "nope-nope"}),
        json!({"email": "nobody@oec.test", "password": "nope-nope"}),
    ] {
        let r = app
            .send(Method::POST, "/api/v1/auth/login", None, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.code(), "invalid_credentials");
    }
}

#[tokio::test]
async fn refresh_issues_new_tokens_and_refuses_access_tokens() {
    let app = TestApp::spawn().await;
    let login = app
        .send(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
        )
        .await;
    let refresh = login.body["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["access_token"].is_string());
    // A refresh token is not an access token, and vice versa.
    let me = app.get("/api/v1/auth/me", &refresh).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": app.admin_token})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.code(), "invalid_token");
}

#[tokio::test]
async fn missing_malformed_and_expired_tokens_get_401_with_their_code() {
    let app = TestApp::spawn_with(&[("OEC_ACCESS_TOKEN_TTL_SECS", "10")]).await;
    let r = app.send(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    let r = app.get("/api/v1/auth/me", "not.a.jwt").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A token signed with the right key but past its expiry.
    let expired = oec_common::auth::TokenIssuer::new(
        app.settings
            .jwt_secret
            .as_deref()
            .expect("the api's JWT secret"),
        std::time::Duration::from_secs(0),
        std::time::Duration::from_secs(60),
    )
    .issue(
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        oec_common::auth::TokenKind::Access,
    )
    .expect("issue");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app.get("/api/v1/auth/me", &expired).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
}

#[tokio::test]
async fn bootstrap_admin_is_created_once_only() {
    let app = TestApp::spawn().await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 1);
    // A second api start on the same database with another bootstrap email adds nobody.
    let settings = oec_tests::test_settings(
        &app.database.url,
        &[("OEC_BOOTSTRAP_ADMIN_EMAIL", "second@oec.test")],
    );
    let _second = oec_api::startup::Application::build(settings)
        .await
        .expect("build");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/api/v1/healthz", "/api/v1/readyz"] {
        let r = app.send(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    let r = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.body["postgres"], "ok");
    assert_eq!(r.body["redis"], "ok");
}

#[tokio::test]
async fn readiness_reports_a_redis_that_does_not_answer() {
    // Port 1 on loopback refuses connections.
    let app = TestApp::spawn_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let r = app.send(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.code(), "not_ready");
    // What failed is named; the driver's error text stays in the log.
    assert_eq!(
        r.body["message"], "Not ready: Redis does not answer (the api's log has the error).",
        "{}",
        r.text
    );
}

#[tokio::test]
async fn token_responses_are_never_cached_and_every_response_says_nosniff() {
    let app = TestApp::spawn().await;
    let login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(&login, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header(&login, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let tokens: serde_json::Value = login.json().await.expect("tokens");
    let refreshed = app
        .client
        .post(app.url("/api/v1/auth/refresh"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(
        header(&refreshed, "cache-control").as_deref(),
        Some("no-store")
    );
    // Errors and unknown routes too.
    for path in ["/api/v1/organizations", "/nowhere", "/healthz"] {
        let r = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(
            header(&r, "x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}

async fn login_status(app: &TestApp, email: &str, password: &str) -> (StatusCode, Option<String>) {
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status(), retry)
}

#[tokio::test]
async fn failed_logins_are_limited_per_account_and_per_address_with_a_429() {
    // Per account: ten failures, then even the right password waits.
    let app = TestApp::spawn().await;
    for _ in 0..10 {
        assert_eq!(
            login_status(&app, ADMIN_EMAIL, "wrong-password-1").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (status, retry) = login_status(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = retry.and_then(|r| r.parse().ok()).unwrap_or(0);
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    let r = app
        .post(
            "/api/v1/auth/login",
            "",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(r.body["error"], "too_many_attempts");

    // Per address: failures spread over many accounts count too.
    let app = TestApp::spawn().await;
    for i in 0..10 {
        let (status, _) =
            login_status(&app, &format!("nobody{i}@oec.test"), "wrong-password-1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login_status(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // A success clears the account's count.
    let app = TestApp::spawn().await;
    for _ in 0..9 {
        login_status(&app, ADMIN_EMAIL, "wrong-password-1").await;
    }
    assert_eq!(
        login_status(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn passwords_shorter_than_twelve_characters_or_common_are_refused() {
    let app = TestApp::spawn().await;
    for (password, ok) in [
        ("short-pw-1", false),
        ("password1234", false),
        ("111111111111", false),
        ("a long passphrase", true),
    ] {
        let r = app
            .post(
                "/api/v1/users",
                &app.admin_token,
                json!({"email": format!("u{}@oec.test", password.len()), "name": "U", "password": password}),
            )
            .await;
        if ok {
            assert_eq!(r.status, StatusCode::CREATED, "{password}: {}", r.text);
        } else {
            assert_eq!(
                (r.status, r.body["field"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("password")),
                "{password}: {}",
                r.text
            );
        }
    }
}
