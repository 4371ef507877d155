//! The REST API under `/api/v1`, one module per resource.

pub mod auth;
pub mod deployments;
pub mod dns_providers;
pub mod environments;
pub mod health;
pub mod odoo_versions;
pub mod organizations;
pub mod projects;
pub mod repositories;
pub mod servers;
pub mod users;

use actix_web::{Resource, web};

use crate::errors::method_not_allowed;
use crate::state::AppState;

/// Tells every api process that `user`'s permissions (or, without a user,
/// those of everyone in the organization or project) changed, so open
/// streams re-check what they may deliver. A failed publish is logged: the
/// change itself is made, and streams still end at their token's expiry.
pub(crate) async fn permissions_changed(
    state: &AppState,
    org: uuid::Uuid,
    project: Option<uuid::Uuid>,
    user: Option<uuid::Uuid>,
) {
    let data = serde_json::json!({"organization_id": org, "project_id": project, "user_id": user});
    publish_permissions_changed(state, org, data).await;
}

/// A `permissions_changed` for `user` alone, after sessions of theirs ended
/// (logout, a password change, a reused refresh token, their deletion): each
/// of their open streams re-checks its session and ends if it is gone.
pub(crate) async fn sessions_ended(state: &AppState, user: uuid::Uuid) {
    let data = serde_json::json!({
        "organization_id": null, "project_id": null, "user_id": user, "reason": "sessions_ended"
    });
    publish_permissions_changed(state, uuid::Uuid::nil(), data).await;
}

async fn publish_permissions_changed(state: &AppState, org: uuid::Uuid, data: serde_json::Value) {
    if let Err(e) = state
        .publisher
        .publish(org, oec_common::events::PERMISSIONS_CHANGED, data)
        .await
    {
        tracing::warn!(error = %e, %org, "publishing permissions_changed failed");
    }
}

/// A resource that answers 405 with a JSON body for methods it does not route.
pub(crate) fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    auth::configure(cfg);
    users::configure(cfg);
    organizations::configure(cfg);
    projects::configure(cfg);
    servers::configure(cfg);
    odoo_versions::configure(cfg);
    repositories::configure(cfg);
    dns_providers::configure(cfg);
    deployments::configure(cfg);
    environments::configure(cfg);
    health::configure(cfg);
}
