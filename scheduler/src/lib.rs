//! oec-scheduler: maintenance on cron schedules. Every replica evaluates the
//! same schedules; the replica that claims a tick in PostgreSQL runs it
//! (`scheduler_runs`), so each tick of each job runs exactly once.

pub mod jobs;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use oec_common::config::Settings;
use oec_common::events::Publisher;
use sqlx::PgPool;

/// What the jobs share.
pub struct Deps {
    pub pool: PgPool,
    pub redis: deadpool_redis::Pool,
    pub publisher: Publisher,
    pub settings: Settings,
    pub replica: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Retention,
    Reaper,
}

impl Job {
    pub const ALL: [Job; 2] = [Job::Retention, Job::Reaper];

    pub fn name(self) -> &'static str {
        match self {
            Job::Retention => "retention",
            Job::Reaper => "reaper",
        }
    }

    pub fn parse(s: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == s)
    }

    fn schedule(self, s: &Settings) -> &cron::Schedule {
        match self {
            Job::Retention => &s.retention_schedule,
            Job::Reaper => &s.reaper_schedule,
        }
    }

    /// Runs the job once; the result is a one-line summary for the log.
    pub async fn run(self, deps: &Deps) -> anyhow::Result<String> {
        match self {
            Job::Retention => jobs::retention::run(deps).await,
            Job::Reaper => jobs::reaper::run(deps).await,
        }
    }
}

/// Runs one job now, logging its start, result and duration.
pub async fn run_logged(job: Job, deps: &Deps) -> anyhow::Result<String> {
    let t0 = Instant::now();
    tracing::info!(job = job.name(), "job started");
    let r = job.run(deps).await;
    let secs = t0.elapsed().as_secs_f64();
    let ok = if r.is_ok() { "true" } else { "false" };
    oec_common::metrics::observe(
        "oec_scheduler_job_duration_seconds",
        "Scheduler job runs on this replica, by job and whether they succeeded.",
        &[("job", job.name()), ("ok", ok)],
        secs,
    );
    match &r {
        Ok(summary) => tracing::info!(job = job.name(), seconds = secs, "job finished: {summary}"),
        Err(e) => tracing::error!(
            job = job.name(),
            seconds = secs,
            "job failed: {e:#}; it runs again at its next tick"
        ),
    }
    r
}

/// The first tick of `schedule` strictly after `after`, evaluated in `tz`.
pub fn next_tick(
    schedule: &cron::Schedule,
    tz: chrono_tz::Tz,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// The loop of one job: sleep until the next tick, claim it, run it. A
/// failing run is logged and the loop goes on.
pub async fn schedule_loop(job: Job, deps: Arc<Deps>) {
    let tz = deps.settings.scheduler_timezone;
    let schedule = job.schedule(&deps.settings);
    loop {
        let Some(next) = schedule.upcoming(tz).next() else {
            return;
        };
        let tick: DateTime<Utc> = next.with_timezone(&Utc);
        let wait = (tick - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        match oec_common::db::maintenance::claim_tick(&deps.pool, job.name(), tick, &deps.replica)
            .await
        {
            Ok(true) => {
                let r = run_logged(job, &deps).await;
                let (ok, summary) = match r {
                    Ok(s) => (true, s),
                    Err(e) => (false, format!("{e:#}")),
                };
                if let Err(e) = oec_common::db::maintenance::finish_tick(
                    &deps.pool,
                    job.name(),
                    tick,
                    ok,
                    &summary,
                )
                .await
                {
                    tracing::warn!(job = job.name(), error = %e, "recording the run failed");
                }
            }
            Ok(false) => tracing::debug!(job = job.name(), %tick, "tick taken by another replica"),
            Err(e) => {
                tracing::warn!(job = job.name(), error = %e, "claiming the tick failed; skipped")
            }
        }
        // Never run the same tick twice in a row on a fast clock.
        if Utc::now() <= tick {
            tokio::time::sleep(
                (tick - Utc::now()).to_std().unwrap_or_default()
                    + std::time::Duration::from_millis(5),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use chrono::TimeZone as _;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, sec)
            .single()
            .expect("time")
    }

    #[test]
    fn three_oclock_is_evaluated_in_the_configured_timezone() {
        let daily = cron::Schedule::from_str("0 0 3 * * *").expect("schedule");
        let after = at(2026, 1, 10, 12, 0, 0);
        let utc = next_tick(&daily, chrono_tz::UTC, after).expect("tick");
        assert_eq!(utc, at(2026, 1, 11, 3, 0, 0));
        // 03:00 in Paris is 02:00 UTC in winter and 01:00 UTC in summer.
        let paris = next_tick(&daily, chrono_tz::Europe::Paris, after).expect("tick");
        assert_eq!(paris, at(2026, 1, 11, 2, 0, 0));
        let july = at(2026, 7, 10, 12, 0, 0);
        let summer = next_tick(&daily, chrono_tz::Europe::Paris, july).expect("tick");
        assert_eq!(summer, at(2026, 7, 11, 1, 0, 0));
    }

    #[test]
    fn every_minute_ticks_on_the_minute() {
        let minutely = cron::Schedule::from_str("0 * * * * *").expect("schedule");
        let after = at(2026, 1, 10, 12, 0, 30);
        assert_eq!(
            next_tick(&minutely, chrono_tz::UTC, after),
            Utc.with_ymd_and_hms(2026, 1, 10, 12, 1, 0).single()
        );
    }
}
