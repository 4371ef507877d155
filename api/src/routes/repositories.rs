//! Addon repositories at platform, organization or project scope.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::db::repositories::NewRepository;
use oec_common::model::{RepoScope, fields};
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
        resource("/repositories")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/repositories/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRepository {
    #[schema(value_type = oec_common::model::RepoScope)]
    scope: String,
    organization_id: Option<Uuid>,
    project_id: Option<Uuid>,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: String,
    git_url: String,
    branch: String,
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000, default = 0)]
    priority: i64,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    token: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/repositories", tag = "repositories", request_body = CreateRepository,
    responses((status = 201, description = "Registered.", body = oec_common::db::repositories::Repository), (status = 409, description = "A repository of that name exists in the scope.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateRepository>,
) -> Result<HttpResponse, ApiError> {
    let scope = RepoScope::parse(&body.scope).ok_or_else(|| {
        ApiError::invalid("scope", format!("must be one of {}", RepoScope::choices()))
    })?;
    let (organization_id, project_id) = match (scope, body.organization_id, body.project_id) {
        (RepoScope::Platform, None, None) => {
            user.require_portal(Permission::PortalRepositoriesManage)?;
            (None, None)
        }
        (RepoScope::Organization, Some(org), None) => {
            access::org(&state, &user, org, Permission::OrgRepositoriesManage).await?;
            (Some(org), None)
        }
        (RepoScope::Project, None, Some(project)) => {
            let org = access::project(
                &state,
                &user,
                project,
                Permission::ProjectRepositoriesManage,
            )
            .await?;
            (Some(org), Some(project))
        }
        (RepoScope::Platform, _, _) => {
            return Err(ApiError::invalid(
                "scope",
                "platform repositories take neither organization_id nor project_id",
            ));
        }
        (RepoScope::Organization, _, _) => {
            return Err(ApiError::invalid(
                "organization_id",
                "required (without project_id) for scope organization",
            ));
        }
        (RepoScope::Project, _, _) => {
            return Err(ApiError::invalid(
                "project_id",
                "required (without organization_id) for scope project",
            ));
        }
    };
    // The name is the directory under addons/, so it follows the slug rules.
    let name = fields::parse_dns_label("name", &body.name)?;
    let git_url = fields::parse_git_url("git_url", &body.git_url, state.settings.allow_file_repos)?;
    let branch = fields::parse_branch("branch", &body.branch)?;
    let priority = fields::parse_int_range("priority", body.priority, -1000, 1000, "")?;
    let token = body
        .token
        .as_deref()
        .map(|t| fields::parse_secret("token", t).map(|t| state.settings.secret_key.seal(&t)))
        .transpose()?;
    let new = NewRepository {
        scope: scope.as_str(),
        organization_id,
        project_id,
        name: &name,
        git_url: &git_url,
        branch: &branch,
        priority,
        token_encrypted: token.as_ref(),
    };
    match db::repositories::insert(&state.pool, &new).await {
        Ok(r) => Ok(HttpResponse::Created().json(r)),
        Err(e) if db::is_unique_violation(&e, "addon_repositories_name") => {
            Err(ApiError::conflict(
                "name_taken",
                format!("A {scope} repository named {name} already exists here."),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/repositories", tag = "repositories", params(crate::extract::Pagination),
    responses((status = 200, description = "The platform's and your organizations' repositories.", body = Vec<oec_common::db::repositories::Repository>)))]
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: AuthUser,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    let page = q.page(50)?;
    let rows =
        db::repositories::list_visible(&state.pool, user.id, user.portal_admin, page).await?;
    Ok(listing::respond(&req, page, rows))
}

/// The repository if the user may see it (404 otherwise); with `manage`,
/// also the permission to change it at its scope (403).
async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    manage: bool,
) -> Result<db::repositories::Repository, ApiError> {
    let r = db::repositories::get(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("repository"))?;
    let hidden = |_| ApiError::NotFound("repository");
    match (r.organization_id, r.project_id) {
        (_, Some(project)) => {
            access::project(state, user, project, Permission::ProjectRepositoriesView)
                .await
                .map_err(hidden)?;
            if manage {
                access::project(state, user, project, Permission::ProjectRepositoriesManage)
                    .await?;
            }
        }
        (Some(org), None) => {
            access::org(state, user, org, Permission::OrgRepositoriesView)
                .await
                .map_err(hidden)?;
            if manage {
                access::org(state, user, org, Permission::OrgRepositoriesManage).await?;
            }
        }
        (None, None) => {
            if manage {
                user.require_portal(Permission::PortalRepositoriesManage)?;
            }
        }
    }
    Ok(r)
}

#[utoipa::path(get, path = "/api/v1/repositories/{id}", tag = "repositories", params(("id" = Uuid, Path, description = "The repository's id.")),
    responses((status = 200, description = "The repository.", body = oec_common::db::repositories::Repository)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(visible(&state, &user, *id, false).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRepository {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: Option<String>,
    git_url: Option<String>,
    branch: Option<String>,
    #[schema(minimum = -1000, maximum = 1000)]
    priority: Option<i64>,
    /// A token: replaced; `null`: removed; left out: unchanged.
    #[serde(default, deserialize_with = "crate::extract::present")]
    token: Option<Option<String>>,
}

/// 409 `repository_in_use` while a deployment that clones it is pending
/// or running: changing it under a running clone would deploy a mix.
async fn not_in_use(state: &AppState, r: &db::repositories::Repository) -> Result<(), ApiError> {
    let n = db::repositories::active_deployments(&state.pool, r).await?;
    if n > 0 {
        return Err(ApiError::conflict(
            "repository_in_use",
            format!(
                "{n} deployment(s) that clone this repository are pending or running; try again when they end."
            ),
        ));
    }
    Ok(())
}

/// Changes a repository; the next deployments clone what it says then.
#[utoipa::path(patch, path = "/api/v1/repositories/{id}", tag = "repositories", params(("id" = Uuid, Path, description = "The repository's id.")), request_body = UpdateRepository,
    responses((status = 200, description = "Changed.", body = oec_common::db::repositories::Repository), (status = 409, description = "A repository of that name exists in the scope.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateRepository>,
) -> Result<HttpResponse, ApiError> {
    let r = visible(&state, &user, *id, true).await?;
    let name = body
        .name
        .as_deref()
        .map(|n| fields::parse_dns_label("name", n))
        .transpose()?;
    let git_url = body
        .git_url
        .as_deref()
        .map(|u| fields::parse_git_url("git_url", u, state.settings.allow_file_repos))
        .transpose()?;
    let branch = body
        .branch
        .as_deref()
        .map(|b| fields::parse_branch("branch", b))
        .transpose()?;
    let priority = body
        .priority
        .map(|p| fields::parse_int_range("priority", p, -1000, 1000, ""))
        .transpose()?;
    let token = match &body.token {
        None => None,
        Some(None) => Some(None),
        Some(Some(t)) => Some(Some(
            state
                .settings
                .secret_key
                .seal(&fields::parse_secret("token", t)?),
        )),
    };
    not_in_use(&state, &r).await?;
    let patch = db::repositories::RepositoryPatch {
        name: name.as_ref(),
        git_url: git_url.as_ref(),
        branch: branch.as_ref(),
        priority,
        token_encrypted: token.as_ref().map(Option::as_ref),
    };
    match db::repositories::update(&state.pool, r.id, &patch).await {
        Ok(Some(r)) => Ok(HttpResponse::Ok().json(r)),
        Ok(None) => Err(ApiError::NotFound("repository")),
        Err(e) if db::is_unique_violation(&e, "addon_repositories_name") => {
            Err(ApiError::conflict(
                "name_taken",
                format!(
                    "A {} repository with this name already exists here.",
                    r.scope
                ),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a repository; the next deployments no longer clone it.
#[utoipa::path(delete, path = "/api/v1/repositories/{id}", tag = "repositories", params(("id" = Uuid, Path, description = "The repository's id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "A pending or running deployment uses it.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let r = visible(&state, &user, *id, true).await?;
    not_in_use(&state, &r).await?;
    if !db::repositories::delete(&state.pool, r.id).await? {
        return Err(ApiError::NotFound("repository"));
    }
    Ok(HttpResponse::NoContent().finish())
}
