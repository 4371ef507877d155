//! Users: portal admins create, list, rename, deactivate, reset and delete
//! them (a user changes their own password at `PUT /auth/password`).

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::model::fields;
use oec_common::{auth, db};
use serde::Deserialize;
use uuid::Uuid;

use super::resource;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json, Pagination, Query};
use crate::listing;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/users")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/users/{id}")
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/users/{id}/password").route(web::put().to(reset_password)));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = Email, max_length = 254, example = "ops@example.com")]
    email: String,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: String,
    #[schema(
        min_length = 12,
        max_length = 1024,
        example = "correct horse battery staple"
    )]
    password: String,
    #[serde(default)]
    is_portal_admin: bool,
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, description = "Created (portal admins only).", body = oec_common::db::users::User), (status = 409, description = "The email is taken.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalUsersManage)?;
    let email = fields::parse_email("email", &body.email)?;
    let name = fields::parse_name("name", &body.name)?;
    let password = fields::parse_password("password", &body.password)?;
    let hash = web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing: {e}")))??;
    match db::users::insert(&state.pool, &email, &name, &hash, body.is_portal_admin).await {
        Ok(u) => Ok(HttpResponse::Created().json(u)),
        Err(e) if db::is_unique_violation(&e, "users_email_key") => Err(ApiError::conflict(
            "email_taken",
            format!("A user with email {email} already exists."),
        )),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(crate::extract::Pagination),
    responses((status = 200, description = "Every user (portal admins only).", body = Vec<oec_common::db::users::User>)))]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalUsersManage)?;
    let page = q.page(50)?;
    let rows = db::users::list(&state.pool, page).await?;
    Ok(listing::respond(&req, page, rows))
}

/// Deletes a user: their memberships and sessions go with them, their open
/// event streams end at once, and what they created stays (its `created_by`
/// or `triggered_by` becomes null).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "The user's id.")),
    responses((status = 204, description = "Deleted."), (status = 409, description = "The user is an organization's last owner or the last portal admin.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalUsersManage)?;
    match db::users::delete(&state.pool, *id).await? {
        db::users::Deleted::Deleted => {
            super::sessions_ended(&state, *id).await;
            Ok(HttpResponse::NoContent().finish())
        }
        db::users::Deleted::NotFound => Err(ApiError::NotFound("user")),
        db::users::Deleted::LastOwner(org) => Err(ApiError::conflict(
            "last_owner",
            format!(
                "The user is the only owner of organization {org}; make someone else its owner first."
            ),
        )),
        db::users::Deleted::LastPortalAdmin => Err(ApiError::conflict(
            "last_portal_admin",
            "The user is the only portal admin; make someone else a portal admin first.",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: Option<String>,
    is_active: Option<bool>,
}

/// Renames, deactivates or reactivates a user. Deactivating ends every
/// session and open stream of theirs at once; their memberships and
/// history stay, and login answers 401 `account_deactivated`.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "The user's id.")), request_body = UpdateUser,
    responses((status = 200, description = "Renamed, deactivated or reactivated.", body = oec_common::db::users::User), (status = 409, description = "The last active portal admin cannot be deactivated.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalUsersManage)?;
    let name = body
        .name
        .as_deref()
        .map(|n| fields::parse_name("name", n))
        .transpose()?;
    if body.is_active == Some(false) && *id == user.id {
        return Err(ApiError::invalid(
            "is_active",
            "you cannot deactivate yourself; another portal admin can",
        ));
    }
    match db::users::set_active(&state.pool, *id, body.is_active, name.as_deref()).await? {
        db::users::Activation::Changed(u) => {
            if body.is_active == Some(false) {
                super::sessions_ended(&state, *id).await;
            }
            Ok(HttpResponse::Ok().json(u))
        }
        db::users::Activation::NotFound => Err(ApiError::NotFound("user")),
        db::users::Activation::LastPortalAdmin => Err(ApiError::conflict(
            "last_portal_admin",
            "The user is the only active portal admin; make someone else a portal admin first.",
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    #[schema(
        min_length = 12,
        max_length = 1024,
        example = "correct horse battery staple"
    )]
    new_password: String,
}

/// A portal admin sets another user's password; every session of theirs
/// ends. For one's own password, `PUT /auth/password` (it asks for the
/// current one).
#[utoipa::path(put, path = "/api/v1/users/{id}/password", tag = "users", params(("id" = Uuid, Path, description = "The user's id.")), request_body = ResetPassword,
    responses((status = 204, description = "Set (portal admins only); the user's sessions ended.")))]
async fn reset_password(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<ResetPassword>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalUsersManage)?;
    if *id == user.id {
        return Err(ApiError::invalid(
            "new_password",
            "change your own password with PUT /api/v1/auth/password (it asks for the current one)",
        ));
    }
    let password = fields::parse_password("new_password", &body.new_password)?;
    let hash = web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing: {e}")))??;
    if !db::users::reset_password(&state.pool, *id, &hash).await? {
        return Err(ApiError::NotFound("user"));
    }
    super::sessions_ended(&state, *id).await;
    Ok(HttpResponse::NoContent().finish())
}
