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
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDnsProvider {
    organization_id: Uuid,
    kind: String,
    api_token: String,
    zone_id: String,
    apps_domain: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    organization_id: Option<Uuid>,
    skip: Option<i64>,
    limit: Option<i64>,
}

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
