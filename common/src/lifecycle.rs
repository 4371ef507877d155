//! A deployment's transitions and the events they imply. Each transition
//! (create, claim, log lines, finish, cancel, reap, fail to queue) is one
//! function here: it writes PostgreSQL (through `db::deployments`, one
//! transaction) and returns the events to publish. The api, the worker and
//! the scheduler publish what it returns and build no event of their own.
//!
//! Starting and finishing a step imply no event of their own: the lines the
//! worker logs for them carry the step, and every line carries the
//! deployment's status and progress at the time it was written.

use sqlx::PgPool;

use crate::db::deployments::{
    self, Created, Deployment, Ending, LogLine, NewDeployment, NewLog, Referenced, RunContext,
};
use crate::events::{
    DeploymentFinished, DeploymentProgress, DeploymentRef, Envelope, EnvironmentStatusChanged,
    Event, MigrationProgress,
};
use crate::model::EnvironmentStatus;
use crate::model::ids::DeploymentId;

/// The event of a stored log line: the only way one is made, live (as the
/// line is stored) and on replay (as it is read back), so both are the same
/// JSON.
pub fn line_event(deployment: &DeploymentRef, line: &LogLine) -> Event {
    Event::DeploymentProgress(DeploymentProgress {
        deployment: deployment.clone(),
        status: line.status,
        progress_percent: line.progress_percent,
        seq: line.seq,
        step: line.step.clone(),
        level: line.level,
        message: line.message.clone(),
        timestamp: line.timestamp,
        data: line.data.clone(),
    })
}

/// A terminal deployment's `deployment_finished`.
pub fn finished_event(deployment: &DeploymentRef, d: &Deployment) -> Event {
    Event::DeploymentFinished(DeploymentFinished {
        deployment: deployment.clone(),
        status: d.status,
        progress_percent: d.progress_percent,
        step: d.current_step.clone(),
        error_message: d.error_message.clone(),
        duration_seconds: d.duration_seconds,
        completed_at: d.completed_at,
    })
}

fn environment_event(
    deployment: &DeploymentRef,
    status: EnvironmentStatus,
) -> EnvironmentStatusChanged {
    EnvironmentStatusChanged {
        environment_id: deployment.environment_id,
        project_id: deployment.project_id,
        deployment_id: Some(deployment.deployment_id),
        status,
    }
}

fn lines(r: &Referenced, lines: &[LogLine]) -> impl Iterator<Item = Envelope> {
    lines
        .iter()
        .map(|l| Envelope::new(r.organization_id, line_event(&r.deployment, l)))
}

/// The `migration_progress` a stored line implies: a line of a migration
/// restore whose data is `{"migration": {"step", "progress_percent"}}`.
pub fn migration_event(deployment: &DeploymentRef, line: &LogLine) -> Option<Event> {
    let m = line.data.as_ref()?.get("migration")?;
    Some(Event::MigrationProgress(MigrationProgress {
        deployment: deployment.clone(),
        migration_id: deployment.deployment_id,
        step: m.get("step")?.as_str()?.to_owned(),
        progress_percent: i32::try_from(m.get("progress_percent")?.as_i64()?).ok()?,
    }))
}

/// The end of a deployment: its last lines, `deployment_finished` and, when
/// its environment moved, `environment_status`.
fn ended(
    r: &Referenced,
    d: &Deployment,
    last: &[LogLine],
    environment: Option<EnvironmentStatus>,
) -> Vec<Envelope> {
    let org = r.organization_id;
    let mut out: Vec<Envelope> = lines(r, last).collect();
    out.push(Envelope::new(org, finished_event(&r.deployment, d)));
    if let Some(status) = environment {
        out.push(Envelope::new(
            org,
            Event::EnvironmentStatus(environment_event(&r.deployment, status)),
        ));
    }
    out
}

async fn referenced(pool: &PgPool, id: DeploymentId) -> sqlx::Result<Referenced> {
    deployments::reference(pool, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

/// A new pending deployment (or the reason there is none); a new one comes
/// with the event of its first line.
pub async fn create(
    pool: &PgPool,
    n: &NewDeployment<'_>,
) -> sqlx::Result<Option<(Created, Vec<Envelope>)>> {
    let Some(created) = deployments::create(pool, n).await? else {
        return Ok(None);
    };
    let events = match &created {
        Created::New(d, first) => lines(&referenced(pool, d.id).await?, first).collect(),
        _ => Vec::new(),
    };
    Ok(Some((created, events)))
}

/// A worker takes a pending deployment: its environment is `deploying`.
pub async fn claim(
    pool: &PgPool,
    id: DeploymentId,
    worker: &str,
) -> sqlx::Result<Option<(RunContext, Referenced, Vec<Envelope>)>> {
    let Some(ctx) = deployments::claim(pool, id, worker).await? else {
        return Ok(None);
    };
    let r = referenced(pool, id).await?;
    let event = Envelope::new(
        r.organization_id,
        Event::EnvironmentStatus(environment_event(
            &r.deployment,
            EnvironmentStatus::Deploying,
        )),
    );
    Ok(Some((ctx, r, vec![event])))
}

/// The worker's log lines, stored in one statement, and their events.
pub async fn log_lines(
    pool: &PgPool,
    r: &Referenced,
    batch: &[NewLog],
) -> sqlx::Result<Vec<Envelope>> {
    let rows = deployments::insert_logs(pool, r.deployment.deployment_id, batch).await?;
    let mut out = Vec::with_capacity(rows.len());
    for l in &rows {
        out.push(Envelope::new(
            r.organization_id,
            line_event(&r.deployment, l),
        ));
        if let Some(m) = migration_event(&r.deployment, l) {
            out.push(Envelope::new(r.organization_id, m));
        }
    }
    Ok(out)
}

/// Ends a running deployment (the worker's end, or the reaper's); `None`
/// when it was not running any more.
pub async fn finish(
    pool: &PgPool,
    id: DeploymentId,
    end: &Ending<'_>,
) -> sqlx::Result<Option<(Deployment, Vec<Envelope>)>> {
    let Some((d, last)) = deployments::finish(pool, id, end).await? else {
        return Ok(None);
    };
    let r = referenced(pool, id).await?;
    let events = ended(&r, &d, &last, Some(end.environment_status));
    Ok(Some((d, events)))
}

/// A cancel request: a pending deployment ends at once (its environment
/// never moved); a running one is ended by its worker, which notices the
/// request at its next heartbeat. `None` when it is already terminal.
pub async fn cancel(
    pool: &PgPool,
    id: DeploymentId,
) -> sqlx::Result<Option<(Deployment, Vec<Envelope>)>> {
    let Some((d, last)) = deployments::request_cancel(pool, id).await? else {
        return Ok(None);
    };
    let events = if d.status.is_terminal() {
        ended(&referenced(pool, id).await?, &d, &last, None)
    } else {
        Vec::new()
    };
    Ok(Some((d, events)))
}

/// Fails a deployment that never reached a worker.
pub async fn fail_pending(
    pool: &PgPool,
    id: DeploymentId,
    message: &str,
) -> sqlx::Result<Vec<Envelope>> {
    let Some((d, last)) = deployments::fail_pending(pool, id, message).await? else {
        return Ok(Vec::new());
    };
    Ok(ended(&referenced(pool, id).await?, &d, &last, None))
}
