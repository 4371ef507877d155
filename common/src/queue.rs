//! The deployment queue shared by the api (producer), the worker (consumer)
//! and the scheduler (re-enqueue). A job carries only the deployment id: the
//! worker loads everything else from PostgreSQL, so a redelivered job sees
//! current data.

use std::time::Duration;

use anyhow::Context as _;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The queue name before the configured prefix, as DESIGN fixes it.
pub const QUEUE: &str = "oec:deployments";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentJob {
    pub deployment_id: Uuid,
}

pub type Storage = RedisStorage<DeploymentJob, ConnectionManager>;

/// The queue's configuration. A worker heartbeats every 5 s; a worker that
/// missed 6 heartbeats (30 s) is presumed dead and its jobs are re-enqueued
/// (the job handler is idempotent: a deployment already terminal or running
/// elsewhere is skipped).
pub fn config(prefix: &str, batch_size: usize) -> Config {
    Config::default()
        .queue(format!("{prefix}{QUEUE}"))
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(6)
        .batch_size(batch_size.max(1))
}

pub async fn storage(redis_url: &str, prefix: &str, batch_size: usize) -> anyhow::Result<Storage> {
    let conn = apalis_redis::connect(redis_url)
        .await
        .context("connecting the deployment queue to Redis (REDIS_URL)")?;
    Ok(RedisStorage::new(conn).with_config(config(prefix, batch_size)))
}

/// Puts one deployment job on the queue.
pub async fn enqueue(storage: &mut Storage, deployment_id: Uuid) -> anyhow::Result<()> {
    use apalis_core::backend::TaskSink as _;
    storage
        .push(DeploymentJob { deployment_id })
        .await
        .map_err(|e| anyhow::anyhow!("enqueueing deployment {deployment_id}: {e}"))
}

/// The deployments that have a job in the queue that is not finished
/// (waiting, scheduled or in flight).
pub async fn queued_deployments(
    conn: &mut deadpool_redis::Connection,
    prefix: &str,
) -> anyhow::Result<std::collections::HashSet<Uuid>> {
    let cfg = config(prefix, 1);
    let finished: std::collections::HashSet<String> = redis::cmd("SUNION")
        .arg(cfg.done_jobs_set())
        .arg(cfg.dead_jobs_set())
        .query_async(&mut **conn)
        .await?;
    let data: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(cfg.job_data_hash())
        .query_async(&mut **conn)
        .await?;
    Ok(data
        .into_iter()
        .filter(|(task, _)| !finished.contains(task))
        .filter_map(|(_, body)| serde_json::from_slice::<DeploymentJob>(&body).ok())
        .map(|j| j.deployment_id)
        .collect())
}
