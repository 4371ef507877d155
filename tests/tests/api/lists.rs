//! List endpoints: unknown query parameters are refused, the deployment
//! filters narrow the list, and every list says its size and its pages.

use oec_tests::{TestApp, World};
use reqwest::StatusCode;

fn header(r: &oec_tests::Resp, name: &str) -> String {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn unknown_query_parameters_are_a_422_naming_them() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let some = uuid::Uuid::new_v4();
    for (path, name) in [
        (
            "/api/v1/deployments?environment=x".to_owned(),
            "environment",
        ),
        (
            "/api/v1/users?environment_id=1".to_owned(),
            "environment_id",
        ),
        ("/api/v1/organizations?limit=5&sort=name".to_owned(), "sort"),
        (
            format!("/api/v1/environments?project_id={}&org=1", w.project),
            "org",
        ),
        (
            "/api/v1/servers?organisation_id=1".to_owned(),
            "organisation_id",
        ),
        ("/api/v1/projects?page=2".to_owned(), "page"),
        ("/api/v1/repositories?q=x".to_owned(), "q"),
        ("/api/v1/odoo-versions?all=1".to_owned(), "all"),
        ("/api/v1/dns-providers?type=cloudflare".to_owned(), "type"),
        (format!("/api/v1/deployments/{some}/logs?lvl=info"), "lvl"),
        (
            format!("/api/v1/deployments/{some}/logs/export?fmt=txt"),
            "fmt",
        ),
    ] {
        let r = app.get(&path, t).await;
        assert_eq!(
            (r.status, r.code(), r.body["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_query_parameter",
                Some(name)
            ),
            "{path}: {}",
            r.text
        );
    }
    let r = app
        .delete(
            &format!("/api/v1/environments/{}?tear_down=true", w.environment),
            t,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_query_parameter"),
        "{}",
        r.text
    );
    // The environment is still there: a refused request changed nothing.
    let r = app
        .get(&format!("/api/v1/environments/{}", w.environment), t)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn deployments_filter_by_environment_trigger_and_time_and_lists_carry_their_size() {
    let app = TestApp::spawn().await;
    let a = World::build(&app, "acme").await;
    let b = World::build(&app, "beta").await;
    let t = &app.admin_token;
    for (world, version, trigger, status, created) in [
        (&a, 1, "manual", "success", "2026-01-01T00:00:00Z"),
        (&a, 2, "api", "failed", "2026-02-01T00:00:00Z"),
        (&a, 3, "redeploy", "success", "2026-03-01T00:00:00Z"),
        (&b, 1, "manual", "success", "2026-01-15T00:00:00Z"),
        (&b, 2, "manual", "success", "2026-02-15T00:00:00Z"),
    ] {
        sqlx::query(
            "INSERT INTO deployments (id, project_id, environment_id, version, trigger, status, created_at, completed_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7::timestamptz, $7::timestamptz + interval '1 minute')",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(world.project)
        .bind(world.environment)
        .bind(version)
        .bind(trigger)
        .bind(status)
        .bind(created)
        .execute(&app.db)
        .await
        .expect("insert deployment");
    }
    let versions = |r: &oec_tests::Resp| -> Vec<(String, i64)> {
        r.body
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {}", r.text))
            .iter()
            .map(|d| {
                (
                    d["environment_id"].as_str().unwrap_or_default().to_owned(),
                    d["version"].as_i64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let env_a = a.environment.to_string();
    let cases = [
        (format!("environment_id={env_a}"), vec![3, 2, 1]),
        (format!("environment_id={env_a}&trigger=api"), vec![2]),
        (
            format!("environment_id={env_a}&since=2026-02-01T00:00:00Z"),
            vec![3, 2],
        ),
        (
            format!("environment_id={env_a}&until=2026-02-01T00:00:00%2B00:00"),
            vec![1],
        ),
        (
            format!(
                "environment_id={env_a}&since=2026-01-02T00:00:00Z&until=2026-03-01T00:00:00Z&status=failed"
            ),
            vec![2],
        ),
    ];
    for (query, expected) in cases {
        let r = app.get(&format!("/api/v1/deployments?{query}"), t).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
        let got = versions(&r);
        assert!(got.iter().all(|(env, _)| *env == env_a), "{query}: {got:?}");
        assert_eq!(
            got.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            expected,
            "{query}"
        );
        assert_eq!(header(&r, "x-total-count"), expected.len().to_string());
    }
    // Bad filter values are 422s naming the parameter; an invisible or
    // missing environment is a 404.
    for (query, field) in [
        ("trigger=push", "trigger"),
        ("since=yesterday", "since"),
        (
            "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "until",
        ),
    ] {
        let r = app.get(&format!("/api/v1/deployments?{query}"), t).await;
        assert_eq!(
            (r.status, r.body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{query}: {}",
            r.text
        );
    }
    let r = app
        .get(
            &format!(
                "/api/v1/deployments?environment_id={}",
                uuid::Uuid::new_v4()
            ),
            t,
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "environment_not_found")
    );
    // Paging: the total and the neighbouring pages, keeping the other
    // parameters; a page past the end still knows the total.
    let r = app
        .get("/api/v1/deployments?trigger=manual&limit=2", t)
        .await;
    assert_eq!(versions(&r).len(), 2);
    assert_eq!(header(&r, "x-total-count"), "3");
    let link = header(&r, "link");
    assert!(
        link.contains("</api/v1/deployments?trigger=manual&skip=2&limit=2>; rel=\"next\"")
            && link.contains("</api/v1/deployments?trigger=manual&skip=2&limit=2>; rel=\"last\"")
            && link.contains("</api/v1/deployments?trigger=manual&skip=0&limit=2>; rel=\"first\"")
            && !link.contains("rel=\"prev\""),
        "{link}"
    );
    let r = app.get("/api/v1/deployments?skip=10&limit=2", t).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(versions(&r).len(), 0);
    assert_eq!(header(&r, "x-total-count"), "5");
    assert!(header(&r, "link").contains("skip=4&limit=2>; rel=\"last\""));
    // The largest skip is a page past the end like any other (it once
    // overflowed computing the next page, and the connection was dropped
    // without an answer; schemathesis found it).
    let r = app
        .get(
            &format!("/api/v1/deployments?skip={}&limit=500", i64::MAX),
            t,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(versions(&r).len(), 0);
    let link = header(&r, "link");
    assert!(
        link.contains("skip=0&limit=500>; rel=\"last\"") && !link.contains("rel=\"next\""),
        "{link}"
    );
    // Every other list carries its size too.
    for (path, total) in [
        ("/api/v1/organizations", 2),
        ("/api/v1/projects", 2),
        ("/api/v1/servers", 2),
        ("/api/v1/environments", 2),
        ("/api/v1/odoo-versions", 1),
    ] {
        let r = app.get(&format!("{path}?limit=1"), t).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(header(&r, "x-total-count"), total.to_string(), "{path}");
        let link = header(&r, "link");
        assert_eq!(
            link.contains("skip=1&limit=1>; rel=\"next\""),
            total > 1,
            "{path}: {link}"
        );
    }
}
