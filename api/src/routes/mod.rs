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

use oec_common::events::{Envelope, Event, PermissionsChanged};
use oec_common::model::PermissionsReason;

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
    let change = PermissionsChanged {
        organization_id: Some(org),
        project_id: project,
        user_id: user,
        reason: PermissionsReason::MembershipChanged,
    };
    publish_permissions_changed(state, org, change).await;
}

/// A `permissions_changed` for `user` alone, after sessions of theirs ended
/// (logout, a password change, a reused refresh token, their deletion): each
/// of their open streams re-checks its session and ends if it is gone.
pub(crate) async fn sessions_ended(state: &AppState, user: uuid::Uuid) {
    let change = PermissionsChanged {
        organization_id: None,
        project_id: None,
        user_id: Some(user),
        reason: PermissionsReason::SessionsEnded,
    };
    publish_permissions_changed(state, uuid::Uuid::nil(), change).await;
}

async fn publish_permissions_changed(
    state: &AppState,
    org: uuid::Uuid,
    change: PermissionsChanged,
) {
    let event = Envelope::new(org, Event::PermissionsChanged(change));
    state.publisher.publish_or_warn(&[event]).await;
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
    cfg.service(resource("/openapi.json").route(web::get().to(crate::openapi::openapi_json)));
}
