//! DNS providers (Cloudflare) of an organization; the API token is encrypted
//! at rest and never returned.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::model::{DnsKind, fields};
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
        resource("/dns-providers")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/dns-providers/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    );
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDnsProvider {
    organization_id: Uuid,
    #[schema(value_type = oec_common::model::DnsKind)]
    kind: String,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    api_token: String,
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    zone_id: String,
    #[schema(example = "apps.example.com")]
    apps_domain: String,
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

#[utoipa::path(post, path = "/api/v1/dns-providers", tag = "dns-providers", request_body = CreateDnsProvider,
    responses((status = 201, description = "Configured; its token is stored encrypted.", body = oec_common::db::dns_providers::DnsProvider), (status = 409, description = "The organization already has a provider.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateDnsProvider>,
) -> Result<HttpResponse, ApiError> {
    access::org(
        &state,
        &user,
        body.organization_id,
        Permission::OrgDnsManage,
    )
    .await?;
    let kind = DnsKind::parse(&body.kind).ok_or_else(|| {
        ApiError::invalid("kind", format!("must be one of {}", DnsKind::choices()))
    })?;
    let token = fields::parse_secret("api_token", &body.api_token)?;
    let zone_id = fields::parse_external_id("zone_id", &body.zone_id)?;
    let apps_domain = fields::parse_domain("apps_domain", &body.apps_domain)?;
    let encrypted = state.settings.secret_key.seal(&token);
    match db::dns_providers::insert(
        &state.pool,
        body.organization_id,
        kind.as_str(),
        &encrypted,
        &zone_id,
        &apps_domain,
    )
    .await
    {
        Ok(d) => Ok(HttpResponse::Created().json(d)),
        Err(e) if db::is_unique_violation(&e, "dns_providers_organization_id_apps_domain_key") => {
            Err(ApiError::conflict(
                "domain_taken",
                format!("The organization already has a DNS provider for {apps_domain}."),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/dns-providers", tag = "dns-providers", params(ListQuery),
    responses((status = 200, description = "The providers visible to you.", body = Vec<oec_common::db::dns_providers::DnsProvider>)))]
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
    let rows = db::dns_providers::list_visible(
        &state.pool,
        user.id,
        user.portal_admin,
        q.organization_id,
        page,
    )
    .await?;
    Ok(listing::respond(&req, page, rows))
}

/// The provider, if the user may see it (404 otherwise), after checking
/// `permission` on its organization (403).
async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    permission: Permission,
) -> Result<db::dns_providers::DnsProvider, ApiError> {
    let d = db::dns_providers::get(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("dns_provider"))?;
    access::org(state, user, d.organization_id, Permission::OrgDnsView)
        .await
        .map_err(|_| ApiError::NotFound("dns_provider"))?;
    if permission != Permission::OrgDnsView {
        access::org(state, user, d.organization_id, permission).await?;
    }
    Ok(d)
}

#[utoipa::path(get, path = "/api/v1/dns-providers/{id}", tag = "dns-providers", params(("id" = Uuid, Path, description = "The provider's id.")),
    responses((status = 200, description = "The provider.", body = oec_common::db::dns_providers::DnsProvider)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let d = visible(&state, &user, *id, Permission::OrgDnsView).await?;
    Ok(HttpResponse::Ok().json(d))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDnsProvider {
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    api_token: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    zone_id: Option<String>,
    apps_domain: Option<String>,
}

/// Rotates the token, changes the zone, or (while no environment is under
/// it) the domain.
#[utoipa::path(patch, path = "/api/v1/dns-providers/{id}", tag = "dns-providers", params(("id" = Uuid, Path, description = "The provider's id.")), request_body = UpdateDnsProvider,
    responses((status = 200, description = "Changed.", body = oec_common::db::dns_providers::DnsProvider), (status = 409, description = "Another provider has that apps domain.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateDnsProvider>,
) -> Result<HttpResponse, ApiError> {
    let d = visible(&state, &user, *id, Permission::OrgDnsManage).await?;
    let token = body
        .api_token
        .as_deref()
        .map(|t| fields::parse_secret("api_token", t).map(|t| state.settings.secret_key.seal(&t)))
        .transpose()?;
    let zone_id = body
        .zone_id
        .as_deref()
        .map(|z| fields::parse_external_id("zone_id", z))
        .transpose()?;
    let apps_domain = body
        .apps_domain
        .as_deref()
        .map(|a| fields::parse_domain("apps_domain", a))
        .transpose()?
        .filter(|a| !a.eq_ignore_ascii_case(&d.apps_domain));
    if apps_domain.is_some() {
        let n = db::dns_providers::users(&state.pool, &d).await?;
        if n > 0 {
            return Err(in_use(n, "change its domain"));
        }
    }
    match db::dns_providers::update(
        &state.pool,
        d.id,
        token.as_ref(),
        zone_id.as_deref(),
        apps_domain.as_deref(),
    )
    .await
    {
        Ok(Some(d)) => Ok(HttpResponse::Ok().json(d)),
        Ok(None) => Err(ApiError::NotFound("dns_provider")),
        Err(e) if db::is_unique_violation(&e, "dns_providers_organization_id_apps_domain_key") => {
            Err(ApiError::conflict(
                "domain_taken",
                "The organization already has a DNS provider for this domain.",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

fn in_use(n: i64, to: &str) -> ApiError {
    ApiError::conflict(
        "dns_provider_in_use",
        format!(
            "{n} environment(s) have their hostname under this provider's domain; delete or move them to {to}."
        ),
    )
}

/// Deletes a provider no environment's hostname is under; 409 otherwise.
#[utoipa::path(delete, path = "/api/v1/dns-providers/{id}", tag = "dns-providers", params(("id" = Uuid, Path, description = "The provider's id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "A pending or running deployment uses it.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let d = visible(&state, &user, *id, Permission::OrgDnsManage).await?;
    match db::dns_providers::delete(&state.pool, &d).await? {
        Ok(true) => Ok(HttpResponse::NoContent().finish()),
        Ok(false) => Err(ApiError::NotFound("dns_provider")),
        Err(n) => Err(in_use(n, "delete the provider")),
    }
}
