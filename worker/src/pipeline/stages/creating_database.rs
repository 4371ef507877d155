//! creating_database: PostgreSQL 15 `{uuid}_db` on the volume
//! `paasportal_pgdata_{uuid}` with 30% of the environment's CPU and RAM and
//! PGTune-style settings, a readiness poll, and PgBouncer `{uuid}_pgbouncer`
//! (transaction mode, port 6432). With a replica (Odoo 18+): a streaming
//! replica `postgres-replica-{uuid}` behind `{uuid}_pgbouncer-replica` (6433).
//! A container whose settings changed is recreated; the volume always stays.
//! Fatal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use serde_json::json;

use crate::names::{
    db_container, network, pgbouncer_container, replica_container, replica_pgbouncer_container,
    replica_volume, volume,
};
use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::resources::{Share, pgbouncer_pool_size, pgtune};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let env = s.ctx.environment_id;
    let plan = s.plan;
    let settings = s.settings.pipeline.clone();
    let docker = s.target.docker().clone();
    let name = db_container(env);
    let net = network(env);
    let share = plan.split.database;
    let pool = pgbouncer_pool_size(s.ctx.ram_mb.max(0) as u64);
    let password = plan.db_password.clone();
    let replica = plan.replica();
    s.log
        .info(&format!("Creating PostgreSQL container {name}..."));

    let log = s.log.clone();
    for image in [&settings.postgres_image, &settings.pgbouncer_image] {
        docker::ensure_image(&docker, image, None, &mut |l| log.debug(l)).await?;
    }
    let tune = pgtune(share, pool);
    let mut cmd = vec!["postgres".to_owned()];
    for (k, v) in &tune {
        cmd.push("-c".into());
        cmd.push(format!("{k}={v}"));
    }
    let db_env = vec![
        "POSTGRES_USER=odoo".to_owned(),
        format!("POSTGRES_PASSWORD={password}"),
        format!("POSTGRES_DB={env}"),
    ];
    let aliases = replica.then(|| vec![format!("postgres-primary-{env}")]);
    let body = container_body(
        &settings.postgres_image,
        Some(cmd),
        db_env.clone(),
        share,
        &net,
        Some(format!("{}:/var/lib/postgresql/data", volume(env))),
        aliases,
        env,
    );
    let reused = ensure_container(s, &docker, &name, body).await?;
    let message = if reused {
        format!(
            "PostgreSQL container already running, reusing ({})",
            secs(t0)
        )
    } else {
        format!("PostgreSQL container running ({})", secs(t0))
    };
    s.log.info(&message);
    s.log
        .info("Waiting for PostgreSQL to accept connections...");
    wait_ready(s, &docker, &name, settings.db_ready_tries).await?;
    s.log.info("PostgreSQL is ready and accepting connections");
    let t1 = Instant::now();
    let applied: Vec<String> = tune.iter().map(|(k, v)| format!("{k}={v}")).collect();
    s.log
        .debug(&format!("PGTune settings: {}", applied.join(" ")));

    let bouncer = pgbouncer_container(env);
    let bouncer_body = pgbouncer_body(
        &settings.pgbouncer_image,
        &name,
        6432,
        pool,
        &password,
        share,
        &net,
        env,
    );
    ensure_container(s, &docker, &bouncer, bouncer_body).await?;
    wait_running(&docker, &bouncer).await?;
    s.log.info(&format!(
        "PgBouncer ready: {bouncer}:6432 (transaction mode, pool size {pool})"
    ));

    if replica {
        s.log
            .info("Configuring streaming read replica (Odoo 18+)...");
        setup_replica(s, &docker, &settings.postgres_image, share, pool, &net).await?;
    } else if s.plan.env.replica_enabled {
        s.log.warning(&format!(
            "Read replica requested but needs Odoo 18 or later (this environment runs {}): skipped",
            s.ctx.odoo_version
        ));
    }
    let message = format!("PostgreSQL optimized ({})", secs(t1));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}

#[allow(clippy::too_many_arguments)]
fn container_body(
    image: &str,
    cmd: Option<Vec<String>>,
    env_vars: Vec<String>,
    share: Share,
    net: &str,
    volume_bind: Option<String>,
    aliases: Option<Vec<String>>,
    env: oec_common::model::ids::EnvironmentId,
) -> ContainerCreateBody {
    let mut labels = HashMap::from([("oec.environment".to_owned(), env.to_string())]);
    // What the container was created from: a change recreates it.
    labels.insert(
        "oec.spec".to_owned(),
        format!(
            "{image}|{cmd:?}|{}|{}",
            share.nano_cpus(),
            share.memory_bytes()
        ),
    );
    ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd,
        env: Some(env_vars),
        labels: Some(labels),
        host_config: Some(HostConfig {
            binds: volume_bind.map(|b| vec![b]),
            network_mode: Some(net.to_owned()),
            memory: Some(share.memory_bytes()),
            nano_cpus: Some(share.nano_cpus()),
            restart_policy: Some(super::unless_stopped()),
            log_config: Some(super::json_file_logs()),
            ..Default::default()
        }),
        networking_config: aliases.map(|aliases| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                net.to_owned(),
                EndpointSettings {
                    aliases: Some(aliases),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn pgbouncer_body(
    image: &str,
    db_host: &str,
    port: u16,
    pool: u64,
    password: &str,
    db_share: Share,
    net: &str,
    env: oec_common::model::ids::EnvironmentId,
) -> ContainerCreateBody {
    let vars = vec![
        format!("DB_HOST={db_host}"),
        "DB_PORT=5432".to_owned(),
        "DB_USER=odoo".to_owned(),
        format!("DB_PASSWORD={password}"),
        "POOL_MODE=transaction".to_owned(),
        format!("DEFAULT_POOL_SIZE={pool}"),
        format!("MAX_CLIENT_CONN={}", (pool * 2).max(100)),
        format!("LISTEN_PORT={port}"),
        "AUTH_TYPE=scram-sha-256".to_owned(),
    ];
    // PgBouncer is light: a tenth of the database's share, at least 64 MB.
    let share = Share {
        cpu_cores: (db_share.cpu_cores / 2.0).max(0.1),
        ram_mb: (db_share.ram_mb / 10).max(64),
    };
    container_body(image, None, vars, share, net, None, None, env)
}

/// Reuses a running container created from the same spec; otherwise
/// replaces it. True when reused.
async fn ensure_container(
    s: &mut Stage<'_>,
    docker: &bollard::Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<bool, StageError> {
    let wanted = body
        .labels
        .as_ref()
        .and_then(|l| l.get("oec.spec"))
        .cloned();
    if let Some(c) = docker::inspect(docker, name).await? {
        let spec = c
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get("oec.spec"))
            .cloned();
        if docker::is_running(&c) && spec == wanted {
            return Ok(true);
        }
        s.log.debug(&format!(
            "Recreating {name} (settings changed or not running); data volume kept"
        ));
        docker::remove(docker, name).await?;
    }
    docker::create_and_start(docker, name, body).await?;
    Ok(false)
}

async fn wait_running(docker: &bollard::Docker, name: &str) -> Result<(), StageError> {
    for _ in 0..20 {
        if let Some(c) = docker::inspect(docker, name).await?
            && docker::is_running(&c)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(StageError::with_data(
        format!("Container {name} is not running"),
        json!({"container": name}),
    ))
}

async fn wait_ready(
    s: &Stage<'_>,
    docker: &bollard::Docker,
    name: &str,
    tries: u32,
) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let mut last = String::new();
    for attempt in 1..=tries {
        let probe = docker::exec(
            docker,
            name,
            vec![
                "pg_isready".into(),
                "-h".into(),
                "127.0.0.1".into(),
                "-U".into(),
                "odoo".into(),
                "-d".into(),
                env.to_string(),
            ],
            None,
            Vec::new(),
            &mut |_| {},
        )
        .await;
        match probe {
            Ok(out) if out.exit_code == 0 => return Ok(()),
            Ok(out) => last = out.tail.join(" "),
            Err(e) => last = format!("{e:#}"),
        }
        s.log.debug(&format!(
            "PostgreSQL not ready yet (attempt {attempt}/{tries}): {last}"
        ));
        if attempt < tries {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Err(StageError::with_data(
        format!("PostgreSQL did not accept connections after {tries} attempts"),
        json!({"container": name, "attempts": tries, "last_error": last,
               "hint": "check the container's logs: docker logs <container>"}),
    ))
}

/// A streaming replica of `{uuid}_db` (pg_basebackup on first start) and its
/// own PgBouncer on 6433.
async fn setup_replica(
    s: &mut Stage<'_>,
    docker: &bollard::Docker,
    image: &str,
    share: Share,
    pool: u64,
    net: &str,
) -> Result<(), StageError> {
    let env = s.ctx.environment_id;
    let primary = db_container(env);
    let password = s.plan.db_password.clone();
    // Replication connections from the environment's network.
    let allow = "grep -q '^host replication odoo all' \"$PGDATA/pg_hba.conf\" || \
                 { echo 'host replication odoo all scram-sha-256' >> \"$PGDATA/pg_hba.conf\" && \
                   psql -U odoo -d postgres -qc 'SELECT pg_reload_conf()'; }";
    let out = docker::exec(
        docker,
        &primary,
        vec!["sh".into(), "-c".into(), allow.into()],
        Some("postgres"),
        Vec::new(),
        &mut |_| {},
    )
    .await?;
    if out.exit_code != 0 {
        return Err(StageError::with_data(
            "Allowing replication on the primary failed",
            json!({"container": primary, "output": out.tail}),
        ));
    }
    let replica = replica_container(env);
    let script = format!(
        "set -e; if [ ! -s \"$PGDATA/PG_VERSION\" ]; then \
           mkdir -p \"$PGDATA\" && chown postgres:postgres \"$PGDATA\" && chmod 700 \"$PGDATA\"; \
           su postgres -s /bin/sh -c 'pg_basebackup -h postgres-primary-{env} -U odoo -D \"$PGDATA\" -R -X stream'; \
         fi; exec docker-entrypoint.sh postgres -c hot_standby=on"
    );
    let body = container_body(
        image,
        Some(vec!["sh".into(), "-c".into(), script]),
        vec![
            format!("PGPASSWORD={password}"),
            format!("POSTGRES_PASSWORD={password}"),
            "POSTGRES_USER=odoo".into(),
        ],
        share,
        net,
        Some(format!("{}:/var/lib/postgresql/data", replica_volume(env))),
        None,
        env,
    );
    ensure_container(s, docker, &replica, body).await?;
    wait_ready(s, docker, &replica, s.settings.pipeline.db_ready_tries).await?;
    let bouncer = replica_pgbouncer_container(env);
    let body = pgbouncer_body(
        &s.settings.pipeline.pgbouncer_image,
        &replica,
        6433,
        pool,
        &password,
        share,
        net,
        env,
    );
    ensure_container(s, docker, &bouncer, body).await?;
    wait_running(docker, &bouncer).await?;
    s.log.info(&format!(
        "Read replica ready: {replica} behind {bouncer}:6433"
    ));
    Ok(())
}
