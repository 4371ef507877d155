//! The pipeline runner: takes one deployment from pending to success, failed
//! or cancelled, stage by stage in the spec's order. Per stage it keeps a
//! `deployment_steps` row, log lines, `current_step` and `progress_percent`,
//! and applies a timeout; a failure of a fatal stage ends the deployment, a
//! non-fatal one is a warning.

pub mod addons;
pub mod docker;
pub mod odoo_password;
pub mod plan;
pub mod snapshot;
pub mod stages;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use oec_common::config::Settings;
use oec_common::db::deployments::{self, Ending, RunContext};
use oec_common::events::Publisher;
use oec_common::lifecycle;
use oec_common::model::ids::DeploymentId;
use oec_common::model::steps::{Step, percent_of};
use oec_common::model::{Action, DeploymentStatus, EnvironmentStatus, LogLevel, StepStatus};
use oec_common::secrets::Masker;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::log::{Log, Progress, StepLog};
use crate::names;
use crate::target::Target;

/// What a worker process shares with every deployment it runs.
pub struct Deps {
    pub pool: PgPool,
    pub publisher: Publisher,
    pub settings: Settings,
    pub worker_id: String,
    /// Becomes true when the process is asked to stop.
    pub shutdown: watch::Receiver<bool>,
}

/// How a stage ended when it did not fail.
pub enum Outcome {
    Completed(String),
    Warning(String),
    Skipped(String),
}

/// A stage failure: the log line (the spec's message) and its data.
#[derive(Debug)]
pub struct StageError {
    pub message: String,
    pub data: Option<Value>,
}

impl StageError {
    pub fn new(message: impl Into<String>) -> Self {
        StageError {
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(message: impl Into<String>, data: Value) -> Self {
        StageError {
            message: message.into(),
            data: Some(data),
        }
    }
}

impl StageError {
    /// What the deployment's `error_message` says: the message, then the
    /// cause its data names (`error`, `error_code`, `hint`), e.g. `Failed
    /// to connect to server via SSH: Wrong password (AUTH_FAILED); check
    /// the server's SSH user and password or key`.
    pub fn summary(&self) -> String {
        let field = |k: &str| {
            self.data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let mut s = self.message.clone();
        if let Some(cause) = field("error").filter(|c| !self.message.contains(c)) {
            s.push_str(": ");
            s.push_str(cause);
        }
        if let Some(code) = field("error_code") {
            s.push_str(&format!(" ({code})"));
        }
        if let Some(hint) = field("hint") {
            s.push_str("; ");
            s.push_str(hint);
        }
        s
    }
}

impl From<anyhow::Error> for StageError {
    fn from(e: anyhow::Error) -> Self {
        StageError::new(format!("{e:#}"))
    }
}

/// What the stages of one deployment share. The runner owns it and runs
/// `initializing` and `connecting` on it; every later stage gets a [`Stage`].
pub struct Run {
    pub ctx: RunContext,
    pub pool: PgPool,
    pub log: Log,
    pub settings: Settings,
    pub secret: String,
    pub plan: plan::Plan,
    /// Set by `connecting`; cleanup runs with whatever was reached.
    pub target: Option<Target>,
    pub state: RunState,
    pub progress: Arc<Progress>,
}

/// What a stage after `connecting` works with: the plan and the server
/// (both always there by then), and the log bound to its own step.
pub struct Stage<'a> {
    pub ctx: &'a RunContext,
    pub pool: &'a PgPool,
    pub settings: &'a Settings,
    pub plan: &'a plan::Plan,
    pub target: &'a Target,
    pub state: &'a mut RunState,
    pub log: StepLog,
    pub progress: &'a Progress,
}

/// Facts one stage leaves for the later ones and for cleanup.
#[derive(Default)]
pub struct RunState {
    /// The merged dependencies and their fingerprint (starting_container).
    pub deps: Option<(crate::dependencies::Dependencies, String)>,
    /// The container started from an image that already has them.
    pub deps_cached: bool,
    /// The Odoo image's own entrypoint and command (starting_container),
    /// which an image committed from the held container keeps.
    pub image_command: Option<(Vec<String>, Vec<String>)>,
    /// The server's proxy (creating_network), which routes the environment.
    pub proxy: Option<crate::proxy::Ensured>,
    /// A redeploy's new container, started beside the serving one
    /// (starting_container) and let in by configuring_traefik.
    pub switch: Option<stages::switch::Pending>,
    /// The addons this deployment deploys and what changed (cloning_project_repo).
    pub addons: Option<addons::Addons>,
    pub changes: Option<addons::Changes>,
    /// Taken before the database changed (initializing_database).
    pub snapshot: Option<snapshot::Snapshot>,
    /// The database was changed after the snapshot was taken.
    pub database_changed: bool,
}

impl RunState {
    /// The container the stages work in: a redeploy's new one until it
    /// takes the serving one's name.
    pub fn odoo_container(&self, env: oec_common::model::ids::EnvironmentId) -> String {
        match &self.switch {
            Some(p) => p.next().to_owned(),
            None => names::odoo_container(env),
        }
    }
}

/// Seconds with one decimal, as the spec's messages show them.
pub fn secs(since: Instant) -> String {
    format!("{:.1}s", since.elapsed().as_secs_f64())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Abort {
    Cancelled,
    Shutdown,
    Lost,
}

enum End {
    Success,
    Failed(String),
    Aborted(Abort),
}

/// Runs one deployment job. Never fails towards the queue: a pipeline
/// failure is recorded in PostgreSQL and is final; a job for a deployment
/// that is not pending any more is skipped.
pub async fn run_job(deps: Arc<Deps>, deployment_id: DeploymentId) {
    let (ctx, reference) = match lifecycle::claim(&deps.pool, deployment_id, &deps.worker_id).await
    {
        Ok(Some((ctx, reference, events))) => {
            deps.publisher.publish_or_warn(&events).await;
            (ctx, reference)
        }
        Ok(None) => {
            tracing::info!(%deployment_id, "deployment is not pending any more; job skipped");
            return;
        }
        Err(e) => {
            tracing::error!(%deployment_id, error = %e, "claiming the deployment failed; it stays pending for the reaper");
            return;
        }
    };
    let started = Instant::now();
    let secret = match deps.settings.secret_key.open(&ctx.secret_encrypted) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("Server credentials cannot be read: {e}");
            finish(&deps, &ctx, None, End::Failed(msg), started, None).await;
            return;
        }
    };
    let mut masker = Masker::default();
    masker.add(secret.clone());
    let plan = match plan::load(&deps.pool, &deps.settings, &ctx, &mut masker).await {
        Ok(p) => p,
        Err(e) => {
            let msg = masker.mask(&format!(
                "Loading the deployment's configuration failed: {e:#}"
            ));
            finish(&deps, &ctx, None, End::Failed(msg), started, None).await;
            return;
        }
    };
    let progress = Arc::new(Progress::default());
    let first_seq = deployments::max_seq(&deps.pool, deployment_id)
        .await
        .unwrap_or(0);
    let (log, writer) = Log::start(
        deps.pool.clone(),
        deps.publisher.clone(),
        reference,
        first_seq,
        progress.clone(),
        masker,
    );

    let (abort_tx, mut abort_rx) = watch::channel(None::<Abort>);
    let heartbeat = tokio::spawn(watch_liveness(deps.clone(), deployment_id, abort_tx));
    let mut run = Run {
        ctx: ctx.clone(),
        pool: deps.pool.clone(),
        log: log.clone(),
        settings: deps.settings.clone(),
        secret,
        plan,
        target: None,
        state: RunState::default(),
        progress: progress.clone(),
    };
    let end = tokio::select! {
        end = pipeline(&deps, &mut run, &progress) => end,
        abort = async {
            loop {
                if let Some(a) = *abort_rx.borrow_and_update() {
                    return a;
                }
                if abort_rx.changed().await.is_err() {
                    return Abort::Lost;
                }
            }
        } => End::Aborted(abort),
    };
    heartbeat.abort();
    let mut serving = None;
    let deploying = run.ctx.action == Action::Deploy;
    match &end {
        End::Failed(reason) if deploying => {
            serving = rollback(&deps, &mut run, reason).await;
            cleanup(&deps, &run).await;
        }
        End::Aborted(Abort::Cancelled) if deploying => {
            serving = rollback(&deps, &mut run, "the deployment was cancelled").await;
            cleanup(&deps, &run).await;
        }
        End::Success if deploying => retire_replica(&run).await,
        // A lifecycle run puts nothing back: the status says whether Odoo runs.
        End::Failed(_) | End::Aborted(Abort::Cancelled) => serving = odoo_runs(&run).await,
        End::Success | End::Aborted(_) => {}
    }
    // Dropping the target closes the SSH session, hanging up any remote command.
    drop(run);
    finish(&deps, &ctx, Some(&log), end, started, serving).await;
    drop(log);
    let _ = writer.await;
}

/// Whether the environment's Odoo container runs (`None` when unknown).
async fn odoo_runs(run: &Run) -> Option<bool> {
    let target = run.target.as_ref()?;
    match docker::inspect(
        target.docker(),
        &names::odoo_container(run.ctx.environment_id),
    )
    .await
    {
        Ok(Some(c)) => Some(docker::is_running(&c)),
        Ok(None) => Some(false),
        Err(_) => None,
    }
}

async fn pipeline(deps: &Deps, run: &mut Run, progress: &Progress) -> End {
    let steps = run.ctx.action.steps();
    for (i, step) in steps.iter().copied().enumerate() {
        let pool = &deps.pool;
        let id = run.ctx.deployment_id;
        if let Err(e) = deployments::step_started(pool, id, step.id()).await {
            return End::Failed(format!("Recording step {} failed: {e}", step.id()));
        }
        let t0 = Instant::now();
        let result =
            match tokio::time::timeout(deps.settings.stage_timeout, stages::run(step, run)).await {
                Ok(r) => r,
                Err(_) => Err(StageError::new(format!(
                    "{} timed out after {}s",
                    step.name(),
                    deps.settings.stage_timeout.as_secs()
                ))),
            };
        let result = result.map(|o| match o {
            Outcome::Completed(m) => Outcome::Completed(run.log.mask(&m)),
            Outcome::Warning(m) => Outcome::Warning(run.log.mask(&m)),
            Outcome::Skipped(m) => Outcome::Skipped(run.log.mask(&m)),
        });
        let result = result.map_err(|mut e| {
            e.message = run.log.mask(&e.message);
            e
        });
        let percent = percent_of(i + 1, steps.len());
        let (status, latest, failure) = match result {
            Ok(Outcome::Completed(m)) => (StepStatus::Completed, m, None),
            Ok(Outcome::Warning(m)) => (StepStatus::Warning, m, None),
            Ok(Outcome::Skipped(m)) => (StepStatus::Skipped, m, None),
            Err(e) if step.fatal() => {
                run.log
                    .line(LogLevel::Error, step, &e.message, e.data.clone());
                let summary = run.log.mask(&e.summary());
                (StepStatus::Failed, e.message, Some(summary))
            }
            Err(e) => {
                let m = format!("{} ({})", e.message, secs(t0));
                run.log.line(LogLevel::Warning, step, &m, e.data.clone());
                (StepStatus::Warning, m, None)
            }
        };
        if failure.is_none() {
            progress.percent.store(percent, Ordering::SeqCst);
        }
        let stored_percent = progress.percent.load(Ordering::SeqCst);
        if let Err(e) =
            deployments::step_finished(pool, id, step.id(), status, Some(&latest), stored_percent)
                .await
        {
            return End::Failed(format!("Recording step {} failed: {e}", step.id()));
        }
        oec_common::metrics::observe(
            "oec_stage_duration_seconds",
            "How long pipeline stages took, by stage and how they ended.",
            &[("stage", step.id()), ("status", status.as_str())],
            t0.elapsed().as_secs_f64(),
        );
        if let Some(message) = failure {
            return End::Failed(message);
        }
    }
    End::Success
}

/// Heartbeats the deployment and turns a cancel request, a lost deployment or
/// the end of the shutdown grace period into an abort.
async fn watch_liveness(deps: Arc<Deps>, id: DeploymentId, abort: watch::Sender<Option<Abort>>) {
    let mut shutdown = deps.shutdown.clone();
    let mut grace_deadline: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(deps.settings.heartbeat_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
            _ = async { match grace_deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                let _ = abort.send(Some(Abort::Shutdown));
                return;
            }
        }
        if *shutdown.borrow() && grace_deadline.is_none() {
            grace_deadline = Some(tokio::time::Instant::now() + deps.settings.worker_grace);
        }
        match deployments::heartbeat(&deps.pool, id).await {
            Ok(true) => {
                let reason = match deployments::get(&deps.pool, id).await {
                    Ok(Some(d)) if d.status == DeploymentStatus::Running => Abort::Cancelled,
                    _ => Abort::Lost,
                };
                let _ = abort.send(Some(reason));
                return;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(deployment_id = %id, error = %e, "heartbeat failed"),
        }
    }
}

/// Records the end of the deployment. `serving` is whether the
/// environment's Odoo container runs after a failed or cancelled one (when
/// known): the environment's status says what is true.
async fn finish(
    deps: &Deps,
    ctx: &RunContext,
    log: Option<&Log>,
    end: End,
    started: Instant,
    serving: Option<bool>,
) {
    let total = started.elapsed().as_secs_f64();
    let (status, error, env_status) = match &end {
        End::Success => (
            DeploymentStatus::Success,
            None,
            match ctx.action {
                Action::Stop | Action::Teardown => EnvironmentStatus::Stopped,
                Action::Deploy | Action::Start | Action::Restart => EnvironmentStatus::Running,
            },
        ),
        End::Failed(m) => (
            DeploymentStatus::Failed,
            Some(m.clone()),
            if serving == Some(true) {
                EnvironmentStatus::Running
            } else {
                EnvironmentStatus::Failed
            },
        ),
        End::Aborted(Abort::Cancelled) => (
            DeploymentStatus::Cancelled,
            Some("Deployment cancelled".to_owned()),
            match serving {
                Some(true) => EnvironmentStatus::Running,
                Some(false) if ctx.environment_status == EnvironmentStatus::Running => {
                    EnvironmentStatus::Failed
                }
                _ => restore(ctx),
            },
        ),
        End::Aborted(Abort::Shutdown) => (
            DeploymentStatus::Failed,
            Some(format!(
                "Worker shut down before the deployment finished (grace period of {}s expired); trigger the deployment again",
                deps.settings.worker_grace.as_secs()
            )),
            EnvironmentStatus::Failed,
        ),
        End::Aborted(Abort::Lost) => {
            // Someone else (the reaper) already ended it.
            if let Some(log) = log {
                log.flush().await;
            }
            return;
        }
    };
    let action = ctx.action.to_string();
    let labels = [("action", action.as_str()), ("status", status.as_str())];
    oec_common::metrics::count(
        "oec_deployments_finished_total",
        "Deployments and lifecycle runs this worker ended, by action and status.",
        &labels,
        1,
    );
    oec_common::metrics::observe(
        "oec_deployment_duration_seconds",
        "How long deployments and lifecycle runs took, by action and status.",
        &labels,
        total,
    );
    // The last lines are written with the final status, in the same
    // transaction as it, after everything the writer holds.
    let clean = |text: &str| match log {
        Some(log) => log.clean(text),
        None => text.to_owned(),
    };
    let last: Vec<(LogLevel, String)> = match &end {
        End::Success if ctx.action != Action::Deploy => vec![(
            LogLevel::Info,
            format!("Environment {} completed in {total:.1}s", ctx.action),
        )],
        End::Success => vec![
            (
                LogLevel::Info,
                format!(
                    "Deployment completed successfully! Total time: {total:.1}s ({:.1} min)",
                    total / 60.0
                ),
            ),
            (
                LogLevel::Info,
                format!(
                    "Deployment completed! Total: {total:.1}s ({:.1} min)",
                    total / 60.0
                ),
            ),
        ],
        End::Aborted(Abort::Cancelled) => vec![(LogLevel::Warning, "Deployment cancelled".into())],
        _ => error
            .iter()
            .map(|e| (LogLevel::Error, clean(&format!("Deployment failed: {e}"))))
            .collect(),
    };
    if let Some(log) = log {
        log.flush().await;
    }
    let lines: Vec<(LogLevel, Step, &str)> = last
        .iter()
        .map(|(level, text)| (*level, Step::Completed, text.as_str()))
        .collect();
    let ending = Ending {
        status,
        error_message: error.as_deref(),
        environment_status: env_status,
        lines: &lines,
    };
    match lifecycle::finish(&deps.pool, ctx.deployment_id, &ending).await {
        Ok(Some((_, events))) => {
            deps.publisher.publish_or_warn(&events).await;
            if ctx.action == Action::Teardown && status == DeploymentStatus::Success {
                forget_environment(deps, ctx).await;
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(deployment_id = %ctx.deployment_id, error = %e, "recording the end of the deployment failed");
        }
    }
    tracing::info!(deployment_id = %ctx.deployment_id, %status, seconds = total, "deployment finished");
}

/// After a successful teardown: the environment's record goes, with its
/// deployments (as a plain DELETE does); its server holds nothing of it.
async fn forget_environment(deps: &Deps, ctx: &RunContext) {
    let env = ctx.environment_id.uuid();
    match oec_common::db::delete_unless_deploying(
        &deps.pool,
        oec_common::db::DeleteScope::Environment,
        env,
    )
    .await
    {
        Ok(_) => tracing::info!(environment_id = %env, "environment torn down and deleted"),
        Err(e) => {
            tracing::error!(environment_id = %env, error = %e, "deleting the torn-down environment failed")
        }
    }
}

/// After a successful deployment without a read replica, removes the one an
/// earlier deployment left, with its volume: the Odoo now running was
/// configured without it, so nothing reads from it any more.
async fn retire_replica(run: &Run) {
    let Some(target) = &run.target else { return };
    let plan = &run.plan;
    if plan.replica() {
        return;
    }
    let env = run.ctx.environment_id;
    let docker = target.docker();
    let mut removed = Vec::new();
    for name in [
        names::replica_pgbouncer_container(env),
        names::replica_container(env),
    ] {
        match docker::remove(docker, &name).await {
            Ok(true) => removed.push(name),
            Ok(false) => {}
            Err(e) => run.log.warning(
                Step::Completed,
                &format!("Removing the read replica that is no longer enabled: {e:#}"),
            ),
        }
    }
    if removed.is_empty() {
        return;
    }
    let volume = names::replica_volume(env);
    let volume_note = match docker
        .remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
    {
        Ok(()) => format!(" and volume {volume}"),
        Err(e) => {
            run.log.warning(
                Step::Completed,
                &format!("Removing volume {volume}: {}", docker::message(&e)),
            );
            String::new()
        }
    };
    run.log.info(
        Step::Completed,
        &format!(
            "Read replica no longer enabled: removed {}{volume_note}",
            removed.join(", ")
        ),
    );
}

/// After a failed or cancelled redeploy, puts back what it changed, in
/// this order: a new container started beside the serving one goes (which
/// also stops an upgrade running in it) and the serving one is undrained;
/// the database and filestore come back from the snapshot when the
/// deployment had started changing them; odoo.conf is the serving one's
/// again. Records `rolled_back`, the reason and the time when it put
/// anything back. Returns whether the environment's Odoo serves afterwards.
async fn rollback(deps: &Deps, run: &mut Run, reason: &str) -> Option<bool> {
    let target = run.target.as_ref()?;
    if !run.plan.redeploy {
        return None;
    }
    let t0 = Instant::now();
    let env = run.ctx.environment_id;
    let docker = target.docker().clone();
    let log = run.log.clone();
    let step = Step::Completed;
    let mut touched = false;
    let mut new_serves = false;
    if let Some(p) = run.state.switch.take() {
        match stages::switch::abandon(p).await {
            Ok(true) => {
                touched = true;
                log.info(
                    step,
                    "Rollback: removed the new container; the previous one keeps serving",
                );
            }
            Ok(false) => new_serves = true,
            Err(e) => log.warning(
                step,
                &format!("Rollback: removing the new container: {e:#}"),
            ),
        }
    }
    if run.state.database_changed
        && !new_serves
        && let Some(snap) = run.state.snapshot.clone()
    {
        let t = Instant::now();
        let restore = snapshot::Target {
            docker: &docker,
            image: &deps.settings.pipeline.postgres_image,
            deploy_root: &deps.settings.deploy_root,
            env,
            db_password: &run.plan.db_password,
        }
        .restore(run.ctx.deployment_id)
        .await;
        match restore {
                Ok(()) => {
                    touched = true;
                    run.state.database_changed = false;
                    log.info(
                        step,
                        &format!(
                            "Rollback: database{} restored from the snapshot at {} ({})",
                            if snap.filestore { " and filestore" } else { "" },
                            snap.path,
                            secs(t)
                        ),
                    );
                }
                Err(e) => log.line(
                    LogLevel::Error,
                    step,
                    &format!("Rollback: restoring the snapshot failed: {e:#}; the database is as the failed deployment left it"),
                    Some(serde_json::json!({"snapshot": snap.path})),
                ),
            }
    }
    if touched {
        let root = names::env_dir(&deps.settings.deploy_root, env);
        let conf = crate::target::shell::quote(&format!("{root}/odoo.conf"));
        let prev = crate::target::shell::quote(&format!("{root}/odoo.conf.previous"));
        let _ = target
            .run(
                &format!("if [ -f {prev} ]; then mv -f {prev} {conf}; fi"),
                &mut |_| {},
            )
            .await;
    }
    let serving = match docker::inspect(&docker, &names::odoo_container(env)).await {
        Ok(Some(c)) => docker::is_running(&c),
        Ok(None) => false,
        Err(_) => return None,
    };
    if touched {
        let seconds = t0.elapsed().as_secs_f64();
        log.info(
            step,
            &format!(
                "Rolled back in {seconds:.1}s: {}",
                if serving {
                    "the environment keeps serving the previous version"
                } else {
                    "the previous version is in place but its container does not run"
                }
            ),
        );
        let reason = run.log.mask(reason);
        if let Err(e) =
            deployments::record_rollback(&run.pool, run.ctx.deployment_id, &reason, seconds).await
        {
            tracing::error!(deployment_id = %run.ctx.deployment_id, error = %e, "recording the rollback failed");
        }
    }
    Some(serving)
}

/// After a failed or cancelled first deployment, removes the containers,
/// network and volume it created (unless `OEC_KEEP_FAILED=1`). A redeploy
/// keeps everything, the database volume above all.
async fn cleanup(deps: &Deps, run: &Run) {
    let Some(target) = &run.target else { return };
    if run.plan.redeploy {
        return;
    }
    let env = run.ctx.environment_id;
    if deps.settings.pipeline.keep_failed {
        run.log.info(
            Step::Completed,
            "OEC_KEEP_FAILED=1: leaving the failed deployment's containers in place",
        );
        return;
    }
    let docker = target.docker();
    let work = async {
        let names = [
            names::odoo_container(env),
            names::replica_pgbouncer_container(env),
            names::replica_container(env),
            names::pgbouncer_container(env),
            names::db_container(env),
        ];
        for name in &names {
            if let Err(e) = docker::remove(docker, name).await {
                run.log.warning(Step::Completed, &format!("Cleanup: {e:#}"));
            }
        }
        if let Err(e) = crate::proxy::remove_network(docker, &names::network(env)).await {
            run.log.warning(Step::Completed, &format!("Cleanup: {e:#}"));
        }
        for volume in [names::volume(env), names::replica_volume(env)] {
            let _ = docker
                .remove_volume(
                    &volume,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await;
        }
        run.log.info(
            Step::Completed,
            "Removed the containers, network and volume this first deployment created",
        );
    };
    if tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .is_err()
    {
        run.log
            .warning(Step::Completed, "Cleanup did not finish within 60s");
    }
}

/// The environment status after a cancelled deployment: what it was before.
fn restore(ctx: &RunContext) -> EnvironmentStatus {
    match ctx.environment_status {
        s @ (EnvironmentStatus::Running
        | EnvironmentStatus::Stopped
        | EnvironmentStatus::Failed) => s,
        EnvironmentStatus::Created | EnvironmentStatus::Deploying => EnvironmentStatus::Created,
    }
}

/// How long to wait for the remote side in `connecting`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
