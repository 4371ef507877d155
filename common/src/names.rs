//! Every name oec gives a server-side object of an environment, in one
//! place: containers, volumes, the network, the dependencies image and the
//! environment's directory. The spec fixes most of them (`{uuid}_odoo`,
//! `paasportal_pgdata_{uuid}`, `paasportal_net_{uuid}`); whatever finds,
//! replaces or removes an object goes through these.

use crate::model::ids::EnvironmentId;

pub fn odoo_container(env: EnvironmentId) -> String {
    format!("{env}_odoo")
}

pub fn db_container(env: EnvironmentId) -> String {
    format!("{env}_db")
}

pub fn pgbouncer_container(env: EnvironmentId) -> String {
    format!("{env}_pgbouncer")
}

pub fn replica_container(env: EnvironmentId) -> String {
    format!("postgres-replica-{env}")
}

pub fn replica_pgbouncer_container(env: EnvironmentId) -> String {
    format!("{env}_pgbouncer-replica")
}

/// The one-off root container that sets the ownership of `data/`, `logs/`
/// and `odoo.conf`.
pub fn chown_container(env: EnvironmentId) -> String {
    format!("{env}_oec_chown")
}

/// The one-off root container that takes and restores snapshots.
pub fn snapshot_container(env: EnvironmentId) -> String {
    format!("{env}_oec_snapshot")
}

pub fn volume(env: EnvironmentId) -> String {
    format!("paasportal_pgdata_{env}")
}

pub fn replica_volume(env: EnvironmentId) -> String {
    format!("paasportal_pgdata_replica_{env}")
}

/// The environment's Docker network: `paasportal_net_{uuid}`.
pub fn network(env: EnvironmentId) -> String {
    format!("paasportal_net_{env}")
}

/// The image that carries an environment's installed dependencies.
pub fn deps_image(env: EnvironmentId, fingerprint: &str) -> String {
    format!(
        "oec-deps-{env}:{}",
        &fingerprint[..16.min(fingerprint.len())]
    )
}

/// The environment's directory on the server: `{deploy_root}/{uuid}`.
pub fn env_dir(deploy_root: &str, env: EnvironmentId) -> String {
    format!("{deploy_root}/{env}")
}
