//! `/healthz`: the process is up. `/readyz`: PostgreSQL and Redis answer,
//! through the connections requests use.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::resource;
use crate::errors::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)));
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when PostgreSQL and Redis answer. What failed is named; the
/// driver's error text (which may carry hosts or URLs) goes to the log only.
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
        return Ok(
            HttpResponse::Ok().json(json!({"status": "ready", "postgres": "ok", "redis": "ok"}))
        );
    }
    Err(ApiError::NotReady(format!(
        "Not ready: {} does not answer (the api's log has the error).",
        down.join(" and ")
    )))
}
