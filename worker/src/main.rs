//! oec-worker: consumes the deployment queue with `OEC_WORKER_CONCURRENCY`
//! deployments at once; any number of worker processes may share one Redis.
//!
//! On SIGTERM/SIGINT it takes no new job, lets running deployments finish for
//! `OEC_WORKER_GRACE_SECS`, then fails the rest with a clear message, so that
//! nothing stays `running`.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use oec_common::config::{Process, Settings};
use oec_common::events::Publisher;
use oec_common::queue::{self, DeploymentJob, ServerCheckJob};
use oec_worker::pipeline::{self, Deps};
use tokio::sync::watch;

async fn handle(job: DeploymentJob, deps: Data<Arc<Deps>>) -> Result<(), BoxDynError> {
    // Pipeline failures are recorded in PostgreSQL and are final: the job
    // itself always succeeds, so the queue never re-runs a deployment.
    pipeline::run_job((*deps).clone(), job.deployment_id).await;
    Ok(())
}

async fn handle_check(job: ServerCheckJob, deps: Data<Arc<Deps>>) -> Result<(), BoxDynError> {
    oec_worker::servers::run_check((*deps).clone(), job.check_id).await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load_or_exit(Process::Worker);
    let mut signals = oec_common::shutdown::Signals::install()?;
    let pool = oec_common::db::connect_and_migrate(
        &settings.database_url,
        settings.database_max_connections,
    )
    .await?;
    oec_common::shutdown::ping_redis(&settings.redis_url).await?;
    let redis = deadpool_redis::Config::from_url(settings.redis_url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let publisher = Publisher::new(redis, &settings.redis_prefix, settings.event_replay_max);
    let storage = queue::storage(
        &settings.redis_url,
        &settings.redis_prefix,
        settings.worker_concurrency,
    )
    .await?;
    let checks = queue::check_storage(&settings.redis_url, &settings.redis_prefix, 2).await?;

    // Unique per process: apalis refuses a name seen within its threshold.
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let worker_id = format!(
        "{}-{}-{}",
        host.trim(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let concurrency = settings.worker_concurrency;
    let grace = settings.worker_grace;
    let deps = Arc::new(Deps {
        pool: pool.clone(),
        publisher,
        settings,
        worker_id: worker_id.clone(),
        shutdown: shutdown_rx,
    });

    let worker = WorkerBuilder::new(worker_id.clone())
        .backend(storage.poll_with_interval(Duration::from_millis(250)))
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .data(deps.clone())
        .build(handle);
    // Server checks: short jobs of their own queue, two at a time.
    let checker = WorkerBuilder::new(format!("{worker_id}-checks"))
        .backend(checks.poll_with_interval(Duration::from_millis(250)))
        .concurrency(2)
        .parallelize(tokio::spawn)
        .data(deps.clone())
        .build(handle_check);
    tracing::info!(worker = %worker_id, concurrency, "oec-worker started");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let (stop_checks_tx, stop_checks_rx) = tokio::sync::oneshot::channel::<()>();
    let run_checks = tokio::spawn(checker.run_until(async move {
        let _ = stop_checks_rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let signal = signals.recv().await;
    tracing::info!(
        signal,
        grace_secs = grace.as_secs(),
        "oec-worker stopping: no new jobs; running deployments get the grace period"
    );
    let _ = shutdown_tx.send(true);
    let _ = stop_tx.send(());
    let _ = stop_checks_tx.send(());
    // Wait for the queue consumer to stop and the running deployments to end
    // (the grace period is enforced per deployment by the pipeline).
    let drained = async {
        let _ = run.await;
        let _ = run_checks.await;
        while oec_common::db::deployments::running_for_worker(&pool, &worker_id)
            .await
            .unwrap_or(0)
            > 0
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    if tokio::time::timeout(grace + Duration::from_secs(30), drained)
        .await
        .is_err()
    {
        tracing::error!(
            "deployments did not end after the grace period; the reaper will fail them"
        );
    }
    pool.close().await;
    tracing::info!("oec-worker stopped");
    Ok(())
}
