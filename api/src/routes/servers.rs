//! Servers: where environments are deployed. Credentials are encrypted at
//! rest and never returned.

use actix_web::{HttpRequest, HttpResponse, web};
use oec_common::auth::Permission;
use oec_common::db;
use oec_common::db::servers::NewServer;
use oec_common::model::{AuthMethod, fields};
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
        resource("/servers")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/servers/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/servers/{id}/check").route(web::post().to(check)))
    .service(resource("/servers/{id}/host-key/reset").route(web::post().to(reset_host_key)));
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    organization_id: Uuid,
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: String,
    #[schema(example = "165.22.65.97")]
    host: String,
    #[serde(default = "default_port")]
    #[schema(minimum = 1, maximum = 65535, default = 22)]
    ssh_port: i64,
    #[schema(pattern = r"^[a-z_][a-z0-9_-]{0,31}$", example = "deploy")]
    ssh_user: String,
    #[schema(value_type = oec_common::model::AuthMethod)]
    auth_method: String,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    password: Option<String>,
    private_key: Option<String>,
    #[schema(pattern = r"^SHA256:[A-Za-z0-9+/=]{40,44}$")]
    host_key_fingerprint: Option<String>,
}

fn default_port() -> i64 {
    22
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

#[utoipa::path(post, path = "/api/v1/servers", tag = "servers", request_body = CreateServer,
    responses((status = 201, description = "Registered; its key or password is stored encrypted.", body = oec_common::db::servers::Server), (status = 409, description = "The organization has a server of that name.", body = crate::errors::ErrorBody)))]
async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateServer>,
) -> Result<HttpResponse, ApiError> {
    access::org(
        &state,
        &user,
        body.organization_id,
        Permission::OrgServersManage,
    )
    .await?;
    let name = fields::parse_name("name", &body.name)?;
    let host = fields::parse_host("host", &body.host)?;
    let ssh_port = fields::parse_port("ssh_port", body.ssh_port)?;
    let ssh_user = fields::parse_unix_user("ssh_user", &body.ssh_user)?;
    let method = auth_method(&body.auth_method)?;
    let secret = credentials(method, &body.password, &body.private_key)?;
    let fingerprint = body
        .host_key_fingerprint
        .as_deref()
        .map(|f| fields::parse_fingerprint("host_key_fingerprint", f))
        .transpose()?;
    let encrypted = state.settings.secret_key.seal(&secret);
    let new = NewServer {
        organization_id: body.organization_id,
        name: &name,
        host: &host,
        ssh_port,
        ssh_user: &ssh_user,
        auth_method: method.as_str(),
        secret_encrypted: &encrypted,
        host_key_fingerprint: fingerprint.as_deref(),
    };
    match db::servers::insert(&state.pool, &new).await {
        Ok(s) => Ok(HttpResponse::Created().json(s)),
        Err(e) if db::is_unique_violation(&e, "servers_organization_id_name_key") => {
            Err(ApiError::conflict(
                "name_taken",
                format!("A server named {name} already exists in the organization."),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

fn auth_method(v: &str) -> Result<AuthMethod, ApiError> {
    AuthMethod::parse(v).ok_or_else(|| {
        ApiError::invalid(
            "auth_method",
            format!("must be one of {}", AuthMethod::choices()),
        )
    })
}

/// The secret of a login by `method`: its password or private key, and
/// only it.
fn credentials(
    method: AuthMethod,
    password: &Option<String>,
    key: &Option<String>,
) -> Result<String, ApiError> {
    match (method, password, key) {
        (AuthMethod::Password, Some(p), None) => Ok(fields::parse_secret("password", p)?),
        (AuthMethod::Key, None, Some(k)) => private_key(k),
        (AuthMethod::Password, _, _) => Err(ApiError::invalid(
            "password",
            "required (and only it) when auth_method is password",
        )),
        (AuthMethod::Key, _, _) => Err(ApiError::invalid(
            "private_key",
            "required (and only it) when auth_method is key",
        )),
    }
}

/// A private key oec can log in with: PEM or OpenSSH, readable, and not
/// encrypted (a deployment has no one to ask for a passphrase), checked now
/// rather than at the first deployment.
fn private_key(v: &str) -> Result<String, ApiError> {
    let key = fields::parse_private_key("private_key", v)?;
    match russh::keys::decode_secret_key(&key, None) {
        Ok(_) => Ok(key),
        Err(russh::keys::Error::KeyIsEncrypted) => Err(ApiError::invalid(
            "private_key",
            "is encrypted with a passphrase, which oec cannot type in; give a copy without one (ssh-keygen -p -N '' -f COPY)",
        )),
        Err(e) => Err(ApiError::invalid(
            "private_key",
            format!("cannot be read as a private key ({e})"),
        )),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServer {
    #[schema(
        pattern = r"^[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]{0,99}$",
        example = "Acme"
    )]
    name: Option<String>,
    host: Option<String>,
    #[schema(minimum = 1, maximum = 65535)]
    ssh_port: Option<i64>,
    #[schema(pattern = r"^[a-z_][a-z0-9_-]{0,31}$")]
    ssh_user: Option<String>,
    #[schema(value_type = Option<oec_common::model::AuthMethod>)]
    auth_method: Option<String>,
    #[schema(pattern = r"^[^\r\n\x00]{1,4096}$")]
    password: Option<String>,
    private_key: Option<String>,
    #[schema(pattern = r"^SHA256:[A-Za-z0-9+/=]{40,44}$")]
    host_key_fingerprint: Option<String>,
}

/// Renames the server, moves it (host, port: its recorded host key is
/// forgotten unless a new fingerprint is given), or rotates its
/// credentials (a new `auth_method` comes with its secret).
#[utoipa::path(patch, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = Uuid, Path, description = "The server's id.")), request_body = UpdateServer,
    responses((status = 200, description = "Changed.", body = ServerWithCheck), (status = 409, description = "The organization has a server of that name.", body = crate::errors::ErrorBody)))]
async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: Json<UpdateServer>,
) -> Result<HttpResponse, ApiError> {
    let server = manageable(&state, &user, *id).await?;
    let name = body
        .name
        .as_deref()
        .map(|n| fields::parse_name("name", n))
        .transpose()?;
    let host = body
        .host
        .as_deref()
        .map(|h| fields::parse_host("host", h))
        .transpose()?;
    let ssh_port = body
        .ssh_port
        .map(|p| fields::parse_port("ssh_port", p))
        .transpose()?;
    let ssh_user = body
        .ssh_user
        .as_deref()
        .map(|u| fields::parse_unix_user("ssh_user", u))
        .transpose()?;
    let method = body.auth_method.as_deref().map(auth_method).transpose()?;
    let current = AuthMethod::parse(&server.auth_method).unwrap_or(AuthMethod::Password);
    // No secret and no new method: the credentials stay.
    let unchanged = body.password.is_none()
        && body.private_key.is_none()
        && method.is_none_or(|m| m == current);
    let secret = if unchanged {
        None
    } else {
        Some(credentials(
            method.unwrap_or(current),
            &body.password,
            &body.private_key,
        )?)
    };
    let fingerprint = body
        .host_key_fingerprint
        .as_deref()
        .map(|f| fields::parse_fingerprint("host_key_fingerprint", f))
        .transpose()?;
    let moved = host.as_deref().is_some_and(|h| h != server.host)
        || ssh_port.is_some_and(|p| i32::from(p) != server.ssh_port);
    let encrypted = secret.as_deref().map(|s| state.settings.secret_key.seal(s));
    let changes = db::servers::ServerChanges {
        name: name.as_deref(),
        host: host.as_deref(),
        ssh_port,
        ssh_user: ssh_user.as_deref(),
        auth_method: method.map(AuthMethod::as_str),
        secret_encrypted: encrypted.as_ref(),
        host_key_fingerprint: match (&fingerprint, moved) {
            (Some(f), _) => Some(Some(f.as_str())),
            (None, true) => Some(None),
            (None, false) => None,
        },
    };
    match db::servers::update(&state.pool, server.id, &changes).await {
        Ok(Some(s)) => {
            if secret.is_some() {
                tracing::info!(server = %s.id, user = %user.id, "server credentials rotated");
            }
            Ok(HttpResponse::Ok().json(with_last_check(&state, s).await?))
        }
        Ok(None) => Err(ApiError::NotFound("server")),
        Err(e) if db::is_unique_violation(&e, "servers_organization_id_name_key") => {
            Err(ApiError::conflict(
                "name_taken",
                "Another server of the organization has this name.",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a server no environment uses; 409 `server_in_use` otherwise.
/// Nothing on the server itself is touched.
#[utoipa::path(delete, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = Uuid, Path, description = "The server's id.")),
    responses((status = 204, description = "Removed."), (status = 409, description = "Environments are on it.", body = crate::errors::ErrorBody)))]
async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let server = manageable(&state, &user, *id).await?;
    match db::servers::delete_unused(&state.pool, server.id).await? {
        db::servers::Removed::Removed => Ok(HttpResponse::NoContent().finish()),
        db::servers::Removed::NotFound => Err(ApiError::NotFound("server")),
        db::servers::Removed::InUse(n) => Err(ApiError::conflict(
            "server_in_use",
            format!("{n} environment(s) use this server; move or delete them first."),
        )),
    }
}

#[utoipa::path(get, path = "/api/v1/servers", tag = "servers", params(ListQuery),
    responses((status = 200, description = "The servers visible to you.", body = Vec<oec_common::db::servers::Server>)))]
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
    let rows = db::servers::list_visible(
        &state.pool,
        user.id,
        user.portal_admin,
        q.organization_id,
        page,
    )
    .await?;
    Ok(listing::respond(&req, page, rows))
}

/// The server, if the user may view it (else it is not found).
async fn visible(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<db::servers::Server, ApiError> {
    let server = db::servers::get(&state.pool, id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    access::org(
        state,
        user,
        server.organization_id,
        Permission::OrgServersView,
    )
    .await
    .map_err(|e| e.not_found_as("server"))?;
    Ok(server)
}

/// A server with its latest finished check (`null` before the first).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ServerWithCheck {
    #[serde(flatten)]
    server: db::servers::Server,
    last_check: Option<db::server_checks::Check>,
}

async fn with_last_check(
    state: &AppState,
    server: db::servers::Server,
) -> Result<ServerWithCheck, ApiError> {
    let last_check = db::server_checks::latest(&state.pool, server.id).await?;
    Ok(ServerWithCheck { server, last_check })
}

/// The server, if the user may view it (else not found) and manage it
/// (else forbidden).
async fn manageable(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> Result<db::servers::Server, ApiError> {
    let server = visible(state, user, id).await?;
    access::org(
        state,
        user,
        server.organization_id,
        Permission::OrgServersManage,
    )
    .await?;
    Ok(server)
}

#[utoipa::path(get, path = "/api/v1/servers/{id}", tag = "servers", params(("id" = Uuid, Path, description = "The server's id.")),
    responses((status = 200, description = "The server and its latest finished check.", body = ServerWithCheck)))]
async fn get(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let server = visible(&state, &user, *id).await?;
    Ok(HttpResponse::Ok().json(with_last_check(&state, server).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// Seconds to wait for the result (default 60, at most 120; 0 answers
    /// at once with the pending check).
    #[param(minimum = 0, maximum = 120)]
    wait: Option<u64>,
}

/// Checks the server now, through a worker (the api never connects to
/// servers): 200 with the finished check, or 202 with the pending one when
/// it takes longer than `wait`; `GET /servers/{id}` shows it once done.
#[utoipa::path(post, path = "/api/v1/servers/{id}/check", tag = "servers", params(("id" = Uuid, Path, description = "The server's id."), CheckQuery),
    responses((status = 200, description = "The finished check.", body = oec_common::db::server_checks::Check),
              (status = 202, description = "Still running after `wait`: the pending check.", body = oec_common::db::server_checks::Check),
              (status = 503, description = "The job queue is unavailable.", body = crate::errors::ErrorBody)))]
async fn check(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    q: Query<CheckQuery>,
) -> Result<HttpResponse, ApiError> {
    let server = manageable(&state, &user, *id).await?;
    let wait = match q.wait {
        None => 60,
        Some(w) if w <= 120 => w,
        Some(_) => return Err(ApiError::invalid("wait", "must be 0 to 120 seconds")),
    };
    let pending = db::server_checks::create(&state.pool, server.id, user.id).await?;
    let queued = state
        .checks
        .with("enqueueing a server check", |mut storage| async move {
            oec_common::queue::enqueue_check(&mut storage, pending.id).await
        })
        .await;
    if let Err(e) = queued {
        db::server_checks::abandon(&state.pool, pending.id).await?;
        tracing::warn!(error = %e, "enqueueing a server check failed");
        return Err(ApiError::QueueUnavailable(
            "The job queue is unavailable; the server was not checked. Try again.".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let now = db::server_checks::get(&state.pool, pending.id)
            .await?
            .ok_or(ApiError::NotFound("server"))?;
        if now.status == oec_common::model::CheckStatus::Done {
            return Ok(HttpResponse::Ok().json(now));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(HttpResponse::Accepted().json(now));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Forgets the server's recorded host key (after a legitimate key change):
/// the next deployment trusts and records the key it is shown.
#[utoipa::path(post, path = "/api/v1/servers/{id}/host-key/reset", tag = "servers", params(("id" = Uuid, Path, description = "The server's id.")),
    responses((status = 200, description = "The recorded host key is forgotten.", body = oec_common::db::servers::Server)))]
async fn reset_host_key(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let server = manageable(&state, &user, *id).await?;
    db::servers::reset_host_key(&state.pool, server.id).await?;
    tracing::info!(server = %server.id, user = %user.id, "host key reset");
    let server = db::servers::get(&state.pool, server.id)
        .await?
        .ok_or(ApiError::NotFound("server"))?;
    Ok(HttpResponse::Ok().json(server))
}
