//! Environments: one Odoo instance of a project on a server. The id is the
//! instance UUID used in every name on the server.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::db::deployments::NewDeployment;
use oec_common::db::environments::EnvironmentFields;
use oec_common::model::ids::EnvironmentId;
use oec_common::model::{Action, EnvironmentKind, EnvironmentStatus, Trigger, fields, overrides};
use oec_common::names;
use oec_common::secrets;
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
        resource("/environments")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/environments/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/environments/{id}/stop").route(web::post().to(stop)))
    .service(resource("/environments/{id}/start").route(web::post().to(start)))
    .service(resource("/environments/{id}/restart").route(web::post().to(restart)))
    .service(resource("/environments/{id}/credentials").route(web::get().to(credentials)));
}

/// The body of POST (all required fields present) and PATCH (any subset).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentBody {
    project_id: Option<Uuid>,
    server_id: Option<Uuid>,
    #[schema(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "staging")]
    name: Option<String>,
    #[schema(value_type = Option<oec_common::model::EnvironmentKind>)]
    kind: Option<String>,
    #[schema(
        pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        example = "acme-staging"
    )]
    subdomain: Option<String>,
    #[schema(pattern = r"^[0-9]{1,3}[.][0-9]{1,3}$", example = "17.0")]
    odoo_version: Option<String>,
    branch: Option<String>,
    #[schema(minimum = 0.1, maximum = 64.0)]
    cpu_cores: Option<f64>,
    #[schema(minimum = 512, maximum = 262144)]
    ram_mb: Option<i64>,
    #[schema(minimum = 1, maximum = 10000)]
    disk_gb: Option<i64>,
    odoo_conf_overrides: Option<serde_json::Value>,
    replica_enabled: Option<bool>,
    /// Load Odoo's demo data when the database is initialized (its first
    /// deployment); only a `development` environment may have it.
    with_demo: Option<bool>,
    /// Absent: unchanged; `null`: removed (PATCH); a URL: set.
    #[serde(default, deserialize_with = "crate::extract::present")]
    migration_source_url: Option<Option<String>>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    project_id: Option<Uuid>,
    #[param(minimum = 0)]
    skip: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
}

/// Validated values of a body; `None` where the body left a field out.
struct Parsed {
    name: Option<fields::DnsLabel>,
    kind: Option<EnvironmentKind>,
    subdomain: Option<fields::DnsLabel>,
    odoo_version: Option<String>,
    branch: Option<fields::Branch>,
    cpu_cores: Option<f64>,
    ram_mb: Option<i32>,
    disk_gb: Option<i32>,
    overrides: Option<serde_json::Value>,
    migration_source_url: Option<String>,
    clear_migration_source_url: bool,
}

fn parse(b: &EnvironmentBody) -> Result<Parsed, ApiError> {
    Ok(Parsed {
        name: b
            .name
            .as_deref()
            .map(|v| fields::parse_dns_label("name", v))
            .transpose()?,
        kind: b
            .kind
            .as_deref()
            .map(|v| {
                EnvironmentKind::parse(v).ok_or_else(|| {
                    ApiError::invalid(
                        "kind",
                        format!("must be one of {}", EnvironmentKind::choices()),
                    )
                })
            })
            .transpose()?,
        subdomain: b
            .subdomain
            .as_deref()
            .map(|v| fields::parse_dns_label("subdomain", v))
            .transpose()?,
        odoo_version: b
            .odoo_version
            .as_deref()
            .map(|v| fields::parse_odoo_version("odoo_version", v))
            .transpose()?,
        branch: b
            .branch
            .as_deref()
            .map(|v| fields::parse_branch("branch", v))
            .transpose()?,
        cpu_cores: b
            .cpu_cores
            .map(|v| fields::parse_cpu_cores("cpu_cores", v))
            .transpose()?,
        ram_mb: b
            .ram_mb
            .map(|v| fields::parse_int_range("ram_mb", v, 512, 262_144, "MB"))
            .transpose()?,
        disk_gb: b
            .disk_gb
            .map(|v| fields::parse_int_range("disk_gb", v, 1, 10_000, "GB"))
            .transpose()?,
        overrides: b
            .odoo_conf_overrides
            .as_ref()
            .map(|v| overrides::parse_overrides("odoo_conf_overrides", v))
            .transpose()?,
        migration_source_url: b
            .migration_source_url
            .as_ref()
            .and_then(Option::as_deref)
            .map(|v| fields::parse_download_url("migration_source_url", v))
            .transpose()?,
        clear_migration_source_url: matches!(b.migration_source_url, Some(None)),
    })
}

/// Checks the references a body makes: the server belongs to the project's
/// organization and the Odoo version is configured.
async fn check_references(
    state: &AppState,
    org: Uuid,
    server: Option<Uuid>,
    version: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(server) = server {
        match db::servers::get(&state.pool, server).await? {
            Some(s) if s.organization_id == org => {}
            _ => {
                return Err(ApiError::invalid(
                    "server_id",
                    "no server with this id in the project's organization",
                ));
            }
        }
    }
    if let Some(v) = version
        && !db::odoo_versions::exists(&state.pool, v).await?
    {
        return Err(ApiError::invalid(
            "odoo_version",
            format!("Odoo version {v} is not configured (see /api/v1/odoo-versions)"),
        ));
    }
    Ok(())
}

/// `{subdomain}.{apps_domain}`: the organization's DNS provider's domain
/// (the oldest, as the pipeline picks it), else the platform's.
async fn hostname(state: &AppState, org: Uuid, subdomain: &str) -> Result<String, ApiError> {
    let domain = match db::plan::dns_provider(&state.pool, org).await? {
        Some(d) => d.apps_domain,
        None => state.settings.pipeline.apps_domain.clone(),
    };
    Ok(format!("{subdomain}.{domain}").to_lowercase())
}

fn write_error(e: sqlx::Error) -> ApiError {
    if db::is_unique_violation(&e, "environments_project_id_name_key") {
        ApiError::conflict(
            "name_taken",
            "The project already has an environment with this name.",
        )
    } else if db::is_unique_violation(&e, "environments_hostname") {
        ApiError::conflict(
            "subdomain_taken",
            "Another environment of the platform already has this hostname; choose another subdomain.",
        )
    } else if db::is_unique_violation(&e, "environments_server_subdomain") {
        ApiError::conflict(
            "subdomain_taken",
            "Another environment on this server uses this subdomain.",
        )
    } else {
        e.into()
    }
}

#[utoipa::path(post, path = "/api/v1/environments", tag = "environments", request_body = EnvironmentBody,
    responses((status = 201, description = "Created; deploy it with `POST /deployments`.", body = oec_common::db::environments::Environment), (status = 409, description = "The name or hostname is taken, or the server lacks capacity.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<EnvironmentBody>,
) -> Result<HttpResponse, ApiError> {
    let project_id = body
        .project_id
        .ok_or_else(|| ApiError::invalid("project_id", "required"))?;
    let org = access::project(
        &state,
        &user,
        project_id,
        Permission::ProjectEnvironmentsManage,
    )
    .await?;
    let p = parse(&body)?;
    let server_id = body
        .server_id
        .ok_or_else(|| ApiError::invalid("server_id", "required"))?;
    let name = p
        .name
        .ok_or_else(|| ApiError::invalid("name", "required"))?;
    let kind = p
        .kind
        .ok_or_else(|| ApiError::invalid("kind", "required"))?;
    check_demo(kind, body.with_demo.unwrap_or(false))?;
    let subdomain = p
        .subdomain
        .ok_or_else(|| ApiError::invalid("subdomain", "required"))?;
    let odoo_version = p
        .odoo_version
        .ok_or_else(|| ApiError::invalid("odoo_version", "required"))?;
    check_references(&state, org, Some(server_id), Some(&odoo_version)).await?;
    check_capacity(
        &state,
        server_id,
        None,
        p.cpu_cores.unwrap_or(1.0),
        p.ram_mb.unwrap_or(2048),
    )
    .await?;
    let hostname = hostname(&state, org, &subdomain).await?;
    // The branch defaults to the project's.
    let branch = match p.branch {
        Some(b) => b,
        None => {
            db::projects::get(&state.pool, project_id)
                .await?
                .ok_or(ApiError::NotFound("project"))?
                .git_branch
        }
    };
    let sealed_url = seal(&state, p.migration_source_url.as_deref());
    let f = EnvironmentFields {
        server_id: Some(server_id),
        name: Some(&name),
        kind: Some(kind),
        subdomain: Some(&subdomain),
        hostname: Some(&hostname),
        odoo_version: Some(&odoo_version),
        branch: Some(&branch),
        cpu_cores: Some(p.cpu_cores.unwrap_or(1.0)),
        ram_mb: Some(p.ram_mb.unwrap_or(2048)),
        disk_gb: Some(p.disk_gb.unwrap_or(10)),
        odoo_conf_overrides: p.overrides.as_ref(),
        replica_enabled: body.replica_enabled,
        with_demo: body.with_demo,
        migration_source_url: p.migration_source_url.as_deref().map(secrets::shown_url),
        migration_source_encrypted: sealed_url.as_ref(),
        clear_migration_source_url: p.clear_migration_source_url,
    };
    let env = db::environments::insert(&state.pool, project_id, &f)
        .await
        .map_err(write_error)?;
    Ok(HttpResponse::Created().json(env))
}

#[utoipa::path(get, path = "/api/v1/environments", tag = "environments", params(ListQuery),
    responses((status = 200, description = "The environments visible to you.", body = Vec<oec_common::db::environments::Environment>)))]
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
    let rows =
        db::environments::list_visible(&state.pool, user.id, user.portal_admin, q.project_id, page)
            .await?;
    Ok(listing::respond(&req, page, rows))
}

/// Loads the environment and checks `permission` on its project; an
/// environment of an invisible project is itself not found.
async fn load(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    permission: Permission,
) -> Result<(db::environments::Environment, Uuid), ApiError> {
    let env = db::environments::get(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("environment"))?;
    let org = access::project(state, user, env.project_id, permission)
        .await
        .map_err(|e| e.not_found_as("environment"))?;
    Ok((env, org))
}

#[utoipa::path(get, path = "/api/v1/environments/{id}", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 200, description = "The environment.", body = oec_common::db::environments::Environment)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (env, _) = load(&state, &user, *id, Permission::ProjectEnvironmentsView).await?;
    Ok(HttpResponse::Ok().json(env))
}

#[utoipa::path(patch, path = "/api/v1/environments/{id}", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")), request_body = EnvironmentBody,
    responses((status = 200, description = "Changed; the next deployment applies it.", body = oec_common::db::environments::Environment), (status = 409, description = "The name or hostname is taken, or the server lacks capacity.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<EnvironmentBody>,
) -> Result<HttpResponse, ApiError> {
    let (env, org) = load(&state, &user, *id, Permission::ProjectEnvironmentsManage).await?;
    if body.project_id.is_some() {
        return Err(ApiError::invalid(
            "project_id",
            "an environment cannot move to another project",
        ));
    }
    let p = parse(&body)?;
    check_references(&state, org, body.server_id, p.odoo_version.as_deref()).await?;
    check_demo(
        p.kind.unwrap_or(env.kind),
        body.with_demo.unwrap_or(env.with_demo),
    )?;
    // Only a change of server or size is measured: an unrelated edit of an
    // environment on a server that is over capacity (e.g. after a check
    // found less memory) is not refused.
    if body.server_id.is_some() || p.cpu_cores.is_some() || p.ram_mb.is_some() {
        check_capacity(
            &state,
            body.server_id.unwrap_or(env.server_id),
            Some(env.id),
            p.cpu_cores.unwrap_or(env.cpu_cores),
            p.ram_mb.unwrap_or(env.ram_mb),
        )
        .await?;
    }
    // A new subdomain is a new hostname; one made before hostnames were
    // stored gets its hostname now.
    let hostname = match (&p.subdomain, &env.hostname) {
        (Some(s), _) => Some(hostname(&state, org, s).await?),
        (None, None) => Some(hostname(&state, org, &env.subdomain).await?),
        (None, Some(_)) => None,
    };
    let sealed_url = seal(&state, p.migration_source_url.as_deref());
    let f = EnvironmentFields {
        server_id: body.server_id,
        name: p.name.as_ref(),
        kind: p.kind,
        subdomain: p.subdomain.as_ref(),
        hostname: hostname.as_deref(),
        odoo_version: p.odoo_version.as_deref(),
        branch: p.branch.as_ref(),
        cpu_cores: p.cpu_cores,
        ram_mb: p.ram_mb,
        disk_gb: p.disk_gb,
        odoo_conf_overrides: p.overrides.as_ref(),
        replica_enabled: body.replica_enabled,
        with_demo: body.with_demo,
        migration_source_url: p.migration_source_url.as_deref().map(secrets::shown_url),
        migration_source_encrypted: sealed_url.as_ref(),
        clear_migration_source_url: p.clear_migration_source_url,
    };
    let env = db::environments::update(&state.pool, *id, &f)
        .await
        .map_err(write_error)?
        .ok_or(ApiError::NotFound("environment"))?;
    Ok(HttpResponse::Ok().json(env))
}

/// Refuses demo data (`with_demo`) on an environment that is not
/// `development`: a production or staging database never holds Odoo's demo
/// records (a kind changed to either must drop `with_demo` in the same
/// request).
fn check_demo(kind: EnvironmentKind, with_demo: bool) -> Result<(), ApiError> {
    if with_demo && kind != EnvironmentKind::Development {
        return Err(ApiError::invalid(
            "with_demo",
            format!(
                "demo data is only for development environments, not {}",
                kind.as_str()
            ),
        ));
    }
    Ok(())
}

/// Refuses (422 `server_capacity`, naming what is left) an environment
/// that would take more CPU or memory than the server's last check found,
/// times `OEC_CPU_OVERCOMMIT` / `OEC_RAM_OVERCOMMIT`, with the server's other
/// environments counted. A server never checked is not measured.
async fn check_capacity(
    state: &AppState,
    server: Uuid,
    except: Option<Uuid>,
    cpu: f64,
    ram_mb: i32,
) -> Result<(), ApiError> {
    let Some(c) = db::server_checks::capacity(&state.pool, server, except).await? else {
        return Ok(());
    };
    let (cpu_x, ram_x) = (state.settings.cpu_overcommit, state.settings.ram_overcommit);
    let cpu_left = (c.cpu_count * cpu_x - c.cpu_used).max(0.0);
    let ram_left = (c.memory_mb * ram_x - c.ram_used_mb).max(0.0).floor();
    if cpu <= cpu_left + 1e-9 && f64::from(ram_mb) <= ram_left {
        return Ok(());
    }
    Err(ApiError::Unprocessable {
        code: "server_capacity",
        message: format!(
            "The server has {cpu_left:.2} CPU cores and {ram_left:.0} MB of memory left for this environment, which asks for {cpu} cores and {ram_mb} MB (its last check found {} cores and {:.0} MB; overcommit x{cpu_x} for CPU, x{ram_x} for memory).",
            c.cpu_count, c.memory_mb
        ),
    })
}

/// The migration URL, encrypted for storage (its query string may be a
/// presigned link's signature).
fn seal(state: &AppState, url: Option<&str>) -> Option<oec_common::secrets::Sealed> {
    url.map(|u| state.settings.secret_key.seal(u))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    teardown: Option<bool>,
    delete_data: Option<bool>,
}

/// `DELETE /environments/{id}`: forgets the environment and says what it
/// leaves on the server. With `teardown=true` a worker first removes its
/// containers, network, DNS record (if oec created it) and files, and the
/// database volume too with `delete_data=true`; the answer is the queued
/// run (202), and the environment is gone once it succeeds.
#[utoipa::path(delete, path = "/api/v1/environments/{id}", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id."), DeleteQuery),
    responses((status = 200, description = "Only oec's records were deleted; what stays on the server.", body = Forgotten),
              (status = 202, description = "`teardown=true`: the queued teardown run.", body = oec_common::db::deployments::Deployment),
              (status = 409, description = "A deployment is pending or running.", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
    q: Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let (env, _) = load(&state, &user, *id, Permission::ProjectEnvironmentsManage).await?;
    let teardown = q.teardown.unwrap_or(false);
    let delete_data = q.delete_data.unwrap_or(false);
    if delete_data && !teardown {
        return Err(ApiError::invalid(
            "delete_data",
            "only applies with teardown=true (a plain DELETE leaves the server untouched)",
        ));
    }
    if teardown {
        return lifecycle_run(&state, &user, &req, env.id, Action::Teardown, delete_data).await;
    }
    match db::delete_unless_deploying(&state.pool, db::DeleteScope::Environment, *id).await? {
        db::Deleted::Deleted => Ok(HttpResponse::Ok().json(Forgotten {
            deleted: true,
            teardown: false,
            left_on_server: left_on_server(&state, EnvironmentId(env.id)),
            note: "Only oec's records were deleted; the server keeps everything below. DELETE with ?teardown=true removes it (and ?delete_data=true the database volume too).",
        })),
        db::Deleted::NotFound => Err(ApiError::NotFound("environment")),
        db::Deleted::Busy(d) => Err(ApiError::DeploymentInProgress(d)),
    }
}

/// A plain DELETE's answer: oec's records are gone, the server keeps the rest.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    deleted: bool,
    teardown: bool,
    left_on_server: LeftOnServer,
    note: &'static str,
}

/// What an environment keeps on its server when only its record goes.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LeftOnServer {
    containers: Vec<String>,
    network: String,
    volumes: Vec<String>,
    directory: String,
    dns_record: &'static str,
}

fn left_on_server(state: &AppState, env: EnvironmentId) -> LeftOnServer {
    LeftOnServer {
        containers: vec![
            names::odoo_container(env),
            names::pgbouncer_container(env),
            names::db_container(env),
            names::replica_pgbouncer_container(env),
            names::replica_container(env),
        ],
        network: names::network(env),
        volumes: vec![names::volume(env), names::replica_volume(env)],
        directory: names::env_dir(&state.settings.deploy_root, env),
        dns_record: "the A record of its hostname, if oec created one",
    }
}

#[utoipa::path(post, path = "/api/v1/environments/{id}/stop", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 202, description = "The queued stop run.", body = oec_common::db::deployments::Deployment), (status = 409, description = "Never deployed (`not_deployed`), or a deployment is pending or running.", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn stop(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(&state, &user, &req, *id, Action::Stop).await
}

#[utoipa::path(post, path = "/api/v1/environments/{id}/start", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 202, description = "The queued start run.", body = oec_common::db::deployments::Deployment), (status = 409, description = "Never deployed (`not_deployed`), or a deployment is pending or running.", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn start(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(&state, &user, &req, *id, Action::Start).await
}

#[utoipa::path(post, path = "/api/v1/environments/{id}/restart", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 202, description = "The queued restart run.", body = oec_common::db::deployments::Deployment), (status = 409, description = "Never deployed (`not_deployed`), or a deployment is pending or running.", body = crate::errors::ErrorBody), (status = 503, description = "The job queue is unavailable; nothing was queued.", body = crate::errors::ErrorBody)))]
async fn restart(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    lifecycle(&state, &user, &req, *id, Action::Restart).await
}

/// Stop, start or restart: a short run on a worker, with its own steps and
/// logs, of an environment that was deployed.
async fn lifecycle(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
    id: Uuid,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let (env, _) = load(state, user, id, Permission::ProjectEnvironmentsDeploy).await?;
    if env.status == EnvironmentStatus::Created {
        return Err(ApiError::Conflict {
            code: "not_deployed",
            message: format!(
                "Environment {} was never deployed, so there is nothing to {action}; deploy it first.",
                env.id
            ),
        });
    }
    lifecycle_run(state, user, req, env.id, action, false).await
}

async fn lifecycle_run(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
    id: Uuid,
    action: Action,
    delete_data: bool,
) -> Result<HttpResponse, ApiError> {
    let key = crate::routes::deployments::idempotency_key(req)?;
    let new = NewDeployment {
        environment_id: id,
        trigger: Trigger::Manual,
        triggered_by: user.id,
        idempotency_key: key.as_deref(),
        requested_commit: None,
        redeploy_of: None,
        action,
        delete_data,
    };
    crate::routes::deployments::start(state, user, new).await
}

/// An environment's credentials, as read once.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Credentials {
    environment_id: Uuid,
    /// `admin` when oec initialized the database; `null` otherwise.
    admin_login: Option<&'static str>,
    admin_password: Option<String>,
    master_password: String,
    list_db: bool,
    note: &'static str,
}

/// Odoo's master password of the environment, once: the first project
/// admin to read it gets it (and the read is logged); later reads are 409.
#[utoipa::path(get, path = "/api/v1/environments/{id}/credentials", tag = "environments", params(("id" = Uuid, Path, description = "The environment's id.")),
    responses((status = 200, description = "Shown once, to the first project admin who asks.", body = Credentials),
              (status = 409, description = "Already read (`credentials_already_read`), or not generated yet (`credentials_not_ready`).", body = crate::errors::ErrorBody)))]
async fn credentials(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let (env, _) = load(&state, &user, *id, Permission::ProjectEnvironmentsManage).await?;
    match db::environments::take_credentials(&state.pool, env.id, user.id).await? {
        db::environments::Credentials::First(master, admin) => {
            let decrypt = |what: &str, v: &oec_common::secrets::Sealed| {
                state
                    .settings
                    .secret_key
                    .open(v)
                    .map_err(|e| ApiError::Internal(anyhow::anyhow!("{what}: {e}")))
            };
            let master = decrypt("the master password", &master)?;
            let admin = admin
                .map(|a| decrypt("the admin password", &a))
                .transpose()?;
            tracing::info!(environment = %env.id, user = %user.id, email = %user.email,
                "environment credentials read (once)");
            let note = if admin.is_some() {
                "Shown once. admin_login/admin_password sign in to Odoo; the master password guards Odoo's database manager (/web/database/*), which is off unless list_db is turned on in odoo_conf_overrides."
            } else {
                "Shown once. The database was not initialized by oec (restored from a backup, or older), so it keeps its own users; the master password guards Odoo's database manager (/web/database/*), which is off unless list_db is turned on in odoo_conf_overrides."
            };
            Ok(crate::routes::auth::no_store(Credentials {
                environment_id: env.id,
                admin_login: admin.as_ref().map(|_| "admin"),
                admin_password: admin,
                master_password: master,
                list_db: false,
                note,
            }))
        }
        db::environments::Credentials::AlreadyRead(at) => Err(ApiError::conflict(
            "credentials_already_read",
            format!(
                "The credentials of this environment were read at {at}; they are shown only once."
            ),
        )),
        db::environments::Credentials::NotYet => Err(ApiError::conflict(
            "credentials_not_ready",
            "The credentials are generated by the environment's first deployment; deploy it, then read them.",
        )),
    }
}
