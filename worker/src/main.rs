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
use tokio::sync::{Semaphore, watch};

async fn handle(
    job: DeploymentJob,
    deps: Data<Arc<Deps>>,
    slots: Data<Arc<Semaphore>>,
) -> Result<(), BoxDynError> {
    // A consumer started again after a Redis outage may take jobs while the
    // previous one's deployments still run: the process-wide slots keep
    // OEC_WORKER_CONCURRENCY true across both.
    let _slot = slots.acquire().await?;
    let running = |by: f64| {
        oec_common::metrics::add(
            "oec_worker_running_deployments",
            "Deployments this worker process is running.",
            &[],
            by,
        )
    };
    running(1.0);
    // Pipeline failures are recorded in PostgreSQL and are final: the job
    // itself always succeeds, so the queue never re-runs a deployment.
    pipeline::run_job((*deps).clone(), job.deployment_id).await;
    running(-1.0);
    Ok(())
}

async fn handle_check(job: ServerCheckJob, deps: Data<Arc<Deps>>) -> Result<(), BoxDynError> {
    oec_worker::servers::run_check((*deps).clone(), job.check_id).await;
    Ok(())
}

/// Resolves when the process is told to stop.
async fn stopping(mut stop: watch::Receiver<bool>) -> Result<(), std::io::Error> {
    let _ = stop.wait_for(|s| *s).await;
    Ok(())
}

/// Runs a queue consumer until the process stops, starting it again (on a
/// fresh connection, under a new name: apalis refuses a name it saw
/// recently) whenever it ends on its own: apalis ends a worker on the first
/// error of its backend, e.g. when Redis restarts, and without this the
/// process would go on running without consuming anything.
async fn supervise<F, Fut>(what: &str, stop: watch::Receiver<bool>, mut run: F)
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    const FIRST: Duration = Duration::from_millis(250);
    let mut delay = FIRST;
    for generation in 0u32.. {
        let started = std::time::Instant::now();
        let result = run(generation).await;
        if *stop.borrow() {
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            delay = FIRST;
        }
        tracing::warn!(
            error = %result.err().map(|e| format!("{e:#}")).unwrap_or_else(|| "ended".into()),
            retry_ms = delay.as_millis() as u64,
            "the {what} consumer stopped; starting it again on a fresh Redis connection"
        );
        let mut stop = stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// One run of the deployment queue's consumer (built outside the async
/// block that awaits it, so that its `Send` is proven on concrete types).
fn consume_deployments(
    storage: queue::Storage,
    deps: Arc<Deps>,
    slots: Arc<Semaphore>,
    generation: u32,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = Result<(), WorkerError>> + Send {
    let concurrency = deps.settings.worker_concurrency;
    WorkerBuilder::new(format!("{}-{generation}", deps.worker_id))
        .backend(storage.poll_with_interval(Duration::from_millis(250)))
        .concurrency(concurrency)
        .parallelize(tokio::spawn)
        .data(deps)
        .data(slots)
        .build(handle)
        .run_until(stopping(stop))
}

/// One run of the server-check queue's consumer: two checks at a time.
fn consume_checks(
    storage: queue::CheckStorage,
    deps: Arc<Deps>,
    generation: u32,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = Result<(), WorkerError>> + Send {
    WorkerBuilder::new(format!("{}-checks-{generation}", deps.worker_id))
        .backend(storage.poll_with_interval(Duration::from_millis(250)))
        .concurrency(2)
        .parallelize(tokio::spawn)
        .data(deps)
        .build(handle_check)
        .run_until(stopping(stop))
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
        shutdown: shutdown_rx.clone(),
    });
    let slots = Arc::new(Semaphore::new(concurrency));

    let run = {
        let (deps, stop) = (deps.clone(), shutdown_rx.clone());
        tokio::spawn(supervise(
            "deployment queue",
            shutdown_rx.clone(),
            move |generation| {
                let (deps, slots, stop) = (deps.clone(), slots.clone(), stop.clone());
                async move {
                    let s = &deps.settings;
                    let storage =
                        queue::storage(&s.redis_url, &s.redis_prefix, concurrency).await?;
                    consume_deployments(storage, deps, slots, generation, stop).await?;
                    Ok(())
                }
            },
        ))
    };
    // Server checks: short jobs of their own queue, two at a time.
    let run_checks = {
        let (deps, stop) = (deps.clone(), shutdown_rx.clone());
        tokio::spawn(supervise(
            "server-check queue",
            shutdown_rx.clone(),
            move |generation| {
                let (deps, stop) = (deps.clone(), stop.clone());
                async move {
                    let s = &deps.settings;
                    let storage = queue::check_storage(&s.redis_url, &s.redis_prefix, 2).await?;
                    consume_checks(storage, deps, generation, stop).await?;
                    Ok(())
                }
            },
        ))
    };
    if let Some(bind) = deps.settings.metrics_bind {
        oec_common::metrics::serve(bind).await?;
    }
    tracing::info!(worker = %worker_id, concurrency, "oec-worker started");
    let signal = signals.recv().await;
    tracing::info!(
        signal,
        grace_secs = grace.as_secs(),
        "oec-worker stopping: no new jobs; running deployments get the grace period"
    );
    let _ = shutdown_tx.send(true);
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
