//! Odoo versions and the image each deploys; portal admins manage them.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::model::fields;
use serde::Deserialize;

use super::resource;
use crate::errors::ApiError;
use crate::extract::{AuthUser, Json, Pagination, Query};
use crate::listing;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/odoo-versions")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    version: String,
    image: String,
    registry_username: Option<String>,
    registry_password: Option<String>,
}

async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalOdooVersionsManage)?;
    let version = fields::parse_odoo_version("version", &body.version)?;
    let image = fields::parse_image("image", &body.image)?;
    let (username, password) = match (&body.registry_username, &body.registry_password) {
        (Some(u), Some(p)) => (
            Some(fields::parse_secret("registry_username", u)?),
            Some(
                state
                    .settings
                    .secret_key
                    .seal(&fields::parse_secret("registry_password", p)?),
            ),
        ),
        (None, None) => (None, None),
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "registry_password",
                "required with registry_username",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "registry_username",
                "required with registry_password",
            ));
        }
    };
    match db::odoo_versions::insert(
        &state.pool,
        &version,
        &image,
        username.as_deref(),
        password.as_ref(),
    )
    .await
    {
        Ok(v) => Ok(HttpResponse::Created().json(v)),
        Err(e) if db::is_unique_violation(&e, "odoo_versions_version_key") => {
            Err(ApiError::conflict(
                "version_exists",
                format!("Odoo version {version} is already configured."),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Every signed-in user may list versions, to choose one for an environment.
async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    _user: AuthUser,
    q: Query<Pagination>,
) -> Result<HttpResponse, ApiError> {
    let page = q.page(50)?;
    let rows = db::odoo_versions::list(&state.pool, page).await?;
    Ok(listing::respond(&req, page, rows))
}
