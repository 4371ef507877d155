//! Server checks (`POST /servers/{id}/check`): a pending row the api creates,
//! which a worker claims, runs and finishes with its result; and the
//! capacity the latest finished check gives a server.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::CheckStatus;
use crate::secrets::Sealed;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Check {
    pub id: Uuid,
    pub server_id: Uuid,
    pub status: CheckStatus,
    /// Whether the server is fit to deploy to (none while not done).
    pub ok: Option<bool>,
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, server_id, status, ok, result, created_at, finished_at";

pub async fn create(pool: &PgPool, server: Uuid, requested_by: Uuid) -> sqlx::Result<Check> {
    sqlx::query_as(&format!(
        "INSERT INTO server_checks (id, server_id, requested_by) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(server)
    .bind(requested_by)
    .fetch_one(pool)
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Check>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM server_checks WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The server's latest finished check.
pub async fn latest(pool: &PgPool, server: Uuid) -> sqlx::Result<Option<Check>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM server_checks WHERE server_id = $1 AND status = $2
         ORDER BY finished_at DESC LIMIT 1"
    ))
    .bind(server)
    .bind(CheckStatus::Done)
    .fetch_optional(pool)
    .await
}

/// Ends a check the queue could not take (its job was never enqueued).
pub async fn abandon(pool: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM server_checks WHERE id = $1 AND status = $2")
        .bind(id)
        .bind(CheckStatus::Pending)
        .execute(pool)
        .await?;
    Ok(())
}

/// What a worker needs to reach the server of a check.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Login {
    pub server_id: Uuid,
    pub host: String,
    pub ssh_port: i32,
    pub ssh_user: String,
    pub auth_method: String,
    pub secret_encrypted: Sealed,
    pub host_key_fingerprint: Option<String>,
}

/// Takes a pending check (once: a redelivered job finds it taken) and
/// returns how to reach its server.
pub async fn claim(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Login>> {
    sqlx::query_as(
        "WITH c AS (UPDATE server_checks SET status = $2 WHERE id = $1 AND status = $3
                    RETURNING server_id)
         SELECT s.id AS server_id, s.host, s.ssh_port, s.ssh_user, s.auth_method,
                s.secret_encrypted, s.host_key_fingerprint
         FROM servers s JOIN c ON c.server_id = s.id",
    )
    .bind(id)
    .bind(CheckStatus::Running)
    .bind(CheckStatus::Pending)
    .fetch_optional(pool)
    .await
}

pub async fn finish(pool: &PgPool, id: Uuid, ok: bool, result: &Value) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE server_checks SET status = $4, ok = $2, result = $3, finished_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(ok)
    .bind(result)
    .bind(CheckStatus::Done)
    .execute(pool)
    .await?;
    Ok(())
}

/// A server's resources as its latest check found them, and what its
/// environments (but `except`) take of them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Capacity {
    pub cpu_count: f64,
    pub memory_mb: f64,
    pub cpu_used: f64,
    pub ram_used_mb: f64,
}

/// None when the server was never checked successfully (nothing to measure
/// against).
pub async fn capacity(
    pool: &PgPool,
    server: Uuid,
    except: Option<Uuid>,
) -> sqlx::Result<Option<Capacity>> {
    sqlx::query_as(
        "SELECT (c.result->>'cpu_count')::float8 AS cpu_count,
                (c.result->>'memory_total_mb')::float8 AS memory_mb,
                COALESCE((SELECT sum(e.cpu_cores) FROM environments e
                          WHERE e.server_id = $1 AND e.id IS DISTINCT FROM $2), 0)::float8 AS cpu_used,
                COALESCE((SELECT sum(e.ram_mb) FROM environments e
                          WHERE e.server_id = $1 AND e.id IS DISTINCT FROM $2), 0)::float8 AS ram_used_mb
         FROM server_checks c
         WHERE c.server_id = $1 AND c.status = $3
           AND c.result ? 'cpu_count' AND c.result ? 'memory_total_mb'
         ORDER BY c.finished_at DESC LIMIT 1",
    )
    .bind(server)
    .bind(except)
    .bind(CheckStatus::Done)
    .fetch_optional(pool)
    .await
}
