use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::Page;
use crate::model::OrgRole;

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub is_portal_admin: bool,
    /// False once a portal admin deactivated the user.
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, email, name, is_portal_admin, deactivated_at IS NULL AS is_active, created_at";

pub async fn insert(
    pool: &PgPool,
    email: &str,
    name: &str,
    password_hash: &str,
    portal_admin: bool,
) -> sqlx::Result<User> {
    sqlx::query_as(
        "INSERT INTO users (id, email, name, password_hash, is_portal_admin) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, email, name, is_portal_admin, TRUE AS is_active, created_at",
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

/// The user of a live session: `None` when the user is gone or the session
/// was revoked or has expired.
pub async fn by_session(pool: &PgPool, user: Uuid, session: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(
        "SELECT u.id, u.email, u.name, u.is_portal_admin, TRUE AS is_active, u.created_at
         FROM users u JOIN sessions s ON s.user_id = u.id
         WHERE u.id = $1 AND s.id = $2 AND s.revoked_at IS NULL AND s.expires_at > now()
           AND u.deactivated_at IS NULL",
    )
    .bind(user)
    .bind(session)
    .fetch_optional(pool)
    .await
}

/// The user, their password hash and whether they are active, for login.
pub async fn credentials(pool: &PgPool, email: &str) -> sqlx::Result<Option<(Uuid, String, bool)>> {
    sqlx::query_as("SELECT id, password_hash, deactivated_at IS NULL FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await
}

pub async fn list(pool: &PgPool, page: Page) -> sqlx::Result<super::Paged<User>> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total_count FROM users ORDER BY created_at, id OFFSET $1 LIMIT $2"
    );
    super::paged(page, |page| {
        sqlx::query_as(&sql)
            .bind(page.skip)
            .bind(page.limit)
            .fetch_all(pool)
    })
    .await
}

pub async fn exists(pool: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(id)
        .fetch_one(pool)
        .await
}

/// The user's password hash.
pub async fn password_hash(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Replaces the user's password hash, revokes every other session of theirs
/// and gives `session` (the caller's) the fresh refresh token `next`, in one
/// transaction: no token issued before the change survives it. False (and
/// nothing changed) when `session` has ended meanwhile.
pub async fn change_password(
    pool: &PgPool,
    id: Uuid,
    hash: &str,
    session: Uuid,
    next: Uuid,
    ttl: std::time::Duration,
) -> sqlx::Result<bool> {
    use super::sessions;
    let mut tx = pool.begin().await?;
    if !sessions::replace_refresh(&mut *tx, id, session, None, next, ttl).await? {
        return Ok(false);
    }
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    sessions::revoke_all(
        &mut *tx,
        id,
        Some(session),
        sessions::Revoked::PasswordChanged,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// What deleting a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    NotFound,
    /// The user is the only owner of this organization.
    LastOwner(Uuid),
    /// The user is the only portal admin.
    LastPortalAdmin,
}

/// Deletes a user (memberships and sessions go with them) unless they are
/// the last owner of an organization or the last portal admin. The portal
/// admins' rows and the owner rows of every organization
/// they own are locked first, like the membership changes do, so two
/// concurrent deletions cannot leave an organization without an owner.
pub async fn delete(pool: &PgPool, id: Uuid) -> sqlx::Result<Deleted> {
    let mut tx = pool.begin().await?;
    let admins: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE is_portal_admin ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
    if admins == [id] {
        return Ok(Deleted::LastPortalAdmin);
    }
    let owners: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT organization_id, user_id FROM organization_members
         WHERE role = $2 AND organization_id IN (
             SELECT organization_id FROM organization_members WHERE user_id = $1 AND role = $2)
         ORDER BY organization_id, user_id FOR UPDATE",
    )
    .bind(id)
    .bind(OrgRole::Owner)
    .fetch_all(&mut *tx)
    .await?;
    let sole = owners
        .iter()
        .map(|(org, _)| *org)
        .find(|org| owners.iter().filter(|(o, u)| o == org && *u != id).count() == 0);
    if let Some(org) = sole {
        return Ok(Deleted::LastOwner(org));
    }
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(if r.rows_affected() == 1 {
        Deleted::Deleted
    } else {
        Deleted::NotFound
    })
}

/// What changing whether a user is active did.
#[derive(Debug, Clone)]
pub enum Activation {
    Changed(User),
    NotFound,
    /// The user is the only active portal admin.
    LastPortalAdmin,
}

/// Deactivates (ending every session of theirs, in the same transaction)
/// or reactivates a user, and renames them when `name` is given. The last
/// active portal admin is never deactivated.
pub async fn set_active(
    pool: &PgPool,
    id: Uuid,
    active: Option<bool>,
    name: Option<&str>,
) -> sqlx::Result<Activation> {
    use super::sessions;
    let mut tx = pool.begin().await?;
    if active == Some(false) {
        let admins: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE is_portal_admin AND deactivated_at IS NULL
             ORDER BY id FOR UPDATE",
        )
        .fetch_all(&mut *tx)
        .await?;
        if admins == [id] {
            return Ok(Activation::LastPortalAdmin);
        }
    }
    let user: Option<User> = sqlx::query_as(&format!(
        "UPDATE users SET name = COALESCE($3, name), updated_at = now(),
             deactivated_at = CASE WHEN $2 IS NULL THEN deactivated_at
                                   WHEN $2 THEN NULL
                                   ELSE COALESCE(deactivated_at, now()) END
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(active)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(user) = user else {
        return Ok(Activation::NotFound);
    };
    if active == Some(false) {
        sessions::revoke_all(&mut *tx, id, None, sessions::Revoked::Deactivated).await?;
    }
    tx.commit().await?;
    Ok(Activation::Changed(user))
}

/// A portal admin sets another user's password: every session of theirs
/// ends (they log in with the new one).
pub async fn reset_password(pool: &PgPool, id: Uuid, hash: &str) -> sqlx::Result<bool> {
    use super::sessions;
    let mut tx = pool.begin().await?;
    let r = sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sessions::revoke_all(&mut *tx, id, None, sessions::Revoked::PasswordChanged).await?;
    tx.commit().await?;
    Ok(true)
}
