//! cloning_platform_repos, cloning_org_repos, cloning_project_repo: each
//! repository into `{root}/{uuid}/addons/{dir}` on the server, the
//! repositories of a stage in parallel. A redeploy fetches and resets instead
//! of cloning anew. Tokens reach the server only in a 0600 credentials file
//! outside `addons/`, read by git's credential store and removed when git
//! ends; never on a command line, and the log's masker hides them in every
//! encoding. Platform and organization failures are warnings; a project
//! failure is fatal.

use std::time::Instant;

use futures_util::StreamExt as _;
use oec_common::db::plan::{self, GitInfo};
use oec_common::model::steps::Step;
use serde_json::json;

use crate::pipeline::addons;
use crate::pipeline::plan::{Repo, Scope};
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::target::shell::quote;

/// Repositories cloned at once per stage (each is one SSH channel).
const PARALLEL: usize = 4;

pub async fn platform(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    shared(s, Scope::Platform, "platform").await
}

pub async fn organization(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    shared(s, Scope::Organization, "organization").await
}

/// Platform and organization repositories: failures are warnings.
async fn shared(s: &mut Stage<'_>, scope: Scope, label: &str) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let repos = s.plan.repos_of(scope);
    if repos.is_empty() {
        let message = format!("No {label} addon repositories configured");
        s.log.info(&message);
        return Ok(Outcome::Skipped(message));
    }
    let n = repos.len();
    s.log.info(&format!(
        "Cloning {n} {label} addon {}...",
        plural(n, "repository", "repositories")
    ));
    let results = clone_all(s, &repos).await?;
    let failed: Vec<&str> = results
        .iter()
        .zip(&repos)
        .filter(|(r, _)| r.is_err())
        .map(|(_, repo)| repo.name.as_str())
        .collect();
    if failed.is_empty() {
        let message = format!("All {n} {label} repos ready ({})", secs(t0));
        s.log.info(&message);
        Ok(Outcome::Completed(message))
    } else {
        let message = format!(
            "{} of {n} {label} repos ready; failed: {} ({})",
            n - failed.len(),
            failed.join(", "),
            secs(t0)
        );
        s.log.warning(&message);
        Ok(Outcome::Warning(message))
    }
}

/// The project's repository (and its additional ones): fatal, and records
/// the commit on the deployment.
pub async fn project(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let plan = s.plan;
    let mut repos = plan.repos_of(Scope::Primary);
    repos.extend(plan.repos_of(Scope::Project));
    s.log.info("Cloning project repository...");
    let results = clone_all(s, &repos).await?;
    for (result, repo) in results.iter().zip(&repos) {
        if let Err(e) = result {
            return Err(e.clone_error(repo));
        }
    }
    let message = format!("Project repository cloned ({})", secs(t0));
    s.log.info(&message);
    let primary = &repos[0];
    let info = git_info(s, primary).await?;
    let short: String = info.commit.chars().take(7).collect();
    let subject = info.message.lines().next().unwrap_or_default().to_owned();
    s.log.line(
        oec_common::model::LogLevel::Info,
        &format!("Commit: {short} by {} - {subject}", info.committer_name),
        Some(json!({
            "git_commit": info.commit, "git_message": info.message, "git_branch": info.branch,
            "committer_name": info.committer_name, "committer_email": info.committer_email,
            "commit_date": info.commit_date,
        })),
    );
    plan::record_git(s.pool, s.ctx.deployment_id, &info)
        .await
        .map_err(|e| StageError::new(format!("Recording the commit failed: {e}")))?;
    record_addons(s).await?;
    Ok(Outcome::Completed(message))
}

/// Reads the addons of every repository in the addons path's order, names
/// what changed since the last successful deployment, and records both.
async fn record_addons(s: &mut Stage<'_>) -> Result<(), StageError> {
    let root = crate::names::env_dir(&s.settings.deploy_root, s.ctx.environment_id);
    let dirs: Vec<(String, String)> = s
        .plan
        .addon_dirs()
        .into_iter()
        .map(|d| (d.clone(), format!("{root}/addons/{d}")))
        .collect();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut lines = Vec::new();
    let out = s
        .target
        .run(&addons::scan_command(&dirs, &nonce), &mut |l| {
            lines.push(l.to_owned())
        })
        .await?;
    if !out.success() {
        return Err(StageError::new(format!(
            "Reading the addons failed: {}",
            out.tail.join(" ")
        )));
    }
    let now = addons::parse(&lines, &nonce);
    let baseline: Option<addons::Addons> = s
        .plan
        .env
        .previous_addons
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    let changes = addons::diff(baseline.as_ref(), &now);
    let n = now.len();
    let message = if changes.no_baseline {
        format!("{n} addons found; no earlier deployment recorded its addons to compare with")
    } else if changes.is_empty() {
        format!("No addon changed since the last successful deployment ({n} addons)")
    } else {
        let mut parts = Vec::new();
        for (what, names) in [
            ("changed", &changes.changed),
            ("added", &changes.added),
            ("removed", &changes.removed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what}: {}", names.join(", ")));
            }
        }
        format!(
            "Addons since the last successful deployment: {}",
            parts.join("; ")
        )
    };
    let changes_json = json!({
        "changed": changes.changed, "added": changes.added, "removed": changes.removed,
        "upgraded": [], "baseline": !changes.no_baseline,
    });
    s.log.line(
        oec_common::model::LogLevel::Info,
        &message,
        Some(changes_json.clone()),
    );
    let addons_json = serde_json::to_value(&now).unwrap_or_default();
    plan::record_addons(s.pool, s.ctx.deployment_id, &addons_json, &changes_json)
        .await
        .map_err(|e| StageError::new(format!("Recording the addons failed: {e}")))?;
    s.state.addons = Some(now);
    s.state.changes = Some(changes);
    Ok(())
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// Why one repository could not be cloned (its output already logged).
struct CloneFailure {
    exit_code: Option<u32>,
    detail: String,
}

impl CloneFailure {
    fn clone_error(&self, repo: &Repo) -> StageError {
        let auth = self.detail.contains("Authentication failed")
            || self.detail.contains("could not read Username")
            || self.detail.contains("could not read Password")
            || self.detail.contains("403")
            || self.detail.contains("401");
        StageError::with_data(
            format!("Failed to clone {}", repo.name),
            json!({
                "repository": repo.name,
                "url": repo.url,
                "branch": repo.branch,
                "exit_code": self.exit_code,
                "error_code": if auth { "GIT_AUTH_FAILED" } else { "GIT_CLONE_FAILED" },
                "error": self.detail,
                "hint": if auth { "check the repository's access token" } else { "check the repository URL and branch" },
            }),
        )
    }
}

async fn clone_all(
    s: &Stage<'_>,
    repos: &[Repo],
) -> Result<Vec<Result<(), CloneFailure>>, StageError> {
    let target = s.target;
    let n = repos.len();
    let env_dir = crate::names::env_dir(&s.settings.deploy_root, s.ctx.environment_id);
    let jobs: Vec<_> = repos
        .iter()
        .enumerate()
        .map(|(i, repo)| clone_one(&s.log, target, format!("[{}/{n}]", i + 1), repo, &env_dir))
        .collect();
    let results = futures_util::stream::iter(jobs)
        .buffered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    Ok(results)
}

async fn clone_one(
    log: &crate::log::StepLog,
    target: &crate::target::Target,
    tag: String,
    repo: &Repo,
    env_dir: &str,
) -> Result<(), CloneFailure> {
    let t = Instant::now();
    let dir = format!("{env_dir}/addons/{}", repo.dir);
    // Outside addons/, which containers see.
    let cred_path = format!("{env_dir}/.git-credentials-{}", repo.dir);
    // The environment's own: a host key one tenant's URL made ssh accept
    // never vouches for a host in another tenant's URL.
    let known_hosts = format!("{env_dir}/.ssh_known_hosts");
    log.info(&format!("{tag} Cloning {} ({})...", repo.name, repo.branch));
    // A token reaches the server in a 0600 file that git's credential store
    // reads (removed when the command ends), never on a command line.
    let cred_file = match repo.credentials_line() {
        Some(line) => {
            let path = cred_path;
            if let Err(e) = target.write_file(&path, line.as_bytes(), 0o600).await {
                return Err(CloneFailure {
                    exit_code: None,
                    detail: format!("writing the credentials file: {e:#}"),
                });
            }
            Some(path)
        }
        None => None,
    };
    let mut cmd = sync_command(
        &dir,
        &repo.url,
        &repo.branch,
        cred_file.as_deref(),
        &known_hosts,
    );
    if let Some(commit) = &repo.commit {
        cmd = format!(
            "{cmd} && {}",
            checkout_commit(&dir, &repo.url, &repo.branch, commit)
        );
        log.info(&format!(
            "{tag} Deploying commit {commit} of {}",
            repo.branch
        ));
    }
    let out = target.run(&cmd, &mut |line| log.debug(line)).await;
    let result = match out {
        Ok(o) if o.success() => Ok(()),
        Ok(o) => Err(CloneFailure {
            exit_code: Some(o.exit_code),
            detail: o.tail.join("\n"),
        }),
        Err(e) => Err(CloneFailure {
            exit_code: None,
            detail: format!("{e:#}"),
        }),
    };
    match &result {
        Ok(()) => log.info(&format!("{tag} {} ready ({})", repo.name, secs(t))),
        Err(f) => log.line(
            if log.step() == Step::CloningProjectRepo {
                oec_common::model::LogLevel::Error
            } else {
                oec_common::model::LogLevel::Warning
            },
            &format!("{tag} {} failed ({})", repo.name, secs(t)),
            Some(json!({"repository": repo.name, "exit_code": f.exit_code, "error": f.detail})),
        ),
    }
    result
}

/// The shell prelude of every git command on a server: git never runs
/// repository-controlled code. Hooks, fsmonitor and external protocols are
/// off on the command line (which outranks every config file), nothing
/// prompts, and ssh runs in batch mode with a connect timeout, trusting no
/// host: only a clone or fetch reaches a remote, and [`sync_command`] gives
/// it the environment's own known-hosts file.
pub const GIT_PRELUDE: &str = "export GIT_TERMINAL_PROMPT=0 GIT_PAGER=cat PAGER=cat GIT_ASKPASS=true SSH_ASKPASS=true \
     GIT_SSH_COMMAND='ssh -o BatchMode=yes -o ConnectTimeout=20 -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null'; \
     g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.untrackedCache=false \
       -c protocol.ext.allow=never -c submodule.recurse=false \"$@\" </dev/null; }; ";

/// Clone, or fetch and reset an existing checkout, of one branch, with the
/// credentials of `cred_file` (git's store format; removed when the command
/// ends, however it ends). Before a fetch the checkout's
/// own git state is reset to what oec wrote (config, no hooks, no
/// attributes, no alternates), so nothing planted there is ever read; a
/// checkout whose `.git` is not a plain directory is cloned anew. ssh
/// (for `ssh://` URLs) trusts a host key on first use in the environment's
/// `known_hosts` file, outside `addons/`, never in the SSH user's own.
pub fn sync_command(
    dir: &str,
    url: &str,
    branch: &str,
    cred_file: Option<&str>,
    known_hosts: &str,
) -> String {
    let (d, f, c, b) = (quote(dir), quote(url), quote(url), quote(branch));
    let ssh = quote(&format!(
        "ssh -o BatchMode=yes -o ConnectTimeout=20 \
         -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={} \
         -o GlobalKnownHostsFile=/dev/null",
        quote(known_hosts)
    ));
    let creds = match cred_file {
        Some(path) => {
            let p = quote(path);
            format!(
                "trap 'rm -f {p}' EXIT HUP INT TERM; \
                 gc() {{ g -c credential.helper= -c credential.helper={helper} \"$@\"; }}; ",
                helper = quote(&format!("store --file={path}")),
            )
        }
        None => "gc() { g -c credential.helper= \"$@\"; }; ".to_owned(),
    };
    format!(
        "{GIT_PRELUDE}export GIT_SSH_COMMAND={ssh}; {creds}\
         if [ -d {d}/.git ] && [ ! -L {d} ] && [ ! -L {d}/.git ]; then \
           rm -rf {d}/.git/hooks {d}/.git/info {d}/.git/objects/info/alternates {d}/.git/commondir {d}/.git/config.worktree && \
           printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfilemode = true\\n\\tbare = false\\n' > {d}/.git/config && \
           gc -C {d} fetch --depth 1 --no-tags {f} {b} && g -C {d} reset -q --hard FETCH_HEAD && \
           g -C {d} clean -ffdx -q && g -C {d} config remote.origin.url {c}; \
         else \
           rm -rf {d} && mkdir -p \"$(dirname {d})\" && \
           gc clone --template= --depth 1 --single-branch --branch {b} {f} {d} && g -C {d} config remote.origin.url {c}; \
         fi"
    )
}

/// After [`sync_command`] (whose shell functions it uses): checks out
/// `commit` (hex, 7 to 64 digits) of the repository. A full id is fetched
/// alone (git's protocol v2 fetches any commit the server has); an
/// abbreviated one, or a server that refuses, gets the branch's whole
/// history and the commit is looked up in it.
pub fn checkout_commit(dir: &str, url: &str, branch: &str, commit: &str) -> String {
    let (d, u, b, c) = (quote(dir), quote(url), quote(branch), quote(commit));
    let spec = quote(&format!("{commit}^{{commit}}"));
    let direct = if commit.len() >= 40 {
        format!(
            "gc -C {d} fetch -q --depth 1 --no-tags {u} {c} 2>/dev/null && g -C {d} reset -q --hard FETCH_HEAD || "
        )
    } else {
        String::new()
    };
    format!(
        "{{ {direct}{{ gc -C {d} fetch -q --no-tags --depth=2147483647 {u} {b} && \
           id=$(g -C {d} rev-parse --verify -q {spec}) && g -C {d} reset -q --hard \"$id\"; }} || \
         {{ echo {msg} >&2; false; }}; }}",
        msg = quote(&format!("commit {commit} is not in the repository")),
    )
}

async fn git_info(s: &Stage<'_>, repo: &Repo) -> Result<GitInfo, StageError> {
    let dir = format!(
        "{}/addons/{}",
        crate::names::env_dir(&s.settings.deploy_root, s.ctx.environment_id),
        repo.dir
    );
    let cmd = format!(
        "{GIT_PRELUDE}g --no-pager -C {} log -1 --format=%H%x1f%cn%x1f%ce%x1f%cI%x1f%B",
        quote(&dir)
    );
    let mut lines = Vec::new();
    let out = s
        .target
        .run(&cmd, &mut |l| lines.push(l.to_owned()))
        .await?;
    if !out.success() {
        return Err(StageError::new(format!(
            "Reading the commit of {} failed: {}",
            repo.name,
            out.tail.join(" ")
        )));
    }
    let text = lines.join("\n");
    let mut parts = text.splitn(5, '\u{1f}');
    let mut next = || parts.next().unwrap_or_default().trim().to_owned();
    let commit = next();
    let committer_name = next();
    let committer_email = next();
    let date = next();
    let message = next();
    Ok(GitInfo {
        commit,
        message,
        branch: repo.branch.to_string(),
        committer_name,
        committer_email,
        commit_date: chrono::DateTime::parse_from_rfc3339(&date)
            .ok()
            .map(|d| d.with_timezone(&chrono::Utc)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_command_quotes_everything() {
        let cmd = sync_command(
            "/opt/p/e/addons/x",
            "https://h/r.git",
            "main; rm -rf /",
            Some("/opt/p/e/addons/x.oec-credentials"),
            "/opt/p/e/.ssh_known_hosts",
        );
        assert!(
            cmd.contains(
                "export GIT_SSH_COMMAND='ssh -o BatchMode=yes -o ConnectTimeout=20 \
                 -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/opt/p/e/.ssh_known_hosts \
                 -o GlobalKnownHostsFile=/dev/null'"
            ),
            "{cmd}"
        );
        assert!(cmd.contains("credential.helper='store --file=/opt/p/e/addons/x.oec-credentials'"));
        assert!(cmd.contains("trap 'rm -f /opt/p/e/addons/x.oec-credentials' EXIT"));
        assert!(cmd.contains("--branch 'main; rm -rf /'"));
        assert!(cmd.contains("config remote.origin.url https://h/r.git"));
        assert!(cmd.contains("gc clone --template= --depth 1 --single-branch"));
        assert!(cmd.contains("-c core.hooksPath=/dev/null"));
    }
}
