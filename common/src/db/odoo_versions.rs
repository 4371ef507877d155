use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::ImageRef;

use crate::secrets::Sealed;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OdooVersion {
    pub id: Uuid,
    pub version: String,
    pub image: ImageRef,
    pub registry_username: Option<String>,
    pub has_registry_password: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, version, image, registry_username,
    registry_password_encrypted IS NOT NULL AS has_registry_password, created_at";

pub async fn insert(
    pool: &PgPool,
    version: &str,
    image: &ImageRef,
    registry_username: Option<&str>,
    registry_password_encrypted: Option<&Sealed>,
) -> sqlx::Result<OdooVersion> {
    sqlx::query_as(&format!(
        "INSERT INTO odoo_versions (id, version, image, registry_username, registry_password_encrypted)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(version)
    .bind(image)
    .bind(registry_username)
    .bind(registry_password_encrypted)
    .fetch_one(pool)
    .await
}

pub async fn list(pool: &PgPool, page: Page) -> sqlx::Result<super::Paged<OdooVersion>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM odoo_versions ORDER BY version OFFSET $1 LIMIT $2"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

pub async fn exists(pool: &PgPool, version: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM odoo_versions WHERE version = $1)")
        .bind(version)
        .fetch_one(pool)
        .await
}
