//! Deployments: trigger, history, logs, progress, stats, cancel, export, and
//! the live event streams (see `sse.rs`).

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::stream;
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::db::deployments::{Created, NewDeployment};
use oec_common::lifecycle;
use oec_common::model::steps::Step;
use oec_common::model::{Action, DeploymentStatus, LogLevel, StepStatus, Trigger};
use oec_common::queue;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::resource;
use crate::access;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json, Pagination, Query};
use crate::listing;
use crate::sse;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/deployments")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(resource("/deployments/environment/{id}/latest").route(web::get().to(latest)))
    .service(resource("/deployments/project/{id}/stats").route(web::get().to(stats)))
    .service(resource("/deployments/{id}").route(web::get().to(get)))
    .service(resource("/deployments/{id}/logs").route(web::get().to(logs)))
    .service(resource("/deployments/{id}/logs/export").route(web::get().to(export)))
    .service(resource("/deployments/{id}/progress").route(web::get().to(progress)))
    .service(resource("/deployments/{id}/cancel").route(web::post().to(cancel)))
    .service(resource("/deployments/{id}/redeploy").route(web::post().to(redeploy)))
    .service(resource("/deployments/{id}/events").route(web::get().to(sse::deployment_events)))
    .service(resource("/events/stream").route(web::get().to(sse::events_stream)))
    .service(resource("/events/schema").route(web::get().to(event_schema)));
}

/// `GET /api/v1/events/schema`: the JSON Schema of every event the streams
/// send (public: it describes, it reveals nothing).
#[utoipa::path(get, path = "/api/v1/events/schema", tag = "events",
    responses((status = 200, description = "The JSON Schema of every event the streams send.", content_type = "application/schema+json", body = Object)))]
async fn event_schema() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/schema+json")
        .body(oec_common::events::SCHEMA)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDeployment {
    environment_id: Uuid,
    #[schema(value_type = Option<oec_common::model::Trigger>)]
    trigger: Option<String>,
    /// A commit of the project repository to deploy instead of the
    /// branch's head (7 to 64 hex digits).
    #[schema(pattern = r"^[0-9A-Fa-f]{7,64}$")]
    git_commit: Option<String>,
}

/// A commit id as users write it: 7 to 64 hex digits, any case.
fn parse_commit(v: &str) -> Result<String, ApiError> {
    let v = v.trim().to_ascii_lowercase();
    if (7..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(v)
    } else {
        Err(ApiError::invalid(
            "git_commit",
            "must be a commit id of 7 to 64 hex digits",
        ))
    }
}

pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => {
            let k = v.to_str().ok().filter(|k| {
                (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
            });
            Ok(Some(
                k.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be 1 to 200 printable ASCII characters.",
                    )
                })?
                .to_owned(),
            ))
        }
    }
}

#[utoipa::path(post, path = "/api/v1/deployments", tag = "deployments", request_body = CreateDeployment, params(("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key answers the deployment it created instead of a second one.")),
    responses((status = 202, description = "Queued (or, with a seen `Idempotency-Key`, the deployment it created).", body = oec_common::db::deployments::Deployment),
              (status = 409, description = "A deployment of the environment is pending or running (`deployment_in_progress`, with its `deployment_id`).", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: Json<CreateDeployment>,
) -> Result<HttpResponse, ApiError> {
    let trigger = match body.trigger.as_deref() {
        None => Trigger::Manual,
        Some(t) => Trigger::parse(t)
            .filter(|t| *t != Trigger::Redeploy)
            .ok_or_else(|| {
                ApiError::invalid(
                    "trigger",
                    format!(
                        "must be one of {} (a redeploy is POST /deployments/{{id}}/redeploy)",
                        Trigger::choices()
                    ),
                )
            })?,
    };
    let commit = body.git_commit.as_deref().map(parse_commit).transpose()?;
    let key = idempotency_key(&req)?;
    let new = NewDeployment {
        environment_id: body.environment_id,
        trigger,
        triggered_by: user.id,
        idempotency_key: key.as_deref(),
        requested_commit: commit.as_deref(),
        redeploy_of: None,
        action: Action::Deploy,
        delete_data: false,
    };
    start(&state, &user, new).await
}

/// `POST /deployments/{id}/redeploy`: deploys the commit a past deployment
/// deployed, to the same environment, with the trigger `redeploy`.
#[utoipa::path(post, path = "/api/v1/deployments/{id}/redeploy", tag = "deployments", params(("id" = Uuid, Path, description = "The past deployment whose commit to deploy again."), ("Idempotency-Key" = Option<String>, Header, description = "Retrying with the same key answers the deployment it created instead of a second one.")),
    responses((status = 202, description = "Queued.", body = oec_common::db::deployments::Deployment),
              (status = 409, description = "A deployment of the environment is pending or running, or the past one was not a deployment.", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn redeploy(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let past = access::deployment(&state, &user, *id, Permission::ProjectDeploymentsView).await?;
    if past.action != Action::Deploy {
        return Err(ApiError::Conflict {
            code: "not_a_deployment",
            message: format!(
                "Deployment {} was a {} of the environment, not a deployment; only deployments can be redeployed.",
                past.id, past.action
            ),
        });
    }
    let Some(commit) = past.git_commit.clone() else {
        return Err(ApiError::Conflict {
            code: "no_commit",
            message: format!(
                "Deployment {} ended before its commit was known ({}); deploy the environment instead.",
                past.id, past.status
            ),
        });
    };
    let key = idempotency_key(&req)?;
    let new = NewDeployment {
        environment_id: past.environment_id,
        trigger: Trigger::Redeploy,
        triggered_by: user.id,
        idempotency_key: key.as_deref(),
        requested_commit: Some(&commit),
        redeploy_of: Some(past.id),
        action: Action::Deploy,
        delete_data: false,
    };
    start(&state, &user, new).await
}

/// Creates the pending deployment (or lifecycle run) and queues it.
pub(crate) async fn start(
    state: &AppState,
    user: &AuthUser,
    new: NewDeployment<'_>,
) -> Result<HttpResponse, ApiError> {
    let env = db::environments::get(&state.pool, new.environment_id)
        .await?
        .ok_or(ApiError::NotFound("environment"))?;
    access::project(
        state,
        user,
        env.project_id,
        Permission::ProjectEnvironmentsDeploy,
    )
    .await
    .map_err(|e| e.not_found_as("environment"))?;
    let (d, events) = match lifecycle::create(&state.pool, &new).await? {
        None => return Err(ApiError::NotFound("environment")),
        Some((Created::Replayed(d), _)) => return Ok(HttpResponse::Accepted().json(d)),
        Some((Created::KeyReused, _)) => {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "This Idempotency-Key was used for another request (another environment, trigger or commit); use a new key.".into(),
            });
        }
        Some((Created::InProgress(d), _)) => {
            return Err(ApiError::DeploymentInProgress(d.id.uuid()));
        }
        Some((Created::New(d, _), events)) => (d, events),
    };
    let id = d.id;
    let queued = state
        .queue
        .with("enqueueing a deployment", |mut storage| async move {
            queue::enqueue(&mut storage, id).await
        })
        .await;
    if let Err(e) = queued {
        tracing::error!(deployment_id = %d.id, error = %e, "enqueueing failed");
        let events = lifecycle::fail_pending(
            &state.pool,
            d.id,
            "The deployment could not be queued (Redis unavailable)",
        )
        .await?;
        state.publisher.publish_or_warn(&events).await;
        return Err(ApiError::QueueUnavailable(
            "The deployment queue is unavailable; try again shortly.".into(),
        ));
    }
    state.publisher.publish_or_warn(&events).await;
    Ok(HttpResponse::Accepted().json(d))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    project_id: Option<Uuid>,
    environment_id: Option<Uuid>,
    #[param(value_type = Option<oec_common::model::DeploymentStatus>)]
    status: Option<String>,
    #[param(value_type = Option<oec_common::model::Trigger>)]
    trigger: Option<String>,
    /// RFC 3339: created at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339: created before.
    #[param(format = DateTime)]
    until: Option<String>,
    #[param(minimum = 0)]
    skip: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

fn parse_time(field: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::invalid(
                        field,
                        "must be an RFC 3339 time such as 2026-12-01T03:00:00Z",
                    )
                })
        })
        .transpose()
}

#[utoipa::path(get, path = "/api/v1/deployments", tag = "deployments", params(ListQuery),
    responses((status = 200, description = "Deployments visible to you, newest first.", body = Vec<oec_common::db::deployments::Deployment>)))]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    q: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Pagination {
        skip: q.skip,
        limit: q.limit,
    }
    .page(50)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            DeploymentStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    format!("must be one of {}", DeploymentStatus::choices()),
                )
            })
        })
        .transpose()?;
    let trigger = q
        .trigger
        .as_deref()
        .map(|t| {
            Trigger::parse(t).ok_or_else(|| {
                ApiError::invalid("trigger", format!("must be one of {}", Trigger::choices()))
            })
        })
        .transpose()?;
    let since = parse_time("since", q.since.as_deref())?;
    let until = parse_time("until", q.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(ApiError::invalid("until", "must be later than since"));
    }
    if let Some(p) = q.project_id {
        access::project(&state, &user, p, Permission::ProjectDeploymentsList).await?;
    }
    if let Some(e) = q.environment_id {
        let env = db::environments::get(&state.pool, e)
            .await?
            .ok_or(ApiError::NotFound("environment"))?;
        access::project(
            &state,
            &user,
            env.project_id,
            Permission::ProjectDeploymentsList,
        )
        .await
        .map_err(|e| e.not_found_as("environment"))?;
    }
    let filter = db::deployments::ListFilter {
        project: q.project_id,
        environment: q.environment_id,
        status,
        trigger,
        since,
        until,
    };
    let rows = db::deployments::list_visible(&state.pool, user.id, user.portal_admin, filter, page)
        .await?;
    Ok(listing::respond(&req, page, rows))
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}", tag = "deployments", params(("id" = Uuid, Path, description = "The deployment's id.")),
    responses((status = 200, description = "The deployment.", body = oec_common::db::deployments::Deployment)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .json(access::deployment(&state, &user, *id, Permission::ProjectDeploymentsView).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[param(value_type = Option<oec_common::model::LogLevel>)]
    level: Option<String>,
    #[param(value_type = Option<oec_common::model::steps::Step>)]
    step: Option<String>,
    #[param(minimum = 0)]
    skip: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/deployments/{id}/logs", tag = "deployments", params(("id" = Uuid, Path, description = "The deployment's id."), LogsQuery),
    responses((status = 200, description = "A page of its log lines, oldest first.", body = Logs)))]
async fn logs(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    q: Query<LogsQuery>,
) -> Result<HttpResponse, ApiError> {
    access::deployment(&state, &user, *id, Permission::ProjectDeploymentsView).await?;
    let page = Pagination {
        skip: q.skip,
        limit: q.limit,
    }
    .page(500)?;
    let level = q
        .level
        .as_deref()
        .map(|l| {
            LogLevel::parse(&l.to_lowercase()).ok_or_else(|| {
                ApiError::invalid("level", format!("must be one of {}", LogLevel::choices()))
            })
        })
        .transpose()?;
    let step = q
        .step
        .as_deref()
        .map(|s| {
            Step::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "step",
                    "must be a pipeline stage id such as cloning_project_repo",
                )
            })
        })
        .transpose()?;
    let rows = db::deployments::logs(&state.pool, *id, level, step.map(|s| s.id()), page).await?;
    Ok(HttpResponse::Ok().json(Logs {
        deployment_id: *id,
        logs: rows,
    }))
}

/// A page of a deployment's log lines, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Logs {
    deployment_id: Uuid,
    logs: Vec<db::deployments::LogLine>,
}

/// A deployment and each of its steps, as the spec's progress view shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Progress {
    deployment_id: Uuid,
    status: DeploymentStatus,
    progress_percent: i32,
    steps: Vec<StepProgress>,
    current_step: Option<String>,
    error_message: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    duration_seconds: Option<f64>,
    #[schema(value_type = Option<Object>)]
    module_changes: Option<Value>,
    #[schema(value_type = Option<Object>)]
    snapshot: Option<Value>,
    rolled_back: bool,
    rollback_reason: Option<String>,
    rollback_seconds: Option<f64>,
}

/// One step of a deployment's progress.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StepProgress {
    id: &'static str,
    name: &'static str,
    description: &'static str,
    status: StepStatus,
    /// The step's latest lines (at most 50); the rest are at `logs_url`.
    logs: Vec<StepLine>,
    logs_total: i64,
    logs_truncated: bool,
    logs_url: String,
    latest_message: Option<String>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    duration_seconds: Option<f64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct StepLine {
    message: String,
    timestamp: DateTime<Utc>,
    level: LogLevel,
}

/// Log lines per step in a progress answer: the latest ones; the rest are
/// at `logs_url`.
pub const PROGRESS_LINES_PER_STEP: i64 = 50;

#[utoipa::path(get, path = "/api/v1/deployments/{id}/progress", tag = "deployments", params(("id" = Uuid, Path, description = "The deployment's id.")),
    responses((status = 200, description = "The deployment and each of its steps.", body = Progress)))]
async fn progress(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let d = access::deployment(&state, &user, *id, Permission::ProjectDeploymentsView).await?;
    let rows = db::deployments::steps(&state.pool, d.id).await?;
    let (logs, counts) =
        db::deployments::step_log_tails(&state.pool, d.id, PROGRESS_LINES_PER_STEP).await?;
    let steps: Vec<StepProgress> = d
        .action
        .steps()
        .iter()
        .map(|step| {
            let row = rows.iter().find(|r| r.step == step.id());
            let step_logs: Vec<StepLine> = logs
                .iter()
                .filter(|l| l.step.as_deref() == Some(step.id()))
                .map(|l| StepLine {
                    message: l.message.clone(),
                    timestamp: l.timestamp,
                    level: l.level,
                })
                .collect();
            let total = counts
                .iter()
                .find(|(s, _)| s.as_deref() == Some(step.id()))
                .map_or(0, |(_, n)| *n);
            let latest = row
                .and_then(|r| r.latest_message.clone())
                .or_else(|| step_logs.last().map(|l| l.message.clone()));
            StepProgress {
                id: step.id(),
                name: step.name(),
                description: step.description(),
                status: row.map_or(StepStatus::Pending, |r| r.status),
                logs: step_logs,
                logs_total: total,
                logs_truncated: total > PROGRESS_LINES_PER_STEP,
                logs_url: format!("/api/v1/deployments/{}/logs?step={}", d.id, step.id()),
                latest_message: latest,
                started_at: row.and_then(|r| r.started_at),
                completed_at: row.and_then(|r| r.completed_at),
                duration_seconds: row.and_then(|r| r.duration_seconds),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Progress {
        deployment_id: d.id.uuid(),
        status: d.status,
        progress_percent: d.progress_percent,
        steps,
        current_step: d.current_step,
        error_message: d.error_message,
        started_at: d.started_at,
        completed_at: d.completed_at,
        duration_seconds: d.duration_seconds,
        module_changes: d.module_changes,
        snapshot: d.snapshot,
        rolled_back: d.rolled_back,
        rollback_reason: d.rollback_reason,
        rollback_seconds: d.rollback_seconds,
    }))
}

/// An environment's latest deployment, if it has one.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Latest {
    has_deployment: bool,
    environment_id: Uuid,
    #[serde(flatten)]
    deployment: Option<LatestDeployment>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LatestDeployment {
    deployment_id: Uuid,
    status: DeploymentStatus,
    version: i32,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    error_message: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/deployments/environment/{id}/latest", tag = "deployments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 200, description = "The environment's latest deployment, if any.", body = Latest)))]
async fn latest(
    state: web::Data<AppState>,
    user: AuthUser,
    env_id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let env = db::environments::get(&state.pool, *env_id)
        .await?
        .ok_or(ApiError::NotFound("environment"))?;
    access::project(
        &state,
        &user,
        env.project_id,
        Permission::ProjectDeploymentsView,
    )
    .await
    .map_err(|e| e.not_found_as("environment"))?;
    let deployment = db::deployments::latest_for_environment(&state.pool, env.id)
        .await?
        .map(|d| LatestDeployment {
            deployment_id: d.id.uuid(),
            status: d.status,
            version: d.version,
            started_at: d.started_at,
            completed_at: d.completed_at,
            error_message: d.error_message,
        });
    Ok(HttpResponse::Ok().json(Latest {
        has_deployment: deployment.is_some(),
        environment_id: env.id,
        deployment,
    }))
}

#[utoipa::path(get, path = "/api/v1/deployments/project/{id}/stats", tag = "deployments", params(("id" = Uuid, Path, description = "The project's id.")),
    responses((status = 200, description = "The project's deployment statistics.", body = Stats)))]
async fn stats(
    state: web::Data<AppState>,
    user: AuthUser,
    project: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    access::project(&state, &user, *project, Permission::ProjectDeploymentsList).await?;
    let s = db::deployments::stats(&state.pool, *project).await?;
    let avg_stage_duration_seconds = db::deployments::stage_averages(&state.pool, *project)
        .await?
        .into_iter()
        .collect();
    let finished = s.success + s.failed + s.cancelled;
    let success_rate = if finished == 0 {
        0.0
    } else {
        (s.success as f64 * 1000.0 / finished as f64).round() / 10.0
    };
    let status_counts = DeploymentStatus::ALL
        .iter()
        .map(|st| {
            let n = match st {
                DeploymentStatus::Success => s.success,
                DeploymentStatus::Failed => s.failed,
                DeploymentStatus::Cancelled => s.cancelled,
                DeploymentStatus::Pending => s.pending,
                DeploymentStatus::Running => s.running,
            };
            (st.as_str(), n)
        })
        .collect();
    Ok(HttpResponse::Ok().json(Stats {
        project_id: *project,
        total_deployments: s.total_deployments,
        status_counts,
        success_rate,
        last_30_days: Durations {
            avg_duration_seconds: s.avg_duration_seconds,
            min_duration_seconds: s.min_duration_seconds,
            max_duration_seconds: s.max_duration_seconds,
            p50_duration_seconds: s.p50_duration_seconds,
            p95_duration_seconds: s.p95_duration_seconds,
            avg_stage_duration_seconds,
        },
    }))
}

/// A project's deployment statistics.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    project_id: Uuid,
    total_deployments: i64,
    /// Deployments per status, every status present.
    status_counts: BTreeMap<&'static str, i64>,
    /// Successes among finished deployments, in percent (one decimal).
    success_rate: f64,
    last_30_days: Durations,
}

/// Durations of the deployments of the last 30 days, in seconds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Durations {
    avg_duration_seconds: Option<f64>,
    min_duration_seconds: Option<f64>,
    max_duration_seconds: Option<f64>,
    p50_duration_seconds: Option<f64>,
    p95_duration_seconds: Option<f64>,
    /// Per stage id: its average duration.
    avg_stage_duration_seconds: BTreeMap<String, f64>,
}

/// A short confirmation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Message {
    message: &'static str,
}

#[utoipa::path(post, path = "/api/v1/deployments/{id}/cancel", tag = "deployments", params(("id" = Uuid, Path, description = "The deployment's id.")),
    responses((status = 200, description = "Cancelled (a running one stops at its worker's next heartbeat).", body = Message),
              (status = 400, description = "Already finished (`deployment_not_cancellable`), or a malformed id.", body = crate::errors::ErrorBody)))]
async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let d = access::deployment(&state, &user, *id, Permission::ProjectDeploymentsCancel).await?;
    let Some((_, events)) = lifecycle::cancel(&state.pool, d.id).await? else {
        return Err(ApiError::bad_request(
            "deployment_not_cancellable",
            format!(
                "The deployment is already {}; only pending or running deployments can be cancelled.",
                d.status
            ),
        ));
    };
    // A pending deployment ends here (and says so); a running one is ended
    // by its worker, which notices the request at its next heartbeat.
    state.publisher.publish_or_warn(&events).await;
    Ok(HttpResponse::Ok().json(Message {
        message: "Deployment cancelled",
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[param(pattern = r"^(json|txt)$", example = "txt")]
    format: Option<String>,
}

/// Streams the whole log in the spec's JSON or text format, a batch at a
/// time, so a 100k-line log is never built in memory.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/logs/export", tag = "deployments", params(("id" = Uuid, Path, description = "The deployment's id."), ExportQuery),
    responses((status = 200, description = "The whole log as a download: the spec's JSON document, or text with each line's step.",
               content((Object = "application/json"), (String = "text/plain")))))]
async fn export(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    q: Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let d = access::deployment(&state, &user, *id, Permission::ProjectDeploymentsView).await?;
    let json_format = match q.format.as_deref().unwrap_or("json") {
        "json" => true,
        "txt" => false,
        _ => return Err(ApiError::invalid("format", "must be json or txt")),
    };
    let names = db::deployments::reference(&state.pool, d.id)
        .await?
        .ok_or(ApiError::NotFound("deployment"))?
        .deployment;
    let (project, environment) = (names.project_name, names.environment_name);
    let now = Utc::now();
    let header = if json_format {
        let head = json!({"deployment_id": d.id, "project_name": project, "environment_name": environment,
                          "exported_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        let head = head.to_string();
        // Reopen the object to append the logs array.
        format!("{},\"logs\":[", &head[..head.len() - 1])
    } else {
        format!(
            "=== Deployment Logs ===\nDeployment ID: {}\nProject: {}\nEnvironment: {}\nExported: {}\n\n",
            d.id,
            project,
            environment,
            now.format("%Y-%m-%d %H:%M:%S UTC")
        )
    };
    struct Cursor {
        pool: sqlx::PgPool,
        id: Uuid,
        last: i64,
        first: bool,
        done: bool,
        json: bool,
        header: Option<String>,
    }
    let cursor = Cursor {
        pool: state.pool.clone(),
        id: d.id.uuid(),
        last: 0,
        first: true,
        done: false,
        json: json_format,
        header: Some(header),
    };
    let body = stream::unfold(cursor, |mut c| async move {
        if let Some(h) = c.header.take() {
            return Some((Ok::<_, actix_web::Error>(web::Bytes::from(h)), c));
        }
        if c.done {
            return None;
        }
        let lines = match db::deployments::logs_after(&c.pool, c.id, c.last, 1000).await {
            Ok(l) => l,
            Err(e) => {
                return Some((
                    Err(actix_web::error::ErrorInternalServerError(e)),
                    Cursor { done: true, ..c },
                ));
            }
        };
        let mut out = String::new();
        for l in &lines {
            if c.json {
                if !c.first {
                    out.push(',');
                }
                out.push_str(
                    &json!({"id": l.id, "seq": l.seq, "timestamp": l.timestamp, "level": l.level,
                                     "step": l.step, "message": l.message, "data": l.data})
                    .to_string(),
                );
            } else {
                out.push_str(&format!(
                    "[{}] [{}] [{}] {}\n",
                    l.timestamp.format("%Y-%m-%d %H:%M:%S"),
                    l.level.as_str().to_uppercase(),
                    l.step.as_deref().unwrap_or("-"),
                    l.message
                ));
                // An error's data (its code, cause and hint) on the next
                // line, indented: every line of the log still starts with `[`.
                if l.level == LogLevel::Error
                    && let Some(data) = l.data.as_ref().filter(|d| !d.is_null())
                {
                    out.push_str(&format!("    data: {data}\n"));
                }
            }
            c.first = false;
            c.last = l.seq;
        }
        if lines.len() < 1000 {
            c.done = true;
            if c.json {
                out.push_str("]}");
            }
        }
        Some((Ok(web::Bytes::from(out)), c))
    });
    let (content_type, ext) = if json_format {
        ("application/json", "json")
    } else {
        ("text/plain; charset=utf-8", "txt")
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"deployment-{}.{ext}\"", d.id),
        ))
        .streaming(body))
}
