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
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRepository {
    scope: String,
    organization_id: Option<Uuid>,
    project_id: Option<Uuid>,
    name: String,
    git_url: String,
    branch: String,
    #[serde(default)]
    priority: i64,
    token: Option<String>,
}

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
