//! The first deployment of real Odoo, for each series oec supports: every
//! stage done, `/web/login` served through the server's proxy with the ACME
//! certificate, and Odoo's admin user signing in over that URL through
//! Odoo's own JSON-RPC with the generated password, never with `admin`.
//! Demo data is where it was asked for only: one series deploys a
//! production environment, one a staging one, one a development one with
//! `with_demo`.

use oec_tests::TargetEnv;
use oec_tests::edge::client;
use oec_tests::world::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// `POST /web/session/authenticate` over the environment's HTTPS URL: the
/// signed-in user's id, or `None` when Odoo refuses the login.
async fn authenticate(http: &reqwest::Client, host: &str, db: Uuid, password: &str) -> Option<i64> {
    let r: Value = http
        .post(format!("https://{host}/web/session/authenticate"))
        .json(&json!({"jsonrpc": "2.0", "method": "call", "id": 1,
                      "params": {"db": db.to_string(), "login": "admin", "password": password}}))
        .send()
        .await
        .expect("authenticate")
        .json()
        .await
        .expect("JSON-RPC answer");
    r["result"]["uid"].as_i64()
}

async fn check(series: &str, kind: &str, with_demo: bool) {
    let w = world(&[]).await;
    w.real_odoo(series).await;
    let tag = &Uuid::new_v4().simple().to_string()[..6];
    let sub = format!("odoo{}-{tag}", series.replace('.', ""));
    let env = w
        .environment(
            json!({"name": "fresh", "subdomain": sub, "odoo_version": series,
                            "kind": kind, "with_demo": with_demo}),
        )
        .await;
    let _purge = Purge(env, sub.clone());
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    assert_eq!(
        d["status"],
        "success",
        "Odoo {series}: {d}\n{}",
        messages.join("\n")
    );
    let steps = w.steps(id).await;
    assert_eq!(steps.len(), 16, "{steps:?}");
    for s in &steps {
        assert_eq!(s["status"], "completed", "Odoo {series}: {s}");
    }
    // Odoo's own loader lines became the step's module progress.
    let logs = w.logs(id).await;
    assert!(
        logs.iter().any(|l| l["step"] == "initializing_database"
            && l["data"]["module"] == "base"
            && l["data"]["module_index"] == 1),
        "Odoo {series}: no progress for base in\n{}",
        messages.join("\n")
    );

    let demo = psql(
        &format!("{env}_db"),
        env,
        "SELECT demo FROM ir_module_module WHERE name = 'base'",
    )
    .await;
    assert_eq!(
        demo,
        if with_demo { "t" } else { "f" },
        "Odoo {series}, {kind}: base's demo data"
    );

    let host = format!("{sub}.apps.oec.test");
    let roots = std::fs::read_to_string(TargetEnv::load().acme_roots).expect("Pebble's roots");
    let http = client(&host, &roots, false);
    let r = http
        .get(format!("https://{host}/web/login"))
        .send()
        .await
        .expect("GET /web/login");
    assert_eq!(r.status(), 200, "Odoo {series}: /web/login");
    let page = r.text().await.unwrap_or_default();
    assert!(page.contains("oe_login_form"), "Odoo {series}: {page}");

    let creds = w
        .get(&format!("/api/v1/environments/{env}/credentials"))
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    let password = creds.body["admin_password"]
        .as_str()
        .expect("admin_password")
        .to_owned();
    assert_eq!(
        authenticate(&http, &host, env, &password).await,
        Some(2),
        "Odoo {series}: the generated password signs in"
    );
    assert_eq!(
        authenticate(&http, &host, env, "admin").await,
        None,
        "Odoo {series}: admin/admin is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_production_environment_of_real_odoo_17_serves_https_signs_in_with_the_generated_password_and_has_no_demo_data()
 {
    check("17.0", "production", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_staging_environment_of_real_odoo_18_serves_https_signs_in_with_the_generated_password_and_has_no_demo_data()
 {
    check("18.0", "staging", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_development_environment_of_real_odoo_19_with_demo_serves_https_signs_in_with_the_generated_password_and_has_demo_data()
 {
    check("19.0", "development", true).await;
}
