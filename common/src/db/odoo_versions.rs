use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::ImageRef;

use crate::secrets::Sealed;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<OdooVersion>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM odoo_versions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// What a version's registry credentials become in an update.
pub enum Credentials<'a> {
    Keep,
    Clear,
    Set(&'a str, &'a Sealed),
}

/// Changes a version's image and registry credentials (the version itself
/// is what environments name: it does not change).
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    image: Option<&ImageRef>,
    credentials: Credentials<'_>,
) -> sqlx::Result<Option<OdooVersion>> {
    let (set, clear, username, password) = match credentials {
        Credentials::Keep => (false, false, None, None),
        Credentials::Clear => (false, true, None, None),
        Credentials::Set(u, p) => (true, false, Some(u), Some(p)),
    };
    sqlx::query_as(&format!(
        "UPDATE odoo_versions SET image = COALESCE($2, image),
             registry_username = CASE WHEN $3 THEN $5 WHEN $4 THEN NULL ELSE registry_username END,
             registry_password_encrypted = CASE WHEN $3 THEN $6 WHEN $4 THEN NULL
                                                ELSE registry_password_encrypted END
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(image)
    .bind(set)
    .bind(clear)
    .bind(username)
    .bind(password)
    .fetch_optional(pool)
    .await
}

/// What deleting a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// This many environments use it.
    InUse(i64),
}

/// Deletes a version no environment uses (the row is locked first, so an
/// environment created meanwhile waits and then finds it gone).
pub async fn delete(pool: &PgPool, id: Uuid) -> sqlx::Result<Deleted> {
    let mut tx = pool.begin().await?;
    let Some(version): Option<String> =
        sqlx::query_scalar("SELECT version FROM odoo_versions WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(Deleted::NotFound);
    };
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM environments WHERE odoo_version = $1")
            .bind(&version)
            .fetch_one(&mut *tx)
            .await?;
    if users > 0 {
        return Ok(Deleted::InUse(users));
    }
    sqlx::query("DELETE FROM odoo_versions WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Deleted::Deleted)
}
