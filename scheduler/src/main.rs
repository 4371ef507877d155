//! oec-scheduler: runs the maintenance jobs on their cron schedules, or one
//! job now with `oec-scheduler run retention|reaper`.

use std::sync::Arc;

use oec_common::config::{Process, Settings};
use oec_common::events::Publisher;
use oec_scheduler::{Deps, Job, run_logged, schedule_loop};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = match args.as_slice() {
        [] => None,
        [run, job] if run == "run" => match Job::parse(job) {
            Some(j) => Some(j),
            None => {
                eprintln!("oec-scheduler: unknown job {job:?}; jobs: retention, reaper");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("usage: oec-scheduler [run retention|reaper]");
            std::process::exit(2);
        }
    };
    let settings = Settings::load_or_exit(Process::Scheduler);
    let mut signals = oec_common::shutdown::Signals::install()?;
    let pool = oec_common::db::connect_and_migrate(
        &settings.database_url,
        settings.database_max_connections,
    )
    .await?;
    oec_common::shutdown::ping_redis(&settings.redis_url).await?;
    let redis = deadpool_redis::Config::from_url(settings.redis_url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let publisher = Publisher::new(
        redis.clone(),
        &settings.redis_prefix,
        settings.event_replay_max,
    );
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let replica = format!("{}-{}", host.trim(), std::process::id());
    let deps = Arc::new(Deps {
        pool: pool.clone(),
        redis,
        publisher,
        settings,
        replica,
    });

    if let Some(job) = once {
        let r = run_logged(job, &deps).await;
        pool.close().await;
        return r.map(|summary| println!("{summary}"));
    }
    if let Some(bind) = deps.settings.metrics_bind {
        oec_common::metrics::serve(bind).await?;
    }
    let loops: Vec<_> = Job::ALL
        .into_iter()
        .map(|j| tokio::spawn(schedule_loop(j, deps.clone())))
        .collect();
    tracing::info!(
        retention = %deps.settings.retention_schedule,
        reaper = %deps.settings.reaper_schedule,
        timezone = %deps.settings.scheduler_timezone,
        "oec-scheduler started"
    );
    let signal = signals.recv().await;
    tracing::info!(signal, "oec-scheduler stopping");
    for l in loops {
        l.abort();
    }
    pool.close().await;
    tracing::info!("oec-scheduler stopped");
    Ok(())
}
