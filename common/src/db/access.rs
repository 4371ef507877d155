//! The memberships a [`Subject`] is built from.

use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::{Permission, Subject, role_pairs_with, whole_org_roles_with};
use crate::model::{OrgRole, ProjectRole};

#[derive(sqlx::FromRow)]
struct Row {
    organization_id: Uuid,
    org_role: Option<String>,
    project_role: Option<String>,
    in_some_project: bool,
}

impl Row {
    fn subject(&self, portal_admin: bool) -> Subject {
        Subject {
            portal_admin,
            org_role: self.org_role.as_deref().and_then(OrgRole::parse),
            project_role: self.project_role.as_deref().and_then(ProjectRole::parse),
            in_some_project: self.in_some_project,
        }
    }
}

/// The user's standing in an organization; `None` when it does not exist.
pub async fn for_org(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    org: Uuid,
) -> sqlx::Result<Option<Subject>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT o.id AS organization_id,
                (SELECT role FROM organization_members m WHERE m.organization_id = o.id AND m.user_id = $2) AS org_role,
                NULL::text AS project_role,
                EXISTS (SELECT 1 FROM project_members pm JOIN projects p ON p.id = pm.project_id
                        WHERE p.organization_id = o.id AND pm.user_id = $2) AS in_some_project
         FROM organizations o WHERE o.id = $1",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| r.subject(portal_admin)))
}

/// The user's standing in a project and its organization; `None` when the
/// project does not exist. Also returns the organization id.
pub async fn for_project(
    pool: &PgPool,
    user: Uuid,
    portal_admin: bool,
    project: Uuid,
) -> sqlx::Result<Option<(Subject, Uuid)>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT p.organization_id,
                (SELECT role FROM organization_members m WHERE m.organization_id = p.organization_id AND m.user_id = $2) AS org_role,
                (SELECT role FROM project_members pm WHERE pm.project_id = p.id AND pm.user_id = $2) AS project_role,
                EXISTS (SELECT 1 FROM project_members pm JOIN projects q ON q.id = pm.project_id
                        WHERE q.organization_id = p.organization_id AND pm.user_id = $2) AS in_some_project
         FROM projects p WHERE p.id = $1",
    )
    .bind(project)
    .bind(user)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| (r.subject(portal_admin), r.organization_id)))
}

/// What a user may watch live, as `authorize` decides for viewing
/// deployments: whole organizations (their role there suffices whatever
/// their project roles) and single projects.
pub async fn event_scopes(pool: &PgPool, user: Uuid) -> sqlx::Result<(Vec<Uuid>, Vec<Uuid>)> {
    // The organizations whose every deployment their role lets them view
    // (whatever their project roles), and the projects where their two
    // memberships do, both as `authorize` decides.
    let whole_org = whole_org_roles_with(Permission::ProjectDeploymentsView);
    let orgs: Vec<Uuid> = sqlx::query_scalar(
        "SELECT organization_id FROM organization_members WHERE user_id = $1 AND role = ANY($2)",
    )
    .bind(user)
    .bind(whole_org)
    .fetch_all(pool)
    .await?;
    let projects: Vec<Uuid> = sqlx::query_scalar(&format!(
        "SELECT p.id FROM projects p
         WHERE (p.id IN (SELECT project_id FROM project_members WHERE user_id = $2)
                OR p.organization_id IN (SELECT organization_id FROM organization_members WHERE user_id = $2))
           AND {ROLE_PAIR} = ANY($1)",
        ROLE_PAIR = super::role_pair("p.id")
    ))
    .bind(role_pairs_with(Permission::ProjectDeploymentsView))
    .bind(user)
    .fetch_all(pool)
    .await?;
    Ok((orgs, projects))
}
