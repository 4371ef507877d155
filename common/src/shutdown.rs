//! Waiting for SIGTERM or SIGINT, the way every oec process stops.

/// Resolves on the first SIGTERM or SIGINT, and names which one came.
pub async fn signal() -> &'static str {
    let ctrl_c = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
                "SIGTERM"
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<&'static str>();
    tokio::select! {
        s = ctrl_c => s,
        s = term => s,
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
