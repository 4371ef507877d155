//! Log retention (the spec's 03:00 cleanup): deletes deployment logs older
//! than `LOG_RETENTION_DAYS` in short batches, so the table is never locked
//! for long and reads go on. `0` keeps logs forever. Deployments are kept.
//! The same run removes the queue's records of jobs that finished more than
//! `OEC_QUEUE_KEEP_FINISHED_SECS` ago (the deployments stay in PostgreSQL)
//! and login sessions that ended more than a day ago.

use chrono::Utc;
use oec_common::db::maintenance;
use oec_common::queue;

use crate::Deps;

fn removed(what: &str, n: u64) {
    oec_common::metrics::count(
        "oec_retention_removed_total",
        "What the retention job removed: log lines, sessions, queue records, steps.",
        &[("what", what)],
        n,
    );
}

pub async fn run(deps: &Deps) -> anyhow::Result<String> {
    let logs = logs(deps).await?;
    let sessions = oec_common::db::sessions::prune(&deps.pool).await?;
    removed("sessions", sessions);
    let logs = format!("{logs}; removed {sessions} ended sessions");
    // The logs are done whatever happens to Redis: a failure here is reported
    // in the summary, and the next run prunes what this one could not.
    let jobs = async {
        let mut conn = deps.redis.get().await?;
        queue::prune_finished(
            &mut conn,
            &deps.settings.redis_prefix,
            deps.settings.queue_keep_finished,
        )
        .await
    };
    Ok(match jobs.await {
        Ok(n) => {
            removed("queue_jobs", n);
            format!("{logs}; removed {n} finished queue jobs")
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "pruning the queue's finished jobs failed");
            format!("{logs}; finished queue jobs not pruned: {e:#}")
        }
    })
}

async fn logs(deps: &Deps) -> anyhow::Result<String> {
    let days = deps.settings.log_retention_days;
    if days == 0 {
        return Ok("LOG_RETENTION_DAYS=0: logs are kept forever, nothing deleted".into());
    }
    let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
    let batch = deps.settings.retention_batch_size;
    let mut deleted = 0u64;
    let mut batches = 0u64;
    loop {
        let n = maintenance::delete_logs_batch(&deps.pool, cutoff, batch).await?;
        deleted += n;
        if n > 0 {
            batches += 1;
        }
        if n < batch as u64 {
            break;
        }
        // Let live reads and writes through between batches.
        tokio::time::sleep(deps.settings.retention_pause).await;
    }
    removed("log_lines", deleted);
    tracing::info!("Deleted {deleted} deployment logs older than {days} days");
    let mut summary =
        format!("Deleted {deleted} deployment logs older than {days} days in {batches} batches");
    if deps.settings.retention_delete_steps {
        let steps = maintenance::delete_orphan_steps(&deps.pool, cutoff).await?;
        removed("steps", steps);
        summary.push_str(&format!(
            "; deleted {steps} steps of deployments without logs"
        ));
    }
    Ok(summary)
}
