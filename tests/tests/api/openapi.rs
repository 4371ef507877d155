//! The OpenAPI document at `/api/v1/openapi.json`: it describes every route
//! the api serves, and the api answers as it says (schemathesis).

use std::collections::{BTreeMap, BTreeSet};

use oec_tests::{TargetEnv, TestApp};
use serde_json::Value;

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("get the document");
    assert_eq!(r.status(), 200);
    r.json().await.expect("the document is JSON")
}

/// Every `resource("...")` of api/src/routes with its methods, read from
/// the source, as the api serves them (health's also at the root).
fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../api/src/routes");
    let mut routes = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("routes") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let health = path.ends_with("health.rs");
        for part in text.split("resource(\"").skip(1) {
            let (route, rest) = part.split_once('"').expect("a quoted path");
            let block = rest.split("resource(\"").next().unwrap_or_default();
            let block = block.split(';').next().unwrap_or_default();
            let methods: BTreeSet<String> = ["get", "post", "put", "patch", "delete"]
                .into_iter()
                .filter(|m| block.contains(&format!("web::{m}()")))
                .map(str::to_owned)
                .collect();
            let full = if health {
                route.to_owned()
            } else {
                format!("/api/v1{route}")
            };
            routes.insert(full, methods);
        }
    }
    routes
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_describes_every_route_the_api_serves() {
    let app = TestApp::spawn().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let documented: BTreeMap<String, BTreeSet<String>> = paths
        .iter()
        .map(|(p, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .cloned()
                .collect();
            (p.clone(), methods)
        })
        .collect();
    let served = routes_in_source();
    assert!(served.len() > 40, "routes read from the source: {served:?}");
    assert_eq!(
        documented, served,
        "documented routes differ from the served ones"
    );

    let mut ids = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let Some(op) = op.as_object() else { continue };
            let id = op["operationId"].as_str().expect("operationId");
            assert!(ids.insert(id.to_owned()), "operationId {id} repeats");
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            // Every error answer is the one error body.
            for (status, r) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
            }
            let public = op.get("security").is_none();
            assert_eq!(
                public,
                [
                    "/api/v1/auth/login",
                    "/api/v1/auth/refresh",
                    "/api/v1/events/schema",
                    "/api/v1/openapi.json",
                    "/healthz",
                    "/readyz",
                    "/metrics"
                ]
                .contains(&path.as_str()),
                "{method} {path}: security"
            );
        }
    }
    // Creating a resource links to what can be done with it.
    let links = &paths["/api/v1/organizations"]["post"]["responses"]["201"]["links"];
    assert_eq!(
        links["organizations_get"]["operationId"],
        "organizations_get"
    );
    assert_eq!(
        links["organizations_get"]["parameters"]["id"],
        "$response.body#/id"
    );
    // A public call needs no token.
    let r = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
}

/// One schemathesis run against `app` as the admin, over the operations
/// `args` select; its summary, after asserting that it passed.
async fn schemathesis(app: &TestApp, token: &str, args: &[&str]) -> String {
    let target = TargetEnv::load();
    let dir = std::env::temp_dir().join(format!("oec-schemathesis-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out = tokio::process::Command::new(&target.schemathesis)
        .current_dir(&dir)
        .arg("run")
        .arg(app.url("/api/v1/openapi.json"))
        .args(["--url", &app.address])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(args)
        .args(["--max-examples", "25", "--seed", "1", "--no-color"])
        .args(["--generation-database", "none", "--workers", "2"])
        .output()
        .await
        .expect("run schemathesis (scripts/services installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.split("SUMMARY").last().unwrap_or_default().to_owned();
    eprintln!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!summary.contains("Failures:"), "{summary}");
    summary
}

/// schemathesis against a running api, as the admin, with examples,
/// coverage, fuzzing and the stateful phase over the document's links: no
/// 5xx, and every answer's status, content type, headers and body are the
/// document's. Every operation but the organization-wide event stream (it
/// never ends for a valid token); logout runs last on a session of its own,
/// since it ends the session it is called with. A deployment's stream is
/// tested: no generated id names a deployment, so it answers at once.
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let app = TestApp::spawn().await;
    let summary = schemathesis(
        &app,
        &app.admin_token,
        &[
            "--exclude-path-regex",
            "^/api/v1/(events/stream|auth/logout)$",
        ],
    )
    .await;
    let (selected, total) = counts(&summary, "Selected: ");
    assert_eq!(total - selected, 2, "{summary}");
    assert_eq!(counts(&summary, "Tested: ").0, selected, "{summary}");
    let own = app
        .login(oec_tests::ADMIN_EMAIL, oec_tests::ADMIN_PASSWORD)
        .await;
    // No links lead from logout: no stateful phase.
    let summary = schemathesis(
        &app,
        &own,
        &[
            "--include-path",
            "/api/v1/auth/logout",
            "--phases",
            "examples,coverage,fuzzing",
        ],
    )
    .await;
    assert_eq!(counts(&summary, "Tested: ").0, 1, "{summary}");
}

/// `N/M` (or `N`) after `label` in a schemathesis summary.
fn counts(summary: &str, label: &str) -> (usize, usize) {
    let text = summary
        .split(label)
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} in {summary}"));
    let (a, b) = text.split_once('/').unwrap_or((text, text));
    (a.parse().expect("count"), b.parse().expect("count"))
}
