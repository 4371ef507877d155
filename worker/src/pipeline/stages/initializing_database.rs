//! initializing_database: a fresh database gets `odoo -d {uuid} -i base
//! --stop-after-init` in the Odoo container, then its `admin` user gets the
//! environment's generated password (hashed as Odoo hashes it, written with
//! psql; the hash travels in the exec's environment, never its argv); an
//! initialized one is left alone (but gets that password if setting it
//! failed after oec initialized it); a migration backup is restored exactly
//! once (then `migration_restore_completed` is set and it never runs again)
//! and keeps its own users. On a redeploy, the installed modules whose addon
//! changed since the last successful deployment (or whose manifest version
//! differs from the database's) are upgraded (`-u`) in the new container
//! before it serves, after a snapshot; a migration restore over an existing
//! database takes one too. Odoo's loader lines become the step's module
//! progress (`module`, `module_index`, `module_count` on each line, and the
//! deployment's `progress_percent` moving inside the stage). Then, and only
//! then, the container's Odoo server starts (`starting_container::serve`):
//! it never loads the registry of a database that is not ready. Fatal.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use oec_common::db::plan;
use oec_common::model::LogLevel;
use oec_common::model::steps::{Step, progress_percent};
use serde_json::json;

use crate::names::db_container;
use crate::pipeline::addons::adapt_version;
use crate::pipeline::snapshot::{self, human_bytes};
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::pipeline::{docker, odoo_password};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let outcome = prepare(s).await?;
    let container = s.state.odoo_container(s.ctx.environment_id);
    super::starting_container::serve(s.target.docker(), &container).await?;
    s.log
        .info("Odoo's server is starting on the ready database");
    Ok(outcome)
}

/// Brings the database to what this deployment serves: restored,
/// initialized, or upgraded.
async fn prepare(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    let plan = s.plan;
    if let Some(url) = plan.env.migration_source_url.clone()
        && !plan.env.migration_restore_completed
    {
        if initialized(&docker, env).await? {
            take_snapshot(s, "before the migration restore").await?;
        }
        log.info("Restoring from migration backup...");
        s.state.database_changed = true;
        restore(s, &url).await?;
        plan::mark_migration_restored(s.pool, env)
            .await
            .map_err(|e| StageError::new(format!("Recording the restore failed: {e}")))?;
        let message = format!("Migration restore complete ({})", secs(t0));
        log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    if initialized(&docker, env).await? {
        if plan.env.odoo_admin_password_pending {
            set_admin_password(s).await?;
        }
        log.info(&format!(
            "Database {env} already initialized, skipping initialization"
        ));
        if let Some(message) = upgrade(s).await? {
            return Ok(Outcome::Completed(message));
        }
        let message = format!(
            "Database {env} already initialized, skipping initialization ({})",
            secs(t0)
        );
        return Ok(Outcome::Completed(message));
    }
    log.info(&format!(
        "Initializing Odoo database {} (this may take 1-2 minutes)...",
        if plan.with_demo() {
            "with demo data"
        } else {
            "without demo data"
        }
    ));
    let mut args = vec!["-i", "base"];
    args.extend(plan.demo_args());
    let out = odoo_with_progress(s, &args).await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            format!("Database initialization failed (exit {})", out.exit_code),
            json!({"database": env, "output": out.tail}),
        ));
    }
    plan::mark_database_initialized(s.pool, env)
        .await
        .map_err(|e| StageError::new(format!("Recording the initialization failed: {e}")))?;
    set_admin_password(s).await?;
    let message = format!("Database initialization complete ({})", secs(t0));
    log.info(&message);
    Ok(Outcome::Completed(message))
}

/// Runs `odoo -d {db} {args} --stop-after-init --no-http` in the
/// deployment's Odoo container; the loader's `Loading module X (i/n)` lines
/// are logged with the module's place and move the deployment's progress
/// through this stage's share, the rest of the output is debug.
async fn odoo_with_progress(
    s: &Stage<'_>,
    args: &[&str],
) -> Result<docker::ExecOutput, StageError> {
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    let mut argv: Vec<String> = ["odoo", "-c", "/etc/odoo/odoo.conf", "-d", &env.to_string()]
        .map(str::to_owned)
        .to_vec();
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv.extend(["--stop-after-init".to_owned(), "--no-http".to_owned()]);
    let at = Step::PIPELINE
        .iter()
        .position(|p| *p == Step::InitializingDatabase)
        .unwrap_or(0);
    let (low, high) = (progress_percent(at), progress_percent(at + 1));
    let progress = s.progress;
    let (pool, id) = (s.pool.clone(), s.ctx.deployment_id);
    let out = docker::exec(
        &docker,
        &s.state.odoo_container(env),
        argv,
        None,
        Vec::new(),
        &mut |l| match loader_line(l) {
            Some(Loader::Module { name, index, count }) => {
                let percent = low + (high - low) * (index as i32 - 1) / (count.max(1) as i32);
                if percent > progress.percent.swap(percent, Ordering::SeqCst) {
                    let pool = pool.clone();
                    tokio::spawn(async move { plan::record_progress(&pool, id, percent).await });
                }
                log.line(
                    LogLevel::Info,
                    &format!("Loading module {name} ({index}/{count})"),
                    Some(json!({"module": name, "module_index": index, "module_count": count})),
                );
            }
            Some(Loader::Loaded(text)) => log.info(&text),
            None => log.debug(l),
        },
    )
    .await?;
    Ok(out)
}

enum Loader {
    Module {
        name: String,
        index: usize,
        count: usize,
    },
    /// `N modules loaded in T s, ...` (or a migration script running).
    Loaded(String),
}

/// Odoo's loader lines: `... odoo.modules.loading: Loading module sale (3/12)`,
/// `... odoo.modules.loading: 12 modules loaded in 1.20s, ...` and
/// `... odoo.modules.migration: module sale: Running migration ...`.
fn loader_line(line: &str) -> Option<Loader> {
    if let Some((_, rest)) = line.split_once("odoo.modules.loading: Loading module ") {
        let (name, place) = rest.trim().split_once(' ')?;
        let (i, n) = place
            .strip_prefix('(')?
            .strip_suffix(')')?
            .split_once('/')?;
        return Some(Loader::Module {
            name: name.to_owned(),
            index: i.parse().ok()?,
            count: n.parse().ok()?,
        });
    }
    if let Some((_, rest)) = line.split_once("odoo.modules.loading: ")
        && rest.contains(" modules loaded in ")
    {
        return Some(Loader::Loaded(rest.trim().to_owned()));
    }
    if let Some((_, rest)) = line.split_once("odoo.modules.migration: ") {
        return Some(Loader::Loaded(rest.trim().to_owned()));
    }
    None
}

/// What made Odoo fail, from its output's end: the exception line that ends
/// the last traceback (Odoo logs `Failed to load registry` and `Failed to
/// initialize database` each followed by the traceback), or else the last
/// line before `Failed to initialize database`.
fn failure_cause(tail: &[String]) -> Option<&str> {
    let logged = |l: &str| l.len() > 4 && l.as_bytes()[..4].iter().all(u8::is_ascii_digit);
    let exception = tail.iter().map(|l| l.trim_end()).rev().find(|l| {
        !l.is_empty()
            && !l.starts_with(char::is_whitespace)
            && !logged(l)
            && !l.starts_with("Traceback ")
            && l.contains(": ")
    });
    if exception.is_some() {
        return exception;
    }
    let end = tail
        .iter()
        .rposition(|l| l.contains("Failed to initialize database"))
        .unwrap_or(tail.len());
    tail[..end]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
}

/// The installed modules and their `latest_version`.
async fn installed_modules(
    docker: &bollard::Docker,
    env: oec_common::model::ids::EnvironmentId,
) -> Result<BTreeMap<String, String>, StageError> {
    let mut rows = BTreeMap::new();
    let out = docker::exec(
        docker,
        &db_container(env),
        [
            "psql",
            "-U",
            "odoo",
            "-d",
            &env.to_string(),
            "-tAF|",
            "-c",
            "SELECT name, COALESCE(latest_version, '') FROM ir_module_module WHERE state = 'installed'",
        ]
        .map(str::to_owned)
        .to_vec(),
        Some("postgres"),
        Vec::new(),
        &mut |l| {
            if let Some((name, version)) = l.trim().split_once('|') {
                rows.insert(name.to_owned(), version.to_owned());
            }
        },
    )
    .await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            "Reading the installed modules failed",
            json!({"database": env, "output": out.tail}),
        ));
    }
    Ok(rows)
}

/// Takes the snapshot the rollback restores, and records it.
async fn take_snapshot(s: &mut Stage<'_>, why: &str) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let dir = snapshot::backups_dir(&s.settings.deploy_root, env);
    let out = s
        .target
        .run(
            &format!("mkdir -p {}", crate::target::shell::quote(&dir)),
            &mut |_| {},
        )
        .await?;
    if !out.success() {
        return Err(StageError::new(format!(
            "Creating {dir} failed: {}",
            out.tail.join(" ")
        )));
    }
    s.log.info(&format!(
        "Taking a snapshot of the database and filestore {why}..."
    ));
    let snap = snapshot::Target {
        docker: s.target.docker(),
        image: &s.settings.pipeline.postgres_image,
        deploy_root: &s.settings.deploy_root,
        env,
        db_password: &s.plan.db_password,
    }
    .take(s.ctx.deployment_id, s.settings.pipeline.snapshot_keep)
    .await?;
    s.log.line(
        LogLevel::Info,
        &format!(
            "Snapshot taken: {} ({}{}, {:.1}s)",
            snap.path,
            human_bytes(snap.bytes),
            if snap.filestore {
                ", with the filestore"
            } else {
                ""
            },
            snap.seconds
        ),
        Some(json!({"snapshot": snap.path, "bytes": snap.bytes, "seconds": snap.seconds})),
    );
    let value = serde_json::to_value(&snap).unwrap_or_default();
    plan::record_snapshot(s.pool, s.ctx.deployment_id, &value)
        .await
        .map_err(|e| StageError::new(format!("Recording the snapshot failed: {e}")))?;
    s.state.snapshot = Some(snap);
    Ok(())
}

/// On an initialized database: upgrades the installed modules whose addon
/// changed (content or manifest version) since the last successful
/// deployment, or whose manifest version is not the database's. Returns the
/// stage's message when it upgraded.
async fn upgrade(s: &mut Stage<'_>) -> Result<Option<String>, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let Some(addons) = s.state.addons.clone() else {
        return Ok(None);
    };
    let changed = s
        .state
        .changes
        .as_ref()
        .map(|c| c.changed.clone())
        .unwrap_or_default();
    let installed = installed_modules(s.target.docker(), env).await?;
    let series = s.ctx.odoo_version.clone();
    let modules: Vec<String> = addons
        .iter()
        .filter(|(name, addon)| {
            let Some(in_db) = installed.get(*name) else {
                return false;
            };
            let moved = addon
                .version
                .as_deref()
                .is_some_and(|v| adapt_version(&series, v) != *in_db);
            changed.contains(name) || moved
        })
        .map(|(name, _)| name.clone())
        .collect();
    if modules.is_empty() {
        s.log
            .info("No installed module changed since the last successful deployment: no upgrade");
        return Ok(None);
    }
    take_snapshot(s, "before the upgrade").await?;
    s.log.info(&format!(
        "Upgrading {} {}: {}",
        modules.len(),
        if modules.len() == 1 {
            "module"
        } else {
            "modules"
        },
        modules.join(", ")
    ));
    s.state.database_changed = true;
    let list = modules.join(",");
    let out = odoo_with_progress(s, &["-u", &list]).await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            format!(
                "Module upgrade failed (exit {}): {}",
                out.exit_code,
                failure_cause(&out.tail).unwrap_or("see the log")
            ),
            json!({"database": env, "modules": modules, "output": out.tail}),
        ));
    }
    plan::record_upgraded(s.pool, s.ctx.deployment_id, &modules)
        .await
        .map_err(|e| StageError::new(format!("Recording the upgrade failed: {e}")))?;
    let message = format!("Upgraded {} ({})", modules.join(", "), secs(t0));
    s.log.info(&message);
    Ok(Some(message))
}

/// Writes the hash in `$OEC_ODOO_ADMIN_HASH` as the password of Odoo's
/// `base.user_admin`; the hash reaches psql through a pipe from the shell's
/// own `printf`, never an argv.
const SET_ADMIN_PASSWORD: &str = r#"printf '%s\n' "UPDATE res_users SET password = '$OEC_ODOO_ADMIN_HASH' WHERE id = (SELECT res_id FROM ir_model_data WHERE module = 'base' AND name = 'user_admin') RETURNING login;" | psql -q -v ON_ERROR_STOP=1 -U odoo -d "$1" -tA"#;

/// Gives Odoo's `admin` user the environment's generated password (readable
/// once through `GET /environments/{id}/credentials`), replacing stock
/// Odoo's `admin`: hashed here as Odoo hashes it and written with psql,
/// without loading Odoo's registry.
async fn set_admin_password(s: &mut Stage<'_>) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    let password = s.plan.odoo_admin_password.clone();
    let hash = tokio::task::spawn_blocking(move || odoo_password::hash(&password))
        .await
        .map_err(|e| StageError::new(format!("Hashing the admin password failed: {e}")))?;
    let mut updated = String::new();
    let out = docker::exec(
        &docker,
        &db_container(env),
        vec![
            "sh".into(),
            "-c".into(),
            SET_ADMIN_PASSWORD.into(),
            "sh".into(),
            env.to_string(),
        ],
        Some("postgres"),
        vec![format!("OEC_ODOO_ADMIN_HASH={hash}")],
        &mut |l| updated.push_str(l.trim()),
    )
    .await?;
    if out.exit_code != 0 || updated.is_empty() {
        return Err(StageError::with_data(
            format!(
                "Setting the password of Odoo's admin user failed (exit {}{})",
                out.exit_code,
                if out.exit_code == 0 {
                    ", no base.user_admin in the database"
                } else {
                    ""
                }
            ),
            json!({"database": env, "output": out.tail}),
        ));
    }
    plan::mark_odoo_admin_password_set(s.pool, env)
        .await
        .map_err(|e| StageError::new(format!("Recording the admin password failed: {e}")))?;
    log.info("Odoo's admin user has a generated password (read it once: GET /api/v1/environments/{id}/credentials)",
    );
    Ok(())
}

/// Whether Odoo's module table exists in the environment's database.
async fn initialized(
    docker: &bollard::Docker,
    env: oec_common::model::ids::EnvironmentId,
) -> Result<bool, StageError> {
    let mut answer = String::new();
    let out = docker::exec(
        docker,
        &db_container(env),
        [
            "psql",
            "-U",
            "odoo",
            "-d",
            &env.to_string(),
            "-tAc",
            "SELECT to_regclass('public.ir_module_module') IS NOT NULL",
        ]
        .map(str::to_owned)
        .to_vec(),
        Some("postgres"),
        Vec::new(),
        &mut |l| answer.push_str(l.trim()),
    )
    .await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            "Checking the database failed",
            json!({"database": env, "output": out.tail}),
        ));
    }
    Ok(answer == "t")
}

/// The restore, run inside the Odoo container (which has Python and the
/// PostgreSQL client): download, check manifest.json, psql dump.sql into
/// the primary, unpack the filestore, sanitize ir_config_parameter.
const RESTORE: &str = r#"
import json, os, shutil, subprocess, sys, tarfile, tempfile, urllib.request, uuid, zipfile
db, host, base_url = sys.argv[1:4]
url = os.environ.pop("OEC_MIGRATION_URL")
work = tempfile.mkdtemp(prefix="oec-restore-")
try:
    print("Downloading migration backup...", flush=True)
    path = os.path.join(work, "backup.zip")
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    print(f"Downloaded {os.path.getsize(path)} bytes", flush=True)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        missing = {"manifest.json", "dump.sql"} - names
        if missing:
            sys.exit(f"backup is missing {', '.join(sorted(missing))}")
        manifest = json.loads(z.read("manifest.json"))
        if not isinstance(manifest, dict):
            sys.exit("manifest.json is not an object")
        print("Manifest: " + ", ".join(f"{k}={manifest[k]}" for k in sorted(manifest) if k in ("version", "odoo_version", "db_name", "created_at")), flush=True)
        z.extract("dump.sql", work)
        if "filestore.tar.gz" in names:
            z.extract("filestore.tar.gz", work)
    print("Restoring database from migration backup...", flush=True)
    env = dict(os.environ)
    psql = ["psql", "-h", host, "-U", "odoo", "-v", "ON_ERROR_STOP=1", "-q"]
    subprocess.run(psql + ["-d", db, "-c", "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"], check=True, env=env)
    # Query results (a real dump's hundreds of setval rows) are not log
    # lines; errors still reach stderr.
    subprocess.run(psql + ["-d", db, "-o", "/dev/null", "-f", os.path.join(work, "dump.sql")], check=True, env=env)
    print("Database restored", flush=True)
    fs = os.path.join(work, "filestore.tar.gz")
    if os.path.exists(fs):
        print("Restoring filestore...", flush=True)
        dest = f"/var/lib/odoo/filestore/{db}"
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        with tarfile.open(fs) as t:
            try:
                t.extractall(dest, filter="data")
            except TypeError:  # Python without extraction filters
                for m in t.getmembers():
                    if m.name.startswith("/") or ".." in m.name.split("/") or m.issym() or m.islnk():
                        sys.exit(f"unsafe path in filestore.tar.gz: {m.name}")
                t.extractall(dest)
        for root, dirs, files in os.walk(dest):
            for n in dirs + files:
                os.chown(os.path.join(root, n), 100, 101)
        os.chown(dest, 100, 101)
        print("Filestore restored", flush=True)
    sanitize = (
        "UPDATE ir_config_parameter SET value = %s WHERE key = 'web.base.url';"
        " UPDATE ir_config_parameter SET value = '%s' WHERE key = 'database.uuid';"
        " DELETE FROM ir_config_parameter WHERE key IN ('database.enterprise_code', 'database.expiration_date', 'database.expiration_reason', 'ocn.uuid', 'web.base.url.freeze');"
    ) % ("'" + base_url.replace("'", "''") + "'", uuid.uuid4())
    print("Sanitizing ir_config_parameter...", flush=True)
    subprocess.run(psql + ["-d", db, "-c", sanitize], check=True, env=env)
    print("ir_config_parameter sanitized", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
"#;

/// The restore's phase a line of RESTORE starts or ends, with the
/// restore's progress at that line (download 0-25, database 25-60,
/// filestore 60-85, sanitize 85-100).
fn migration_phase(line: &str) -> Option<(&'static str, i32)> {
    Some(match line {
        "Downloading migration backup..." => ("download", 0),
        l if l.starts_with("Downloaded ") && l.ends_with(" bytes") => ("download", 25),
        "Restoring database from migration backup..." => ("database_restore", 25),
        "Database restored" => ("database_restore", 60),
        "Restoring filestore..." => ("filestore", 60),
        "Filestore restored" => ("filestore", 85),
        "Sanitizing ir_config_parameter..." => ("sanitize", 85),
        "ir_config_parameter sanitized" => ("sanitize", 100),
        _ => return None,
    })
}

async fn restore(s: &Stage<'_>, url: &str) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let docker = s.target.docker();
    let log = s.log.clone();
    let plan = s.plan;
    let base_url = format!("https://{}", plan.hostname);
    let out = docker::exec(
        docker,
        &s.state.odoo_container(env),
        vec![
            "python3".into(),
            "-c".into(),
            RESTORE.into(),
            env.to_string(),
            db_container(env),
            base_url,
        ],
        Some("root"),
        // Secrets in the environment, never on the command line.
        vec![
            format!("PGPASSWORD={}", plan.db_password),
            format!("OEC_MIGRATION_URL={url}"),
        ],
        &mut |l| match migration_phase(l) {
            Some((step, percent)) => log.line(
                LogLevel::Info,
                l,
                Some(json!({"migration": {"step": step, "progress_percent": percent}})),
            ),
            None => log.info(l),
        },
    )
    .await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            format!("Migration restore failed (exit {})", out.exit_code),
            json!({"database": env, "source": oec_common::secrets::mask_url(url), "output": out.tail}),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_lines_and_failures_are_read_as_odoo_writes_them() {
        let l =
            "2026-12-02 18:37:59,592 1 INFO db odoo.modules.loading: Loading module sale_x (3/12)";
        assert!(matches!(
            loader_line(l),
            Some(Loader::Module { name, index: 3, count: 12 }) if name == "sale_x"
        ));
        assert!(matches!(
            loader_line("... odoo.modules.loading: 12 modules loaded in 1.20s, 0 queries (+0 extra)"),
            Some(Loader::Loaded(t)) if t.starts_with("12 modules loaded in")
        ));
        assert!(loader_line("... odoo.modules.loading: loading 12 modules...").is_none());
        let tail: Vec<String> = [
            "2026-12-02 18:37:59,614 1 ERROR db odoo.modules.registry: Failed to load registry",
            "Traceback (most recent call last):",
            "  File \"/mnt/extra-addons/b/migrations/1.2/pre-migrate.py\", line 2, in migrate",
            "ValueError: the column x cannot be cast",
            "2026-12-02 18:37:59,614 1 CRITICAL db odoo.service.server: Failed to initialize database `db`.",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            failure_cause(&tail),
            Some("ValueError: the column x cannot be cast")
        );
        // Real Odoo: each of its two lines is followed by the traceback.
        let tail: Vec<String> = [
            "2026-12-07 23:37:59,592 7 ERROR db odoo.modules.registry: Failed to load registry",
            "Traceback (most recent call last):",
            "  File \"/mnt/extra-addons/shop/b/migrations/1.2/pre-migrate.py\", line 2, in migrate",
            "    raise ValueError('the column x cannot be cast')",
            "ValueError: the column x cannot be cast",
            "2026-12-07 23:37:59,614 7 CRITICAL db odoo.service.server: Failed to initialize database `db`.",
            "Traceback (most recent call last):",
            "  File \"/usr/lib/python3/dist-packages/odoo/service/server.py\", line 1389, in preload_registries",
            "ValueError: the column x cannot be cast",
            "",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            failure_cause(&tail),
            Some("ValueError: the column x cannot be cast")
        );
        let tail = ["2026-12-07 23:37:59,614 7 CRITICAL db odoo.service.server: Failed to initialize database `db`."]
            .map(str::to_owned)
            .to_vec();
        assert_eq!(failure_cause(&tail), None);
    }
}
