use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_portal_admin: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, name, is_portal_admin, created_at";

pub async fn insert(
    pool: &PgPool,
    email: &str,
    name: &str,
    password_hash: &str,
    portal_admin: bool,
) -> sqlx::Result<User> {
    sqlx::query_as(
        "INSERT INTO users (id, email, name, password_hash, is_portal_admin) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, name, is_portal_admin, created_at",
    )
    .bind(Uuid::new_v4())
    .bind(email)
    .bind(name)
    .bind(password_hash)
    .bind(portal_admin)
    .fetch_one(pool)
    .await
}

/// Creates the first portal admin unless any user exists; true when created.
pub async fn bootstrap_admin(
    pool: &PgPool,
    email: &str,
    password_hash: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "INSERT INTO users (id, email, name, password_hash, is_portal_admin)
         SELECT $1, $2, 'Portal admin', $3, TRUE WHERE NOT EXISTS (SELECT 1 FROM users)
         ON CONFLICT DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(email)
    .bind(password_hash)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn by_id(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The user and their password hash, for login.
pub async fn credentials(pool: &PgPool, email: &str) -> sqlx::Result<Option<(Uuid, String)>> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await
}

pub async fn list(pool: &PgPool, page: Page) -> sqlx::Result<Vec<User>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users ORDER BY created_at, id OFFSET $1 LIMIT $2"
    ))
    .bind(page.skip)
    .bind(page.limit)
    .fetch_all(pool)
    .await
}

pub async fn exists(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}
