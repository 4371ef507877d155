use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::secrets::Sealed;

use super::Page;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
