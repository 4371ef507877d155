//! Snapshots of an environment's data, taken before a deployment changes
//! its database (a module upgrade, a migration restore over an existing
//! database) and restored when that deployment is rolled back: `pg_dump -Fc`
//! of the database and a copy of its filestore, under
//! `{root}/{uuid}/backups/{deployment_id}/`. The newest `OEC_SNAPSHOT_KEEP`
//! (default 3) are kept. Both run in a one-off container of the PostgreSQL
//! image on the environment's network (the database password in its
//! environment), so the dump goes from the database to the server's disk
//! without leaving the server.

use std::time::Instant;

use oec_common::model::ids::{DeploymentId, EnvironmentId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::names::{db_container, env_dir, network, snapshot_container};
use crate::pipeline::StageError;
use crate::pipeline::docker::{self, OneShot};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// Its directory on the server.
    pub path: String,
    pub bytes: u64,
    pub seconds: f64,
    pub filestore: bool,
}

/// Where an environment's snapshots are kept.
pub fn backups_dir(deploy_root: &str, env: EnvironmentId) -> String {
    format!("{}/backups", env_dir(deploy_root, env))
}

const TAKE: &str = r#"set -eu
dir="/backups/$1"; host="$2"; db="$3"; keep="$4"
rm -rf "$dir"; mkdir -p "$dir"
pg_dump -h "$host" -U odoo -Fc -f "$dir/db.dump" "$db"
if [ -d "/data/filestore/$db" ]; then cp -a "/data/filestore/$db" "$dir/filestore"; echo "filestore yes"; fi
echo "bytes $(du -sb "$dir" | cut -f1)"
ls -1t /backups | tail -n +$((keep + 1)) | while read -r old; do rm -rf "/backups/$old"; echo "pruned $old"; done
"#;

const RESTORE: &str = r#"set -eu
dir="/backups/$1"; host="$2"; db="$3"
[ -f "$dir/db.dump" ] || { echo "no snapshot at $dir" >&2; exit 3; }
# One transaction: until it commits, the serving Odoo sees the database as
# it was; objects the failed deployment created go with the schema.
{ echo 'SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public;'; pg_restore --no-owner -f - "$dir/db.dump"; } |
  psql -h "$host" -U odoo -d "$db" -v ON_ERROR_STOP=1 -q --single-transaction >/dev/null
rm -rf "/data/filestore/$db"
if [ -d "$dir/filestore" ]; then cp -a "$dir/filestore" "/data/filestore/$db"; fi
echo restored
"#;

pub struct Target<'a> {
    pub docker: &'a bollard::Docker,
    pub image: &'a str,
    pub deploy_root: &'a str,
    pub env: EnvironmentId,
    pub db_password: &'a str,
}

impl Target<'_> {
    fn job(&self, script: &str, args: Vec<String>) -> OneShot {
        let root = env_dir(self.deploy_root, self.env);
        let mut argv = vec!["sh".into(), "-c".into(), script.into(), "sh".into()];
        argv.extend(args);
        OneShot {
            name: snapshot_container(self.env),
            image: self.image.to_owned(),
            argv,
            binds: vec![
                format!("{}:/backups", backups_dir(self.deploy_root, self.env)),
                format!("{root}/data:/data"),
            ],
            network: Some(network(self.env)),
            env: vec![format!("PGPASSWORD={}", self.db_password)],
        }
    }

    /// Takes the snapshot of `deployment`, keeping the newest `keep`.
    pub async fn take(&self, deployment: DeploymentId, keep: u32) -> Result<Snapshot, StageError> {
        let t0 = Instant::now();
        let args = vec![
            deployment.to_string(),
            db_container(self.env),
            self.env.to_string(),
            keep.max(1).to_string(),
        ];
        let (code, lines) = docker::run_once(self.docker, self.job(TAKE, args)).await?;
        if code != 0 {
            return Err(StageError::with_data(
                format!("Taking the snapshot failed (exit {code})"),
                json!({"output": tail(&lines)}),
            ));
        }
        let bytes = lines
            .iter()
            .find_map(|l| l.strip_prefix("bytes "))
            .and_then(|b| b.trim().parse().ok())
            .unwrap_or(0);
        Ok(Snapshot {
            path: format!("{}/{deployment}", backups_dir(self.deploy_root, self.env)),
            bytes,
            seconds: t0.elapsed().as_secs_f64(),
            filestore: lines.iter().any(|l| l == "filestore yes"),
        })
    }

    /// Puts the database and the filestore back as `deployment`'s snapshot has them.
    pub async fn restore(&self, deployment: DeploymentId) -> anyhow::Result<()> {
        let args = vec![
            deployment.to_string(),
            db_container(self.env),
            self.env.to_string(),
        ];
        let (code, lines) = docker::run_once(self.docker, self.job(RESTORE, args)).await?;
        anyhow::ensure!(
            code == 0,
            "restoring the snapshot failed (exit {code}): {}",
            tail(&lines).join(" | ")
        );
        Ok(())
    }
}

fn tail(lines: &[String]) -> Vec<String> {
    lines[lines.len().saturating_sub(20)..].to_vec()
}

/// A size as people read it.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
