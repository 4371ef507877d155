use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::secrets::Sealed;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DnsProvider {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub kind: String,
    pub zone_id: String,
    pub apps_domain: String,
    pub has_api_token: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, organization_id, kind, zone_id, apps_domain, TRUE AS has_api_token, created_at";

pub async fn insert(
    pool: &PgPool,
    org: Uuid,
    kind: &str,
    api_token_encrypted: &Sealed,
    zone_id: &str,
    apps_domain: &str,
) -> sqlx::Result<DnsProvider> {
    sqlx::query_as(&format!(
        "INSERT INTO dns_providers (id, organization_id, kind, api_token_encrypted, zone_id, apps_domain)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(org)
    .bind(kind)
    .bind(api_token_encrypted)
    .bind(zone_id)
    .bind(apps_domain)
    .fetch_one(pool)
    .await
}

/// DNS providers of the organizations the user administers.
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    org: Option<Uuid>,
    page: Page,
) -> sqlx::Result<super::Paged<DnsProvider>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM dns_providers d
         WHERE ($3::uuid IS NULL OR d.organization_id = $3)
           AND ($1 OR EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = d.organization_id
                              AND m.user_id = $2 AND m.role = ANY($6)))
         ORDER BY created_at, id OFFSET $4 LIMIT $5"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(org)
            .bind(page.skip)
            .bind(page.limit)
            .bind(crate::auth::org_roles_with(
                crate::auth::Permission::OrgDnsView,
            ))
            .fetch_all(pool)
    })
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<DnsProvider>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dns_providers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The environments whose hostname is under the provider's domain: their
/// DNS records are managed through it.
const USERS: &str = "SELECT count(*) FROM environments e JOIN projects p ON p.id = e.project_id
     WHERE p.organization_id = $1 AND lower(e.hostname) LIKE '%.' || lower($2)";

pub async fn users(pool: &PgPool, d: &DnsProvider) -> sqlx::Result<i64> {
    sqlx::query_scalar(USERS)
        .bind(d.organization_id)
        .bind(&d.apps_domain)
        .fetch_one(pool)
        .await
}

/// Rotates the token or changes the zone (or, for an unused provider, its
/// domain: the caller checks).
pub async fn update(
    pool: &PgPool,
    id: Uuid,
    api_token_encrypted: Option<&Sealed>,
    zone_id: Option<&str>,
    apps_domain: Option<&str>,
) -> sqlx::Result<Option<DnsProvider>> {
    sqlx::query_as(&format!(
        "UPDATE dns_providers SET api_token_encrypted = COALESCE($2, api_token_encrypted),
             zone_id = COALESCE($3, zone_id), apps_domain = COALESCE($4, apps_domain)
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(api_token_encrypted)
    .bind(zone_id)
    .bind(apps_domain)
    .fetch_optional(pool)
    .await
}

/// Deletes the provider unless environments are under its domain (their
/// count then).
pub async fn delete(pool: &PgPool, d: &DnsProvider) -> sqlx::Result<Result<bool, i64>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM dns_providers WHERE id = $1 FOR UPDATE")
        .bind(d.id)
        .fetch_optional(&mut *tx)
        .await?;
    let n: i64 = sqlx::query_scalar(USERS)
        .bind(d.organization_id)
        .bind(&d.apps_domain)
        .fetch_one(&mut *tx)
        .await?;
    if n > 0 {
        return Ok(Err(n));
    }
    let r = sqlx::query("DELETE FROM dns_providers WHERE id = $1")
        .bind(d.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Ok(r.rows_affected() == 1))
}
