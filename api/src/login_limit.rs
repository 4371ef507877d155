//! Failed logins are counted per account and per client address in Redis
//! (shared by every api replica): after [`MAX_FAILURES`] within
//! [`WINDOW_SECS`], the next attempt answers `429 too_many_attempts` with
//! `Retry-After` until the window ends. A successful login clears the
//! account's count. When Redis is unreachable logins are not limited (the
//! failure is logged): signing in stays possible.

use std::net::IpAddr;

use redis::AsyncCommands as _;

use crate::errors::ApiError;
use crate::state::AppState;

pub const MAX_FAILURES: i64 = 10;
pub const WINDOW_SECS: i64 = 300;

fn keys(state: &AppState, email: &str, ip: Option<IpAddr>) -> Vec<String> {
    let prefix = &state.settings.redis_prefix;
    let mut k = vec![format!("{prefix}login:fail:account:{email}")];
    if let Some(ip) = ip {
        k.push(format!("{prefix}login:fail:ip:{ip}"));
    }
    k
}

async fn conn(state: &AppState) -> redis::RedisResult<deadpool_redis::Connection> {
    state
        .redis
        .get()
        .await
        .map_err(|e| redis::RedisError::from((redis::ErrorKind::Io, "pool", e.to_string())))
}

/// Refuses the attempt while the account or the address is over the limit.
pub async fn check(state: &AppState, email: &str, ip: Option<IpAddr>) -> Result<(), ApiError> {
    let keys = keys(state, email, ip);
    let counted: redis::RedisResult<Option<i64>> = async {
        let mut conn = conn(state).await?;
        for k in &keys {
            let n: Option<i64> = conn.get(k).await?;
            if n.unwrap_or(0) >= MAX_FAILURES {
                let ttl: i64 = conn.ttl(k).await?;
                return Ok(Some(ttl.max(1)));
            }
        }
        Ok(None)
    }
    .await;
    match counted {
        Ok(Some(retry_after)) => Err(ApiError::TooMany {
            code: "too_many_attempts",
            message: format!(
                "Too many failed logins for this account or address; try again in {retry_after} s."
            ),
            retry_after: retry_after as u64,
        }),
        Ok(None) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "login limit not checked (Redis)");
            Ok(())
        }
    }
}

/// Counts a failed attempt against the account and the address.
pub async fn failed(state: &AppState, email: &str, ip: Option<IpAddr>) {
    let keys = keys(state, email, ip);
    let done: redis::RedisResult<()> = async {
        let mut conn = conn(state).await?;
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.incr(k, 1).ignore();
            pipe.cmd("EXPIRE")
                .arg(k)
                .arg(WINDOW_SECS)
                .arg("NX")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await
    }
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "failed login not counted (Redis)");
    }
}

/// Clears the account's count after a successful login.
pub async fn succeeded(state: &AppState, email: &str) {
    let key = keys(state, email, None).remove(0);
    if let Ok(mut conn) = conn(state).await {
        let _: redis::RedisResult<()> = conn.del(key).await;
    }
}
