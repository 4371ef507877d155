//! `/healthz`: the process is up. `/readyz`: PostgreSQL and Redis answer.

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

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let pg = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&state.pool)
        .await
        .map_err(|e| e.to_string());
    let redis = match state.redis.get().await {
        Ok(mut c) => deadpool_redis::redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match (pg, redis) {
        (Ok(_), Ok(_)) => Ok(
            HttpResponse::Ok().json(json!({"status": "ready", "postgres": "ok", "redis": "ok"}))
        ),
        (pg, redis) => {
            let mut down = Vec::new();
            if let Err(e) = pg {
                down.push(format!("PostgreSQL: {e}"));
            }
            if let Err(e) = redis {
                down.push(format!("Redis: {e}"));
            }
            Err(ApiError::NotReady(format!(
                "Not ready: {}",
                down.join("; ")
            )))
        }
    }
}
