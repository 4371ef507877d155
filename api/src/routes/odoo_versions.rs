//! Odoo versions and the image each deploys; portal admins manage them.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::model::fields;
use serde::Deserialize;
use uuid::Uuid;

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
    )
    .service(
        resource("/odoo-versions/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateVersion {
    #[schema(pattern = r"^[0-9]{1,3}[.][0-9]{1,3}$", example = "17.0")]
    version: String,
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$",
        example = "odoo:17.0"
    )]
    image: String,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    registry_username: Option<String>,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    registry_password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/odoo-versions", tag = "odoo-versions", request_body = CreateVersion,
    responses((status = 201, description = "Configured (portal admins only).", body = oec_common::db::odoo_versions::OdooVersion), (status = 409, description = "The version is already configured.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateVersion>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalOdooVersionsManage)?;
    let version = fields::parse_odoo_version("version", &body.version)?;
    let image = fields::parse_image("image", &body.image)?;
    let credentials = credentials(
        &state,
        body.registry_username.as_deref(),
        body.registry_password.as_deref(),
    )?;
    let (username, password) = match &credentials {
        Some((u, p)) => (Some(u.as_str()), Some(p)),
        None => (None, None),
    };
    match db::odoo_versions::insert(&state.pool, &version, &image, username, password).await {
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

/// Registry credentials come as a pair (the password sealed), or not at all.
fn credentials(
    state: &AppState,
    username: Option<&str>,
    password: Option<&str>,
) -> Result<Option<(String, oec_common::secrets::Sealed)>, ApiError> {
    match (username, password) {
        (Some(u), Some(p)) => seal_pair(state, u, p).map(Some),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ApiError::invalid(
            "registry_password",
            "required with registry_username",
        )),
        (None, Some(_)) => Err(ApiError::invalid(
            "registry_username",
            "required with registry_password",
        )),
    }
}

fn seal_pair(
    state: &AppState,
    username: &str,
    password: &str,
) -> Result<(String, oec_common::secrets::Sealed), ApiError> {
    Ok((
        fields::parse_secret("registry_username", username)?,
        state
            .settings
            .secret_key
            .seal(&fields::parse_secret("registry_password", password)?),
    ))
}

#[utoipa::path(get, path = "/api/v1/odoo-versions/{id}", tag = "odoo-versions", params(("id" = Uuid, Path, description = "The version's id.")),
    responses((status = 200, description = "The version.", body = oec_common::db::odoo_versions::OdooVersion)))]
async fn get(
    state: web::Data<AppState>,
    _user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let v = db::odoo_versions::get(&state.pool, *id)
        .await?
        .ok_or(ApiError::NotFound("odoo_version"))?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateVersion {
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")]
    image: Option<String>,
    /// Both set: new credentials; both `null`: none; left out: unchanged.
    #[serde(default, deserialize_with = "crate::extract::present")]
    registry_username: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::extract::present")]
    registry_password: Option<Option<String>>,
}

/// Changes the image (the next deployment of each environment on this
/// version pulls it) or the registry credentials. The version itself is
/// what environments name and does not change.
#[utoipa::path(patch, path = "/api/v1/odoo-versions/{id}", tag = "odoo-versions", params(("id" = Uuid, Path, description = "The version's id.")), request_body = UpdateVersion,
    responses((status = 200, description = "Changed.", body = oec_common::db::odoo_versions::OdooVersion)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateVersion>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalOdooVersionsManage)?;
    let image = body
        .image
        .as_deref()
        .map(|i| fields::parse_image("image", i))
        .transpose()?;
    let sealed;
    let creds = match (&body.registry_username, &body.registry_password) {
        (None, None) => db::odoo_versions::Credentials::Keep,
        (Some(None), Some(None)) => db::odoo_versions::Credentials::Clear,
        (Some(Some(u)), Some(Some(p))) => {
            sealed = seal_pair(&state, u, p)?;
            db::odoo_versions::Credentials::Set(&sealed.0, &sealed.1)
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "registry_username",
                "give registry_username and registry_password together (both null removes them)",
            ));
        }
        (Some(_), _) => {
            return Err(ApiError::invalid(
                "registry_password",
                "give registry_username and registry_password together (both null removes them)",
            ));
        }
    };
    let v = db::odoo_versions::update(&state.pool, *id, image.as_ref(), creds)
        .await?
        .ok_or(ApiError::NotFound("odoo_version"))?;
    Ok(HttpResponse::Ok().json(v))
}

/// Deletes a version no environment uses; 409 `odoo_version_in_use` else.
#[utoipa::path(delete, path = "/api/v1/odoo-versions/{id}", tag = "odoo-versions", params(("id" = Uuid, Path, description = "The version's id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "Environments use it.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    user.require_portal(Permission::PortalOdooVersionsManage)?;
    match db::odoo_versions::delete(&state.pool, *id).await? {
        db::odoo_versions::Deleted::Deleted => Ok(HttpResponse::NoContent().finish()),
        db::odoo_versions::Deleted::NotFound => Err(ApiError::NotFound("odoo_version")),
        db::odoo_versions::Deleted::InUse(n) => Err(ApiError::conflict(
            "odoo_version_in_use",
            format!(
                "{n} environment(s) use this Odoo version; move them to another version first."
            ),
        )),
    }
}

/// Every signed-in user may list versions, to choose one for an environment.
#[utoipa::path(get, path = "/api/v1/odoo-versions", tag = "odoo-versions", params(crate::extract::Pagination),
    responses((status = 200, description = "The configured versions.", body = Vec<oec_common::db::odoo_versions::OdooVersion>)))]
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
