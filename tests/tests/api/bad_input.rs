//! Client mistakes get the documented status and `error` code, never a 500.

use oec_tests::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Case {
    method: Method,
    path: String,
    body: Option<Value>,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        status: StatusCode::from_u16(status).expect("status"),
        code,
        field,
    }
}

/// Replaces (or, with `Value::Null`, removes) one field of a valid body.
fn with(mut base: Value, field: &str, v: Value) -> Value {
    if v.is_null() {
        base.as_object_mut().map(|o| o.remove(field));
    } else {
        base[field] = v;
    }
    base
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_error() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let project = json!({"organization_id": w.org, "name": "P", "slug": "p2", "git_url": "https://git.example.com/o/r.git", "git_branch": "main"});
    let server = json!({"organization_id": w.org, "name": "s2", "host": "srv.example.com", "ssh_port": 22, "ssh_user": "deploy",
                        "auth_method": "password", "password": "pw-123456"});
    let env = json!({"project_id": w.project, "server_id": w.server, "name": "prod", "kind": "production", "subdomain": "acme-prod",
                     "odoo_version": "18.0", "cpu_cores": 2, "ram_mb": 2048, "disk_gb": 10});
    let repo = json!({"scope": "organization", "organization_id": w.org, "name": "r1", "git_url": "https://git.example.com/r.git", "branch": "main"});
    let dns = json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "tok", "zone_id": "abc", "apps_domain": "apps.example.com"});
    let user = json!({"email": "new@oec.test", "name": "New", "password": "password-123"});
    use Method as M;
    let cases = vec![
        // Ids, routes, methods, pagination.
        case(
            M::GET,
            "/api/v1/projects/not-a-uuid",
            None,
            400,
            "invalid_id",
            None,
        ),
        case(
            M::GET,
            "/api/v1/environments/123",
            None,
            400,
            "invalid_id",
            None,
        ),
        case(
            M::GET,
            format!("/api/v1/projects/{}", uuid::Uuid::new_v4()),
            None,
            404,
            "project_not_found",
            None,
        ),
        case(M::GET, "/api/v1/nothing-here", None, 404, "not_found", None),
        case(
            M::PUT,
            "/api/v1/projects",
            None,
            405,
            "method_not_allowed",
            None,
        ),
        case(
            M::GET,
            "/api/v1/projects?limit=501",
            None,
            422,
            "invalid_field",
            Some("limit"),
        ),
        case(
            M::GET,
            "/api/v1/projects?limit=0",
            None,
            422,
            "invalid_field",
            Some("limit"),
        ),
        case(
            M::GET,
            "/api/v1/organizations?skip=-1",
            None,
            422,
            "invalid_field",
            Some("skip"),
        ),
        case(
            M::GET,
            "/api/v1/users?limit=ten",
            None,
            400,
            "invalid_query",
            None,
        ),
        case(
            M::GET,
            "/api/v1/projects?organization_id=nope",
            None,
            400,
            "invalid_query",
            None,
        ),
        // Bodies.
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "git_url", Value::Null)),
            422,
            "invalid_field",
            Some("git_url"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "colour", json!("red"))),
            422,
            "invalid_field",
            Some("colour"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "name", json!(42))),
            422,
            "invalid_field",
            Some("body"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "slug", json!("Not A Slug"))),
            422,
            "invalid_field",
            Some("slug"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "slug", json!("-x"))),
            422,
            "invalid_field",
            Some("slug"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(
                project.clone(),
                "git_url",
                json!("http://git.example.com/r.git"),
            )),
            422,
            "invalid_field",
            Some("git_url"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "git_url", json!("file:///srv/r.git"))),
            422,
            "invalid_field",
            Some("git_url"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(
                project.clone(),
                "git_url",
                json!("https://tok@github.com/o/r.git"),
            )),
            422,
            "invalid_field",
            Some("git_url"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "git_url", json!("--upload-pack=sh"))),
            422,
            "invalid_field",
            Some("git_url"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "git_branch", json!("main..evil"))),
            422,
            "invalid_field",
            Some("git_branch"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "git_branch", json!("-f"))),
            422,
            "invalid_field",
            Some("git_branch"),
        ),
        case(
            M::POST,
            "/api/v1/projects",
            Some(with(project.clone(), "organization_id", json!("x"))),
            422,
            "invalid_field",
            Some("body"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "ssh_port", json!(0))),
            422,
            "invalid_field",
            Some("ssh_port"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "ssh_port", json!(70000))),
            422,
            "invalid_field",
            Some("ssh_port"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "host", json!("bad host;rm -rf /"))),
            422,
            "invalid_field",
            Some("host"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "auth_method", json!("telnet"))),
            422,
            "invalid_field",
            Some("auth_method"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "password", Value::Null)),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(server.clone(), "ssh_user", json!("root; id"))),
            422,
            "invalid_field",
            Some("ssh_user"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(
                server.clone(),
                "host_key_fingerprint",
                json!("MD5:00"),
            )),
            422,
            "invalid_field",
            Some("host_key_fingerprint"),
        ),
        case(
            M::POST,
            "/api/v1/servers",
            Some(with(
                with(server.clone(), "auth_method", json!("key")),
                "private_key",
                json!("not a key"),
            )),
            422,
            "invalid_field",
            Some("private_key"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(
                env.clone(),
                "migration_source_url",
                json!("ftp://backups.example.com/a.zip"),
            )),
            422,
            "invalid_field",
            Some("migration_source_url"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(
                env.clone(),
                "migration_source_url",
                json!("https://user:pw@backups.example.com/a.zip"),
            )),
            422,
            "invalid_field",
            Some("migration_source_url"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "kind", json!("qa"))),
            422,
            "invalid_field",
            Some("kind"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "subdomain", json!("a.b"))),
            422,
            "invalid_field",
            Some("subdomain"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "cpu_cores", json!(0))),
            422,
            "invalid_field",
            Some("cpu_cores"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "cpu_cores", json!(65))),
            422,
            "invalid_field",
            Some("cpu_cores"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "ram_mb", json!(100))),
            422,
            "invalid_field",
            Some("ram_mb"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "disk_gb", json!(0))),
            422,
            "invalid_field",
            Some("disk_gb"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "odoo_version", json!("eighteen"))),
            422,
            "invalid_field",
            Some("odoo_version"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "branch", json!("a b"))),
            422,
            "invalid_field",
            Some("branch"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(env.clone(), "project_id", Value::Null)),
            422,
            "invalid_field",
            Some("project_id"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(
                env.clone(),
                "odoo_conf_overrides",
                json!({"logging": {"log_level": "debug\nadmin_passwd = x"}}),
            )),
            422,
            "invalid_field",
            Some("odoo_conf_overrides.logging.log_level"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(
                env.clone(),
                "odoo_conf_overrides",
                json!({"database": {"db_host": "evil"}}),
            )),
            422,
            "invalid_field",
            Some("odoo_conf_overrides.database.db_host"),
        ),
        case(
            M::POST,
            "/api/v1/environments",
            Some(with(
                env.clone(),
                "odoo_conf_overrides",
                json!({"unknown": {"a": 1}}),
            )),
            422,
            "invalid_field",
            Some("odoo_conf_overrides.unknown"),
        ),
        case(
            M::PATCH,
            format!("/api/v1/environments/{}", w.environment),
            Some(json!({"project_id": w.project})),
            422,
            "invalid_field",
            Some("project_id"),
        ),
        case(
            M::POST,
            "/api/v1/repositories",
            Some(with(repo.clone(), "scope", json!("global"))),
            422,
            "invalid_field",
            Some("scope"),
        ),
        case(
            M::POST,
            "/api/v1/repositories",
            Some(with(repo.clone(), "organization_id", Value::Null)),
            422,
            "invalid_field",
            Some("organization_id"),
        ),
        case(
            M::POST,
            "/api/v1/repositories",
            Some(with(repo.clone(), "name", json!("../../etc"))),
            422,
            "invalid_field",
            Some("name"),
        ),
        case(
            M::POST,
            "/api/v1/repositories",
            Some(with(repo.clone(), "token", json!("a\nb"))),
            422,
            "invalid_field",
            Some("token"),
        ),
        case(
            M::POST,
            "/api/v1/dns-providers",
            Some(with(dns.clone(), "kind", json!("route53"))),
            422,
            "invalid_field",
            Some("kind"),
        ),
        case(
            M::POST,
            "/api/v1/dns-providers",
            Some(with(dns.clone(), "apps_domain", json!("localhost"))),
            422,
            "invalid_field",
            Some("apps_domain"),
        ),
        case(
            M::POST,
            "/api/v1/odoo-versions",
            Some(json!({"version": "18.0", "image": "odoo:18.0 --privileged"})),
            422,
            "invalid_field",
            Some("image"),
        ),
        case(
            M::POST,
            "/api/v1/odoo-versions",
            Some(json!({"version": "18.0", "image": "odoo:18.0", "registry_username": "u"})),
            422,
            "invalid_field",
            Some("registry_password"),
        ),
        case(
            M::POST,
            "/api/v1/users",
            Some(with(user.clone(), "email", json!("not-an-email"))),
            422,
            "invalid_field",
            Some("email"),
        ),
        case(
            M::POST,
            "/api/v1/users",
            Some(with(user.clone(), "password", json!("short"))),
            422,
            "invalid_field",
            Some("password"),
        ),
        case(
            M::POST,
            format!("/api/v1/organizations/{}/members", w.org),
            Some(json!({"user_id": w.org, "role": "owner"})),
            422,
            "invalid_field",
            Some("user_id"),
        ),
        case(
            M::POST,
            format!("/api/v1/organizations/{}/members", w.org),
            Some(json!({"user_id": w.org, "role": "king"})),
            422,
            "invalid_field",
            Some("role"),
        ),
        case(
            M::POST,
            format!("/api/v1/projects/{}/members", w.project),
            Some(json!({"user_id": w.org, "role": "owner"})),
            422,
            "invalid_field",
            Some("role"),
        ),
        case(
            M::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "a@b.c"})),
            422,
            "invalid_field",
            Some("password"),
        ),
    ];
    assert!(cases.len() >= 30);
    for c in &cases {
        let r = app
            .send(c.method.clone(), &c.path, Some(t), c.body.clone())
            .await;
        assert_eq!(
            r.status, c.status,
            "{} {} {:?}: {}",
            c.method, c.path, c.body, r.text
        );
        assert_eq!(r.code(), c.code, "{} {}: {}", c.method, c.path, r.text);
        assert_eq!(
            r.body["field"].as_str(),
            c.field,
            "{} {}: {}",
            c.method,
            c.path,
            r.text
        );
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            r.text
        );
    }
    // Nothing was created by any of them.
    let projects: i64 = sqlx::query_scalar("SELECT count(*) FROM projects")
        .fetch_one(&app.db)
        .await
        .expect("count");
    let envs: i64 = sqlx::query_scalar("SELECT count(*) FROM environments")
        .fetch_one(&app.db)
        .await
        .expect("count");
    assert_eq!((projects, envs), (1, 1));
}

#[tokio::test]
async fn malformed_oversized_and_mistyped_bodies() {
    let app = TestApp::spawn_with(&[("OEC_MAX_BODY_BYTES", "2048")]).await;
    let t = &app.admin_token;
    let r = app
        .post_raw(
            "/api/v1/organizations",
            t,
            "application/json",
            b"{\"name\": ".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let r = app
        .post_raw(
            "/api/v1/organizations",
            t,
            "application/json",
            b"{\"name\": \"a\",,}".to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let big = format!("{{\"name\": \"{}\", \"slug\": \"x\"}}", "a".repeat(4096));
    let r = app
        .post_raw(
            "/api/v1/organizations",
            t,
            "application/json",
            big.into_bytes(),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    let r = app
        .post_raw("/api/v1/organizations", t, "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    let r = app
        .post_raw(
            "/api/v1/organizations",
            t,
            "application/json",
            vec![0xff, 0xfe, 0x00],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = app
        .post(
            "/api/v1/organizations",
            t,
            json!({"name": "x\u{0}y", "slug": "ok"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
}

#[tokio::test]
async fn a_nul_or_other_control_character_in_any_text_input_is_a_422_before_any_query() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let check = |r: oec_tests::Resp, field: &str| {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["error"], "invalid_field", "{}", r.text);
        assert_eq!(r.body["field"], field, "{}", r.text);
    };
    // A NUL in the login email used to reach PostgreSQL and answer 500.
    let r = app
        .post(
            "/api/v1/auth/login",
            "",
            json!({"email": "admin\u{0}@oec.test", "password": "whatever-123"}),
        )
        .await;
    check(r, "email");
    let r = app
        .post(
            "/api/v1/organizations",
            t,
            json!({"name": "Evil\u{1b}[2J", "slug": "evil"}),
        )
        .await;
    check(r, "name");
    let r = app
        .post(
            "/api/v1/environments",
            t,
            json!({"project_id": w.project, "server_id": w.server, "name": "prod", "kind": "production",
                   "subdomain": "acme-prod", "odoo_version": "18.0", "cpu_cores": 2, "ram_mb": 2048, "disk_gb": 10,
                   "odoo_conf_overrides": {"logging": {"log_handler": ["ok", "bad\u{7f}"]}}}),
        )
        .await;
    check(r, "odoo_conf_overrides.logging.log_handler[1]");
    // A key holding a control character is refused too.
    let r = app
        .post(
            "/api/v1/organizations",
            t,
            json!({"name": "Fine", "slug": "fine", "x\u{0}": 1}),
        )
        .await;
    check(r, "x\u{0}");
    // So is one in a query string, named by its parameter.
    let some = uuid::Uuid::new_v4();
    for (path, field) in [
        (format!("/api/v1/deployments/{some}/logs?step=%00"), "step"),
        (
            format!("/api/v1/deployments/{some}/logs?level=info%1b"),
            "level",
        ),
        ("/api/v1/deployments?status=%07".to_owned(), "status"),
        ("/api/v1/users?x%00=1".to_owned(), "query"),
    ] {
        check(app.get(&path, t).await, field);
    }
}
