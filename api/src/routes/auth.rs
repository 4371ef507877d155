//! Login, token refresh and the current user.

use actix_web::{HttpResponse, web};
use oec_common::auth::{self, TokenKind};
use oec_common::db;
use serde::{Deserialize, Serialize};

use super::resource;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/login").route(web::post().to(login)))
        .service(resource("/auth/refresh").route(web::post().to(refresh)))
        .service(resource("/auth/me").route(web::get().to(me)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

fn tokens(state: &AppState, user: uuid::Uuid) -> Result<Tokens, ApiError> {
    Ok(Tokens {
        access_token: state.tokens.issue(user, TokenKind::Access)?,
        refresh_token: state.tokens.issue(user, TokenKind::Refresh)?,
        token_type: "bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
    })
}

#[tracing::instrument(skip_all)]
async fn login(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.email.trim().to_lowercase();
    let ip = req.peer_addr().map(|a| a.ip());
    crate::login_limit::check(&state, &email, ip).await?;
    let found = db::users::credentials(&state.pool, &email).await?;
    let password = body.password.clone();
    // Verify even for an unknown email, so timing does not reveal which emails exist.
    let (user, hash) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, auth::dummy_hash().to_owned()),
    };
    let ok = web::block(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check: {e}")))?;
    match (user, ok) {
        (Some(id), true) => {
            crate::login_limit::succeeded(&state, &email).await;
            Ok(no_store(tokens(&state, id)?))
        }
        _ => {
            crate::login_limit::failed(&state, &email, ip).await;
            Err(ApiError::unauthorized(
                "invalid_credentials",
                "Wrong email or password.",
            ))
        }
    }
}

async fn refresh(
    state: web::Data<AppState>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims = state
        .tokens
        .verify(&body.refresh_token, TokenKind::Refresh)
        .map_err(|e| match e {
            auth::TokenError::Expired => ApiError::unauthorized(
                "token_expired",
                "The refresh token has expired; log in again.",
            ),
            _ => ApiError::unauthorized(
                "invalid_token",
                "The refresh token is invalid; log in again.",
            ),
        })?;
    if !db::users::exists(&state.pool, claims.sub).await? {
        return Err(ApiError::unauthorized(
            "invalid_token",
            "The token's user no longer exists.",
        ));
    }
    Ok(no_store(tokens(&state, claims.sub)?))
}

/// A response carrying credentials: no cache may keep it.
pub fn no_store(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body)
}

async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let u = db::users::by_id(&state.pool, user.id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Ok().json(u))
}
