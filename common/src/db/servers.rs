use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::secrets::Sealed;

use super::Page;

/// A server as the API shows it: the secret is never selected, only whether
/// one is stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Server {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    pub host: String,
    pub ssh_port: i32,
    pub ssh_user: String,
    pub auth_method: String,
    pub has_password: bool,
    pub has_private_key: bool,
    pub host_key_fingerprint: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, organization_id, name, host, ssh_port, ssh_user, auth_method,
    auth_method = 'password' AS has_password, auth_method = 'key' AS has_private_key,
    host_key_fingerprint, created_at, updated_at";

pub struct NewServer<'a> {
    pub organization_id: Uuid,
    pub name: &'a str,
    pub host: &'a str,
    pub ssh_port: u16,
    pub ssh_user: &'a str,
    pub auth_method: &'a str,
    pub secret_encrypted: &'a Sealed,
    pub host_key_fingerprint: Option<&'a str>,
}

pub async fn insert(pool: &PgPool, s: &NewServer<'_>) -> sqlx::Result<Server> {
    sqlx::query_as(&format!(
        "INSERT INTO servers (id, organization_id, name, host, ssh_port, ssh_user, auth_method, secret_encrypted, host_key_fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(s.organization_id)
    .bind(s.name)
    .bind(s.host)
    .bind(i32::from(s.ssh_port))
    .bind(s.ssh_user)
    .bind(s.auth_method)
    .bind(s.secret_encrypted)
    .bind(s.host_key_fingerprint)
    .fetch_one(pool)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Server>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM servers WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Servers of the organizations the user belongs to.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    org: Option<Uuid>,
    page: Page,
) -> sqlx::Result<super::Paged<Server>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM servers s
         WHERE ($3::uuid IS NULL OR s.organization_id = $3)
           AND ($1 OR EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = s.organization_id AND m.user_id = $2))
         ORDER BY created_at, id OFFSET $4 LIMIT $5"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(org)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

/// Trust on first use: records the host key fingerprint of a server that
/// has none yet. False when one was recorded meanwhile (it stays).
pub async fn record_host_key(pool: &PgPool, id: Uuid, fingerprint: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE servers SET host_key_fingerprint = $2, updated_at = now()
         WHERE id = $1 AND host_key_fingerprint IS NULL",
    )
    .bind(id)
    .bind(fingerprint)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Forgets a server's host key: the next connection trusts the key it sees
/// and records it. False when there is no such server.
pub async fn reset_host_key(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE servers SET host_key_fingerprint = NULL, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// What `PATCH /servers/{id}` changes; `None` keeps the stored value.
#[derive(Default)]
pub struct ServerChanges<'a> {
    pub name: Option<&'a str>,
    pub host: Option<&'a str>,
    pub ssh_port: Option<u16>,
    pub ssh_user: Option<&'a str>,
    /// A new method comes with its secret; a secret alone rotates it.
    pub auth_method: Option<&'a str>,
    pub secret_encrypted: Option<&'a Sealed>,
    /// `Some(None)` forgets the recorded host key (a new address is another
    /// machine until its key is seen).
    pub host_key_fingerprint: Option<Option<&'a str>>,
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    c: &ServerChanges<'_>,
) -> sqlx::Result<Option<Server>> {
    sqlx::query_as(&format!(
        "UPDATE servers SET
            name = COALESCE($2, name),
            host = COALESCE($3, host),
            ssh_port = COALESCE($4, ssh_port),
            ssh_user = COALESCE($5, ssh_user),
            auth_method = COALESCE($6, auth_method),
            secret_encrypted = COALESCE($7, secret_encrypted),
            host_key_fingerprint = CASE WHEN $8 THEN $9 ELSE host_key_fingerprint END,
            updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(c.name)
    .bind(c.host)
    .bind(c.ssh_port.map(i32::from))
    .bind(c.ssh_user)
    .bind(c.auth_method)
    .bind(c.secret_encrypted)
    .bind(c.host_key_fingerprint.is_some())
    .bind(c.host_key_fingerprint.flatten())
    .fetch_optional(pool)
    .await
}

/// How deleting a server went.
pub enum Removed {
    Removed,
    NotFound,
    /// Environments still use it (how many).
    InUse(i64),
}

/// Deletes a server no environment uses (its checks go with it).
pub async fn delete_unused(pool: &PgPool, id: Uuid) -> sqlx::Result<Removed> {
    let mut tx = pool.begin().await?;
    // The row lock keeps an environment from being created on the server
    // between the count and the delete.
    let exists: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM servers WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Ok(Removed::NotFound);
    }
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM environments WHERE server_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if used > 0 {
        return Ok(Removed::InUse(used));
    }
    sqlx::query("DELETE FROM servers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Removed::Removed)
}
