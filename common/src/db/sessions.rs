//! Login sessions: refresh-token rotation and revocation (migration 0006).

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// Why a session ended; stored on the row and named in the 401 a later use
/// of one of its tokens gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Logout,
    PasswordChanged,
    RefreshTokenReused,
    Deactivated,
}

impl Revoked {
    pub fn as_str(self) -> &'static str {
        match self {
            Revoked::Logout => "logout",
            Revoked::PasswordChanged => "password_changed",
            Revoked::RefreshTokenReused => "refresh_token_reused",
            Revoked::Deactivated => "deactivated",
        }
    }
}

/// Opens a session for `user` whose first refresh token is `refresh`.
pub async fn open(pool: &PgPool, user: Uuid, refresh: Uuid, ttl: Duration) -> sqlx::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, current_refresh, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(id)
    .bind(user)
    .bind(refresh)
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(id)
}

/// What exchanging a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was the session's current one; `next` is current now.
    Rotated,
    /// The token had already been exchanged: the session is revoked now.
    Reused,
    /// The session is revoked, expired or gone.
    Ended,
}

/// Exchanges refresh token `jti` of `session` for `next`, exactly once.
/// A token that was current before is a stolen copy or a replay: the whole
/// session is revoked, so neither the thief nor the owner can go on with it.
pub async fn rotate(
    pool: &PgPool,
    user: Uuid,
    session: Uuid,
    jti: Uuid,
    next: Uuid,
    ttl: Duration,
) -> sqlx::Result<Rotation> {
    if replace_refresh(pool, user, session, Some(jti), next, ttl).await? {
        return Ok(Rotation::Rotated);
    }
    let reused = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(session)
    .bind(user)
    .bind(Revoked::RefreshTokenReused.as_str())
    .execute(pool)
    .await?;
    Ok(if reused.rows_affected() == 1 {
        Rotation::Reused
    } else {
        Rotation::Ended
    })
}

/// Makes `next` the live session's current refresh token, if the current
/// one is `expected` (`None`: whatever it is); false when nothing changed.
pub async fn replace_refresh(
    db: impl sqlx::PgExecutor<'_>,
    user: Uuid,
    session: Uuid,
    expected: Option<Uuid>,
    next: Uuid,
    ttl: Duration,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE sessions SET current_refresh = $3, refreshed_at = now(),
                expires_at = now() + make_interval(secs => $4)
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()
           AND ($5::uuid IS NULL OR current_refresh = $5)",
    )
    .bind(session)
    .bind(user)
    .bind(next)
    .bind(ttl.as_secs_f64())
    .bind(expected)
    .execute(db)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Revokes one session of `user`; false when it had already ended.
pub async fn revoke(pool: &PgPool, user: Uuid, session: Uuid, why: Revoked) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session)
    .bind(user)
    .bind(why.as_str())
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Revokes every open session of `user` but `keep`; how many it ended.
pub async fn revoke_all(
    db: impl sqlx::PgExecutor<'_>,
    user: Uuid,
    keep: Option<Uuid>,
    why: Revoked,
) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3
         WHERE user_id = $1 AND revoked_at IS NULL AND id IS DISTINCT FROM $2",
    )
    .bind(user)
    .bind(keep)
    .bind(why.as_str())
    .execute(db)
    .await?;
    Ok(r.rows_affected())
}

/// Deletes sessions that ended more than a day ago (the scheduler's retention).
pub async fn prune(pool: &PgPool) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM sessions
         WHERE coalesce(revoked_at, expires_at) < now() - interval '1 day'",
    )
    .execute(pool)
    .await?;
    Ok(r.rows_affected())
}
