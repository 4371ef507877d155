//! Login sessions against the real api: refresh tokens rotate on use and a
//! reused one revokes its session; logout, a password change and deleting a
//! user end sessions, their access tokens and their open event streams.

use std::time::{Duration, Instant};

use oec_tests::stack::SseClient;
use oec_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Resp, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn refresh(app: &TestApp, token: &str) -> Resp {
    app.send(
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": token})),
    )
    .await
}

fn tokens(r: &Resp) -> (String, String) {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let t = |k: &str| r.body[k].as_str().expect("token").to_owned();
    (t("access_token"), t("refresh_token"))
}

async fn me_status(app: &TestApp, token: &str) -> (StatusCode, String) {
    let r = app.get("/api/v1/auth/me", token).await;
    (r.status, r.code().to_owned())
}

fn ended() -> (StatusCode, String) {
    (StatusCode::UNAUTHORIZED, "session_ended".to_owned())
}

/// An open `/events/stream`, past its `connected` frame.
async fn stream(app: &TestApp, token: &str) -> SseClient {
    let mut s = SseClient::connect(
        &app.url(&format!("/api/v1/events/stream?token={token}")),
        None,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let first = s.next(Duration::from_secs(5)).await.and_then(|m| m.event);
    assert_eq!(first.as_deref(), Some("connected"));
    s
}

/// Waits for the stream to close; how long that took from `since`.
async fn closes(s: &mut SseClient, since: Instant) -> Duration {
    let frames = s.until(Duration::from_secs(5), |_| false).await;
    let took = since.elapsed();
    assert!(
        took < Duration::from_millis(1_500),
        "the stream was still open {took:?} later: {frames:?}"
    );
    took
}

#[tokio::test]
async fn refresh_tokens_rotate_on_use_and_a_reused_one_revokes_its_session() {
    let app = TestApp::spawn().await;
    let (_, first) = app.login_tokens(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (access, second) = tokens(&refresh(&app, &first).await);
    assert_ne!(first, second);
    assert_eq!(me_status(&app, &access).await.0, StatusCode::OK);
    // The next refresh token works once too.
    let (access, third) = tokens(&refresh(&app, &second).await);
    // An exchanged token presented again is a stolen copy: the session ends.
    let r = refresh(&app, &first).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "refresh_token_reused")
    );
    assert_eq!(me_status(&app, &access).await, ended());
    let r = refresh(&app, &third).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "session_ended")
    );
    // Another session of the same user is untouched.
    assert_eq!(me_status(&app, &app.admin_token).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_ends_the_session_its_access_tokens_and_its_open_streams() {
    let app = TestApp::spawn().await;
    let (id, _) = app.user("leaver").await;
    let email = "leaver@oec.test";
    let (a1, r1) = app.login_tokens(email, "password-123").await;
    let (a2, r2) = app.login_tokens(email, "password-123").await;
    let (a3, _) = app.login_tokens(email, "password-123").await;
    let mut s1 = stream(&app, &a1).await;
    let mut s2 = stream(&app, &a2).await;

    // Logging out with a refresh token ends that session only.
    let at = Instant::now();
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": r1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    closes(&mut s1, at).await;
    assert_eq!(me_status(&app, &a1).await, ended());
    let r = refresh(&app, &r1).await;
    assert_eq!(r.code(), "session_ended");
    assert_eq!(me_status(&app, &a2).await.0, StatusCode::OK);
    s2.until(Duration::from_millis(300), |_| false).await;
    assert!(!s2.closed(), "another session's stream ended too");

    // With the access token and all_sessions, every session ends.
    let at = Instant::now();
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&a3),
            Some(json!({"all_sessions": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    closes(&mut s2, at).await;
    assert_eq!(me_status(&app, &a2).await, ended());
    assert_eq!(me_status(&app, &a3).await, ended());
    assert_eq!(refresh(&app, &r2).await.code(), "session_ended");
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(open, 0);

    // Without any token it is a 401; a forged one too.
    let r = app
        .send(Method::POST, "/api/v1/auth/logout", None, Some(json!({})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/logout",
            None,
            Some(json!({"refresh_token": "x.y.z"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_revokes_every_other_session_and_its_refresh_tokens() {
    let app = TestApp::spawn().await;
    app.user("changer").await;
    let email = "changer@oec.test";
    let (mine, my_refresh) = app.login_tokens(email, "password-123").await;
    let (other, other_refresh) = app.login_tokens(email, "password-123").await;
    let mut other_stream = stream(&app, &other).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});
    let put = |body: Value| {
        app.send(
            Method::PUT,
            "/api/v1/auth/password",
            Some(&mine),
            Some(body),
        )
    };

    let r = put(change("wrong-password-1", "a-new-long-secret")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["field"], "current_password", "{}", r.text);
    let r = put(change("password-123", "short")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["field"], "new_password", "{}", r.text);
    // Nothing changed yet.
    assert_eq!(me_status(&app, &other).await.0, StatusCode::OK);

    let at = Instant::now();
    let r = put(change("password-123", "a-new-long-secret")).await;
    let (fresh, fresh_refresh) = tokens(&r);
    closes(&mut other_stream, at).await;
    assert_eq!(me_status(&app, &other).await, ended());
    assert_eq!(refresh(&app, &other_refresh).await.code(), "session_ended");
    // The caller's session goes on, with the new refresh token only.
    assert_eq!(me_status(&app, &mine).await.0, StatusCode::OK);
    assert_eq!(me_status(&app, &fresh).await.0, StatusCode::OK);
    assert_ne!(my_refresh, fresh_refresh);
    tokens(&refresh(&app, &fresh_refresh).await);
    // The old password is gone.
    let r = app
        .send(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": email, "password": "password-123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    app.login(email, "a-new-long-secret").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_ends_their_streams_at_once_but_never_the_last_owner_or_admin() {
    let app = TestApp::spawn().await;
    let t = app.admin_token.clone();
    let (doomed, token) = app.user("doomed").await;
    let (_, outsider) = app.user("outsider").await;
    let org = app
        .post(
            "/api/v1/organizations",
            &t,
            json!({"name": "Doom", "slug": "doom"}),
        )
        .await
        .id();
    let r = app
        .post(
            &format!("/api/v1/organizations/{org}/members"),
            &t,
            json!({"user_id": doomed, "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    // The admin who created the organization is its other owner; make the
    // doomed user its only one.
    let admin = app.get("/api/v1/auth/me", &t).await.id();
    let r = app
        .delete(&format!("/api/v1/organizations/{org}/members/{admin}"), &t)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);

    let path = format!("/api/v1/users/{doomed}");
    let r = app.delete(&path, &outsider).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = app.delete(&path, &t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "last_owner"),
        "{}",
        r.text
    );
    let r = app.delete(&format!("/api/v1/users/{admin}"), &t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "last_portal_admin"),
        "{}",
        r.text
    );

    let r = app
        .post(
            &format!("/api/v1/organizations/{org}/members"),
            &t,
            json!({"user_id": admin, "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut s = stream(&app, &token).await;
    let at = Instant::now();
    let r = app.delete(&path, &t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    closes(&mut s, at).await;
    assert_eq!(me_status(&app, &token).await, ended());
    assert_eq!(app.delete(&path, &t).await.status, StatusCode::NOT_FOUND);
    let memberships: i64 =
        sqlx::query_scalar("SELECT count(*) FROM organization_members WHERE user_id = $1")
            .bind(doomed)
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(memberships, 0);
}
