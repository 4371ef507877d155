//! How every oec process stops: on SIGTERM or SIGINT. The handlers are
//! installed before a process reports itself started, so a signal that comes
//! right after "started" is never lost.

use tokio::signal::unix::{Signal, SignalKind, signal};

pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the next SIGTERM or SIGINT and names it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Checks that Redis answers, for processes that need it at start.
pub async fn ping_redis(url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let pool = deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .context("creating the Redis pool (REDIS_URL)")?;
    let mut conn = pool
        .get()
        .await
        .context("connecting to Redis (REDIS_URL)")?;
    deadpool_redis::redis::cmd("PING")
        .query_async::<String>(&mut conn)
        .await
        .context("pinging Redis")?;
    Ok(())
}
