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
pub mod servers;
pub mod users;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

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
