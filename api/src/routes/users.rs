//! Users: portal admins create, list and delete them.

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
    .service(resource("/users/{id}").route(web::delete().to(delete)));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    name: String,
    password: String,
    #[serde(default)]
    is_portal_admin: bool,
}

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
