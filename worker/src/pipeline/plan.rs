//! Everything a deployment needs beyond its row, loaded once before the
//! first stage: settings, repositories, image, DNS provider, with every
//! secret decrypted here and registered with the log's masker.

use std::net::IpAddr;

use anyhow::Context as _;
use oec_common::config::Settings;
use oec_common::db::deployments::RunContext;
use oec_common::db::plan::{self, EnvironmentPlan};
use oec_common::model::fields::{Branch, DnsLabel, GitUrl};
use oec_common::secrets::Masker;
use oec_common::secrets::Sealed;
use sqlx::PgPool;

use crate::resources::{self, Split};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Platform,
    Organization,
    /// The project's additional repositories.
    Project,
    /// The project's own repository.
    Primary,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub scope: Scope,
    pub name: DnsLabel,
    /// Directory under `addons/`.
    pub dir: String,
    pub url: GitUrl,
    pub branch: Branch,
    pub token: Option<String>,
    /// The commit to check out instead of the branch's head (the project's
    /// repository, when the deployment asks for one).
    pub commit: Option<String>,
}

impl Repo {
    /// The repository's token as a line of git's credential store
    /// (`https://user:password@host`, percent-encoded), for http(s) URLs
    /// only. A token `user:password` is used as is; a bare token is the
    /// user name, as in the spec's `https://{token}@host`, with the password
    /// `x-oauth-basic` (what GitHub expects; GitLab takes `oauth2:TOKEN`).
    /// It reaches the server in a 0600 file, never on a command line.
    pub fn credentials_line(&self) -> Option<String> {
        let token = self.token.as_deref()?;
        let (scheme, rest) = self.url.split_once("://")?;
        if scheme != "https" && scheme != "http" {
            return None;
        }
        let host = rest.split('/').next()?;
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let (user, password) = token.split_once(':').unwrap_or((token, "x-oauth-basic"));
        Some(format!(
            "{scheme}://{}:{}@{host}\n",
            oec_common::secrets::percent_encode(user),
            oec_common::secrets::percent_encode(password)
        ))
    }
}

pub struct Dns {
    pub token: String,
    pub zone_id: String,
}

pub struct Plan {
    pub env: EnvironmentPlan,
    /// Platform, organization, project-additional and primary repositories.
    pub repos: Vec<Repo>,
    pub dns: Option<Dns>,
    /// `{subdomain}.{apps_domain}`.
    pub hostname: String,
    pub db_password: String,
    /// Odoo's master password (`admin_passwd`), for its database manager.
    pub admin_passwd: String,
    /// The password `initializing_database` gives Odoo's `admin` user.
    pub odoo_admin_password: String,
    pub registry_auth: Option<(String, String)>,
    pub split: Split,
    /// Odoo's major version, e.g. 18 for "18.0".
    pub odoo_major: u32,
    /// Whether the environment ever had a successful deployment.
    pub redeploy: bool,
}

impl Plan {
    pub fn repos_of(&self, scope: Scope) -> Vec<Repo> {
        self.repos
            .iter()
            .filter(|r| r.scope == scope)
            .cloned()
            .collect()
    }

    /// Addon directories in the spec's priority order: project additional,
    /// project primary, organization, platform.
    pub fn addon_dirs(&self) -> Vec<String> {
        [
            Scope::Project,
            Scope::Primary,
            Scope::Organization,
            Scope::Platform,
        ]
        .iter()
        .flat_map(|s| self.repos.iter().filter(move |r| r.scope == *s))
        .map(|r| r.dir.clone())
        .collect()
    }

    pub fn replica(&self) -> bool {
        self.env.replica_enabled && self.odoo_major >= 18
    }

    /// Whether `-i base` loads Odoo's demo data: only for a development
    /// environment that asked for it (the api refuses it elsewhere; a row
    /// changed by hand is still held to it).
    pub fn with_demo(&self) -> bool {
        self.env.with_demo && self.env.kind == oec_common::model::EnvironmentKind::Development
    }

    /// The options that make `-i base` load demo data or not, in this
    /// Odoo's words: up to 18 it loads them unless `--without-demo=all`;
    /// from 19 it loads them only with `--with-demo`.
    pub fn demo_args(&self) -> &'static [&'static str] {
        match (self.odoo_major >= 19, self.with_demo()) {
            (false, false) => &["--without-demo=all"],
            (true, true) => &["--with-demo"],
            _ => &[],
        }
    }
}

/// A repository name as a directory: lowercase letters, digits, `.`, `_`, `-`.
pub fn dir_name(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches(|c| c == '.' || c == '-').to_owned();
    if s.is_empty() { "repo".into() } else { s }
}

pub async fn load(
    pool: &PgPool,
    settings: &Settings,
    ctx: &RunContext,
    masker: &mut Masker,
) -> anyhow::Result<Plan> {
    let key = &settings.secret_key;
    let mut env = plan::environment(pool, ctx.deployment_id)
        .await
        .context("loading the environment")?;
    let mut repos = Vec::new();
    for r in plan::repositories(pool, ctx.organization_id, ctx.project_id)
        .await
        .context("loading the addon repositories")?
    {
        let token = match &r.token_encrypted {
            Some(t) => {
                let t = key
                    .open(t)
                    .with_context(|| format!("the token of repository {}", r.name))?;
                masker.add(t.clone());
                // As git sends it: `Authorization: Basic base64(user:password)`.
                let (user, password) = t.split_once(':').unwrap_or((&t, "x-oauth-basic"));
                masker.add_basic_auth(user, password);
                Some(t)
            }
            None => None,
        };
        let scope = match r.scope.as_str() {
            "platform" => Scope::Platform,
            "organization" => Scope::Organization,
            _ => Scope::Project,
        };
        repos.push(Repo {
            scope,
            dir: dir_name(&r.name),
            name: r.name,
            url: r.git_url,
            branch: r.branch,
            token,
            commit: None,
        });
    }
    repos.push(Repo {
        scope: Scope::Primary,
        name: ctx.project_slug.clone(),
        dir: dir_name(&ctx.project_slug),
        url: env.project_git_url.clone(),
        branch: ctx.branch.clone(),
        token: None,
        commit: env.requested_commit.clone(),
    });
    let mut seen = std::collections::HashSet::new();
    for r in &repos {
        anyhow::ensure!(
            seen.insert(r.dir.clone()),
            "two repositories would share the directory addons/{}: rename one of them",
            r.dir
        );
    }
    let dns = match plan::dns_provider(pool, ctx.organization_id)
        .await
        .context("loading the DNS provider")?
    {
        Some(d) => {
            let token = key
                .open(&d.api_token_encrypted)
                .context("the DNS provider's token")?;
            masker.add(token.clone());
            Some((
                Dns {
                    token,
                    zone_id: d.zone_id,
                },
                d.apps_domain,
            ))
        }
        None => None,
    };
    let apps_domain = dns
        .as_ref()
        .map(|(_, domain)| domain.clone())
        .unwrap_or_else(|| settings.pipeline.apps_domain.clone());
    // The secrets the pipeline generates, each masked from here on.
    let mut generated = async |which, stored: &Option<Sealed>, what: &'static str| {
        let secret = environment_secret(pool, key, ctx.environment_id, which, stored.as_ref())
            .await
            .context(what)?;
        masker.add(secret.clone());
        anyhow::Ok(secret)
    };
    let db_password = generated(
        plan::EnvironmentSecret::DbPassword,
        &env.db_password_encrypted,
        "the database password",
    )
    .await?;
    let admin_passwd = generated(
        plan::EnvironmentSecret::AdminPasswd,
        &env.admin_passwd_encrypted,
        "Odoo's master password",
    )
    .await?;
    let odoo_admin_password = generated(
        plan::EnvironmentSecret::OdooAdminPassword,
        &env.odoo_admin_password_encrypted,
        "the password of Odoo's admin user",
    )
    .await?;
    // The migration backup's URL is stored encrypted (a row the api has not
    // sealed yet holds it in the clear); a presigned link's signature is a
    // credential too.
    if let Some(sealed) = env.migration_source_encrypted.take() {
        env.migration_source_url = Some(key.open(&sealed).context("the migration URL")?);
    }
    if let Some((_, query)) = env
        .migration_source_url
        .as_deref()
        .and_then(|u| u.split_once('?'))
    {
        masker.add(query.to_owned());
    }
    let registry_auth = match (&env.registry_username, &env.registry_password_encrypted) {
        (Some(user), Some(pw)) => {
            let pw = key.open(pw).context("the registry password")?;
            masker.add(pw.clone());
            Some((user.clone(), pw))
        }
        _ => None,
    };
    let odoo_major = ctx
        .odoo_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let hostname = env
        .hostname
        .clone()
        .unwrap_or_else(|| format!("{}.{apps_domain}", ctx.subdomain));
    Ok(Plan {
        redeploy: env.previous_image.is_some(),
        env,
        repos,
        dns: dns.map(|(d, _)| d),
        hostname,
        db_password,
        admin_passwd,
        odoo_admin_password,
        registry_auth,
        split: resources::split(ctx.cpu_cores, ctx.ram_mb.max(0) as u64),
        odoo_major,
    })
}

/// The server's IPv4/IPv6 address: its host as given, or resolved.
pub async fn server_ip(host: &str) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let mut addrs = tokio::net::lookup_host((host, 22))
        .await
        .with_context(|| format!("resolving {host}"))?;
    addrs
        .find(|a| a.is_ipv4())
        .map(|a| a.ip())
        .ok_or_else(|| anyhow::anyhow!("{host} has no IPv4 address"))
}

/// The stored secret, or a new one (64 hex digits from the OS's random
/// source) stored unless another run stored one first.
async fn environment_secret(
    pool: &sqlx::PgPool,
    key: &oec_common::secrets::SecretKey,
    environment: oec_common::model::ids::EnvironmentId,
    which: plan::EnvironmentSecret,
    stored: Option<&Sealed>,
) -> anyhow::Result<String> {
    let encrypted = match stored {
        Some(s) => s.clone(),
        None => {
            let fresh = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            plan::ensure_secret(pool, environment, which, &key.seal(&fresh)).await?
        }
    };
    Ok(key.open(&encrypted)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git_url(v: &str) -> GitUrl {
        oec_common::model::fields::parse_git_url("git_url", v, false).expect("git url")
    }

    #[test]
    fn directory_names_are_safe() {
        assert_eq!(dir_name("Platform Reporting"), "platform-reporting");
        assert_eq!(dir_name("../etc"), "etc");
        assert_eq!(dir_name("a/b;rm -rf"), "a-b-rm--rf");
        assert_eq!(dir_name("..."), "repo");
    }

    #[test]
    fn tokens_become_percent_encoded_credential_lines_for_http_urls_only() {
        let mut r = Repo {
            scope: Scope::Platform,
            name: oec_common::model::fields::parse_dns_label("name", "x").expect("label"),
            dir: "x".into(),
            url: git_url("https://git.example.com:8443/a/b.git"),
            branch: oec_common::model::fields::parse_branch("branch", "main").expect("branch"),
            token: Some("t@k/1#2".into()),
            commit: None,
        };
        assert_eq!(
            r.credentials_line().as_deref(),
            Some("https://t%40k%2F1%232:x-oauth-basic@git.example.com:8443\n")
        );
        r.token = Some("oauth2:glpat-x y".into());
        assert_eq!(
            r.credentials_line().as_deref(),
            Some("https://oauth2:glpat-x%20y@git.example.com:8443\n")
        );
        r.url = git_url("git@git.example.com:a/b.git");
        assert_eq!(r.credentials_line(), None);
        r.url = git_url("https://git.example.com/a.git");
        r.token = None;
        assert_eq!(r.credentials_line(), None);
    }
}
