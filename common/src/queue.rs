//! The deployment queue shared by the api (producer), the worker (consumer)
//! and the scheduler (re-enqueue). A job carries only the deployment id: the
//! worker loads everything else from PostgreSQL, so a redelivered job sees
//! current data.

use std::time::Duration;

use anyhow::Context as _;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use serde::{Deserialize, Serialize};

use crate::model::ids::DeploymentId;

/// The queue name before the configured prefix, as DESIGN fixes it.
pub const QUEUE: &str = "oec:deployments";
/// The queue of server checks (`POST /servers/{id}/check`).
pub const CHECK_QUEUE: &str = "oec:server-checks";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentJob {
    pub deployment_id: DeploymentId,
}

pub type Storage = RedisStorage<DeploymentJob, ConnectionManager>;

/// One server check: the worker reads the rest from `server_checks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerCheckJob {
    pub check_id: uuid::Uuid,
}

pub type CheckStorage = RedisStorage<ServerCheckJob, ConnectionManager>;

/// The queue's configuration. A worker heartbeats every 5 s; a worker that
/// missed 6 heartbeats (30 s) is presumed dead and its jobs are re-enqueued
/// (the job handler is idempotent: a deployment already terminal or running
/// elsewhere is skipped).
pub fn config(prefix: &str, batch_size: usize) -> Config {
    config_of(QUEUE, prefix, batch_size)
}

fn config_of(queue: &str, prefix: &str, batch_size: usize) -> Config {
    Config::default()
        .queue(format!("{prefix}{queue}"))
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(6)
        .batch_size(batch_size.max(1))
}

/// A queue's connection. It reconnects by itself after Redis went away (a
/// command that finds the connection broken fails and starts the
/// reconnection), with short timeouts and few retries, so a caller learns
/// quickly that Redis is down instead of hanging: 1 s to connect, 2 s for an
/// answer, 3 attempts 100 ms then 200 ms apart.
pub async fn connect(redis_url: &str) -> redis::RedisResult<ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(400));
    redis::Client::open(redis_url)?
        .get_connection_manager_with_config(config)
        .await
}

pub async fn storage(redis_url: &str, prefix: &str, batch_size: usize) -> anyhow::Result<Storage> {
    let conn = connect(redis_url)
        .await
        .context("connecting the deployment queue to Redis (REDIS_URL)")?;
    Ok(RedisStorage::new(conn).with_config(config(prefix, batch_size)))
}

/// The server-check queue (same heartbeat and redelivery as deployments;
/// a redelivered check finds its row taken and is skipped).
pub async fn check_storage(
    redis_url: &str,
    prefix: &str,
    batch_size: usize,
) -> anyhow::Result<CheckStorage> {
    let conn = connect(redis_url)
        .await
        .context("connecting the server-check queue to Redis (REDIS_URL)")?;
    Ok(RedisStorage::new(conn).with_config(config_of(CHECK_QUEUE, prefix, batch_size)))
}

pub async fn enqueue_check(storage: &mut CheckStorage, check_id: uuid::Uuid) -> anyhow::Result<()> {
    use apalis_core::backend::TaskSink as _;
    storage
        .push(ServerCheckJob { check_id })
        .await
        .map_err(|e| anyhow::anyhow!("enqueueing server check {check_id}: {e}"))
}

/// Puts one deployment job on the queue.
pub async fn enqueue(storage: &mut Storage, deployment_id: DeploymentId) -> anyhow::Result<()> {
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
) -> anyhow::Result<std::collections::HashSet<DeploymentId>> {
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

/// Removes the queue's records of jobs that finished (done or dead) at least
/// `age` ago: their data, their metadata and their place in the done and dead
/// sets. Deployments live in PostgreSQL; without this Redis would keep a
/// record of every deployment ever made. The sets are walked with `SSCAN` in
/// batches, so Redis is never blocked for long. Returns how many went.
pub async fn prune_finished(
    conn: &mut deadpool_redis::Connection,
    prefix: &str,
    age: Duration,
) -> anyhow::Result<u64> {
    let cfg = config(prefix, 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let cutoff = now.saturating_sub(age).as_secs();
    let script = redis::Script::new(PRUNE_FINISHED);
    let mut removed = 0;
    for set in [cfg.done_jobs_set(), cfg.dead_jobs_set()] {
        let mut cursor = 0u64;
        loop {
            let (next, ids): (u64, Vec<String>) = redis::cmd("SSCAN")
                .arg(&set)
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut **conn)
                .await?;
            if !ids.is_empty() {
                let n: u64 = script
                    .key(&set)
                    .key(cfg.job_data_hash())
                    .key(cfg.job_meta_hash())
                    .arg(cutoff)
                    .arg(&ids)
                    .invoke_async(&mut **conn)
                    .await?;
                removed += n;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(removed)
}

/// KEYS: the done (or dead) set, the job data hash, the job metadata prefix.
/// ARGV: the cutoff (Unix seconds), then task ids from the set. A task whose
/// `done_at` is at or before the cutoff, or that has no metadata left, goes.
const PRUNE_FINISHED: &str = r"
local removed = 0
local cutoff = tonumber(ARGV[1])
for i = 2, #ARGV do
  local id = ARGV[i]
  local meta = KEYS[3] .. ':' .. id
  local done_at = tonumber(redis.call('HGET', meta, 'done_at'))
  if done_at == nil or done_at <= cutoff then
    redis.call('SREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('DEL', meta)
    removed = removed + 1
  end
end
return removed
";
