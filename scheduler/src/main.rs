//! oec-scheduler. Runs maintenance on cron schedules (log retention, stuck-deployment reaper). The jobs land with the scheduler issue; until then the process only proves its wiring.
//!
//! It loads settings, applies migrations, checks Redis, logs, and stops
//! cleanly on SIGTERM or SIGINT.

use oec_common::config::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("oec-scheduler: {e}");
            std::process::exit(2);
        }
    };
    oec_common::telemetry::init(settings.log_format);
    let mut signals = oec_common::shutdown::Signals::install()?;
    let pool = oec_common::db::connect_and_migrate(
        &settings.database_url,
        settings.database_max_connections,
    )
    .await?;
    oec_common::shutdown::ping_redis(&settings.redis_url).await?;
    tracing::info!("oec-scheduler started");
    let signal = signals.recv().await;
    tracing::info!(signal, "oec-scheduler stopping");
    pool.close().await;
    tracing::info!("oec-scheduler stopped");
    Ok(())
}
