//! All SQL of oec, one module per table family. Queries use sqlx's runtime API
//! with binds, so a fresh clone builds without a database.

pub mod access;
pub mod deployments;
pub mod dns_providers;
pub mod environments;
pub mod maintenance;
pub mod odoo_versions;
pub mod organizations;
pub mod plan;
pub mod projects;
pub mod repositories;
pub mod server_checks;
pub mod servers;
pub mod sessions;
pub mod users;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{FromRow, PgPool, Row as _};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects a pool (lazily retried for a few seconds at start) and applies
/// pending migrations; sqlx takes an advisory lock, so replicas starting
/// together are safe.
pub async fn connect_and_migrate(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse().context("parsing DATABASE_URL")?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    MIGRATOR
        .run(&pool)
        .await
        .context("applying database migrations")?;
    Ok(pool)
}

/// Pagination as every list endpoint takes it.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
}

/// One page of a list and the size of the whole (filtered) list.
#[derive(Debug)]
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub total: i64,
}

/// A row of a list query that also selects `count(*) OVER () AS
/// total_count`: the list's size rides on every row of the page.
pub struct Counted<T>(T, i64);

impl<'r, T: FromRow<'r, PgRow>> FromRow<'r, PgRow> for Counted<T> {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Counted(T::from_row(row)?, row.try_get("total_count")?))
    }
}

/// Runs a list query (`run`, given the page) whose rows are [`Counted`].
/// A page past the end has no row to carry the count, so the first row is
/// asked for then: the total is right on every page.
pub(crate) async fn paged<T, F, Fut>(page: Page, run: F) -> sqlx::Result<Paged<T>>
where
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<Vec<Counted<T>>>>,
{
    let rows = run(page).await?;
    let total = match rows.first() {
        Some(Counted(_, total)) => *total,
        None if page.skip > 0 => run(Page { skip: 0, limit: 1 })
            .await?
            .first()
            .map_or(0, |Counted(_, total)| *total),
        None => 0,
    };
    Ok(Paged {
        rows: rows.into_iter().map(|Counted(row, _)| row).collect(),
        total,
    })
}

/// True when `e` is a violation of the named unique constraint or index.
pub fn is_unique_violation(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.code().as_deref() == Some("23505") && d.constraint() == Some(constraint))
}

/// True when `e` is any foreign-key violation (a referenced row is gone, or a
/// row still refers to the one being deleted).
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23503"))
}

/// What deleting an organization, project or environment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// Refused: this deployment of it is pending or running.
    Busy(uuid::Uuid),
}

/// Deletes the row `id` of `table` (organizations, projects, environments)
/// unless a deployment under it is pending or running, in one statement, so
/// no environment is half replaced by a delete racing its deployment.
pub async fn delete_unless_deploying(
    pool: &PgPool,
    scope: DeleteScope,
    id: uuid::Uuid,
) -> sqlx::Result<Deleted> {
    let (active, delete) = match scope {
        DeleteScope::Organization => (
            "SELECT d.id FROM deployments d JOIN projects p ON p.id = d.project_id
             WHERE p.organization_id = $1 AND d.status = ANY($2)",
            "DELETE FROM organizations WHERE id = $1",
        ),
        DeleteScope::Project => (
            "SELECT d.id FROM deployments d
             WHERE d.project_id = $1 AND d.status = ANY($2)",
            "DELETE FROM projects WHERE id = $1",
        ),
        DeleteScope::Environment => (
            "SELECT d.id FROM deployments d
             WHERE d.environment_id = $1 AND d.status = ANY($2)",
            "DELETE FROM environments WHERE id = $1",
        ),
    };
    let sql = format!(
        "WITH active AS ({active} ORDER BY d.created_at LIMIT 1),
              gone AS ({delete} AND NOT EXISTS (SELECT 1 FROM active) RETURNING 1)
         SELECT (SELECT id FROM active), (SELECT count(*) FROM gone)"
    );
    let (busy, deleted): (Option<uuid::Uuid>, i64) = sqlx::query_as(&sql)
        .bind(id)
        .bind(crate::model::DeploymentStatus::ACTIVE)
        .fetch_one(pool)
        .await?;
    Ok(match (busy, deleted) {
        (Some(d), _) => Deleted::Busy(d),
        (None, 0) => Deleted::NotFound,
        _ => Deleted::Deleted,
    })
}

/// What [`delete_unless_deploying`] deletes (the SQL is fixed per scope).
#[derive(Debug, Clone, Copy)]
pub enum DeleteScope {
    Organization,
    Project,
    Environment,
}

/// Whether PostgreSQL answers a trivial query (readiness).
pub async fn ping(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(pool)
        .await
        .map(|_| ())
}

/// The SQL text `"{org role}/{project role}"` of the user `$2` for the
/// project in column `project`, empty sides for no membership: compared with
/// `auth::role_pairs_with(permission)`, so visibility lists decide exactly as
/// `auth::authorize` does.
pub(crate) fn role_pair(project: &str) -> String {
    format!(
        "(COALESCE((SELECT m.role FROM projects rp JOIN organization_members m ON m.organization_id = rp.organization_id
                    WHERE rp.id = {project} AND m.user_id = $2), '')
          || '/' || COALESCE((SELECT pm.role FROM project_members pm WHERE pm.project_id = {project} AND pm.user_id = $2), ''))"
    )
}
