//! The scheduler's queries: tick claims, log retention, the reaper.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::ids::DeploymentId;

use crate::model::DeploymentStatus;

/// Claims one tick of a job for this replica; false when another replica has it.
pub async fn claim_tick(
    pool: &PgPool,
    job: &str,
    tick: DateTime<Utc>,
    replica: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query("INSERT INTO scheduler_runs (job, tick, replica) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(job)
        .bind(tick)
        .bind(replica)
        .execute(pool)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn finish_tick(
    pool: &PgPool,
    job: &str,
    tick: DateTime<Utc>,
    ok: bool,
    result: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE scheduler_runs SET finished_at = now(), ok = $3, result = $4 WHERE job = $1 AND tick = $2")
        .bind(job)
        .bind(tick)
        .bind(ok)
        .bind(result)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes at most `batch` log rows older than `cutoff`, in one short
/// statement (its own transaction); returns how many.
pub async fn delete_logs_batch(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM deployment_logs WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM deployment_logs WHERE timestamp < $1 LIMIT $2))",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

/// Deletes the steps of ended deployments that have no log line left and
/// ended before `cutoff`.
pub async fn delete_orphan_steps(pool: &PgPool, cutoff: DateTime<Utc>) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM deployment_steps s USING deployments d
         WHERE d.id = s.deployment_id AND d.completed_at < $1
           AND NOT EXISTS (SELECT 1 FROM deployment_logs l WHERE l.deployment_id = d.id)",
    )
    .bind(cutoff)
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stuck {
    pub id: DeploymentId,
    pub organization_id: Uuid,
    pub project_id: Uuid,
    pub environment_id: Uuid,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub requeued_at: Option<DateTime<Utc>>,
}

/// Running deployments whose last heartbeat is older than `stale_secs`.
///
/// The status is written into the SQL from the model, not bound: the
/// partial indexes of migrations 0002 and 0003 serve only a query whose
/// predicate names the same constant.
pub async fn stale_running(pool: &PgPool, stale_secs: f64) -> sqlx::Result<Vec<Stuck>> {
    sqlx::query_as(&format!(
        "SELECT d.id, p.organization_id, d.project_id, d.environment_id, d.heartbeat_at, d.requeued_at
         FROM deployments d JOIN projects p ON p.id = d.project_id
         WHERE d.status = '{}' AND COALESCE(d.heartbeat_at, d.started_at, d.created_at) < now() - make_interval(secs => $1)",
        DeploymentStatus::Running
    ))
    .bind(stale_secs)
    .fetch_all(pool)
    .await
}

/// Pending deployments created more than `secs` ago.
pub async fn old_pending(pool: &PgPool, secs: f64) -> sqlx::Result<Vec<Stuck>> {
    sqlx::query_as(&format!(
        "SELECT d.id, p.organization_id, d.project_id, d.environment_id, d.heartbeat_at, d.requeued_at
         FROM deployments d JOIN projects p ON p.id = d.project_id
         WHERE d.status = '{}' AND d.created_at < now() - make_interval(secs => $1)",
        DeploymentStatus::Pending
    ))
    .bind(secs)
    .fetch_all(pool)
    .await
}

pub async fn mark_requeued(pool: &PgPool, id: DeploymentId) -> sqlx::Result<()> {
    sqlx::query("UPDATE deployments SET requeued_at = now(), updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// What `/metrics` reads from PostgreSQL at each scrape.
pub struct Gauges {
    /// (status, trigger, count) over every deployment.
    pub deployments: Vec<(String, String, i64)>,
    /// Deployments waiting for a worker, and how long the oldest has waited.
    pub pending: i64,
    pub oldest_pending_secs: f64,
    /// (worker id, running deployments).
    pub running: Vec<(String, i64)>,
}

pub async fn gauges(pool: &PgPool) -> sqlx::Result<Gauges> {
    let deployments = sqlx::query_as(
        "SELECT status, trigger, count(*) FROM deployments GROUP BY status, trigger ORDER BY 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let (pending, oldest_pending_secs): (i64, f64) = sqlx::query_as(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
         FROM deployments WHERE status = $1",
    )
    .bind(DeploymentStatus::Pending)
    .fetch_one(pool)
    .await?;
    let running = sqlx::query_as(
        "SELECT COALESCE(worker_id, ''), count(*) FROM deployments WHERE status = $1
         GROUP BY 1 ORDER BY 1",
    )
    .bind(DeploymentStatus::Running)
    .fetch_all(pool)
    .await?;
    Ok(Gauges {
        deployments,
        pending,
        oldest_pending_secs,
        running,
    })
}
