//! initializing_database: a fresh database gets `odoo -d {uuid} -i base
//! --stop-after-init` in the Odoo container, then its `admin` user gets the
//! environment's generated password (through `odoo shell`, so Odoo hashes
//! it; the password travels in the exec's environment, never its argv); an
//! initialized one is left alone (but gets that password if setting it
//! failed after oec initialized it); a migration backup is restored exactly
//! once (then `migration_restore_completed` is set and it never runs again)
//! and keeps its own users. Fatal.

use std::time::Instant;

use oec_common::db::plan;
use serde_json::json;

use crate::names::{db_container, odoo_container};
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    let plan = s.plan;
    if let Some(url) = plan.env.migration_source_url.clone()
        && !plan.env.migration_restore_completed
    {
        log.info("Restoring from migration backup...");
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
        let message = format!(
            "Database {env} already initialized, skipping initialization ({})",
            secs(t0)
        );
        log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    log.info("Initializing Odoo database (this may take 1-2 minutes)...");
    let out = docker::exec(
        &docker,
        &odoo_container(env),
        [
            "odoo",
            "-c",
            "/etc/odoo/odoo.conf",
            "-d",
            &env.to_string(),
            "-i",
            "base",
            "--stop-after-init",
            "--no-http",
        ]
        .map(str::to_owned)
        .to_vec(),
        None,
        Vec::new(),
        &mut |l| log.debug(l),
    )
    .await?;
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

/// What `odoo shell` runs: the admin user gets the password from the
/// environment (removed from it first), through the ORM, so Odoo hashes it.
const SET_ADMIN_PASSWORD: &str = r#"
import os
admin = env.ref("base.user_admin")
admin.write({"password": os.environ.pop("OEC_ODOO_ADMIN_PASSWORD")})
env.cr.commit()
print("oec: password of Odoo user %s set" % admin.login)
"#;

/// Gives Odoo's `admin` user the environment's generated password (readable
/// once through `GET /environments/{id}/credentials`), replacing stock
/// Odoo's `admin`.
async fn set_admin_password(s: &mut Stage<'_>) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    let password = s.plan.odoo_admin_password.clone();
    let script = format!(
        "exec odoo shell -c /etc/odoo/odoo.conf -d \"$1\" --no-http <<'OEC'\n{SET_ADMIN_PASSWORD}\nOEC\n"
    );
    let out = docker::exec(
        &docker,
        &odoo_container(env),
        vec![
            "sh".into(),
            "-c".into(),
            script,
            "sh".into(),
            env.to_string(),
        ],
        None,
        vec![format!("OEC_ODOO_ADMIN_PASSWORD={password}")],
        &mut |l| log.debug(l),
    )
    .await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            format!(
                "Setting the password of Odoo's admin user failed (exit {})",
                out.exit_code
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
    subprocess.run(psql + ["-d", db, "-f", os.path.join(work, "dump.sql")], check=True, env=env)
    fs = os.path.join(work, "filestore.tar.gz")
    if os.path.exists(fs):
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
    subprocess.run(psql + ["-d", db, "-c", sanitize], check=True, env=env)
    print("ir_config_parameter sanitized", flush=True)
finally:
    shutil.rmtree(work, ignore_errors=True)
"#;

async fn restore(s: &Stage<'_>, url: &str) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let docker = s.target.docker();
    let log = s.log.clone();
    let plan = s.plan;
    let base_url = format!("https://{}", plan.hostname);
    let out = docker::exec(
        docker,
        &odoo_container(env),
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
        &mut |l| log.info(l),
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
