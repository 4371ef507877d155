//! Request extractors: the authenticated user (a handler that forgets auth
//! does not compile) and pagination.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use oec_common::auth::{TokenError, TokenKind};
use oec_common::db;
use serde::Deserialize;
use uuid::Uuid;

use crate::errors::ApiError;
use crate::state::AppState;

/// The caller, authenticated by `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub email: String,
    pub portal_admin: bool,
}

impl AuthUser {
    pub fn require_portal_admin(&self) -> Result<(), ApiError> {
        if self.portal_admin {
            Ok(())
        } else {
            Err(ApiError::PortalAdminOnly)
        }
    }
}

fn bearer(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let h = h.to_str().map_err(|_| {
        ApiError::unauthorized("invalid_token", "The Authorization header is not text.")
    })?;
    match h.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim().to_owned()))
        }
        _ => Err(ApiError::unauthorized(
            "invalid_token",
            "Use `Authorization: Bearer <access token>`.",
        )),
    }
}

/// Resolves an access token to a live user.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, ApiError> {
    let claims = state
        .tokens
        .verify(token, TokenKind::Access)
        .map_err(|e| match e {
            TokenError::Expired => ApiError::unauthorized(
                "token_expired",
                "The access token has expired; refresh it at /api/v1/auth/refresh.",
            ),
            TokenError::WrongKind => ApiError::unauthorized(
                "invalid_token",
                "A refresh token cannot be used as an access token.",
            ),
            TokenError::Invalid => ApiError::unauthorized(
                "invalid_token",
                "The access token is invalid; log in again.",
            ),
        })?;
    let user = db::users::by_id(&state.pool, claims.sub)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("invalid_token", "The token's user no longer exists.")
        })?;
    Ok(AuthUser {
        id: user.id,
        email: user.email,
        portal_admin: user.is_portal_admin,
    })
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let token = bearer(req);
        Box::pin(async move {
            let state =
                state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
            let token = token?.ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_token",
                    "Authentication required: send `Authorization: Bearer <access token>`.",
                )
            })?;
            authenticate(&state, &token).await
        })
    }
}

pub const MAX_LIMIT: i64 = 500;

/// `?skip=&limit=`: skip ≥ 0, 1 ≤ limit ≤ 500.
#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub skip: Option<i64>,
    pub limit: Option<i64>,
}

impl Pagination {
    pub fn page(&self, default_limit: i64) -> Result<db::Page, ApiError> {
        let skip = self.skip.unwrap_or(0);
        let limit = self.limit.unwrap_or(default_limit);
        if skip < 0 {
            return Err(ApiError::invalid("skip", "must be 0 or more"));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be from 1 to {MAX_LIMIT}"),
            ));
        }
        Ok(db::Page { skip, limit })
    }
}
