//! Request extractors: the authenticated user (a handler that forgets auth
//! does not compile) and pagination.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use oec_common::auth::{Permission, Subject, TokenError, TokenKind, authorize};
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
    /// The login session the token belongs to: revoking it ends the token.
    pub session: Uuid,
    /// When the access token expires (Unix seconds): an event stream ends then.
    pub token_exp: i64,
}

impl AuthUser {
    /// A portal-level permission (`portal.*`), decided by `auth::authorize`
    /// like every other: 403 `portal_admin_only` without it.
    pub fn require_portal(&self, permission: Permission) -> Result<(), ApiError> {
        let subject = Subject {
            portal_admin: self.portal_admin,
            ..Subject::default()
        };
        if authorize(&subject, permission) {
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
    let user = db::users::by_session(&state.pool, claims.sub, claims.sid)
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized(
                "session_ended",
                "The token's session has ended (logout, a password change or the user's deletion); log in again.",
            )
        })?;
    Ok(AuthUser {
        id: user.id,
        email: user.email,
        portal_admin: user.is_portal_admin,
        session: claims.sid,
        token_exp: claims.exp,
    })
}

/// The user of `token` (found by `from_request` of either extractor; none
/// is a 401 `missing_token` saying where it goes).
fn authenticated(
    req: &HttpRequest,
    token: Result<Option<String>, ApiError>,
    where_it_goes: &'static str,
) -> Pin<Box<dyn Future<Output = Result<AuthUser, ApiError>>>> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    Box::pin(async move {
        let state = state.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing")))?;
        let token = token?.ok_or_else(|| ApiError::unauthorized("missing_token", where_it_goes))?;
        authenticate(&state, &token).await
    })
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        authenticated(
            req,
            bearer(req),
            "Authentication required: send `Authorization: Bearer <access token>`.",
        )
    }
}

/// The caller of an event stream: the access token from `Authorization:
/// Bearer` (parsed exactly as for [`AuthUser`]) or, since browsers'
/// EventSource cannot send headers, from `?token=`.
pub struct SseUser(pub AuthUser);

impl FromRequest for SseUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("token").cloned());
        let token = bearer(req).map(|header| header.or(query));
        let user = authenticated(
            req,
            token,
            "Pass the access token as `?token=` or `Authorization: Bearer`.",
        );
        Box::pin(async move { user.await.map(SseUser) })
    }
}

pub const MAX_LIMIT: i64 = 500;

/// `?skip=&limit=`: skip ≥ 0, 1 ≤ limit ≤ 500.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Pagination {
    #[param(minimum = 0)]
    pub skip: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
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

/// A JSON body (the `JsonConfig`'s limit and errors apply) whose every
/// string, keys included, is free of control characters other than tab,
/// line feed and carriage return: a NUL or an escape sequence is a 422
/// naming the field, before any handler or query sees it.
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            if let Some(field) = first_control_character(&value, "") {
                return Err(ApiError::invalid(
                    if field.is_empty() { "body" } else { &field },
                    "contains a control character (only tab and line breaks are allowed)",
                )
                .into());
            }
            serde_json::from_value(value)
                .map(Json)
                .map_err(|e| crate::errors::deserialize_error(&e).into())
        })
    }
}

/// A query string (the `QueryConfig`'s errors apply) whose every decoded
/// name and value is free of control characters other than tab and line
/// breaks: a `%00` is a 422 naming the parameter, before any handler or
/// query sees it.
pub struct Query<T>(pub T);

impl<T> std::ops::Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| has_control_character(k) || has_control_character(v))
        {
            let field = if has_control_character(name) {
                "query"
            } else {
                name
            };
            return std::future::ready(Err(ApiError::invalid(
                field,
                "contains a control character (only tab and line breaks are allowed)",
            )
            .into()));
        }
        // A parameter the endpoint does not take is a 422 naming it (the
        // query structs deny unknown fields), never silently ignored.
        if let Err(actix_web::error::QueryPayloadError::Deserialize(e)) =
            web::Query::<T>::from_query(req.query_string())
        {
            let text = e.to_string();
            if let Some((name, _)) = text
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
            {
                return std::future::ready(Err(ApiError::UnknownParameter(
                    oec_common::model::fields::FieldError {
                        field: name.to_owned(),
                        message: text.clone(),
                    },
                )
                .into()));
            }
        }
        let inner = web::Query::<T>::from_request(req, payload).into_inner();
        std::future::ready(inner.map(|q| Query(q.into_inner())))
    }
}

/// Whether `s` holds a character no text field accepts.
pub fn has_control_character(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// The path (`a.b[2]`) of the first string holding a control character.
fn first_control_character(v: &serde_json::Value, path: &str) -> Option<String> {
    match v {
        serde_json::Value::String(s) => has_control_character(s).then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_control_character(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if has_control_character(k) {
                return Some(p);
            }
            first_control_character(item, &p)
        }),
        _ => None,
    }
}

/// For PATCH bodies: tells a field sent as `null` (`Some(None)`) from one
/// left out (`None`); use with `#[serde(default, deserialize_with = ...)]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
