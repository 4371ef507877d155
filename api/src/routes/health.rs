//! `/healthz`: the process is up. `/readyz`: PostgreSQL and Redis answer,
//! through the connections requests use.

use actix_web::{HttpResponse, web};

use super::resource;
use crate::errors::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Ready {
    status: &'static str,
    postgres: &'static str,
    redis: &'static str,
}

/// Prometheus text: this process's own metrics (HTTP, event streams), and
/// what PostgreSQL says of the deployments at the time of the scrape (the
/// same from every api process): counts by status and trigger, the pending
/// ones and the oldest one's wait, running ones per worker.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text exposition.", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    use oec_common::metrics::{clear, set};
    let g = oec_common::db::maintenance::gauges(&state.pool).await?;
    clear("oec_deployments");
    for (status, trigger, n) in &g.deployments {
        set(
            "oec_deployments",
            "Deployments in PostgreSQL by status and trigger.",
            &[("status", status), ("trigger", trigger)],
            *n as f64,
        );
    }
    set(
        "oec_queue_pending_deployments",
        "Deployments waiting for a worker.",
        &[],
        g.pending as f64,
    );
    set(
        "oec_queue_oldest_pending_age_seconds",
        "How long the oldest pending deployment has waited (0 with none).",
        &[],
        g.oldest_pending_secs,
    );
    clear("oec_running_deployments");
    for (worker, n) in &g.running {
        set(
            "oec_running_deployments",
            "Running deployments per worker (its worker id).",
            &[("worker", worker)],
            *n as f64,
        );
    }
    Ok(HttpResponse::Ok()
        .content_type(oec_common::metrics::CONTENT_TYPE)
        .body(oec_common::metrics::render()))
}

#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "The process is up.", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Ready when PostgreSQL and Redis answer. What failed is named; the
/// driver's error text (which may carry hosts or URLs) goes to the log only.
#[utoipa::path(get, path = "/readyz", tag = "meta", responses((status = 200, description = "PostgreSQL and Redis answer.", body = Ready), (status = 503, description = "PostgreSQL or Redis does not answer (`not_ready`).", body = crate::errors::ErrorBody)))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pg = oec_common::db::ping(&state.pool)
        .await
        .map_err(|e| e.to_string());
    // What requests use: the pool (events, limits) and the queue's own
    // connection, each as a request would (the queue's reconnects once).
    let pool = match state.redis.get().await {
        Ok(mut c) => deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let queue = state
        .queue
        .with(
            "the readiness check of the queue",
            |mut storage| async move {
                deadpool_redis::redis::cmd("PING")
                    .query_async::<String>(storage.get_connection())
                    .await?;
                Ok(())
            },
        )
        .await
        .map_err(|e| format!("{e:#}"));
    let redis = pool.and(queue);
    let mut down = Vec::new();
    for (name, result) in [("PostgreSQL", &pg), ("Redis", &redis)] {
        if let Err(e) = result {
            tracing::warn!(error = %e, "readiness: {name} does not answer");
            down.push(name);
        }
    }
    if down.is_empty() {
        return Ok(HttpResponse::Ok().json(Ready {
            status: "ready",
            postgres: "ok",
            redis: "ok",
        }));
    }
    Err(ApiError::NotReady(format!(
        "Not ready: {} does not answer (the api's log has the error).",
        down.join(" and ")
    )))
}
