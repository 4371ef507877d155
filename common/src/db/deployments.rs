//! Deployments, their steps and log lines.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::Page;
use crate::auth::{Permission, role_pairs_with};
use crate::events::DeploymentRef;
use crate::model::fields::{Branch, DnsLabel};
use crate::model::ids::{DeploymentId, EnvironmentId};
use crate::model::steps::Step;
use crate::model::{
    Action, DeploymentStatus, EnvironmentKind, EnvironmentStatus, LogLevel, StepStatus, Trigger,
};
use crate::secrets::Sealed;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Deployment {
    pub id: DeploymentId,
    pub project_id: Uuid,
    pub environment_id: Uuid,
    pub vm_id: Option<Uuid>,
    pub version: i32,
    pub status: DeploymentStatus,
    pub trigger: Trigger,
    pub triggered_by: Option<Uuid>,
    pub git_commit: Option<String>,
    pub git_branch: Option<String>,
    pub git_message: Option<String>,
    pub committer_name: Option<String>,
    pub committer_email: Option<String>,
    pub commit_date: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub container_id: Option<String>,
    pub image_tag: Option<String>,
    pub error_message: Option<String>,
    pub current_step: Option<String>,
    pub progress_percent: i32,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// The commit asked for (`POST /deployments {git_commit}`), if any.
    pub requested_commit: Option<String>,
    /// The past deployment this one repeats (`POST /deployments/{id}/redeploy`).
    pub redeploy_of: Option<Uuid>,
    /// The addons that changed since the last successful deployment and
    /// those upgraded: `{changed, added, removed, upgraded}`.
    pub module_changes: Option<serde_json::Value>,
    /// The snapshot taken before the database changed: `{path, bytes, seconds}`.
    pub snapshot: Option<serde_json::Value>,
    /// The deployment failed after touching the database or the serving
    /// container, and both were put back as they were.
    pub rolled_back: bool,
    pub rollback_reason: Option<String>,
    pub rollback_seconds: Option<f64>,
    /// The whole pipeline (`deploy`) or a lifecycle run (stop, start, restart, teardown).
    pub action: Action,
    /// A teardown that also removes the database volume.
    pub delete_data: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, project_id, environment_id, vm_id, version, status, trigger, triggered_by,
    git_commit, git_branch, git_message, committer_name, committer_email, commit_date, started_at,
    completed_at, duration_seconds, container_id, image_tag, error_message, current_step,
    progress_percent, cancel_requested_at, requested_commit, redeploy_of, module_changes, snapshot,
    rolled_back, rollback_reason, rollback_seconds, action, delete_data, created_at, updated_at";

pub enum Created {
    /// A new pending deployment and its first log line.
    New(Deployment, Vec<LogLine>),
    /// The same `Idempotency-Key` was used before by the same user for the
    /// same request (environment and trigger).
    Replayed(Deployment),
    /// The user used this key before for another request.
    KeyReused,
    /// Another deployment of the environment is pending or running.
    InProgress(Deployment),
}

pub struct NewDeployment<'a> {
    pub environment_id: Uuid,
    pub trigger: Trigger,
    pub triggered_by: Uuid,
    pub idempotency_key: Option<&'a str>,
    /// A commit of the project repository to deploy instead of the branch's head.
    pub requested_commit: Option<&'a str>,
    pub redeploy_of: Option<DeploymentId>,
    pub action: Action,
    pub delete_data: bool,
}

/// Creates a pending deployment with the next version of its environment and
/// its first log line, in one transaction. The environment row is locked, so
/// concurrent requests are serialized: exactly one wins, the others see it.
pub async fn create(pool: &PgPool, n: &NewDeployment<'_>) -> sqlx::Result<Option<Created>> {
    let mut tx = pool.begin().await?;
    let env: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "SELECT project_id, server_id, branch FROM environments WHERE id = $1 FOR UPDATE",
    )
    .bind(n.environment_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((project_id, server_id, branch)) = env else {
        return Ok(None);
    };
    if let Some(key) = n.idempotency_key {
        let prior: Option<Deployment> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE triggered_by = $1 AND idempotency_key = $2"
        ))
        .bind(n.triggered_by)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(d) = prior {
            // A key answers only the request it was made for: the caller
            // may deploy this environment (checked before), and nothing of
            // another environment is ever returned.
            return Ok(Some(
                if d.environment_id == n.environment_id
                    && d.trigger == n.trigger
                    && d.requested_commit.as_deref() == n.requested_commit
                    && d.action == n.action
                    && d.delete_data == n.delete_data
                {
                    Created::Replayed(d)
                } else {
                    Created::KeyReused
                },
            ));
        }
    }
    let active: Option<Deployment> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deployments WHERE environment_id = $1 AND status = ANY($2)"
    ))
    .bind(n.environment_id)
    .bind(DeploymentStatus::ACTIVE)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(d) = active {
        return Ok(Some(Created::InProgress(d)));
    }
    let d: Deployment = sqlx::query_as(&format!(
        "INSERT INTO deployments (id, project_id, environment_id, vm_id, version, trigger, triggered_by, git_branch, idempotency_key,
                                  requested_commit, redeploy_of, action, delete_data)
         VALUES ($1, $2, $3, $4,
                 (SELECT COALESCE(max(version), 0) + 1 FROM deployments WHERE environment_id = $3),
                 $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(project_id)
    .bind(n.environment_id)
    .bind(server_id)
    .bind(n.trigger)
    .bind(n.triggered_by)
    .bind(branch)
    .bind(n.idempotency_key)
    .bind(n.requested_commit)
    .bind(n.redeploy_of)
    .bind(n.action)
    .bind(n.delete_data)
    .fetch_one(&mut *tx)
    .await?;
    let lines = append_lines(
        &mut tx,
        &d,
        &[(
            LogLevel::Info,
            Step::Initializing,
            "Deployment created and queued",
        )],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(Created::New(d, lines)))
}

/// Appends lines a transition writes itself (not the worker's log writer)
/// after the deployment's last one, with its status and progress as
/// `d` has them; the caller holds the deployment's row lock.
async fn append_lines(
    tx: &mut Transaction<'_, Postgres>,
    d: &Deployment,
    lines: &[(LogLevel, Step, &str)],
) -> sqlx::Result<Vec<LogLine>> {
    let levels: Vec<LogLevel> = lines.iter().map(|l| l.0).collect();
    let steps: Vec<&str> = lines.iter().map(|l| l.1.id()).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.2).collect();
    sqlx::query_as(&format!(
        "INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message, step, status, progress_percent)
         SELECT gen_random_uuid(), $1,
                (SELECT COALESCE(max(seq), 0) FROM deployment_logs WHERE deployment_id = $1) + t.n,
                clock_timestamp(), t.level, t.message, t.step, $5, $6
         FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS t(level, step, message, n)
         RETURNING {LOG_COLUMNS}"
    ))
    .bind(d.id)
    .bind(&levels)
    .bind(&steps)
    .bind(&messages)
    .bind(d.status)
    .bind(d.progress_percent)
    .fetch_all(&mut **tx)
    .await
}

/// What every event of a deployment carries (and the export's header
/// shows), with its organization.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Referenced {
    pub organization_id: Uuid,
    #[sqlx(flatten)]
    pub deployment: DeploymentRef,
}

pub async fn reference(pool: &PgPool, id: DeploymentId) -> sqlx::Result<Option<Referenced>> {
    sqlx::query_as(
        "SELECT p.organization_id, d.id AS deployment_id, d.environment_id, d.project_id,
                p.name AS project_name, e.name AS environment_name, d.triggered_by, d.git_branch AS branch
         FROM deployments d JOIN projects p ON p.id = d.project_id JOIN environments e ON e.id = d.environment_id
         WHERE d.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

pub async fn get(pool: &PgPool, id: DeploymentId) -> sqlx::Result<Option<Deployment>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM deployments WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// What a deployment list is narrowed to (every field optional).
#[derive(Debug, Default, Clone, Copy)]
pub struct ListFilter {
    pub project: Option<Uuid>,
    pub environment: Option<Uuid>,
    pub status: Option<DeploymentStatus>,
    pub trigger: Option<Trigger>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

/// Deployments of the projects whose deployments the user may list, newest first.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    filter: ListFilter,
    page: Page,
) -> sqlx::Result<super::Paged<Deployment>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM deployments d
         WHERE ($3::uuid IS NULL OR d.project_id = $3) AND ($4::text IS NULL OR d.status = $4)
           AND ($8::uuid IS NULL OR d.environment_id = $8) AND ($9::text IS NULL OR d.trigger = $9)
           AND ($10::timestamptz IS NULL OR d.created_at >= $10)
           AND ($11::timestamptz IS NULL OR d.created_at < $11)
           AND ($1 OR {ROLE_PAIR} = ANY($7))
         ORDER BY created_at DESC, id DESC OFFSET $5 LIMIT $6",
        ROLE_PAIR = super::role_pair("d.project_id")
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(filter.project)
            .bind(filter.status)
            .bind(page.skip)
            .bind(page.limit)
            .bind(role_pairs_with(Permission::ProjectDeploymentsList))
            .bind(filter.environment)
            .bind(filter.trigger)
            .bind(filter.since)
            .bind(filter.until)
            .fetch_all(pool)
    })
    .await
}

pub async fn latest_for_environment(pool: &PgPool, env: Uuid) -> sqlx::Result<Option<Deployment>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM deployments WHERE environment_id = $1 ORDER BY version DESC LIMIT 1"
    ))
    .bind(env)
    .fetch_optional(pool)
    .await
}

/// Records a cancel request on a pending or running deployment; a pending one
/// is cancelled at once (no worker holds it), with a last log line. Returns
/// the new state and that line, or `None` when the deployment is already
/// terminal.
pub async fn request_cancel(
    pool: &PgPool,
    id: DeploymentId,
) -> sqlx::Result<Option<(Deployment, Vec<LogLine>)>> {
    let mut tx = pool.begin().await?;
    let d: Option<Deployment> = sqlx::query_as(&format!(
        "UPDATE deployments SET
            cancel_requested_at = COALESCE(cancel_requested_at, now()),
            status = CASE WHEN status = $2 THEN $3 ELSE status END,
            completed_at = CASE WHEN status = $2 THEN now() ELSE completed_at END,
            error_message = CASE WHEN status = $2 THEN 'Cancelled before it started' ELSE error_message END,
            updated_at = now()
         WHERE id = $1 AND status = ANY($4)
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(DeploymentStatus::Pending)
    .bind(DeploymentStatus::Cancelled)
    .bind(DeploymentStatus::ACTIVE)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(d) = d else { return Ok(None) };
    // A running deployment's lines are its worker's to write.
    let lines = if d.status == DeploymentStatus::Cancelled {
        append_lines(
            &mut tx,
            &d,
            &[(
                LogLevel::Warning,
                Step::Completed,
                "Deployment cancelled before it started",
            )],
        )
        .await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    Ok(Some((d, lines)))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LogLine {
    pub id: Uuid,
    pub seq: i64,
    pub timestamp: DateTime<Utc>,
    pub level: LogLevel,
    pub message: String,
    pub step: Option<String>,
    pub data: Option<serde_json::Value>,
    /// The deployment's status and progress when the line was written (in
    /// its events; the log API and exports show the line alone).
    #[serde(skip)]
    pub status: DeploymentStatus,
    #[serde(skip)]
    pub progress_percent: i32,
}

const LOG_COLUMNS: &str =
    "id, seq, timestamp, level, message, step, data, status, progress_percent";

/// Log lines in `seq` order, optionally of one level.
pub async fn logs(
    pool: &PgPool,
    deployment: Uuid,
    level: Option<LogLevel>,
    step: Option<&str>,
    page: Page,
) -> sqlx::Result<Vec<LogLine>> {
    sqlx::query_as(&format!(
        "SELECT {LOG_COLUMNS} FROM deployment_logs
         WHERE deployment_id = $1 AND ($2::text IS NULL OR level = $2)
           AND ($5::text IS NULL OR step = $5)
         ORDER BY seq OFFSET $3 LIMIT $4"
    ))
    .bind(deployment)
    .bind(level)
    .bind(page.skip)
    .bind(page.limit)
    .bind(step)
    .fetch_all(pool)
    .await
}

/// Log lines after `seq`, in order, at most `limit`.
pub async fn logs_after(
    pool: &PgPool,
    deployment: Uuid,
    after_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<LogLine>> {
    sqlx::query_as(&format!(
        "SELECT {LOG_COLUMNS} FROM deployment_logs
         WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(deployment)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct StepRow {
    pub step: String,
    pub status: StepStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<f64>,
    pub latest_message: Option<String>,
}

pub async fn steps(pool: &PgPool, deployment: DeploymentId) -> sqlx::Result<Vec<StepRow>> {
    sqlx::query_as(
        "SELECT step, status, started_at, completed_at, duration_seconds, latest_message
         FROM deployment_steps WHERE deployment_id = $1",
    )
    .bind(deployment)
    .fetch_all(pool)
    .await
}

/// The last `per_step` log lines of each step of a deployment, in order,
/// and how many lines each step has: the progress view's memory is bounded
/// however long a deployment's log is.
pub async fn step_log_tails(
    pool: &PgPool,
    deployment: DeploymentId,
    per_step: i64,
) -> sqlx::Result<(Vec<LogLine>, Vec<(Option<String>, i64)>)> {
    let tails = sqlx::query_as(&format!(
        "SELECT {LOG_COLUMNS} FROM (
             SELECT *, row_number() OVER (PARTITION BY step ORDER BY seq DESC) AS back
             FROM deployment_logs WHERE deployment_id = $1) t
         WHERE back <= $2 ORDER BY seq"
    ))
    .bind(deployment)
    .bind(per_step)
    .fetch_all(pool)
    .await?;
    let counts = sqlx::query_as(
        "SELECT step, count(*) FROM deployment_logs WHERE deployment_id = $1 GROUP BY step",
    )
    .bind(deployment)
    .fetch_all(pool)
    .await?;
    Ok((tails, counts))
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Stats {
    pub total_deployments: i64,
    pub success: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub pending: i64,
    pub running: i64,
    pub avg_duration_seconds: Option<f64>,
    pub min_duration_seconds: Option<f64>,
    pub max_duration_seconds: Option<f64>,
    pub p50_duration_seconds: Option<f64>,
    pub p95_duration_seconds: Option<f64>,
}

/// Counts over all of a project's deployments; durations over the last 30 days.
pub async fn stats(pool: &PgPool, project: Uuid) -> sqlx::Result<Stats> {
    sqlx::query_as(
        "SELECT count(*) AS total_deployments,
                count(*) FILTER (WHERE status = $2) AS success,
                count(*) FILTER (WHERE status = $3) AS failed,
                count(*) FILTER (WHERE status = $4) AS cancelled,
                count(*) FILTER (WHERE status = $5) AS pending,
                count(*) FILTER (WHERE status = $6) AS running,
                avg(duration_seconds) FILTER (WHERE recent) AS avg_duration_seconds,
                min(duration_seconds) FILTER (WHERE recent) AS min_duration_seconds,
                max(duration_seconds) FILTER (WHERE recent) AS max_duration_seconds,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_seconds) FILTER (WHERE recent) AS p50_duration_seconds,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_seconds) FILTER (WHERE recent) AS p95_duration_seconds
         FROM (SELECT status, duration_seconds,
                      created_at > now() - interval '30 days' AND duration_seconds IS NOT NULL AS recent
               FROM deployments WHERE project_id = $1) d",
    )
    .bind(project)
    .bind(DeploymentStatus::Success)
    .bind(DeploymentStatus::Failed)
    .bind(DeploymentStatus::Cancelled)
    .bind(DeploymentStatus::Pending)
    .bind(DeploymentStatus::Running)
    .fetch_one(pool)
    .await
}

/// Average duration per stage over the last 30 days.
pub async fn stage_averages(pool: &PgPool, project: Uuid) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT s.step, avg(s.duration_seconds) FROM deployment_steps s JOIN deployments d ON d.id = s.deployment_id
         WHERE d.project_id = $1 AND d.created_at > now() - interval '30 days' AND s.duration_seconds IS NOT NULL
         GROUP BY s.step",
    )
    .bind(project)
    .fetch_all(pool)
    .await
}

// ---------------------------------------------------------------------------
// The worker's side.

/// Everything a worker needs to run one deployment, loaded at claim time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunContext {
    pub deployment_id: DeploymentId,
    pub version: i32,
    pub trigger: Trigger,
    pub triggered_by: Option<Uuid>,
    pub organization_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
    pub project_slug: DnsLabel,
    pub environment_id: EnvironmentId,
    pub environment_name: String,
    pub environment_kind: EnvironmentKind,
    pub environment_status: EnvironmentStatus,
    pub branch: Branch,
    pub subdomain: DnsLabel,
    pub odoo_version: String,
    pub cpu_cores: f64,
    pub ram_mb: i32,
    pub disk_gb: i32,
    pub server_id: Uuid,
    pub server_host: String,
    pub ssh_port: i32,
    pub ssh_user: String,
    pub auth_method: String,
    pub secret_encrypted: Sealed,
    pub host_key_fingerprint: Option<String>,
    pub action: Action,
    pub delete_data: bool,
}

/// Takes a pending deployment for this worker: `None` when it is not pending
/// any more (terminal, cancelled, or running elsewhere), so a redelivered job
/// never runs a deployment twice.
pub async fn claim(
    pool: &PgPool,
    id: DeploymentId,
    worker: &str,
) -> sqlx::Result<Option<RunContext>> {
    let mut tx = pool.begin().await?;
    let claimed: Option<(Uuid,)> = sqlx::query_as(
        "UPDATE deployments SET status = $3, started_at = now(), worker_id = $2, heartbeat_at = now(),
                current_step = $5, updated_at = now()
         WHERE id = $1 AND status = $4 AND cancel_requested_at IS NULL RETURNING id",
    )
    .bind(id)
    .bind(worker)
    .bind(DeploymentStatus::Running)
    .bind(DeploymentStatus::Pending)
    .bind(Step::Initializing.id())
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        return Ok(None);
    }
    let ctx: RunContext = sqlx::query_as(
        "SELECT d.id AS deployment_id, d.version, d.trigger, d.triggered_by, p.organization_id, p.id AS project_id,
                p.name AS project_name, p.slug AS project_slug, e.id AS environment_id, e.name AS environment_name,
                e.kind AS environment_kind, e.status AS environment_status, e.branch, e.subdomain, e.odoo_version,
                e.cpu_cores, e.ram_mb, e.disk_gb, s.id AS server_id, s.host AS server_host, s.ssh_port, s.ssh_user,
                s.auth_method, s.secret_encrypted, s.host_key_fingerprint, d.action, d.delete_data
         FROM deployments d JOIN environments e ON e.id = d.environment_id JOIN projects p ON p.id = d.project_id
         JOIN servers s ON s.id = e.server_id WHERE d.id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    // The status before this deployment is kept in `ctx`, to restore it on cancel.
    sqlx::query("UPDATE environments SET status = $2, updated_at = now() WHERE id = $1")
        .bind(ctx.environment_id)
        .bind(EnvironmentStatus::Deploying)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(ctx))
}

/// Marks the deployment alive; true when a cancel was requested.
pub async fn heartbeat(pool: &PgPool, id: DeploymentId) -> sqlx::Result<bool> {
    let cancel: Option<bool> = sqlx::query_scalar(
        "UPDATE deployments SET heartbeat_at = now() WHERE id = $1 AND status = $2
         RETURNING cancel_requested_at IS NOT NULL",
    )
    .bind(id)
    .bind(DeploymentStatus::Running)
    .fetch_optional(pool)
    .await?;
    // A deployment no longer running (e.g. reaped) counts as cancelled.
    Ok(cancel.unwrap_or(true))
}

/// One log line to store.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub seq: i64,
    pub level: LogLevel,
    pub message: String,
    pub step: Option<&'static str>,
    pub data: Option<serde_json::Value>,
    /// The deployment's status and progress when the line was written.
    pub status: DeploymentStatus,
    pub progress_percent: i32,
}

/// Stores log lines in one statement (one commit); returns them as stored.
pub async fn insert_logs(
    pool: &PgPool,
    deployment: Uuid,
    lines: &[NewLog],
) -> sqlx::Result<Vec<LogLine>> {
    let ids: Vec<Uuid> = lines.iter().map(|_| Uuid::new_v4()).collect();
    let seqs: Vec<i64> = lines.iter().map(|l| l.seq).collect();
    let levels: Vec<&str> = lines.iter().map(|l| l.level.as_str()).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    let steps: Vec<Option<&str>> = lines.iter().map(|l| l.step).collect();
    let data: Vec<Option<serde_json::Value>> = lines.iter().map(|l| l.data.clone()).collect();
    let statuses: Vec<DeploymentStatus> = lines.iter().map(|l| l.status).collect();
    let percents: Vec<i32> = lines.iter().map(|l| l.progress_percent).collect();
    sqlx::query_as(&format!(
        "INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message, step, data, status, progress_percent)
         SELECT id, $2, seq, clock_timestamp(), level, message, step, data, status, progress_percent
         FROM unnest($1::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[], $9::int[])
              AS t(id, seq, level, message, step, data, status, progress_percent)
         RETURNING {LOG_COLUMNS}"
    ))
    .bind(&ids)
    .bind(deployment)
    .bind(&seqs)
    .bind(&levels)
    .bind(&messages)
    .bind(&steps)
    .bind(&data)
    .bind(&statuses)
    .bind(&percents)
    .fetch_all(pool)
    .await
}

pub async fn max_seq(pool: &PgPool, deployment: DeploymentId) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM deployment_logs WHERE deployment_id = $1")
        .bind(deployment)
        .fetch_one(pool)
        .await
}

pub async fn step_started(pool: &PgPool, deployment: DeploymentId, step: &str) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO deployment_steps (deployment_id, step, status, started_at) VALUES ($1, $2, $3, now())
         ON CONFLICT (deployment_id, step) DO UPDATE SET status = EXCLUDED.status, started_at = now(),
             completed_at = NULL, duration_seconds = NULL",
    )
    .bind(deployment)
    .bind(step)
    .bind(StepStatus::Running)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE deployments SET current_step = $2, updated_at = now() WHERE id = $1")
        .bind(deployment)
        .bind(step)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

pub async fn step_finished(
    pool: &PgPool,
    deployment: DeploymentId,
    step: &str,
    status: StepStatus,
    latest_message: Option<&str>,
    progress_percent: i32,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE deployment_steps SET status = $3, completed_at = now(),
             duration_seconds = EXTRACT(EPOCH FROM now() - started_at)::float8,
             latest_message = COALESCE($4, latest_message)
         WHERE deployment_id = $1 AND step = $2",
    )
    .bind(deployment)
    .bind(step)
    .bind(status)
    .bind(latest_message)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE deployments SET progress_percent = $2, updated_at = now() WHERE id = $1")
        .bind(deployment)
        .bind(progress_percent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// How a running deployment ends.
pub struct Ending<'a> {
    pub status: DeploymentStatus,
    pub error_message: Option<&'a str>,
    pub environment_status: EnvironmentStatus,
    /// Its last log lines, written with the final status (after every line
    /// the worker's writer stored: the caller flushed it).
    pub lines: &'a [(LogLevel, Step, &'a str)],
}

/// Ends a running deployment (success, failed or cancelled), fails its
/// running step, moves its environment and writes its last lines, in one
/// transaction. Returns the final row and the lines, or `None` when it was
/// not running any more.
pub async fn finish(
    pool: &PgPool,
    deployment: DeploymentId,
    end: &Ending<'_>,
) -> sqlx::Result<Option<(Deployment, Vec<LogLine>)>> {
    let mut tx = pool.begin().await?;
    let d: Option<Deployment> = sqlx::query_as(&format!(
        "UPDATE deployments SET status = $2, error_message = $3, completed_at = now(),
             duration_seconds = EXTRACT(EPOCH FROM now() - COALESCE(started_at, created_at))::float8,
             progress_percent = CASE WHEN $2 = $4 THEN 100 ELSE progress_percent END,
             current_step = CASE WHEN $2 = $4 THEN $6 ELSE current_step END,
             updated_at = now()
         WHERE id = $1 AND status = $5 RETURNING {COLUMNS}"
    ))
    .bind(deployment)
    .bind(end.status)
    .bind(end.error_message)
    .bind(DeploymentStatus::Success)
    .bind(DeploymentStatus::Running)
    .bind(Step::Completed.id())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(d) = d else { return Ok(None) };
    // A running step is failed along with the deployment.
    sqlx::query(
        "UPDATE deployment_steps SET status = $2, completed_at = now(),
             duration_seconds = EXTRACT(EPOCH FROM now() - started_at)::float8
         WHERE deployment_id = $1 AND status = $3",
    )
    .bind(deployment)
    .bind(StepStatus::Failed)
    .bind(StepStatus::Running)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE environments SET status = $2, updated_at = now() WHERE id = $1")
        .bind(d.environment_id)
        .bind(end.environment_status)
        .execute(&mut *tx)
        .await?;
    let lines = append_lines(&mut tx, &d, end.lines).await?;
    tx.commit().await?;
    Ok(Some((d, lines)))
}

/// How many deployments a worker still runs.
/// The deployment was rolled back: why, and how long it took.
pub async fn record_rollback(
    pool: &PgPool,
    id: DeploymentId,
    reason: &str,
    seconds: f64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE deployments SET rolled_back = true, rollback_reason = $2, rollback_seconds = $3,
                updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(seconds)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn running_for_worker(pool: &PgPool, worker: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM deployments WHERE worker_id = $1 AND status = $2")
        .bind(worker)
        .bind(DeploymentStatus::Running)
        .fetch_one(pool)
        .await
}

/// Fails a deployment that never reached a worker (e.g. it could not be
/// queued), with a last log line saying why; `None` when it was not pending.
pub async fn fail_pending(
    pool: &PgPool,
    id: DeploymentId,
    message: &str,
) -> sqlx::Result<Option<(Deployment, Vec<LogLine>)>> {
    let mut tx = pool.begin().await?;
    let d: Option<Deployment> = sqlx::query_as(&format!(
        "UPDATE deployments SET status = $3, error_message = $2, completed_at = now(), updated_at = now()
         WHERE id = $1 AND status = $4 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(message)
    .bind(DeploymentStatus::Failed)
    .bind(DeploymentStatus::Pending)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(d) = d else { return Ok(None) };
    let lines = append_lines(
        &mut tx,
        &d,
        &[(LogLevel::Error, Step::Initializing, message)],
    )
    .await?;
    tx.commit().await?;
    Ok(Some((d, lines)))
}
