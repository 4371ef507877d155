//! Secrets are encrypted at rest and never appear in any response.

use oec_common::secrets::Sealed;
use oec_tests::{TestApp, World};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn no_response_ever_contains_a_stored_secret() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let t = &app.admin_token;
    let key = oec_tests::generated_private_key();
    let key_body = key.lines().nth(1).expect("a key line").to_owned();
    let secrets = [
        "server-pass-secret",
        "reg-pass-secret",
        "ghp_repo_token_secret",
        "cf-api-token-secret",
        key_body.as_str(),
    ];
    let mut bodies = Vec::new();
    for (path, body) in [
        (
            "/api/v1/servers",
            json!({"organization_id": w.org, "name": "k", "host": "h.example.com", "ssh_user": "u", "auth_method": "key", "private_key": key}),
        ),
        (
            "/api/v1/odoo-versions",
            json!({"version": "17.0", "image": "odoo:17.0", "registry_username": "bot", "registry_password": "reg-pass-secret"}),
        ),
        (
            "/api/v1/repositories",
            json!({"scope": "organization", "organization_id": w.org, "name": "r", "git_url": "https://h.example/r.git",
                   "branch": "main", "token": "ghp_repo_token_secret"}),
        ),
        (
            "/api/v1/dns-providers",
            json!({"organization_id": w.org, "kind": "cloudflare", "api_token": "cf-api-token-secret", "zone_id": "z1", "apps_domain": "apps.example.com"}),
        ),
    ] {
        let r = app.post(path, t, body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}: {}", r.text);
        bodies.push(r.text);
    }
    // A bad request that carries a secret must not echo it either.
    let r = app
        .post("/api/v1/servers", t, json!({"organization_id": w.org, "name": "bad", "host": "bad host", "ssh_user": "u",
                                           "auth_method": "password", "password": "server-pass-secret"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    bodies.push(r.text);
    for path in [
        "/api/v1/servers".to_owned(),
        format!("/api/v1/servers/{}", w.server),
        "/api/v1/odoo-versions".to_owned(),
        "/api/v1/repositories".to_owned(),
        "/api/v1/dns-providers".to_owned(),
        format!("/api/v1/environments/{}", w.environment),
        "/api/v1/users".to_owned(),
        "/api/v1/auth/me".to_owned(),
    ] {
        let r = app.get(&path, t).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        bodies.push(r.text);
    }
    for body in &bodies {
        for s in secrets {
            assert!(!body.contains(s), "secret {s} leaked in {body}");
        }
        assert!(
            !body.contains("password_hash") && !body.contains("_encrypted"),
            "{body}"
        );
    }
    // At rest, every secret column holds ciphertext.
    let stored: Vec<Sealed> = sqlx::query_scalar(
        "SELECT secret_encrypted FROM servers UNION ALL SELECT registry_password_encrypted FROM odoo_versions WHERE registry_password_encrypted IS NOT NULL
         UNION ALL SELECT token_encrypted FROM addon_repositories WHERE token_encrypted IS NOT NULL
         UNION ALL SELECT api_token_encrypted FROM dns_providers",
    )
    .fetch_all(&app.db)
    .await
    .expect("select");
    assert_eq!(stored.len(), 5);
    for s in &stored {
        for secret in secrets {
            assert!(!s.as_stored().contains(secret));
        }
        assert!(
            app.settings.secret_key.open(s).is_ok(),
            "stored value decrypts with OEC_SECRET_KEY"
        );
    }
}

#[tokio::test]
async fn the_presigned_migration_url_is_encrypted_at_rest_and_sealed_when_stored_before() {
    let app = TestApp::spawn().await;
    let w = World::build(&app, "acme").await;
    let signed =
        "https://backups.example.com/db.zip?X-Amz-Signature=presigned-sig-secret&X-Amz-Expires=600";
    let r = app
        .patch(
            &format!("/api/v1/environments/{}", w.environment),
            &app.admin_token,
            json!({"migration_source_url": signed}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["migration_source_url"],
        "https://backups.example.com/db.zip"
    );
    let row = |id: uuid::Uuid| {
        sqlx::query_as::<_, (String, Option<String>, Option<Sealed>)>(
            "SELECT row_to_json(e)::text, migration_source_url, migration_source_encrypted
             FROM environments e WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&app.db)
    };
    let (all, shown, sealed) = row(w.environment).await.expect("row");
    assert!(!all.contains("presigned-sig-secret"), "{all}");
    assert_eq!(shown.as_deref(), Some("https://backups.example.com/db.zip"));
    let sealed = sealed.expect("encrypted URL");
    assert_eq!(
        app.settings.secret_key.open(&sealed).expect("decrypts"),
        signed
    );

    // A URL stored in plaintext by an older oec is sealed when an api starts.
    sqlx::query(
        "UPDATE environments SET migration_source_url = $2, migration_source_encrypted = NULL
         WHERE id = $1",
    )
    .bind(w.environment)
    .bind(signed)
    .execute(&app.db)
    .await
    .expect("legacy row");
    let restarted = oec_api::startup::Application::build(app.settings.clone())
        .await
        .expect("second api");
    drop(restarted);
    let (all, shown, sealed) = row(w.environment).await.expect("row");
    assert!(!all.contains("presigned-sig-secret"), "{all}");
    assert_eq!(shown.as_deref(), Some("https://backups.example.com/db.zip"));
    assert_eq!(
        app.settings
            .secret_key
            .open(&sealed.expect("sealed"))
            .expect("decrypts"),
        signed
    );
}
