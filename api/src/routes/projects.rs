//! Projects and their members.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::db::projects::{NewProject, ProjectPatch};
use oec_common::model::{ProjectRole, fields};
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
        resource("/projects")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/projects/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(
        resource("/projects/{id}/members")
            .route(web::post().to(add_member))
            .route(web::get().to(list_members)),
    )
    .service(
        resource("/projects/{id}/members/{user_id}")
            .route(web::patch().to(change_member))
            .route(web::delete().to(remove_member)),
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    organization_id: Uuid,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: String,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    slug: String,
    #[schema(example = "https://github.com/acme/odoo-addons.git")]
    git_url: String,
    #[schema(example = "main")]
    git_branch: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: Option<String>,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    slug: Option<String>,
    git_url: Option<String>,
    git_branch: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    organization_id: Option<Uuid>,
    #[param(minimum = 0)]
    skip: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    user_id: Uuid,
    #[schema(value_type = oec_common::model::ProjectRole)]
    role: String,
}

fn slug_taken(e: &sqlx::Error) -> Option<ApiError> {
    db::is_unique_violation(e, "projects_organization_id_slug_key").then(|| {
        ApiError::conflict(
            "slug_taken",
            "A project with this slug already exists in the organization.",
        )
    })
}

#[utoipa::path(post, path = "/api/v1/projects", tag = "projects", request_body = CreateProject,
    responses((status = 201, description = "Created.", body = oec_common::db::projects::Project), (status = 409, description = "The slug is taken.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateProject>,
) -> Result<HttpResponse, ApiError> {
    access::org(
        &state,
        &user,
        body.organization_id,
        Permission::OrgProjectsCreate,
    )
    .await?;
    let name = fields::parse_name("name", &body.name)?;
    let slug = fields::parse_dns_label("slug", &body.slug)?;
    let git_url = fields::parse_git_url("git_url", &body.git_url, state.settings.allow_file_repos)?;
    let git_branch = fields::parse_branch("git_branch", &body.git_branch)?;
    let new = NewProject {
        organization_id: body.organization_id,
        name: &name,
        slug: &slug,
        git_url: &git_url,
        git_branch: &git_branch,
    };
    match db::projects::insert(&state.pool, &new).await {
        Ok(p) => Ok(HttpResponse::Created().json(p)),
        Err(e) => Err(slug_taken(&e).unwrap_or_else(|| e.into())),
    }
}

#[utoipa::path(get, path = "/api/v1/projects", tag = "projects", params(ListQuery),
    responses((status = 200, description = "The projects visible to you.", body = Vec<oec_common::db::projects::Project>)))]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    q: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = Pagination {
        skip: q.skip,
        limit: q.limit,
    }
    .page(50)?;
    let rows = db::projects::list_visible(
        &state.pool,
        user.id,
        user.portal_admin,
        q.organization_id,
        page,
    )
    .await?;
    Ok(listing::respond(&req, page, rows))
}

#[utoipa::path(get, path = "/api/v1/projects/{id}", tag = "projects", params(("id" = Uuid, Path, description = "The project's id.")),
    responses((status = 200, description = "The project.", body = oec_common::db::projects::Project)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    access::project(&state, &user, *id, Permission::ProjectView).await?;
    let p = db::projects::get(&state.pool, *id)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    Ok(HttpResponse::Ok().json(p))
}

#[utoipa::path(patch, path = "/api/v1/projects/{id}", tag = "projects", params(("id" = Uuid, Path, description = "The project's id.")), request_body = UpdateProject,
    responses((status = 200, description = "Changed.", body = oec_common::db::projects::Project), (status = 409, description = "The slug is taken.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateProject>,
) -> Result<HttpResponse, ApiError> {
    access::project(&state, &user, *id, Permission::ProjectUpdate).await?;
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
    let git_url = body
        .git_url
        .as_deref()
        .map(|v| fields::parse_git_url("git_url", v, state.settings.allow_file_repos))
        .transpose()?;
    let git_branch = body
        .git_branch
        .as_deref()
        .map(|v| fields::parse_branch("git_branch", v))
        .transpose()?;
    let patch = ProjectPatch {
        name: name.as_deref(),
        slug: slug.as_ref(),
        git_url: git_url.as_ref(),
        git_branch: git_branch.as_ref(),
    };
    match db::projects::update(&state.pool, *id, &patch).await {
        Ok(Some(p)) => Ok(HttpResponse::Ok().json(p)),
        Ok(None) => Err(ApiError::NotFound("project")),
        Err(e) => Err(slug_taken(&e).unwrap_or_else(|| e.into())),
    }
}

#[utoipa::path(delete, path = "/api/v1/projects/{id}", tag = "projects", params(("id" = Uuid, Path, description = "The project's id.")),
    responses((status = 204, description = "Deleted with everything in it."), (status = 409, description = "A deployment in it is pending or running (`deployment_in_progress`, with its `deployment_id`).", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let org = access::project(&state, &user, *id, Permission::ProjectDelete).await?;
    match db::delete_unless_deploying(&state.pool, db::DeleteScope::Project, *id).await? {
        db::Deleted::Deleted => {
            super::permissions_changed(&state, org, Some(*id), None).await;
            Ok(HttpResponse::NoContent().finish())
        }
        db::Deleted::NotFound => Err(ApiError::NotFound("project")),
        db::Deleted::Busy(d) => Err(ApiError::DeploymentInProgress(d)),
    }
}

#[utoipa::path(post, path = "/api/v1/projects/{id}/members", tag = "projects", params(("id" = Uuid, Path, description = "The project's id.")), request_body = AddMember,
    responses((status = 201, description = "Added (or its role set).", body = oec_common::db::projects::Member), (status = 409, description = "The change would leave no owner.", body = crate::errors::ErrorBody)))]
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
    #[schema(value_type = oec_common::model::ProjectRole)]
    role: String,
}

/// Changes a project member's role (404 `member_not_found` for a non-member).
#[utoipa::path(patch, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects", params(("id" = Uuid, Path, description = "The project's id."), ("user_id" = Uuid, Path, description = "The member's user id.")), request_body = ChangeMember,
    responses((status = 200, description = "The member's new role.", body = oec_common::db::projects::Member), (status = 409, description = "The change would leave no owner.", body = crate::errors::ErrorBody)))]
async fn change_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
    body: Json<ChangeMember>,
) -> Result<HttpResponse, ApiError> {
    let (project, member) = path.into_inner();
    let m = set_role(&state, &user, project, member, &body.role, true).await?;
    Ok(HttpResponse::Ok().json(m))
}

/// Gives `member` `role` in `project`; with `existing`, only to a member.
async fn set_role(
    state: &AppState,
    user: &AuthUser,
    project: Uuid,
    member: Uuid,
    role: &str,
    existing: bool,
) -> Result<db::projects::Member, ApiError> {
    let org = access::project(state, user, project, Permission::ProjectMembersManage).await?;
    let role = ProjectRole::parse(role).ok_or_else(|| {
        ApiError::invalid("role", format!("must be one of {}", ProjectRole::choices()))
    })?;
    if existing {
        if db::projects::member_role(&state.pool, project, member)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound("member"));
        }
    } else if !db::users::exists(&state.pool, member).await? {
        return Err(ApiError::invalid("user_id", "no user with this id"));
    }
    let m = db::projects::upsert_member(&state.pool, project, member, role).await?;
    super::permissions_changed(state, org, Some(project), Some(member)).await;
    Ok(m)
}

/// The project's members with their email, name and role; whoever may see
/// the project may see them.
#[utoipa::path(get, path = "/api/v1/projects/{id}/members", tag = "projects", params(("id" = Uuid, Path, description = "The project's id."), crate::extract::Pagination),
    responses((status = 200, description = "The members, by email.", body = Vec<oec_common::db::organizations::ListedMember>)))]
async fn list_members(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    access::project(&state, &user, *id, Permission::ProjectView).await?;
    let page = q.page(100)?;
    let rows = db::projects::list_members(&state.pool, *id, page).await?;
    Ok(listing::respond(&req, page, rows))
}

#[utoipa::path(delete, path = "/api/v1/projects/{id}/members/{user_id}", tag = "projects", params(("id" = Uuid, Path, description = "The project's id."), ("user_id" = Uuid, Path, description = "The member's user id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "The member is the last owner.", body = crate::errors::ErrorBody)))]
async fn remove_member(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(Uuid, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    let (project, member) = path.into_inner();
    let org = access::project(&state, &user, project, Permission::ProjectMembersManage).await?;
    if !db::projects::remove_member(&state.pool, project, member).await? {
        return Err(ApiError::NotFound("member"));
    }
    super::permissions_changed(&state, org, Some(project), Some(member)).await;
    Ok(HttpResponse::NoContent().finish())
}
