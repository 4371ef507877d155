//! Visibility and permissions over HTTP: 404 across organizations, 403 for a
//! visible resource without the permission.

use oec_tests::{TestApp, World};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_user_of_another_organization_gets_404_on_everything() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let (stranger, t) = app.user("stranger").await;
    // The stranger owns an organization of their own, which changes nothing.
    let own = app
        .post(
            "/api/v1/organizations",
            &t,
            json!({"name": "Mine", "slug": "mine"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::CREATED);

    let org = format!("/api/v1/organizations/{}", w.org);
    let project = format!("/api/v1/projects/{}", w.project);
    let env = format!("/api/v1/environments/{}", w.environment);
    let server = format!("/api/v1/servers/{}", w.server);
    let cases: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, org.clone(), None),
        (Method::PATCH, org.clone(), Some(json!({"name": "x"}))),
        (Method::DELETE, org.clone(), None),
        (
            Method::POST,
            format!("{org}/members"),
            Some(json!({"user_id": stranger, "role": "owner"})),
        ),
        (Method::GET, project.clone(), None),
        (Method::PATCH, project.clone(), Some(json!({"name": "x"}))),
        (Method::DELETE, project.clone(), None),
        (
            Method::POST,
            format!("{project}/members"),
            Some(json!({"user_id": stranger, "role": "admin"})),
        ),
        (Method::GET, env.clone(), None),
        (Method::PATCH, env.clone(), Some(json!({"ram_mb": 1024}))),
        (Method::DELETE, env.clone(), None),
        (Method::GET, server, None),
        (
            Method::POST,
            "/api/v1/projects".into(),
            Some(
                json!({"organization_id": w.org, "name": "x", "slug": "x", "git_url": "https://h.example/r.git", "git_branch": "main"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/servers".into(),
            Some(
                json!({"organization_id": w.org, "name": "x", "host": "h.example", "ssh_user": "u", "auth_method": "password", "password": "p"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/environments".into(),
            Some(
                json!({"project_id": w.project, "server_id": w.server, "name": "x", "kind": "staging", "subdomain": "x", "odoo_version": "18.0"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/repositories".into(),
            Some(
                json!({"scope": "organization", "organization_id": w.org, "name": "x", "git_url": "https://h.example/r.git", "branch": "main"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/repositories".into(),
            Some(
                json!({"scope": "project", "project_id": w.project, "name": "x", "git_url": "https://h.example/r.git", "branch": "main"}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/dns-providers".into(),
            Some(
                json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "t", "zone_id": "z", "apps_domain": "a.example.com"}),
            ),
        ),
    ];
    for (method, path, body) in cases {
        let r = app.send(method.clone(), &path, Some(&t), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert!(
            r.code().ends_with("_not_found"),
            "{method} {path}: {}",
            r.text
        );
    }
    // Lists show nothing of the other organization.
    for path in [
        format!("/api/v1/projects?organization_id={}", w.org),
        format!("/api/v1/servers?organization_id={}", w.org),
        format!("/api/v1/environments?project_id={}", w.project),
        format!("/api/v1/dns-providers?organization_id={}", w.org),
    ] {
        let r = app.get(&path, &t).await;
        assert_eq!(r.body, json!([]), "{path}");
    }
    let orgs = app.get("/api/v1/organizations", &t).await;
    assert_eq!(
        orgs.body.as_array().map(Vec::len),
        Some(1),
        "only their own organization"
    );
    // Nothing changed.
    assert_eq!(app.get(&org, &app.admin_token).await.body["name"], "acme");
}

#[tokio::test]
async fn visible_resources_without_the_permission_answer_403() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let admin = &app.admin_token;
    let (viewer, viewer_t) = app.user("viewer").await;
    let (member, member_t) = app.user("member").await;
    let (padmin, padmin_t) = app.user("padmin").await;
    let (orgmember, orgmember_t) = app.user("orgmember").await;
    let project = format!("/api/v1/projects/{}", w.project);
    for (user, role) in [(viewer, "viewer"), (member, "member"), (padmin, "admin")] {
        let r = app
            .post(
                &format!("{project}/members"),
                admin,
                json!({"user_id": user, "role": role}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = app
        .post(
            &format!("/api/v1/organizations/{}/members", w.org),
            admin,
            json!({"user_id": orgmember, "role": "member"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let env = format!("/api/v1/environments/{}", w.environment);
    // (token, method, path, body, expected status)
    let cases = [
        (
            &viewer_t,
            Method::GET,
            project.clone(),
            None,
            StatusCode::OK,
        ),
        (
            &viewer_t,
            Method::GET,
            env.clone(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &viewer_t,
            Method::PATCH,
            env.clone(),
            Some(json!({"ram_mb": 1024})),
            StatusCode::FORBIDDEN,
        ),
        (&member_t, Method::GET, env.clone(), None, StatusCode::OK),
        (
            &member_t,
            Method::PATCH,
            env.clone(),
            Some(json!({"ram_mb": 1024})),
            StatusCode::FORBIDDEN,
        ),
        (
            &member_t,
            Method::PATCH,
            project.clone(),
            Some(json!({"name": "x"})),
            StatusCode::FORBIDDEN,
        ),
        (
            &padmin_t,
            Method::PATCH,
            env.clone(),
            Some(json!({"ram_mb": 1024})),
            StatusCode::OK,
        ),
        (
            &padmin_t,
            Method::PATCH,
            project.clone(),
            Some(json!({"name": "Renamed"})),
            StatusCode::OK,
        ),
        (
            &padmin_t,
            Method::DELETE,
            project.clone(),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            &padmin_t,
            Method::GET,
            format!("/api/v1/organizations/{}", w.org),
            None,
            StatusCode::OK,
        ),
        (
            &padmin_t,
            Method::PATCH,
            format!("/api/v1/organizations/{}", w.org),
            Some(json!({"name": "x"})),
            StatusCode::FORBIDDEN,
        ),
        (
            &orgmember_t,
            Method::GET,
            project.clone(),
            None,
            StatusCode::OK,
        ),
        (
            &orgmember_t,
            Method::GET,
            format!("/api/v1/servers/{}", w.server),
            None,
            StatusCode::OK,
        ),
        (
            &orgmember_t,
            Method::PATCH,
            project.clone(),
            Some(json!({"name": "x"})),
            StatusCode::FORBIDDEN,
        ),
        (
            &orgmember_t,
            Method::POST,
            "/api/v1/servers".into(),
            Some(
                json!({"organization_id": w.org, "name": "x", "host": "h.example", "ssh_user": "u", "auth_method": "password", "password": "p"}),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            &orgmember_t,
            Method::POST,
            "/api/v1/projects".into(),
            Some(
                json!({"organization_id": w.org, "name": "x", "slug": "x", "git_url": "https://h.example/r.git", "git_branch": "main"}),
            ),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (token, method, path, body, expected) in cases {
        let r = app.send(method.clone(), &path, Some(token), body).await;
        assert_eq!(r.status, expected, "{method} {path}: {}", r.text);
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(r.code(), "forbidden");
        }
    }
    // A viewer sees the project but not its environments in lists.
    let list = app
        .get(
            &format!("/api/v1/environments?project_id={}", w.project),
            &viewer_t,
        )
        .await;
    assert_eq!(list.body, json!([]));
    let list = app
        .get(
            &format!("/api/v1/environments?project_id={}", w.project),
            &member_t,
        )
        .await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(1));
}

/// The list endpoints filter in SQL; `authorize` decides single resources.
/// For every role (and a combination), what each list shows is what
/// `authorize` grants: the role × permission table drives the visibility
/// queries too.
#[tokio::test]
async fn every_visibility_list_shows_what_authorize_grants_for_every_role() {
    use oec_common::auth::{Permission, Subject, authorize};
    use oec_common::model::{OrgRole, ProjectRole};
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let created = |r: oec_tests::Resp| {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.id()
    };
    let deployment = app
        .post(
            "/api/v1/deployments",
            t,
            json!({"environment_id": w.environment}),
        )
        .await;
    assert_eq!(
        deployment.status,
        StatusCode::ACCEPTED,
        "{}",
        deployment.text
    );
    let deployment = deployment.id();
    let dns = created(
        app.post(
            "/api/v1/dns-providers",
            t,
            json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "token-123",
                   "zone_id": "zone", "apps_domain": "apps.oec.test"}),
        )
        .await,
    );
    let org_repo = created(app.post("/api/v1/repositories", t, json!({"scope": "organization",
        "organization_id": w.org, "name": "org-addons", "git_url": "https://h.example/o.git", "branch": "main"})).await);
    let project_repo = created(app.post("/api/v1/repositories", t, json!({"scope": "project",
        "project_id": w.project, "name": "project-addons", "git_url": "https://h.example/p.git", "branch": "main"})).await);

    let roles: Vec<(&str, Option<OrgRole>, Option<ProjectRole>)> = vec![
        ("org owner", Some(OrgRole::Owner), None),
        ("org admin", Some(OrgRole::Admin), None),
        ("org member", Some(OrgRole::Member), None),
        ("project admin", None, Some(ProjectRole::Admin)),
        ("project member", None, Some(ProjectRole::Member)),
        ("project viewer", None, Some(ProjectRole::Viewer)),
        (
            "org member and project viewer",
            Some(OrgRole::Member),
            Some(ProjectRole::Viewer),
        ),
        (
            "org member and project admin",
            Some(OrgRole::Member),
            Some(ProjectRole::Admin),
        ),
        ("outsider", None, None),
    ];
    let mut mismatches = Vec::new();
    for (i, (name, org_role, project_role)) in roles.into_iter().enumerate() {
        let (user, token) = app.user(&format!("role{i}")).await;
        if let Some(r) = org_role {
            let r = app
                .post(
                    &format!("/api/v1/organizations/{}/members", w.org),
                    t,
                    json!({"user_id": user, "role": r.as_str()}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text);
        }
        if let Some(r) = project_role {
            let r = app
                .post(
                    &format!("/api/v1/projects/{}/members", w.project),
                    t,
                    json!({"user_id": user, "role": r.as_str()}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text);
        }
        let subject = Subject {
            portal_admin: false,
            org_role,
            project_role,
            in_some_project: project_role.is_some(),
        };
        let lists = [
            (
                format!("/api/v1/deployments?project_id={}", w.project),
                deployment,
                Permission::ProjectDeploymentsList,
            ),
            (
                format!("/api/v1/environments?project_id={}", w.project),
                w.environment,
                Permission::ProjectEnvironmentsView,
            ),
            (
                format!("/api/v1/dns-providers?organization_id={}", w.org),
                dns,
                Permission::OrgDnsView,
            ),
            (
                "/api/v1/repositories".to_owned(),
                org_repo,
                Permission::OrgRepositoriesView,
            ),
            (
                "/api/v1/repositories".to_owned(),
                project_repo,
                Permission::ProjectRepositoriesView,
            ),
        ];
        for (path, id, permission) in lists {
            let r = app.get(&path, &token).await;
            // A list filtered by a project or organization the user may not
            // list answers 403 or 404: nothing shown.
            assert!(
                [StatusCode::OK, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND].contains(&r.status),
                "{name} {path}: {}",
                r.text
            );
            let shown = r
                .body
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["id"] == json!(id)));
            let granted = authorize(&subject, permission)
                // A project's repository belongs to its organization too:
                // whoever may view the organization's repositories sees it.
                || (permission == Permission::ProjectRepositoriesView
                    && authorize(&subject, Permission::OrgRepositoriesView));
            if shown != granted {
                mismatches.push(format!(
                    "{name} × {}: the list {} it, authorize says {granted}",
                    permission.as_str(),
                    if shown { "shows" } else { "hides" }
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
