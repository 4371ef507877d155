//! Turns memberships into a decision for one request: 404 when the resource
//! is not visible to the caller (its existence is not revealed), 403 when it is
//! visible but the permission is missing.

use oec_common::auth::{Permission, Subject, authorize};
use oec_common::db;
use oec_common::model::ids::DeploymentId;
use uuid::Uuid;

use crate::errors::ApiError;
use crate::extract::AuthUser;
use crate::state::AppState;

fn decide(
    subject: &Subject,
    visible: bool,
    permission: Permission,
    what: &'static str,
) -> Result<(), ApiError> {
    if !visible {
        return Err(ApiError::NotFound(what));
    }
    if !authorize(subject, permission) {
        return Err(ApiError::Forbidden(permission));
    }
    Ok(())
}

/// Checks `permission` on an organization.
pub async fn org(
    state: &AppState,
    user: &AuthUser,
    org: Uuid,
    permission: Permission,
) -> Result<(), ApiError> {
    let subject = db::access::for_org(&state.pool, user.id, user.portal_admin, org)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    decide(&subject, subject.can_see_org(), permission, "organization")
}

/// Checks `permission` on a project; returns the project's organization.
pub async fn project(
    state: &AppState,
    user: &AuthUser,
    project: Uuid,
    permission: Permission,
) -> Result<Uuid, ApiError> {
    let (subject, org) = db::access::for_project(&state.pool, user.id, user.portal_admin, project)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    decide(&subject, subject.can_see_project(), permission, "project")?;
    Ok(org)
}

/// Loads a deployment and checks `permission` on its project; a deployment
/// of an invisible project is itself not found.
pub async fn deployment(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    permission: Permission,
) -> Result<db::deployments::Deployment, ApiError> {
    let d = db::deployments::get(&state.pool, DeploymentId(id))
        .await?
        .ok_or(ApiError::NotFound("deployment"))?;
    project(state, user, d.project_id, permission)
        .await
        .map_err(|e| e.not_found_as("deployment"))?;
    Ok(d)
}
