use std::sync::Arc;

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
    /// Connected on first use, so the api starts (and reports not ready)
    /// while Redis is down.
    pub queue: tokio::sync::OnceCell<queue::Storage>,
    pub checks: tokio::sync::OnceCell<queue::CheckStorage>,
}

impl AppState {
    pub async fn queue(&self) -> anyhow::Result<queue::Storage> {
        let s = self
            .queue
            .get_or_try_init(|| {
                queue::storage(&self.settings.redis_url, &self.settings.redis_prefix, 1)
            })
            .await?;
        Ok(s.clone())
    }

    pub async fn checks(&self) -> anyhow::Result<queue::CheckStorage> {
        let s = self
            .checks
            .get_or_try_init(|| {
                queue::check_storage(&self.settings.redis_url, &self.settings.redis_prefix, 1)
            })
            .await?;
        Ok(s.clone())
    }
}
