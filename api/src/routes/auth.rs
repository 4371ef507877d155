//! Login, token refresh (rotating), logout, password change and the current user.

use actix_web::FromRequest;
use actix_web::{HttpResponse, web};
use oec_common::auth::{self, TokenKind};
use oec_common::db;
use oec_common::db::sessions::Rotation;
use oec_common::model::fields;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::resource;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/auth/login").route(web::post().to(login)))
        .service(resource("/auth/refresh").route(web::post().to(refresh)))
        .service(resource("/auth/logout").route(web::post().to(logout)))
        .service(resource("/auth/password").route(web::put().to(change_password)))
        .service(resource("/auth/me").route(web::get().to(me)));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The session to end; without it, the access token's session.
    refresh_token: Option<String>,
    /// End every session of the user, not only this one.
    #[serde(default)]
    all_sessions: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Tokens {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// The tokens of `session`, whose current refresh token is `refresh`.
fn tokens(state: &AppState, user: Uuid, session: Uuid, refresh: Uuid) -> Result<Tokens, ApiError> {
    Ok(Tokens {
        access_token: state
            .tokens
            .issue(user, session, Uuid::new_v4(), TokenKind::Access)?,
        refresh_token: state
            .tokens
            .issue(user, session, refresh, TokenKind::Refresh)?,
        token_type: "bearer",
        expires_in: state.tokens.access_ttl.as_secs(),
    })
}

/// A new session for `user` and its first tokens.
async fn open_session(state: &AppState, user: Uuid) -> Result<Tokens, ApiError> {
    let refresh = Uuid::new_v4();
    let session = db::sessions::open(&state.pool, user, refresh, state.tokens.refresh_ttl).await?;
    tokens(state, user, session, refresh)
}

/// Checks `password` against the user's hash off the async threads (argon2
/// takes tens of milliseconds).
async fn password_matches(password: String, hash: String) -> Result<bool, ApiError> {
    web::block(move || auth::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password check: {e}")))
}

#[tracing::instrument(skip_all)]
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in: a new session's tokens.", body = Tokens),
              (status = 401, description = "Wrong email or password, or a deactivated account.", body = crate::errors::ErrorBody),
              (status = 429, description = "Too many failed attempts for the email or address; see `Retry-After`.", body = crate::errors::ErrorBody)))]
async fn login(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = body.email.trim().to_lowercase();
    let ip = req.peer_addr().map(|a| a.ip());
    crate::login_limit::check(&state, &email, ip).await?;
    let found = db::users::credentials(&state.pool, &email).await?;
    // Verify even for an unknown email, so timing does not reveal which emails exist.
    let (user, hash, active) = match found {
        Some((id, hash, active)) => (Some(id), hash, active),
        None => (None, auth::dummy_hash().to_owned(), true),
    };
    let ok = password_matches(body.password.clone(), hash).await?;
    match (user, ok) {
        // Said only to whoever knows the password.
        (Some(_), true) if !active => Err(ApiError::unauthorized(
            "account_deactivated",
            "This account is deactivated; a portal admin can reactivate it.",
        )),
        (Some(id), true) => {
            crate::login_limit::succeeded(&state, &email).await;
            Ok(no_store(open_session(&state, id).await?))
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

fn invalid_refresh_token(e: auth::TokenError) -> ApiError {
    match e {
        auth::TokenError::Expired => ApiError::unauthorized(
            "token_expired",
            "The refresh token has expired; log in again.",
        ),
        _ => ApiError::unauthorized(
            "invalid_token",
            "The refresh token is invalid; log in again.",
        ),
    }
}

fn session_ended() -> ApiError {
    ApiError::unauthorized(
        "session_ended",
        "This session has ended (logout, a password change, the user's deletion or expiry); log in again.",
    )
}

/// Exchanges a refresh token for new tokens. Each refresh token is good for
/// one exchange: presenting one that was already exchanged revokes its
/// session (a stolen copy and the owner cannot both go on).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, description = "The session's next tokens (the refresh token rotates).", body = Tokens),
              (status = 401, description = "An invalid, expired or reused refresh token.", body = crate::errors::ErrorBody)))]
async fn refresh(
    state: web::Data<AppState>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let claims = state
        .tokens
        .verify(&body.refresh_token, TokenKind::Refresh)
        .map_err(invalid_refresh_token)?;
    let next = Uuid::new_v4();
    let ttl = state.tokens.refresh_ttl;
    match db::sessions::rotate(&state.pool, claims.sub, claims.sid, claims.jti, next, ttl).await? {
        Rotation::Rotated => Ok(no_store(tokens(&state, claims.sub, claims.sid, next)?)),
        Rotation::Reused => {
            tracing::warn!(user = %claims.sub, session = %claims.sid, "refresh token reused: session revoked");
            super::sessions_ended(&state, claims.sub).await;
            Err(ApiError::unauthorized(
                "refresh_token_reused",
                "This refresh token was already used; its session is revoked as a precaution. Log in again.",
            ))
        }
        Rotation::Ended => Err(session_ended()),
    }
}

/// Ends the session of the refresh token in the body, or else of the access
/// token; with `all_sessions`, every session of the user. Its access tokens
/// stop working at once and its open event streams end.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = LogoutRequest,
    responses((status = 204, description = "The session (or every session) ended.")))]
async fn logout(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Json<LogoutRequest>,
) -> Result<HttpResponse, ApiError> {
    let (user, session) = match &body.refresh_token {
        // An expired refresh token still names the session it ends.
        Some(t) => {
            let c = state
                .tokens
                .verify_ignoring_expiry(t, TokenKind::Refresh)
                .map_err(invalid_refresh_token)?;
            (c.sub, c.sid)
        }
        None => {
            let u = AuthUser::extract(&req).await?;
            (u.id, u.session)
        }
    };
    let why = db::sessions::Revoked::Logout;
    if body.all_sessions {
        db::sessions::revoke_all(&state.pool, user, None, why).await?;
    } else {
        db::sessions::revoke(&state.pool, user, session, why).await?;
    }
    super::sessions_ended(&state, user).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Changes the caller's password. Every other session of theirs is revoked;
/// the caller's own goes on with fresh tokens, returned like a login's.
#[utoipa::path(put, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, description = "Changed; every other session ended; this session's new tokens.", body = Tokens),
              (status = 429, description = "Too many wrong current passwords; see `Retry-After`.", body = crate::errors::ErrorBody)))]
async fn change_password(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    user: AuthUser,
    body: Json<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let ip = req.peer_addr().map(|a| a.ip());
    crate::login_limit::check(&state, &user.email, ip).await?;
    let hash = db::users::password_hash(&state.pool, user.id)
        .await?
        .ok_or_else(session_ended)?;
    if !password_matches(body.current_password.clone(), hash).await? {
        crate::login_limit::failed(&state, &user.email, ip).await;
        return Err(ApiError::invalid(
            "current_password",
            "is not the account's password",
        ));
    }
    let password = fields::parse_password("new_password", &body.new_password)?;
    if password == body.current_password {
        return Err(ApiError::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let hash = web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing: {e}")))??;
    // The caller's session gets a fresh refresh token: one copied before the
    // change is worth nothing after it.
    let next = Uuid::new_v4();
    let ttl = state.tokens.refresh_ttl;
    if !db::users::change_password(&state.pool, user.id, &hash, user.session, next, ttl).await? {
        return Err(session_ended());
    }
    super::sessions_ended(&state, user.id).await;
    Ok(no_store(tokens(&state, user.id, user.session, next)?))
}

/// A response carrying credentials: no cache may keep it.
pub fn no_store(body: impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(body)
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, description = "The signed-in user.", body = oec_common::db::users::User)))]
async fn me(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let u = db::users::by_id(&state.pool, user.id)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(HttpResponse::Ok().json(u))
}
