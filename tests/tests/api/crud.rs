//! The operations every resource has beyond create and list: read one,
//! change, delete (refused with 409 while in use), members listed and
//! changed, users deactivated and their password reset.

use oec_tests::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> oec_tests::Resp {
    app.send(Method::PATCH, path, Some(token), Some(body)).await
}

#[tokio::test]
async fn odoo_versions_are_read_changed_and_deleted_only_when_unused() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let (_, member) = app.user("member").await;
    let list = app.get("/api/v1/odoo-versions", t).await;
    let v18 = list.body[0]["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/odoo-versions/{v18}");

    let r = app.get(&path, &member).await;
    assert_eq!(
        (r.status, r.body["version"].as_str()),
        (StatusCode::OK, Some("18.0"))
    );
    let r = patch(&app, &path, &member, json!({"image": "odoo:18.1"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    let r = patch(
        &app,
        &path,
        t,
        json!({"image": "registry.example.com/odoo:18.0-2"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["image"], "registry.example.com/odoo:18.0-2");
    let r = patch(
        &app,
        &path,
        t,
        json!({"registry_username": "bot", "registry_password": "s3cret-pull"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["registry_username"].as_str(),
            r.body["has_registry_password"].as_bool()
        ),
        (Some("bot"), Some(true))
    );
    assert!(!r.text.contains("s3cret-pull"));
    let r = patch(&app, &path, t, json!({"registry_username": "other"})).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("registry_password"))
    );
    let r = patch(
        &app,
        &path,
        t,
        json!({"registry_username": null, "registry_password": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["registry_username"].clone(),
            r.body["has_registry_password"].as_bool()
        ),
        (Value::Null, Some(false))
    );
    // The version is what environments name: not a field to change.
    let r = patch(&app, &path, t, json!({"version": "19.0"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = patch(&app, &path, t, json!({"image": "not an image"})).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("image"))
    );

    let r = app.delete(&path, t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "odoo_version_in_use"),
        "{}",
        r.text
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("1 environment(s)"),
        "{}",
        r.text
    );
    let r = app
        .delete(&format!("/api/v1/environments/{}", w.environment), t)
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = app.delete(&path, t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app.get(&path, t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "odoo_version_not_found")
    );
}

#[tokio::test]
async fn dns_providers_are_changed_and_kept_while_hostnames_are_under_them() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let (_, outsider) = app.user("outsider").await;
    let r = app
        .post(
            "/api/v1/dns-providers",
            t,
            json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "cf-token-one",
                   "zone_id": "zone1", "apps_domain": "apps.acme.test"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let path = format!("/api/v1/dns-providers/{}", r.id());
    let r = app.get(&path, &outsider).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "dns_provider_not_found")
    );
    let r = app.get(&path, t).await;
    assert_eq!(
        (r.status, r.body["zone_id"].as_str()),
        (StatusCode::OK, Some("zone1"))
    );
    let r = patch(
        &app,
        &path,
        t,
        json!({"api_token": "cf-token-two", "zone_id": "zone2"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["zone_id"].as_str()),
        (StatusCode::OK, Some("zone2")),
        "{}",
        r.text
    );
    assert!(!r.text.contains("cf-token"));
    let stored: oec_common::secrets::Sealed =
        sqlx::query_scalar("SELECT api_token_encrypted FROM dns_providers")
            .fetch_one(&app.db)
            .await
            .expect("token");
    assert_eq!(
        app.settings.secret_key.open(&stored).expect("opens"),
        "cf-token-two"
    );

    // An environment whose hostname is under the domain keeps the provider.
    let env = app
        .post(
            "/api/v1/environments",
            t,
            json!({"project_id": w.project, "server_id": w.server, "name": "prod", "kind": "production",
                   "subdomain": "shop", "odoo_version": "18.0", "cpu_cores": 1.0, "ram_mb": 1024, "disk_gb": 5}),
        )
        .await;
    assert_eq!(env.status, StatusCode::CREATED, "{}", env.text);
    assert_eq!(env.body["hostname"], "shop.apps.acme.test", "{}", env.text);
    let r = app.delete(&path, t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "dns_provider_in_use"),
        "{}",
        r.text
    );
    let r = patch(&app, &path, t, json!({"apps_domain": "apps.other.test"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "dns_provider_in_use"),
        "{}",
        r.text
    );
    let r = app
        .delete(&format!("/api/v1/environments/{}", env.id()), t)
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let r = patch(&app, &path, t, json!({"apps_domain": "apps.other.test"})).await;
    assert_eq!(
        (r.status, r.body["apps_domain"].as_str()),
        (StatusCode::OK, Some("apps.other.test")),
        "{}",
        r.text
    );
    let r = app.delete(&path, t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app.get(&path, t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repositories_are_changed_and_kept_while_a_deployment_clones_them() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let (_, outsider) = app.user("outsider").await;
    let r = app
        .post(
            "/api/v1/repositories",
            t,
            json!({"scope": "organization", "organization_id": w.org, "name": "org-modules",
                   "git_url": "https://git.example.com/acme/org-modules.git", "branch": "main",
                   "token": "repo-token-1"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let path = format!("/api/v1/repositories/{}", r.id());
    let r = app.get(&path, &outsider).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "repository_not_found")
    );
    let r = patch(&app, &path, &outsider, json!({"branch": "dev"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = patch(
        &app,
        &path,
        t,
        json!({"branch": "17.0", "priority": 5, "token": null}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (
            r.body["branch"].as_str(),
            r.body["priority"].as_i64(),
            r.body["has_token"].as_bool()
        ),
        (Some("17.0"), Some(5), Some(false))
    );
    let r = patch(&app, &path, t, json!({"git_url": "ftp://nope"})).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("git_url"))
    );

    // A pending deployment of the organization will clone it.
    let d = app
        .post(
            "/api/v1/deployments",
            t,
            json!({"environment_id": w.environment}),
        )
        .await;
    assert_eq!(d.status, StatusCode::ACCEPTED, "{}", d.text);
    for r in [
        app.delete(&path, t).await,
        patch(&app, &path, t, json!({"branch": "main"})).await,
    ] {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "repository_in_use"),
            "{}",
            r.text
        );
    }
    sqlx::query("UPDATE deployments SET status = 'failed', completed_at = now() WHERE id = $1")
        .bind(d.id())
        .execute(&app.db)
        .await
        .expect("end it");
    let r = app.delete(&path, t).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app.get(&path, t).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_are_listed_and_their_roles_changed() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let (ann, ann_token) = app.user("ann").await;
    let (bob, _) = app.user("bob").await;
    let (_, outsider) = app.user("outsider").await;
    for (user, role) in [(ann, "owner"), (bob, "member")] {
        let r = app
            .post(
                &format!("/api/v1/organizations/{}/members", w.org),
                t,
                json!({"user_id": user, "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let members = format!("/api/v1/organizations/{}/members", w.org);
    let r = app.get(&members, &ann_token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let listed: Vec<(String, String)> = r
        .body
        .as_array()
        .expect("list")
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap_or_default().to_owned(),
                m["role"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // The portal admin who created the organization is its first owner.
    let expected = [("admin", "owner"), ("ann", "owner"), ("bob", "member")]
        .map(|(u, r)| (format!("{u}@oec.test"), r.to_owned()));
    assert_eq!(listed, expected);
    assert_eq!(
        r.headers.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    let r = app.get(&members, &outsider).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = patch(
        &app,
        &format!("{members}/{bob}"),
        &ann_token,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (StatusCode::OK, Some("admin")),
        "{}",
        r.text
    );
    let r = patch(
        &app,
        &format!("{members}/{bob}"),
        &ann_token,
        json!({"role": "emperor"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("role"))
    );
    let nobody = uuid::Uuid::new_v4();
    let r = patch(
        &app,
        &format!("{members}/{nobody}"),
        &ann_token,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "member_not_found")
    );
    // The last owner stays an owner.
    let admin = app.get("/api/v1/auth/me", t).await.id();
    let r = patch(
        &app,
        &format!("{members}/{admin}"),
        &ann_token,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = patch(
        &app,
        &format!("{members}/{ann}"),
        &ann_token,
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "last_owner"));

    let pm = format!("/api/v1/projects/{}/members", w.project);
    let r = app
        .post(&pm, t, json!({"user_id": bob, "role": "viewer"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = patch(
        &app,
        &format!("{pm}/{bob}"),
        &ann_token,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (StatusCode::OK, Some("member")),
        "{}",
        r.text
    );
    let r = app.get(&pm, &ann_token).await;
    assert_eq!(r.body[0]["email"], "bob@oec.test", "{}", r.text);
    assert_eq!(r.body[0]["role"], "member");
    let r = patch(
        &app,
        &format!("{pm}/{ann}"),
        &ann_token,
        json!({"role": "member"}),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "member_not_found")
    );
}

#[tokio::test]
async fn a_deactivated_user_is_signed_out_and_cannot_log_in_until_reactivated() {
    let app = TestApp::spawn().await;
    let t = &app.admin_token;
    let (carol, carol_token) = app.user("carol").await;
    let path = format!("/api/v1/users/{carol}");
    let login = |password: &'static str| {
        app.send(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "carol@oec.test", "password": password})),
        )
    };
    let r = patch(&app, &path, &carol_token, json!({"is_active": false})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = patch(
        &app,
        &path,
        t,
        json!({"is_active": false, "name": "Carol C"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["is_active"].as_bool(), r.body["name"].as_str()),
        (Some(false), Some("Carol C"))
    );
    let r = app.get("/api/v1/auth/me", &carol_token).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "session_ended")
    );
    let r = login("password-123").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "account_deactivated")
    );
    let r = login("wrong-password-1").await;
    assert_eq!(r.code(), "invalid_credentials");
    let users = app.get("/api/v1/users", t).await;
    let listed = users
        .body
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["id"] == carol.to_string())
        .cloned();
    assert_eq!(listed.map(|u| u["is_active"].clone()), Some(json!(false)));

    // Nobody deactivates themselves (or the last portal admin).
    let me = app.get("/api/v1/auth/me", t).await.id();
    let r = patch(
        &app,
        &format!("/api/v1/users/{me}"),
        t,
        json!({"is_active": false}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("is_active"))
    );

    let r = patch(&app, &path, t, json!({"is_active": true})).await;
    assert_eq!(
        (r.status, r.body["is_active"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let r = login("password-123").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let fresh = r.body["access_token"].as_str().expect("token").to_owned();

    // A portal admin resets the password: the user's sessions end.
    let reset = format!("{path}/password");
    let r = app
        .send(
            Method::PUT,
            &reset,
            Some(t),
            Some(json!({"new_password": "short"})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password"))
    );
    let r = app
        .send(
            Method::PUT,
            &reset,
            Some(&fresh),
            Some(json!({"new_password": "another-long-pass-9"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .send(
            Method::PUT,
            &reset,
            Some(t),
            Some(json!({"new_password": "another-long-pass-9"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = app.get("/api/v1/auth/me", &fresh).await;
    assert_eq!(r.code(), "session_ended");
    assert_eq!(login("password-123").await.code(), "invalid_credentials");
    assert_eq!(login("another-long-pass-9").await.status, StatusCode::OK);
    let r = app
        .send(
            Method::PUT,
            &format!("/api/v1/users/{}/password", uuid::Uuid::new_v4()),
            Some(t),
            Some(json!({"new_password": "another-long-pass-9"})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "user_not_found")
    );
}
