use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::model::fields::DnsLabel;

use super::Page;
use crate::model::OrgRole;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: DnsLabel,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, slug, created_at, updated_at";

/// Creates the organization with its creator as owner, in one transaction.
pub async fn insert(
    pool: &PgPool,
    name: &str,
    slug: &DnsLabel,
    owner: Uuid,
) -> sqlx::Result<Organization> {
    let mut tx = pool.begin().await?;
    let org: Organization = sqlx::query_as(&format!(
        "INSERT INTO organizations (id, name, slug, created_by) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(name)
    .bind(slug)
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, $3)",
    )
    .bind(org.id)
    .bind(owner)
    .bind(OrgRole::Owner)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(org)
}

pub async fn get(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<Organization>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The organizations a user has a part in (all of them for a portal admin).
pub async fn list_visible(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    page: Page,
) -> sqlx::Result<super::Paged<Organization>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM organizations o
         WHERE $1 OR EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = o.id AND m.user_id = $2)
            OR EXISTS (SELECT 1 FROM project_members pm JOIN projects p ON p.id = pm.project_id
                       WHERE p.organization_id = o.id AND pm.user_id = $2)
         ORDER BY created_at, id OFFSET $3 LIMIT $4"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(portal_admin)
            .bind(user)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

pub async fn update(
    pool: &PgPool,
    id: Uuid,
    name: Option<&str>,
    slug: Option<&str>,
) -> sqlx::Result<Option<Organization>> {
    sqlx::query_as(&format!(
        "UPDATE organizations SET name = COALESCE($2, name), slug = COALESCE($3, slug), updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(slug)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = OrganizationMember)]
pub struct Member {
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

pub async fn member_role(pool: &PgPool, org: Uuid, user: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT role FROM organization_members WHERE organization_id = $1 AND user_id = $2",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(pool)
    .await
}

/// Sets a member's role unless that would leave the organization without
/// an owner (`None` then). One transaction that locks the owner rows, so
/// two owners demoting themselves at once cannot both succeed.
pub async fn set_role_keeping_an_owner(
    pool: &PgPool,
    org: Uuid,
    user: Uuid,
    role: OrgRole,
) -> sqlx::Result<Option<Member>> {
    let mut tx = pool.begin().await?;
    let owners = lock_owners(&mut tx, org).await?;
    if role != OrgRole::Owner && owners == [user] {
        return Ok(None);
    }
    let m = sqlx::query_as(
        "INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (organization_id, user_id) DO UPDATE SET role = EXCLUDED.role
         RETURNING organization_id, user_id, role, created_at",
    )
    .bind(org)
    .bind(user)
    .bind(role.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(m))
}

/// What removing an organization member did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotAMember,
    LastOwner,
}

/// Removes a member unless they are its last owner, locking the owner rows
/// like [`set_role_keeping_an_owner`].
pub async fn remove_member(pool: &PgPool, org: Uuid, user: Uuid) -> sqlx::Result<Removed> {
    let mut tx = pool.begin().await?;
    let owners = lock_owners(&mut tx, org).await?;
    if owners == [user] {
        return Ok(Removed::LastOwner);
    }
    let r =
        sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(if r.rows_affected() == 1 {
        Removed::Removed
    } else {
        Removed::NotAMember
    })
}

/// The organization's owners, their rows locked until the transaction ends
/// (a concurrent change of an owner waits, then sees the new owners).
async fn lock_owners(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    org: Uuid,
) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar(
        "SELECT user_id FROM organization_members
         WHERE organization_id = $1 AND role = $2 FOR UPDATE",
    )
    .bind(org)
    .bind(OrgRole::Owner)
    .fetch_all(&mut **tx)
    .await
}

/// A member as the members list shows them.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ListedMember {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// The members of an organization (`table` organization_members, key
/// organization_id) or a project (project_members, project_id), by email.
pub(crate) async fn list_members_of(
    pool: &PgPool,
    table: &str,
    key: &str,
    id: Uuid,
    page: Page,
) -> sqlx::Result<super::Paged<ListedMember>> {
    let sql = format!(
        "SELECT m.user_id, u.email, u.name, m.role, m.created_at, count(*) OVER () AS total_count
         FROM {table} m JOIN users u ON u.id = m.user_id WHERE m.{key} = $1
         ORDER BY u.email, u.id OFFSET $2 LIMIT $3"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(id)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

pub async fn list_members(
    pool: &PgPool,
    org: Uuid,
    page: Page,
) -> sqlx::Result<super::Paged<ListedMember>> {
    list_members_of(pool, "organization_members", "organization_id", org, page).await
}
