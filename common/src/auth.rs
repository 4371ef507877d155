//! Authentication (JWT, argon2 password hashes) and authorization: the
//! [`Permission`] enum, the role hierarchy and the one [`authorize`] that decides.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{OrgRole, ProjectRole};

// ---------------------------------------------------------------------------
// Passwords

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// True when `password` matches the stored argon2 hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash no password matches, verified against when a login names an unknown
/// email, so that both cases take the same time.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lb0zcB1hMoXd8GUqpAnOxq3zjAKTUrK8h5xc0vWYcW4"
}

// ---------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// A token's claims. Both kinds name the login session (`sid`) they belong
/// to: revoking the session (logout, a password change, a reused refresh
/// token, the user's deletion) ends its access tokens too. `jti` tells one
/// refresh token of a session from the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub typ: TokenKind,
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid")]
    Invalid,
    #[error("wrong token type")]
    WrongKind,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &str, access_ttl: Duration, refresh_ttl: Duration) -> Self {
        TokenIssuer {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            access_ttl,
            refresh_ttl,
        }
    }

    /// A signed token of `kind` for `user` in `session`, with id `jti`.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        jti: Uuid,
        kind: TokenKind,
    ) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = match kind {
            TokenKind::Access => self.access_ttl,
            TokenKind::Refresh => self.refresh_ttl,
        };
        let claims = Claims {
            sub: user,
            typ: kind,
            sid: session,
            jti,
            iat: now,
            exp: now + ttl.as_secs() as i64,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        self.decode(token, kind, true)
    }

    /// Like [`verify`](Self::verify) but accepting an expired token: logging
    /// out with one still ends its session.
    pub fn verify_ignoring_expiry(
        &self,
        token: &str,
        kind: TokenKind,
    ) -> Result<Claims, TokenError> {
        self.decode(token, kind, false)
    }

    fn decode(&self, token: &str, kind: TokenKind, check_exp: bool) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_exp = check_exp;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        if data.claims.typ != kind {
            return Err(TokenError::WrongKind);
        }
        Ok(data.claims)
    }
}

// ---------------------------------------------------------------------------
// Permissions

/// Everything a user may be allowed to do. The wire names of the deployment
/// permissions are the spec's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    // Organization level.
    OrgView,
    OrgUpdate,
    OrgDelete,
    OrgMembersManage,
    OrgProjectsCreate,
    OrgServersView,
    OrgServersManage,
    OrgDnsView,
    OrgDnsManage,
    OrgRepositoriesView,
    OrgRepositoriesManage,
    // Project level.
    ProjectView,
    ProjectUpdate,
    ProjectDelete,
    ProjectMembersManage,
    ProjectRepositoriesManage,
    ProjectEnvironmentsView,
    ProjectEnvironmentsManage,
    ProjectEnvironmentsDeploy,
    ProjectDeploymentsView,
    ProjectDeploymentsList,
    ProjectDeploymentsCancel,
    ProjectRepositoriesView,
    // Portal level: the portal admin's alone.
    PortalUsersManage,
    PortalOdooVersionsManage,
    PortalRepositoriesManage,
}

impl Permission {
    pub const ALL: [Permission; 26] = [
        Permission::OrgView,
        Permission::OrgUpdate,
        Permission::OrgDelete,
        Permission::OrgMembersManage,
        Permission::OrgProjectsCreate,
        Permission::OrgServersView,
        Permission::OrgServersManage,
        Permission::OrgDnsView,
        Permission::OrgDnsManage,
        Permission::OrgRepositoriesView,
        Permission::OrgRepositoriesManage,
        Permission::ProjectView,
        Permission::ProjectUpdate,
        Permission::ProjectDelete,
        Permission::ProjectMembersManage,
        Permission::ProjectRepositoriesManage,
        Permission::ProjectEnvironmentsView,
        Permission::ProjectEnvironmentsManage,
        Permission::ProjectEnvironmentsDeploy,
        Permission::ProjectDeploymentsView,
        Permission::ProjectDeploymentsList,
        Permission::ProjectDeploymentsCancel,
        Permission::ProjectRepositoriesView,
        Permission::PortalUsersManage,
        Permission::PortalOdooVersionsManage,
        Permission::PortalRepositoriesManage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::OrgView => "org.view",
            Permission::OrgUpdate => "org.update",
            Permission::OrgDelete => "org.delete",
            Permission::OrgMembersManage => "org.members.manage",
            Permission::OrgProjectsCreate => "org.projects.create",
            Permission::OrgServersView => "org.servers.view",
            Permission::OrgServersManage => "org.servers.manage",
            Permission::OrgDnsView => "org.dns.view",
            Permission::OrgDnsManage => "org.dns.manage",
            Permission::OrgRepositoriesView => "org.repositories.view",
            Permission::OrgRepositoriesManage => "org.repositories.manage",
            Permission::ProjectView => "project.view",
            Permission::ProjectUpdate => "project.update",
            Permission::ProjectDelete => "project.delete",
            Permission::ProjectMembersManage => "project.members.manage",
            Permission::ProjectRepositoriesManage => "project.repositories.manage",
            Permission::ProjectEnvironmentsView => "project.environments.view",
            Permission::ProjectEnvironmentsManage => "project.environments.manage",
            Permission::ProjectEnvironmentsDeploy => "project.environments.deploy",
            Permission::ProjectDeploymentsView => "project.deployments.view",
            Permission::ProjectDeploymentsList => "project.deployments.list",
            Permission::ProjectDeploymentsCancel => "project.deployments.cancel",
            Permission::ProjectRepositoriesView => "project.repositories.view",
            Permission::PortalUsersManage => "portal.users.manage",
            Permission::PortalOdooVersionsManage => "portal.odoo_versions.manage",
            Permission::PortalRepositoriesManage => "portal.repositories.manage",
        }
    }

    fn is_project_level(self) -> bool {
        self.as_str().starts_with("project.")
    }

    fn is_portal_level(self) -> bool {
        self.as_str().starts_with("portal.")
    }
}

/// The organization roles that hold `permission` on their own (no project
/// role), derived from [`authorize`]: what SQL visibility queries bind for
/// organization-level lists.
pub fn org_roles_with(permission: Permission) -> Vec<OrgRole> {
    OrgRole::ALL
        .iter()
        .copied()
        .filter(|r| {
            let s = Subject {
                org_role: Some(*r),
                ..Subject::default()
            };
            authorize(&s, permission)
        })
        .collect()
}

/// The organization roles that hold `permission` on every project of their
/// organization, whatever project role comes with them (derived from
/// [`role_pairs_with`]): whose events of the whole organization a stream
/// delivers.
pub fn whole_org_roles_with(permission: Permission) -> Vec<OrgRole> {
    let pairs = role_pairs_with(permission);
    OrgRole::ALL
        .iter()
        .copied()
        .filter(|r| {
            std::iter::once("")
                .chain(ProjectRole::ALL.iter().map(|p| p.as_str()))
                .all(|p| pairs.contains(&format!("{r}/{p}")))
        })
        .collect()
}

/// The (organization role, project role) pairs of one project that hold
/// `permission`, derived from [`authorize`], each as `"{org}/{project}"`
/// with an empty side for no role (`"owner/"`, `"/viewer"`,
/// `"member/admin"`). A visibility query computes the same text from the
/// user's two memberships and binds this list, so a list shows exactly what
/// `authorize` would let the user open.
pub fn role_pairs_with(permission: Permission) -> Vec<String> {
    let orgs = std::iter::once(None).chain(OrgRole::ALL.iter().copied().map(Some));
    let mut out = Vec::new();
    for org in orgs {
        let projects = std::iter::once(None).chain(ProjectRole::ALL.iter().copied().map(Some));
        for project in projects {
            let s = Subject {
                portal_admin: false,
                org_role: org,
                project_role: project,
                in_some_project: project.is_some(),
            };
            if authorize(&s, permission) {
                out.push(format!(
                    "{}/{}",
                    org.map(OrgRole::as_str).unwrap_or_default(),
                    project.map(ProjectRole::as_str).unwrap_or_default()
                ));
            }
        }
    }
    out
}

/// What a user is, relative to one organization and (optionally) one project
/// in it. Built from the memberships; [`authorize`] decides from it alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Subject {
    pub portal_admin: bool,
    pub org_role: Option<OrgRole>,
    pub project_role: Option<ProjectRole>,
    /// Member of some project of the organization (not necessarily this one).
    pub in_some_project: bool,
}

impl Subject {
    /// Whether the resource may be seen at all. A resource the subject may not
    /// see answers 404, so its existence is not revealed; one it may see but
    /// not act on answers 403.
    pub fn can_see_org(&self) -> bool {
        self.portal_admin || self.org_role.is_some() || self.in_some_project
    }

    pub fn can_see_project(&self) -> bool {
        self.portal_admin || self.org_role.is_some() || self.project_role.is_some()
    }
}

/// The one place that decides. The hierarchy is the spec's: portal admin >
/// organization owner > organization admin > project admin > project member >
/// project viewer.
pub fn authorize(subject: &Subject, permission: Permission) -> bool {
    use Permission as P;
    if subject.portal_admin {
        return true;
    }
    if permission.is_portal_level() {
        return false;
    }
    match subject.org_role {
        Some(OrgRole::Owner) => return true,
        // Organization admins hold every project permission in the
        // organization and manage it, but cannot delete it.
        Some(OrgRole::Admin) => return permission != P::OrgDelete,
        Some(OrgRole::Member) | None => {}
    }
    let org_member = subject.org_role == Some(OrgRole::Member);
    if !permission.is_project_level() {
        return match permission {
            P::OrgView => subject.can_see_org(),
            P::OrgServersView | P::OrgRepositoriesView => org_member,
            _ => false,
        };
    }
    match subject.project_role {
        Some(ProjectRole::Admin) => {
            !matches!(permission, P::ProjectDelete | P::ProjectMembersManage)
        }
        Some(ProjectRole::Member) => matches!(
            permission,
            P::ProjectView
                | P::ProjectEnvironmentsView
                | P::ProjectDeploymentsView
                | P::ProjectDeploymentsList
                | P::ProjectRepositoriesView
        ),
        Some(ProjectRole::Viewer) => {
            matches!(permission, P::ProjectView | P::ProjectDeploymentsView)
        }
        // An organization member who is not in the project sees it, read-only.
        None => org_member && matches!(permission, P::ProjectView | P::ProjectEnvironmentsView),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_of_one_kind_is_refused_as_the_other() {
        let t = TokenIssuer::new(
            "x".repeat(32).as_str(),
            Duration::from_secs(60),
            Duration::from_secs(120),
        );
        let user = Uuid::new_v4();
        let access = t
            .issue(user, Uuid::new_v4(), Uuid::new_v4(), TokenKind::Access)
            .expect("issue");
        assert_eq!(
            t.verify(&access, TokenKind::Access).expect("valid").sub,
            user
        );
        assert_eq!(
            t.verify(&access, TokenKind::Refresh).err(),
            Some(TokenError::WrongKind)
        );
        let other = TokenIssuer::new(
            "y".repeat(32).as_str(),
            Duration::from_secs(60),
            Duration::from_secs(120),
        );
        assert_eq!(
            other.verify(&access, TokenKind::Access).err(),
            Some(TokenError::Invalid)
        );
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse").expect("hash");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("anything", dummy_hash()));
        assert!(!verify_password("anything", "not a hash"));
    }
}

#[cfg(test)]
mod role_table {
    use super::Permission as P;
    use super::*;

    /// The roles of the spec's hierarchy, each as the subject it produces.
    fn roles() -> Vec<(&'static str, Subject)> {
        let s = Subject::default();
        vec![
            (
                "portal.admin",
                Subject {
                    portal_admin: true,
                    ..s
                },
            ),
            (
                "org.owner",
                Subject {
                    org_role: Some(OrgRole::Owner),
                    ..s
                },
            ),
            (
                "org.admin",
                Subject {
                    org_role: Some(OrgRole::Admin),
                    ..s
                },
            ),
            (
                "org.member",
                Subject {
                    org_role: Some(OrgRole::Member),
                    ..s
                },
            ),
            (
                "project.admin",
                Subject {
                    project_role: Some(ProjectRole::Admin),
                    in_some_project: true,
                    ..s
                },
            ),
            (
                "project.member",
                Subject {
                    project_role: Some(ProjectRole::Member),
                    in_some_project: true,
                    ..s
                },
            ),
            (
                "project.viewer",
                Subject {
                    project_role: Some(ProjectRole::Viewer),
                    in_some_project: true,
                    ..s
                },
            ),
            (
                "other project's member",
                Subject {
                    in_some_project: true,
                    ..s
                },
            ),
            ("outsider", s),
        ]
    }

    /// The expected grants, written out in full: one row per role.
    fn expected(role: &str) -> Vec<P> {
        let project_read = [
            P::ProjectView,
            P::ProjectEnvironmentsView,
            P::ProjectDeploymentsView,
            P::ProjectDeploymentsList,
            P::ProjectRepositoriesView,
        ];
        let portal = [
            P::PortalUsersManage,
            P::PortalOdooVersionsManage,
            P::PortalRepositoriesManage,
        ];
        match role {
            "portal.admin" => P::ALL.to_vec(),
            "org.owner" => P::ALL
                .iter()
                .copied()
                .filter(|p| !portal.contains(p))
                .collect(),
            "org.admin" => P::ALL
                .iter()
                .copied()
                .filter(|p| *p != P::OrgDelete && !portal.contains(p))
                .collect(),
            "org.member" => vec![
                P::OrgView,
                P::OrgServersView,
                P::OrgRepositoriesView,
                P::ProjectView,
                P::ProjectEnvironmentsView,
            ],
            "project.admin" => {
                let mut v = vec![
                    P::OrgView,
                    P::ProjectUpdate,
                    P::ProjectRepositoriesManage,
                    P::ProjectEnvironmentsManage,
                    P::ProjectEnvironmentsDeploy,
                    P::ProjectDeploymentsCancel,
                ];
                v.extend(project_read);
                v
            }
            "project.member" => {
                let mut v = vec![P::OrgView];
                v.extend(project_read);
                v
            }
            "project.viewer" => vec![P::OrgView, P::ProjectView, P::ProjectDeploymentsView],
            "other project's member" => vec![P::OrgView],
            "outsider" => vec![],
            other => panic!("no expectation for {other}"),
        }
    }

    #[test]
    fn every_role_times_every_permission() {
        let mut mismatches = Vec::new();
        for (role, subject) in roles() {
            let granted = expected(role);
            for p in P::ALL {
                let want = granted.contains(&p);
                if authorize(&subject, p) != want {
                    mismatches.push(format!("{role} × {}: expected {want}", p.as_str()));
                }
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    #[test]
    fn visibility_role_sets_come_from_authorize() {
        let pairs = role_pairs_with(P::ProjectDeploymentsList);
        for yes in [
            "owner/",
            "admin/viewer",
            "/admin",
            "/member",
            "member/member",
        ] {
            assert!(pairs.contains(&yes.to_owned()), "{yes} in {pairs:?}");
        }
        for no in ["/", "member/", "/viewer", "member/viewer"] {
            assert!(!pairs.contains(&no.to_owned()), "{no} in {pairs:?}");
        }
        // An organization member sees environments unless a project role
        // narrower than that is theirs.
        let envs = role_pairs_with(P::ProjectEnvironmentsView);
        assert!(envs.contains(&"member/".to_owned()));
        assert!(!envs.contains(&"member/viewer".to_owned()));
        assert_eq!(
            org_roles_with(P::OrgDnsView),
            vec![OrgRole::Owner, OrgRole::Admin]
        );
        assert!(role_pairs_with(P::PortalUsersManage).is_empty());
        assert_eq!(
            whole_org_roles_with(P::ProjectDeploymentsView),
            vec![OrgRole::Owner, OrgRole::Admin]
        );
    }

    #[test]
    fn the_specs_deployment_permissions_keep_their_names() {
        assert_eq!(
            P::ProjectDeploymentsView.as_str(),
            "project.deployments.view"
        );
        assert_eq!(
            P::ProjectDeploymentsList.as_str(),
            "project.deployments.list"
        );
        assert_eq!(
            P::ProjectDeploymentsCancel.as_str(),
            "project.deployments.cancel"
        );
        assert_eq!(
            P::ProjectEnvironmentsDeploy.as_str(),
            "project.environments.deploy"
        );
    }

    #[test]
    fn visibility_decides_404_before_403() {
        let outsider = Subject::default();
        assert!(!outsider.can_see_org() && !outsider.can_see_project());
        let other_project = Subject {
            in_some_project: true,
            ..outsider
        };
        assert!(other_project.can_see_org());
        assert!(!other_project.can_see_project());
    }
}
