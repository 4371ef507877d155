//! The stuck-deployment reaper (the spec's "Deployment Progress Stuck"): a
//! running deployment without a heartbeat past the threshold is failed, with
//! its running step, its environment and the events; a pending deployment
//! whose job is gone from the queue is enqueued again once, then failed if it
//! is still not picked up.

use oec_common::db::deployments::Ending;
use oec_common::db::maintenance;
use oec_common::lifecycle;
use oec_common::model::steps::Step;
use oec_common::model::{DeploymentStatus, EnvironmentStatus, LogLevel};
use oec_common::queue;

use crate::Deps;

pub async fn run(deps: &Deps) -> anyhow::Result<String> {
    let stale = deps.settings.reaper_stale_after.as_secs_f64();
    let mut reaped = 0;
    for s in maintenance::stale_running(&deps.pool, stale).await? {
        let since = s
            .heartbeat_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "its start".into());
        let message = format!("Worker lost: no heartbeat since {since}");
        let ending = Ending {
            status: DeploymentStatus::Failed,
            error_message: Some(&message),
            environment_status: EnvironmentStatus::Failed,
            lines: &[(LogLevel::Error, Step::Completed, &message)],
        };
        if let Some((_, events)) = lifecycle::finish(&deps.pool, s.id, &ending).await? {
            tracing::warn!(deployment_id = %s.id, "{message}");
            deps.publisher.publish_or_warn(&events).await;
            reaped += 1;
        }
    }

    let pending_after = deps.settings.reaper_pending_after.as_secs_f64();
    let pending = maintenance::old_pending(&deps.pool, pending_after).await?;
    let (mut requeued, mut failed) = (0, 0);
    if !pending.is_empty() {
        let mut conn = deps.redis.get().await?;
        let queued = queue::queued_deployments(&mut conn, &deps.settings.redis_prefix).await?;
        let mut storage = None;
        for s in pending.iter().filter(|s| !queued.contains(&s.id)) {
            match s.requeued_at {
                None => {
                    if storage.is_none() {
                        storage = Some(
                            queue::storage(
                                &deps.settings.redis_url,
                                &deps.settings.redis_prefix,
                                1,
                            )
                            .await?,
                        );
                    }
                    if let Some(st) = storage.as_mut() {
                        queue::enqueue(st, s.id).await?;
                    }
                    maintenance::mark_requeued(&deps.pool, s.id).await?;
                    tracing::warn!(deployment_id = %s.id, "pending deployment had no job in the queue; enqueued again");
                    requeued += 1;
                }
                Some(at)
                    if (chrono::Utc::now() - at).num_milliseconds() as f64 / 1000.0
                        > pending_after =>
                {
                    let message = "Deployment was never picked up by a worker (its queued job was lost twice); check that oec-worker runs, then deploy again";
                    let events = lifecycle::fail_pending(&deps.pool, s.id, message).await?;
                    deps.publisher.publish_or_warn(&events).await;
                    failed += 1;
                }
                Some(_) => {}
            }
        }
    }
    for (action, n) in [
        ("failed_stale", reaped),
        ("requeued", requeued),
        ("failed_never_picked_up", failed),
    ] {
        oec_common::metrics::count(
            "oec_reaper_actions_total",
            "What the reaper did: stale running deployments failed, lost jobs enqueued again, pending ones failed.",
            &[("action", action)],
            n,
        );
    }
    Ok(format!(
        "{reaped} stale running deployments failed, {requeued} lost jobs enqueued again, {failed} never picked up"
    ))
}
