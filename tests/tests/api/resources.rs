//! Every resource endpoint, driven as a portal admin and as members.

use oec_tests::{TestApp, World};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn users_are_created_and_listed_by_the_portal_admin() {
    let app = TestApp::spawn().await;
    let t = &app.admin_token;
    let r = app
        .post(
            "/api/v1/users",
            t,
            json!({"email": "Jo@Oec.Test", "name": "Jo", "password": "password-123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["email"], "jo@oec.test");
    let dup = app
        .post(
            "/api/v1/users",
            t,
            json!({"email": "jo@oec.test", "name": "Jo", "password": "password-123"}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "email_taken")
    );
    let list = app.get("/api/v1/users?limit=1&skip=1", t).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    assert_eq!(list.body[0]["email"], "jo@oec.test");
    // The new user logs in, but may neither list nor create users.
    let token = app.login("jo@oec.test", "password-123").await;
    assert_eq!(
        app.get("/api/v1/users", &token).await.status,
        StatusCode::FORBIDDEN
    );
    let r = app
        .post(
            "/api/v1/users",
            &token,
            json!({"email": "x@oec.test", "name": "X", "password": "password-123"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn organizations_crud_and_members() {
    let app = TestApp::spawn().await;
    let (alice, alice_t) = app.user("alice").await;
    let (bob, bob_t) = app.user("bob").await;
    // Any user may create an organization and becomes its owner.
    let org = app
        .post(
            "/api/v1/organizations",
            &alice_t,
            json!({"name": "Acme", "slug": "acme"}),
        )
        .await;
    assert_eq!(org.status, StatusCode::CREATED, "{}", org.text);
    let id = org.id();
    let path = format!("/api/v1/organizations/{id}");
    assert_eq!(app.get(&path, &alice_t).await.body["slug"], "acme");
    let listed = app.get("/api/v1/organizations", &alice_t).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/api/v1/organizations", &bob_t).await.body,
        json!([])
    );
    // PATCH renames.
    let r = app
        .patch(&path, &alice_t, json!({"name": "Acme Inc"}))
        .await;
    assert_eq!(
        (r.status, r.body["name"].as_str()),
        (StatusCode::OK, Some("Acme Inc"))
    );
    // Members: bob joins as admin, sees it, may update but not delete.
    let r = app
        .post(
            &format!("{path}/members"),
            &alice_t,
            json!({"user_id": bob, "role": "admin"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["role"].as_str()),
        (StatusCode::CREATED, Some("admin"))
    );
    assert_eq!(app.get(&path, &bob_t).await.status, StatusCode::OK);
    assert_eq!(
        app.patch(&path, &bob_t, json!({"slug": "acme-2"}))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.delete(&path, &bob_t).await.status,
        StatusCode::FORBIDDEN
    );
    // An org admin cannot make anyone owner, nor demote the owner.
    let r = app
        .post(
            &format!("{path}/members"),
            &bob_t,
            json!({"user_id": bob, "role": "owner"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app
        .post(
            &format!("{path}/members"),
            &bob_t,
            json!({"user_id": alice, "role": "member"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The last owner stays an owner.
    let r = app
        .post(
            &format!("{path}/members"),
            &alice_t,
            json!({"user_id": alice, "role": "member"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "last_owner"));
    // Slugs are unique.
    let r = app
        .post(
            "/api/v1/organizations",
            &bob_t,
            json!({"name": "Other", "slug": "acme-2"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "slug_taken"));
    // The owner deletes it; then it is gone.
    assert_eq!(
        app.delete(&path, &alice_t).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.get(&path, &alice_t).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn projects_crud_and_members() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let (carol, carol_t) = app.user("carol").await;
    let path = format!("/api/v1/projects/{}", w.project);
    assert_eq!(app.get(&path, t).await.body["git_branch"], "main");
    let list = app
        .get(&format!("/api/v1/projects?organization_id={}", w.org), t)
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    let r = app
        .patch(
            &path,
            t,
            json!({"git_branch": "release/18.0", "name": "Renamed"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["git_branch"].as_str()),
        (StatusCode::OK, Some("release/18.0"))
    );
    // Carol is not a member: 404, and no project in her list.
    assert_eq!(app.get(&path, &carol_t).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/api/v1/projects", &carol_t).await.body, json!([]));
    let r = app
        .post(
            &format!("{path}/members"),
            t,
            json!({"user_id": carol, "role": "member"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(app.get(&path, &carol_t).await.status, StatusCode::OK);
    assert_eq!(
        app.get("/api/v1/projects", &carol_t)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // A member may not change or delete the project.
    assert_eq!(
        app.patch(&path, &carol_t, json!({"name": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.delete(&path, &carol_t).await.status,
        StatusCode::FORBIDDEN
    );
    let dup = app
        .post(
            "/api/v1/projects",
            t,
            json!({"organization_id": w.org, "name": "Dup", "slug": "my-project", "git_url": "https://h.example/r.git", "git_branch": "main"}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "slug_taken")
    );
    // Deleting the project takes its environments with it.
    assert_eq!(app.delete(&path, t).await.status, StatusCode::NO_CONTENT);
    let env = app
        .get(&format!("/api/v1/environments/{}", w.environment), t)
        .await;
    assert_eq!(env.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn servers_store_credentials_without_returning_them() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let s = app.get(&format!("/api/v1/servers/{}", w.server), t).await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        (
            s.body["has_password"].as_bool(),
            s.body["has_private_key"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert_eq!(s.body["ssh_port"], 2222);
    let key = oec_tests::generated_private_key();
    let r = app
        .post(
            "/api/v1/servers",
            t,
            json!({"organization_id": w.org, "name": "srv-key", "host": "srv.example.com", "ssh_user": "deploy",
                   "auth_method": "key", "private_key": key,
                   "host_key_fingerprint": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["ssh_port"], 22, "the port defaults to 22");
    assert_eq!(r.body["has_private_key"], true);
    let list = app
        .get(&format!("/api/v1/servers?organization_id={}", w.org), t)
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));
    // Stored encrypted: the database holds no plaintext.
    let stored: Vec<String> = sqlx::query_scalar("SELECT secret_encrypted FROM servers")
        .fetch_all(&app.db)
        .await
        .expect("select");
    assert!(
        stored
            .iter()
            .all(|s| !s.contains("server-pass-secret") && !s.contains("BEGIN"))
    );
    let dup = app
        .post(
            "/api/v1/servers",
            t,
            json!({"organization_id": w.org, "name": "srv", "host": "h.example.com", "ssh_user": "u", "auth_method": "password", "password": "pw"}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "name_taken")
    );
}

#[tokio::test]
async fn odoo_versions_are_managed_by_portal_admins_and_listed_by_all() {
    let app = TestApp::spawn().await;
    let t = &app.admin_token;
    let r = app
        .post(
            "/api/v1/odoo-versions",
            t,
            json!({"version": "17.0", "image": "127.0.0.1:5000/oec/odoo:17.0", "registry_username": "bot", "registry_password": "reg-secret"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["has_registry_password"], true);
    let dup = app
        .post(
            "/api/v1/odoo-versions",
            t,
            json!({"version": "17.0", "image": "odoo:17.0"}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "version_exists")
    );
    let (_, user_t) = app.user("dana").await;
    let list = app.get("/api/v1/odoo-versions", &user_t).await;
    assert_eq!(list.body[0]["version"], "17.0");
    let r = app
        .post(
            "/api/v1/odoo-versions",
            &user_t,
            json!({"version": "19.0", "image": "odoo:19.0"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden"));
}

#[tokio::test]
async fn repositories_at_each_scope() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let repo = |scope: &str, name: &str| json!({"scope": scope, "name": name, "git_url": format!("https://git.example.com/{name}.git"), "branch": "18.0"});
    let r = app
        .post(
            "/api/v1/repositories",
            t,
            repo("platform", "platform-utils"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let mut org_repo = repo("organization", "org-modules");
    org_repo["organization_id"] = json!(w.org);
    org_repo["token"] = json!("ghp_orgtoken123");
    let r = app.post("/api/v1/repositories", t, org_repo).await;
    assert_eq!(
        (r.status, r.body["has_token"].as_bool()),
        (StatusCode::CREATED, Some(true)),
        "{}",
        r.text
    );
    let mut project_repo = repo("project", "extra");
    project_repo["project_id"] = json!(w.project);
    let r = app
        .post("/api/v1/repositories", t, project_repo.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["organization_id"], json!(w.org));
    let dup = app.post("/api/v1/repositories", t, project_repo).await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "name_taken")
    );
    assert_eq!(
        app.get("/api/v1/repositories", t)
            .await
            .body
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // An outsider sees platform repositories only, and may not add one.
    let (_, eve_t) = app.user("eve").await;
    let seen = app.get("/api/v1/repositories", &eve_t).await;
    assert_eq!(seen.body.as_array().map(Vec::len), Some(1));
    assert_eq!(seen.body[0]["scope"], "platform");
    let r = app
        .post("/api/v1/repositories", &eve_t, repo("platform", "mine"))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn dns_providers_per_organization() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let body = json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "cf-token-secret",
                      "zone_id": "023e105f4ecef8ad9ca31a8372d0c353", "apps_domain": "apps.example.com"});
    let r = app.post("/api/v1/dns-providers", t, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["has_api_token"], true);
    let dup = app.post("/api/v1/dns-providers", t, body).await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "domain_taken")
    );
    let list = app
        .get(
            &format!("/api/v1/dns-providers?organization_id={}", w.org),
            t,
        )
        .await;
    assert_eq!(list.body[0]["apps_domain"], "apps.example.com");
}

#[tokio::test]
async fn environments_crud_with_defaults_and_reference_checks() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let path = format!("/api/v1/environments/{}", w.environment);
    let env = app.get(&path, t).await;
    assert_eq!(env.status, StatusCode::OK);
    assert_eq!(
        env.body["branch"], "main",
        "the branch defaults to the project's"
    );
    assert_eq!(env.body["status"], "created");
    assert_eq!(env.body["odoo_conf_overrides"], json!({}));
    let overrides = json!({"performance": {"workers": 8}, "logging": {"log_level": "debug"}});
    let r = app
        .patch(
            &path,
            t,
            json!({"ram_mb": 4096, "odoo_conf_overrides": overrides, "replica_enabled": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        (r.body["ram_mb"].as_i64(), r.body["cpu_cores"].as_f64()),
        (Some(4096), Some(2.0))
    );
    assert_eq!(r.body["odoo_conf_overrides"], overrides);
    let list = app
        .get(&format!("/api/v1/environments?project_id={}", w.project), t)
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
    // A server of another organization, or an unknown version, is refused.
    let other = World::build(&app, "other").await;
    let base = json!({"project_id": w.project, "server_id": other.server, "name": "prod", "kind": "production",
                      "subdomain": "acme-prod", "odoo_version": "18.0"});
    let r = app.post("/api/v1/environments", t, base.clone()).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("server_id"))
    );
    let mut b = base.clone();
    b["server_id"] = json!(w.server);
    b["odoo_version"] = json!("16.0");
    let r = app.post("/api/v1/environments", t, b.clone()).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("odoo_version"))
    );
    b["odoo_version"] = json!("18.0");
    b["subdomain"] = json!("acme-staging");
    let r = app.post("/api/v1/environments", t, b).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "subdomain_taken")
    );
    // A pending deployment blocks deletion; once it is gone, delete works.
    sqlx::query(
        "INSERT INTO deployments (id, project_id, environment_id, version) VALUES ($1, $2, $3, 1)",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(w.project)
    .bind(w.environment)
    .execute(&app.db)
    .await
    .expect("insert deployment");
    let r = app.delete(&path, t).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "deployment_in_progress")
    );
    sqlx::query("DELETE FROM deployments")
        .execute(&app.db)
        .await
        .expect("delete");
    // A plain DELETE removes oec's records only and names what stays on the server.
    let r = app.delete(&path, t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["deleted"], true);
    assert_eq!(r.body["teardown"], false);
    let left = &r.body["left_on_server"];
    let id = w.environment.to_string();
    let containers = left["containers"].as_array().expect("containers");
    assert!(
        !containers.is_empty()
            && containers
                .iter()
                .all(|c| c.as_str().is_some_and(|c| c.contains(&id))),
        "{left}"
    );
    assert!(
        left["network"].as_str().is_some_and(|n| n.ends_with(&id)),
        "{left}"
    );
    assert!(
        left["directory"].as_str().is_some_and(|d| d.ends_with(&id)),
        "{left}"
    );
    assert_eq!(app.get(&path, t).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn patch_keeps_an_absent_migration_source_and_removes_a_null_one() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let path = format!("/api/v1/environments/{}", w.environment);
    let url = "https://backups.example.com/acme.zip?X-Amz-Signature=secret";
    let r = app
        .patch(&path, t, json!({"migration_source_url": url}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["migration_source_url"],
        "https://backups.example.com/acme.zip"
    );
    let r = app.patch(&path, t, json!({"ram_mb": 2048})).await;
    assert_eq!(
        r.body["migration_source_url"], "https://backups.example.com/acme.zip",
        "left out: unchanged"
    );
    let r = app
        .patch(&path, t, json!({"migration_source_url": null}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["migration_source_url"], json!(null), "null: removed");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT migration_source_url FROM environments WHERE id = $1")
            .bind(w.environment)
            .fetch_one(&app.db)
            .await
            .expect("stored");
    assert_eq!(stored, None);
    assert_eq!(app.get(&path, t).await.body["ram_mb"], 2048);
}

#[tokio::test]
async fn schema_constraints_hold_one_active_deployment_per_environment() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let insert = |version: i32, status: &'static str| {
        sqlx::query("INSERT INTO deployments (id, project_id, environment_id, version, status) VALUES ($1, $2, $3, $4, $5)")
            .bind(uuid::Uuid::new_v4())
            .bind(w.project)
            .bind(w.environment)
            .bind(version)
            .bind(status)
    };
    insert(1, "pending").execute(&app.db).await.expect("first");
    let second = insert(2, "running")
        .execute(&app.db)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(second.contains("deployments_one_active"), "{second}");
    let bad = insert(3, "exploded").execute(&app.db).await;
    assert!(bad.is_err(), "status is a closed set");
}

#[tokio::test]
async fn deleting_an_organization_or_project_while_one_of_its_deployments_runs_is_a_409_naming_it()
{
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let deployment = running_deployment(&app, &w).await;
    for path in [
        format!("/api/v1/projects/{}", w.project),
        format!("/api/v1/organizations/{}", w.org),
        format!("/api/v1/environments/{}", w.environment),
    ] {
        let r = app.delete(&path, t).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "deployment_in_progress"),
            "{path}: {}",
            r.text
        );
        assert_eq!(r.body["deployment_id"], json!(deployment), "{path}");
        // Nothing was deleted.
        assert_eq!(app.get(&path, t).await.status, StatusCode::OK, "{path}");
    }
    sqlx::query("UPDATE deployments SET status = 'failed', completed_at = now()")
        .execute(&app.db)
        .await
        .expect("finish");
    let org = format!("/api/v1/organizations/{}", w.org);
    assert_eq!(app.delete(&org, t).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&org, t).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn progress_carries_the_last_fifty_lines_of_each_step_with_the_count_and_where_the_rest_are()
{
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let deployment = running_deployment(&app, &w).await;
    sqlx::query(
        "INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message, step)
         SELECT gen_random_uuid(), $1, n, now(), 'debug', 'line ' || n,
                CASE WHEN n <= 120 THEN 'cloning_project_repo' ELSE 'pulling_image' END
         FROM generate_series(1, 130) n",
    )
    .bind(deployment)
    .execute(&app.db)
    .await
    .expect("insert logs");
    let r = app
        .get(&format!("/api/v1/deployments/{deployment}/progress"), t)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let step = |id: &str| {
        r.body["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_default()
    };
    let cloning = step("cloning_project_repo");
    let lines = cloning["logs"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 50);
    assert_eq!(lines[0]["message"], "line 71");
    assert_eq!(lines[49]["message"], "line 120");
    assert_eq!(cloning["logs_total"], 120);
    assert_eq!(cloning["logs_truncated"], true);
    let url = cloning["logs_url"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        url,
        format!("/api/v1/deployments/{deployment}/logs?step=cloning_project_repo")
    );
    let pulling = step("pulling_image");
    assert_eq!(pulling["logs"].as_array().map(Vec::len), Some(10));
    assert_eq!(pulling["logs_truncated"], false);
    // The pointer leads to every line of that step.
    let all = app.get(&format!("{url}&limit=500"), t).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    assert_eq!(all.body["logs"].as_array().map(Vec::len), Some(120));
    let bad = app
        .get(
            &format!("/api/v1/deployments/{deployment}/logs?step=nope"),
            t,
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("step"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_owners_demoting_themselves_at_once_never_leave_an_organization_without_an_owner() {
    let app = TestApp::spawn().await;
    for trial in 0..15 {
        let r = app
            .post(
                "/api/v1/organizations",
                &app.admin_token,
                json!({"name": format!("Race {trial}"), "slug": format!("race-{trial}")}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let org = r.id();
        let mut owners = Vec::new();
        for who in ["a", "b"] {
            let (id, token) = app.user(&format!("{who}{trial}")).await;
            let r = app
                .post(
                    &format!("/api/v1/organizations/{org}/members"),
                    &app.admin_token,
                    json!({"user_id": id, "role": "owner"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            owners.push((id, token));
        }
        // The creator steps back, leaving exactly the two.
        let admin = sqlx::query_scalar::<_, uuid::Uuid>(
            "SELECT user_id FROM organization_members WHERE organization_id = $1 AND user_id NOT IN ($2, $3)",
        )
        .bind(org)
        .bind(owners[0].0)
        .bind(owners[1].0)
        .fetch_all(&app.db)
        .await
        .expect("others");
        for a in admin {
            sqlx::query(
                "DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2",
            )
            .bind(org)
            .bind(a)
            .execute(&app.db)
            .await
            .expect("remove creator");
        }
        let demote = |(id, token): (uuid::Uuid, String)| {
            let path = format!("/api/v1/organizations/{org}/members");
            let app = &app;
            async move {
                app.post(&path, &token, json!({"user_id": id, "role": "admin"}))
                    .await
                    .status
            }
        };
        let (x, y) = tokio::join!(demote(owners[0].clone()), demote(owners[1].clone()));
        let mut statuses = [x, y];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::CREATED, StatusCode::CONFLICT],
            "trial {trial}"
        );
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM organization_members WHERE organization_id = $1 AND role = 'owner'",
        )
        .bind(org)
        .fetch_one(&app.db)
        .await
        .expect("owners");
        assert_eq!(left, 1, "trial {trial}");
    }
}

/// A running deployment (version 1) of the world's environment.
async fn running_deployment(app: &TestApp, w: &World) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO deployments (id, project_id, environment_id, version, status) VALUES ($1, $2, $3, 1, 'running')",
    )
    .bind(id)
    .bind(w.project)
    .bind(w.environment)
    .execute(&app.db)
    .await
    .expect("insert deployment");
    id
}

#[tokio::test]
async fn demo_data_is_only_for_a_development_environment_that_asks_for_it() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let path = format!("/api/v1/environments/{}", w.environment);
    let env = app.get(&path, t).await;
    assert_eq!(env.body["kind"], "staging");
    assert_eq!(env.body["with_demo"], false, "no demo data by default");
    for body in [
        json!({"with_demo": true}),
        json!({"kind": "production", "with_demo": true}),
    ] {
        let r = app.patch(&path, t, body.clone()).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("with_demo")),
            "{body}: {}",
            r.text
        );
    }
    let r = app
        .patch(&path, t, json!({"kind": "development", "with_demo": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["with_demo"], true);
    // Leaving development keeps no demo data setting behind silently.
    let r = app.patch(&path, t, json!({"kind": "production"})).await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("with_demo")),
        "{}",
        r.text
    );
    let r = app
        .patch(&path, t, json!({"kind": "production", "with_demo": false}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            "/api/v1/environments",
            t,
            json!({"project_id": w.project, "server_id": w.server, "name": "prod2", "kind": "staging",
                   "subdomain": "acme-prod2", "odoo_version": "18.0", "with_demo": true}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("with_demo")),
        "{}",
        r.text
    );
}
