use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use oec_common::auth::TokenIssuer;
use oec_common::config::Settings;
use oec_common::events::Publisher;
use oec_common::queue;
use sqlx::PgPool;

use crate::hub::Hub;

/// What every handler can reach.
pub struct AppState {
    pub pool: PgPool,
    pub redis: deadpool_redis::Pool,
    pub tokens: TokenIssuer,
    pub settings: Settings,
    pub publisher: Publisher,
    pub hub: Arc<Hub>,
    /// Open event streams per user and address (their caps).
    pub streams: Arc<crate::hub::StreamCounts>,
    /// Event-stream resumes reading the replay stream at once.
    pub replays: tokio::sync::Semaphore,
    pub queue: Reconnecting<queue::Storage>,
    pub checks: Reconnecting<queue::CheckStorage>,
}

type Connect<S> = Box<dyn Fn() -> BoxFuture<'static, anyhow::Result<S>> + Send + Sync>;

/// A queue connection made on first use (so the api starts, and reports
/// not ready, while Redis is down) and made again when a use fails: the
/// failed use is retried once on the fresh connection before the caller
/// hears of it. After Redis restarts, the first request therefore works
/// instead of finding the old, broken connection.
pub struct Reconnecting<S> {
    connect: Connect<S>,
    current: tokio::sync::Mutex<Option<S>>,
}

/// The longest one use of a queue connection may take.
const USE_TIMEOUT: Duration = Duration::from_secs(5);

impl<S: Clone + Send + 'static> Reconnecting<S> {
    pub fn new<F, Fut>(connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<S>> + Send + 'static,
    {
        Reconnecting {
            connect: Box::new(move || Box::pin(connect())),
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection, made anew when `fresh` or when there is none.
    async fn get(&self, fresh: bool) -> anyhow::Result<S> {
        let mut current = self.current.lock().await;
        if fresh || current.is_none() {
            *current = None;
            *current = Some((self.connect)().await?);
        }
        current
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no queue connection"))
    }

    /// Runs `use_` on the connection; when it fails (or takes longer than
    /// 5 s), once more on a fresh connection.
    pub async fn with<R, F, Fut>(&self, what: &str, use_: F) -> anyhow::Result<R>
    where
        F: Fn(S) -> Fut,
        Fut: Future<Output = anyhow::Result<R>>,
    {
        let attempt = |fresh: bool| {
            let use_ = &use_;
            async move {
                let conn = self.get(fresh).await?;
                tokio::time::timeout(USE_TIMEOUT, use_(conn))
                    .await
                    .map_err(|_| anyhow::anyhow!("{what}: no answer from Redis within 5 s"))?
            }
        };
        match attempt(false).await {
            Ok(r) => Ok(r),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "{what} failed; retrying once on a fresh Redis connection");
                let r = attempt(true).await;
                if r.is_err() {
                    // The next request connects again rather than reuse it.
                    *self.current.lock().await = None;
                }
                r
            }
        }
    }
}

impl AppState {
    pub fn queues(
        settings: &Settings,
    ) -> (
        Reconnecting<queue::Storage>,
        Reconnecting<queue::CheckStorage>,
    ) {
        let (url, prefix) = (settings.redis_url.clone(), settings.redis_prefix.clone());
        let deployments = Reconnecting::new(move || {
            let (url, prefix) = (url.clone(), prefix.clone());
            async move { queue::storage(&url, &prefix, 1).await }
        });
        let (url, prefix) = (settings.redis_url.clone(), settings.redis_prefix.clone());
        let checks = Reconnecting::new(move || {
            let (url, prefix) = (url.clone(), prefix.clone());
            async move { queue::check_storage(&url, &prefix, 1).await }
        });
        (deployments, checks)
    }
}
