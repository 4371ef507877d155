//! Organizations and their members.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::model::{OrgRole, fields};
use serde::Deserialize;
use uuid::Uuid;

use super::resource;
use crate::access;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json, Pagination, Query};
use crate::listing;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/organizations")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/organizations/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        resource("/organizations/{id}/members")
            .route(web::post().to(add_member))
            .route(web::get().to(list_members)),
    )
    .service(
        resource("/organizations/{id}/members/{user_id}")
            .route(web::patch().to(change_member))
            .route(web::delete().to(remove_member)),
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: String,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    slug: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: Option<String>,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    slug: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user_id: Uuid,
    #[schema(value_type = oec_common::model::OrgRole)]
    role: String,
}

fn slug_taken(e: &sqlx::Error, slug: &str) -> Option<ApiError> {
    db::is_unique_violation(e, "organizations_slug_key").then(|| {
        ApiError::conflict(
            "slug_taken",
            format!("An organization with slug {slug} already exists."),
        )
    })
}

/// Any signed-in user may create an organization and becomes its owner.
#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations", request_body = CreateOrganization,
    responses((status = 201, description = "Created.", body = oec_common::db::organizations::Organization), (status = 409, description = "The slug is taken.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateOrganization>,
) -> Result<HttpResponse, ApiError> {
    let name = fields::parse_name("name", &body.name)?;
    let slug = fields::parse_dns_label("slug", &body.slug)?;
    match db::organizations::insert(&state.pool, &name, &slug, user.id).await {
        Ok(org) => Ok(HttpResponse::Created().json(org)),
        Err(e) => Err(slug_taken(&e, &slug).unwrap_or_else(|| e.into())),
    }
}

#[utoipa::path(get, path = "/api/v1/organizations", tag = "organizations", params(crate::extract::Pagination),
    responses((status = 200, description = "The organizations visible to you.", body = Vec<oec_common::db::organizations::Organization>)))]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    let page = q.page(50)?;
    let rows =
        db::organizations::list_visible(&state.pool, user.id, user.portal_admin, page).await?;
    Ok(listing::respond(&req, page, rows))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id.")),
    responses((status = 200, description = "The organization.", body = oec_common::db::organizations::Organization)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    access::org(&state, &user, *id, Permission::OrgView).await?;
    let org = db::organizations::get(&state.pool, *id)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    Ok(HttpResponse::Ok().json(org))
}

#[utoipa::path(patch, path = "/api/v1/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id.")), request_body = UpdateOrganization,
    responses((status = 200, description = "Changed.", body = oec_common::db::organizations::Organization), (status = 409, description = "The slug is taken.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateOrganization>,
) -> Result<HttpResponse, ApiError> {
    access::org(&state, &user, *id, Permission::OrgUpdate).await?;
    let name = body
        .name
        .as_deref()
        .map(|v| fields::parse_name("name", v))
        .transpose()?;
    let slug = body
        .slug
        .as_deref()
        .map(|v| fields::parse_dns_label("slug", v))
        .transpose()?;
    match db::organizations::update(&state.pool, *id, name.as_deref(), slug.as_deref()).await {
        Ok(Some(org)) => Ok(HttpResponse::Ok().json(org)),
        Ok(None) => Err(ApiError::NotFound("organization")),
        Err(e) => {
            Err(slug_taken(&e, slug.as_deref().unwrap_or_default()).unwrap_or_else(|| e.into()))
        }
    }
}

#[utoipa::path(delete, path = "/api/v1/organizations/{id}", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id.")),
    responses((status = 204, description = "Deleted with everything in it."), (status = 409, description = "A deployment in it is pending or running (`deployment_in_progress`, with its `deployment_id`).", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    access::org(&state, &user, *id, Permission::OrgDelete).await?;
    match db::delete_unless_deploying(&state.pool, db::DeleteScope::Organization, *id).await? {
        db::Deleted::Deleted => {
            super::permissions_changed(&state, *id, None, None).await;
            Ok(HttpResponse::NoContent().finish())
        }
        db::Deleted::NotFound => Err(ApiError::NotFound("organization")),
        db::Deleted::Busy(d) => Err(ApiError::DeploymentInProgress(d)),
    }
}

#[utoipa::path(post, path = "/api/v1/organizations/{id}/members", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id.")), request_body = AddMember,
    responses((status = 201, description = "Added (or its role set).", body = oec_common::db::organizations::Member), (status = 409, description = "The change would leave no owner.", body = crate::errors::ErrorBody)))]
async fn add_member(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<AddMember>,
) -> Result<HttpResponse, ApiError> {
    let m = set_role(&state, &user, *id, body.user_id, &body.role, false).await?;
    Ok(HttpResponse::Created().json(m))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeMember {
    #[schema(value_type = oec_common::model::OrgRole)]
    role: String,
}

/// Changes a member's role (404 `member_not_found` for a non-member).
#[utoipa::path(patch, path = "/api/v1/organizations/{id}/members/{user_id}", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id."), ("user_id" = Uuid, Path, description = "The member's user id.")), request_body = ChangeMember,
    responses((status = 200, description = "The member's new role.", body = oec_common::db::organizations::Member), (status = 409, description = "The change would leave no owner.", body = crate::errors::ErrorBody)))]
async fn change_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<ChangeMember>,
) -> Result<HttpResponse, ApiError> {
    let (org, member) = path.into_inner();
    let m = set_role(&state, &user, org, member, &body.role, true).await?;
    Ok(HttpResponse::Ok().json(m))
}

/// Gives `member` `role` in `org`: only owners (and portal admins) hand
/// out or take away ownership, and the organization keeps an owner.
async fn set_role(
    state: &AppState,
    user: &AuthUser,
    org: Uuid,
    member: Uuid,
    role: &str,
    existing: bool,
) -> Result<db::organizations::Member, ApiError> {
    access::org(state, user, org, Permission::OrgMembersManage).await?;
    let role = OrgRole::parse(role).ok_or_else(|| {
        ApiError::invalid("role", format!("must be one of {}", OrgRole::choices()))
    })?;
    let current = db::organizations::member_role(&state.pool, org, member).await?;
    if existing && current.is_none() {
        return Err(ApiError::NotFound("member"));
    }
    let touches_owner = role == OrgRole::Owner || current.as_deref() == Some("owner");
    if touches_owner {
        access::org(state, user, org, Permission::OrgDelete).await?;
    }
    if current.is_none() && !db::users::exists(&state.pool, member).await? {
        return Err(ApiError::invalid("user_id", "no user with this id"));
    }
    let m = db::organizations::set_role_keeping_an_owner(&state.pool, org, member, role)
        .await?
        .ok_or_else(|| {
            ApiError::conflict(
                "last_owner",
                "An organization keeps at least one owner; add another owner first.",
            )
        })?;
    super::permissions_changed(state, org, None, Some(member)).await;
    Ok(m)
}

/// The organization's members with their email, name and role; every
/// member of the organization may see them.
#[utoipa::path(get, path = "/api/v1/organizations/{id}/members", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id."), crate::extract::Pagination),
    responses((status = 200, description = "The members, by email.", body = Vec<oec_common::db::organizations::ListedMember>)))]
async fn list_members(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    access::org(&state, &user, *id, Permission::OrgView).await?;
    let page = q.page(100)?;
    let rows = db::organizations::list_members(&state.pool, *id, page).await?;
    Ok(listing::respond(&req, page, rows))
}

#[utoipa::path(delete, path = "/api/v1/organizations/{id}/members/{user_id}", tag = "organizations", params(("id" = Uuid, Path, description = "The organization's id."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "The member is the last owner.", body = crate::errors::ErrorBody)))]
async fn remove_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (org, member) = path.into_inner();
    access::org(&state, &user, org, Permission::OrgMembersManage).await?;
    // Only owners (and portal admins) take away ownership.
    if db::organizations::member_role(&state.pool, org, member)
        .await?
        .as_deref()
        == Some("owner")
    {
        access::org(&state, &user, org, Permission::OrgDelete).await?;
    }
    match db::organizations::remove_member(&state.pool, org, member).await? {
        db::organizations::Removed::Removed => {
            super::permissions_changed(&state, org, None, Some(member)).await;
            Ok(HttpResponse::NoContent().finish())
        }
        db::organizations::Removed::NotAMember => Err(ApiError::NotFound("member")),
        db::organizations::Removed::LastOwner => Err(ApiError::conflict(
            "last_owner",
            "An organization keeps at least one owner; add another owner first.",
        )),
    }
}
