//! The whole 16-stage pipeline against this machine as a real server: sshd,
//! dockerd, the local registry with the images of scripts/test-images,
//! dnsmasq, local git repositories, and imitations of Cloudflare's API and a
//! backup download link.

use std::collections::HashMap;
use std::time::Duration;

use oec_tests::TargetEnv;
use oec_tests::imitation::{self, Imitation};
use oec_tests::stack::SseClient;
use oec_tests::world::*;
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_deployment_then_a_redeploy_run_all_sixteen_stages_for_real() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    let mut sse = SseClient::connect(
        &w.stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let sub = format!("staging-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "staging", "subdomain": sub,
                            "odoo_conf_overrides": {"performance": {"max_cron_threads": 1}, "logging": {"log_level": "info"}}}))
        .await;
    let _purge = Purge(env, sub.clone());
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));

    // All 16 stages completed, in order.
    let steps = w.steps(id).await;
    assert_eq!(steps.len(), 16);
    for s in &steps {
        assert_eq!(s["status"], "completed", "{s}");
    }
    assert_eq!(d["progress_percent"], 100);
    let hostname = w.get(&format!("/api/v1/environments/{env}")).await.body["subdomain"]
        .as_str()
        .map(|s| format!("{s}.apps.oec.test"))
        .unwrap_or_default();
    for expected in [
        "Configuring DNS record (early for propagation)...".to_owned(),
        format!("Creating PostgreSQL container {env}_db..."),
        "PostgreSQL is ready and accepting connections".to_owned(),
        "Cloning 1 platform addon repository...".to_owned(),
        "[1/1] Cloning platform-utils (main)...".to_owned(),
        "Cloning project repository...".to_owned(),
        "Pulling Odoo 17.0 image...".to_owned(),
        "Configuration generated".to_owned(),
        "Generated odoo.conf with 2 custom overrides".to_owned(),
        "Applying Odoo resource limits: CPU=0.7 cores, RAM=717m (70% of allocated)".to_owned(),
        format!("Odoo container started on internal network: paasportal_net_{env}"),
        format!(
            "Container routed by the server's proxy over paasportal_net_{env} (no network shared with other environments)"
        ),
        "Dependencies installed from: platform-utils, proj".to_owned(),
        "Total pip packages: 1".to_owned(),
        "Initializing Odoo database without demo data (this may take 1-2 minutes)...".to_owned(),
        "Configuring Traefik routing...".to_owned(),
    ] {
        assert!(
            messages.contains(&expected),
            "missing {expected:?} in\n{}",
            messages.join("\n")
        );
    }
    for prefix in [
        format!("DNS configured: {hostname} -> 127.0.0.1 ("),
        "DNS verified - safe to proceed with SSL (".to_owned(),
        "Health check passed! (".to_owned(),
        format!("Route verified: https://{hostname}/web/health answered 200 through oec-traefik ("),
        "Traefik configured (".to_owned(),
        "Commit: ".to_owned(),
        "Deployment completed successfully! Total time: ".to_owned(),
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(&prefix)),
            "missing {prefix:?}"
        );
    }

    // Git metadata of the project repository.
    assert_eq!(d["git_commit"], w.git.head("shop"));
    assert_eq!(d["git_message"], "Add customer portal module");
    assert_eq!(d["git_branch"], "main");

    // The DNS record request reached "Cloudflare" with the token.
    let cf = w.cloudflare.requests();
    let post = cf
        .iter()
        .find(|r| r.method == "POST")
        .expect("record created");
    assert_eq!(
        post.header("authorization"),
        Some(format!("Bearer {CF_TOKEN}").as_str())
    );
    assert_eq!(
        post.json(),
        json!({"type": "A", "name": hostname, "content": "127.0.0.1", "ttl": 300, "proxied": false})
    );

    // Containers, limits, labels, mounts and networks, through the Docker API.
    let odoo = inspect(&format!("{env}_odoo"))
        .await
        .expect("odoo container");
    assert_eq!(
        Some(odoo.id.clone().unwrap_or_default()),
        d["container_id"].as_str().map(str::to_owned)
    );
    let hc = odoo.host_config.clone().unwrap_or_default();
    assert_eq!(hc.memory, Some(717 * 1024 * 1024));
    assert_eq!(hc.nano_cpus, Some(700_000_000));
    assert_eq!(
        hc.restart_policy
            .and_then(|p| p.name)
            .map(|n| n.to_string())
            .as_deref(),
        Some("unless-stopped")
    );
    let log_config = hc.log_config.unwrap_or_default();
    assert_eq!(log_config.typ.as_deref(), Some("json-file"));
    assert_eq!(
        log_config.config.unwrap_or_default(),
        HashMap::from([
            ("max-size".to_owned(), "10m".to_owned()),
            ("max-file".to_owned(), "3".to_owned())
        ])
    );
    let root = format!("/opt/paasportal/{env}");
    let mut binds = hc.binds.unwrap_or_default();
    binds.sort();
    assert_eq!(
        binds,
        [
            format!("{root}/addons:/mnt/extra-addons:ro"),
            format!("{root}/data:/var/lib/odoo"),
            format!("{root}/logs:/var/log/odoo"),
            format!("{root}/odoo.conf:/etc/odoo/odoo.conf:ro"),
        ]
    );
    let config = odoo.config.clone().unwrap_or_default();
    assert!(
        config
            .env
            .unwrap_or_default()
            .contains(&"ODOO_RC=/etc/odoo/odoo.conf".to_owned())
    );
    let labels = config.labels.unwrap_or_default();
    for (k, v) in [
        ("traefik.enable".to_owned(), "true".to_owned()),
        (
            format!("traefik.http.routers.{env}.rule"),
            format!("Host(`{hostname}`)"),
        ),
        (
            format!("traefik.http.routers.{env}.entrypoints"),
            "websecure".to_owned(),
        ),
        (
            format!("traefik.http.routers.{env}.tls.certresolver"),
            "letsencrypt".to_owned(),
        ),
        (
            format!("traefik.http.services.{env}.loadbalancer.server.port"),
            "8069".to_owned(),
        ),
        (
            format!("traefik.http.middlewares.{env}-ratelimit.ratelimit.average"),
            "100".to_owned(),
        ),
        (
            format!("traefik.http.middlewares.{env}-ratelimit.ratelimit.burst"),
            "50".to_owned(),
        ),
    ] {
        assert_eq!(labels.get(&k), Some(&v), "label {k}");
    }
    let networks = odoo
        .network_settings
        .clone()
        .and_then(|n| n.networks)
        .unwrap_or_default();
    assert_eq!(
        networks.keys().collect::<Vec<_>>(),
        [&format!("paasportal_net_{env}")],
        "the environment's network only"
    );
    let db = inspect(&format!("{env}_db")).await.expect("db container");
    let db_hc = db.host_config.unwrap_or_default();
    assert_eq!(db_hc.memory, Some(307 * 1024 * 1024), "30% of 1024 MB");
    assert_eq!(db_hc.nano_cpus, Some(300_000_000));
    assert!(
        db_hc
            .binds
            .unwrap_or_default()
            .contains(&format!("paasportal_pgdata_{env}:/var/lib/postgresql/data"))
    );
    assert!(
        inspect(&format!("{env}_pgbouncer"))
            .await
            .is_some_and(|c| c.state.and_then(|s| s.running) == Some(true))
    );

    // odoo.conf as generated, with the overrides last; data dir owned by 100:101.
    let conf = std::fs::read_to_string(format!("{root}/odoo.conf")).expect("odoo.conf");
    let password = conf
        .lines()
        .find_map(|l| l.strip_prefix("db_password = "))
        .expect("db_password")
        .to_owned();
    assert!(password.len() >= 32);
    assert!(conf.starts_with(&format!(
        "[options]\naddons_path = /mnt/extra-addons/proj,/mnt/extra-addons/org-modules,/mnt/extra-addons/platform-utils,/usr/lib/python3/dist-packages/odoo/addons\ndata_dir = /var/lib/odoo\ndb_host = {env}_pgbouncer\ndb_port = 6432\ndb_user = odoo\ndb_name = {env}\n"
    )), "{conf}");
    assert!(conf.contains(&format!(
        "\ndbfilter = ^{env}$\nworkers = 1\nlimit_memory_hard = {}\n",
        717u64 * 1024 * 1024
    )));
    assert!(
        conf.contains("\nlogfile = False\nadmin_passwd = ")
            && conf.ends_with("\nlist_db = False\nlog_level = info\nmax_cron_threads = 1\n"),
        "{conf}"
    );
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(format!("{root}/data")).expect("data dir");
        assert_eq!((meta.uid(), meta.gid()), (100, 101));
    }
    assert!(std::path::Path::new(&format!("{root}/addons/platform-utils/README.md")).exists());

    // Odoo's module table in the environment's own database, through PgBouncer.
    let state = psql(
        &format!("{env}_db"),
        env,
        "SELECT state FROM ir_module_module WHERE name = 'base'",
    )
    .await;
    assert_eq!(state, "installed");
    // The dependency really is installed in the container.
    assert_eq!(
        exec(
            &format!("{env}_odoo"),
            &["python3", "-c", "import six; print(six.__version__)"],
            "odoo"
        )
        .await,
        "1.16.0"
    );

    // Health answers 200 on the container's address.
    let ip = networks[&format!("paasportal_net_{env}")]
        .ip_address
        .clone()
        .unwrap_or_default();
    let health = reqwest::get(format!("http://{ip}:8069/web/health"))
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    // A redeploy: new commit, image and database reused, container replaced.
    // Odoo makes a database's uuid when it initializes it.
    let base_row = "SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'";
    let installed = psql(&format!("{env}_db"), env, base_row).await;
    assert_eq!(installed.len(), 36, "{installed}");
    let new_sha = w.git.push(
        "shop",
        &[("shop_portal/models.py", "# v2\n")],
        "Second release",
    );
    let (id2, d2) = w.deploy_and_wait(env).await;
    let messages2 = w.messages(id2).await;
    assert_eq!(d2["status"], "success", "{d2}\n{}", messages2.join("\n"));
    assert_eq!(d2["version"], 2);
    assert_eq!(d2["git_commit"], new_sha);
    assert!(
        messages2
            .iter()
            .any(|m| m.starts_with("Image ready (cached)")),
        "{messages2:?}"
    );
    assert!(
        messages2
            .iter()
            .any(|m| m.starts_with(&format!("Database {env} already initialized, skipping")))
    );
    assert!(
        messages2
            .iter()
            .any(|m| m.starts_with("Dependencies unchanged since the last install"))
    );
    assert!(
        messages2.contains(&"PostgreSQL container already running, reusing".to_owned())
            || messages2
                .iter()
                .any(|m| m.starts_with("PostgreSQL container already running, reusing"))
    );
    assert!(std::path::Path::new(&format!("{root}/addons/proj/shop_portal/models.py")).exists());
    let odoo2 = inspect(&format!("{env}_odoo"))
        .await
        .expect("odoo container");
    assert_ne!(odoo2.id, odoo.id, "the container was replaced");
    assert_eq!(
        inspect(&format!("{env}_db")).await.and_then(|c| c.id),
        db.id,
        "the database container stayed"
    );
    assert_eq!(
        psql(&format!("{env}_db"), env, base_row).await,
        installed,
        "the database was kept"
    );

    // A redeploy that fails (a branch that does not exist) leaves the
    // database, its volume and the running container alone.
    let r = w
        .stack
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/environments/{env}"),
            Some(&t),
            Some(json!({"branch": "no-such-branch"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (id3, d3) = w.deploy_and_wait(env).await;
    assert_eq!(d3["status"], "failed");
    assert_eq!(d3["current_step"], "cloning_project_repo");
    assert_eq!(
        inspect(&format!("{env}_db")).await.and_then(|c| c.id),
        db.id,
        "the database container stayed"
    );
    let still = inspect(&format!("{env}_odoo"))
        .await
        .expect("odoo container");
    assert_eq!(still.id, odoo2.id, "the running container stayed");
    assert!(
        docker()
            .inspect_volume(&format!("paasportal_pgdata_{env}"))
            .await
            .is_ok(),
        "the database volume stayed"
    );
    assert_eq!(
        psql(&format!("{env}_db"), env, base_row).await,
        installed,
        "the database is the same one"
    );

    // No secret in any log line, event or API answer of either deployment.
    let events = sse.until(Duration::from_secs(5), |_| false).await;
    let key = TargetEnv::load().private_key();
    let key_body = key.lines().nth(1).unwrap_or("none").to_owned();
    let secrets = [password.as_str(), CF_TOKEN, REPO_TOKEN, key_body.as_str()];
    for id in [id, id2, id3] {
        assert_no_secret(
            "logs",
            &serde_json::to_string(&w.logs(id).await).unwrap_or_default(),
            &secrets,
        );
        assert_no_secret(
            "deployment",
            &w.get(&format!("/api/v1/deployments/{id}")).await.text,
            &secrets,
        );
        assert_no_secret(
            "progress",
            &w.get(&format!("/api/v1/deployments/{id}/progress"))
                .await
                .text,
            &secrets,
        );
        let export = w
            .stack
            .client
            .get(
                w.stack
                    .url(&format!("/api/v1/deployments/{id}/logs/export?format=txt")),
            )
            .bearer_auth(&t)
            .send()
            .await
            .expect("export")
            .text()
            .await
            .unwrap_or_default();
        assert!(export.len() > 100);
        assert_no_secret("export", &export, &secrets);
    }
    let all_events: String = events
        .iter()
        .map(|e| e.data.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all_events.contains("Health check passed!"));
    assert_no_secret("events", &all_events, &secrets);
    for path in [
        format!("/api/v1/environments/{env}"),
        format!("/api/v1/servers/{}", w.server),
        format!("/api/v1/repositories?organization_id={}", w.org),
        format!("/api/v1/dns-providers?organization_id={}", w.org),
    ] {
        assert_no_secret(&path, &w.get(&path).await.text, &secrets);
    }
    // Nor in what the api and the workers print.
    assert_no_secret("api process log", &w.stack.api.log(), &secrets);
    for worker in &w.stack.workers {
        assert_no_secret("worker process log", &worker.log(), &secrets);
    }
}

/// The log lines of a deployment with their data, as one text.
async fn log_text(w: &World, id: Uuid) -> String {
    serde_json::to_string(&w.logs(id).await).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_git_token_and_a_missing_image_fail_with_the_specs_error_data_and_clean_up() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    let git_host = Imitation::start("127.0.0.1:0", imitation::unauthorized()).await;
    let mut sse = SseClient::connect(
        &w.stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let token = "ghp_badToken9c7e2a41";
    let r = w
        .stack
        .post(
            "/api/v1/repositories",
            &t,
            json!({"scope": "project", "project_id": w.project, "name": "private-addons",
                   "git_url": format!("http://{}/acme/private.git", git_host.addr), "branch": "main", "token": token}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = format!("bad-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "badtoken", "subdomain": sub}))
        .await;
    let _purge = Purge(env, sub);
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Failed to clone private-addons")
                && e.contains("(GIT_AUTH_FAILED)")),
        "{d}"
    );
    assert_eq!(d["current_step"], "cloning_project_repo");
    let logs = w.logs(id).await;
    let failure = logs
        .iter()
        .find(|l| l["message"] == "Failed to clone private-addons")
        .expect("failure line");
    assert_eq!(failure["level"], "error");
    assert_eq!(
        failure["data"]["error_code"], "GIT_AUTH_FAILED",
        "{failure}"
    );
    assert_eq!(failure["data"]["repository"], "private-addons");
    assert!(
        git_host
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/acme/private.git/info/refs"))
    );
    // The token is nowhere: logs, events, the deployment, the export.
    let events = sse.until(Duration::from_secs(3), |_| false).await;
    let all_events: String = events
        .iter()
        .map(|e| e.data.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(all_events.contains("Failed to clone private-addons"));
    for (what, text) in [
        (
            "worker process logs",
            w.stack
                .workers
                .iter()
                .map(|p| p.log())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ("logs", log_text(&w, id).await),
        ("events", all_events),
        (
            "deployment",
            w.get(&format!("/api/v1/deployments/{id}")).await.text,
        ),
        (
            "progress",
            w.get(&format!("/api/v1/deployments/{id}/progress"))
                .await
                .text,
        ),
    ] {
        assert_no_secret(what, &text, &[token]);
    }
    // A failed first deployment leaves nothing behind on the server.
    assert!(
        inspect(&format!("{env}_db")).await.is_none(),
        "database container left behind"
    );
    assert!(inspect(&format!("{env}_pgbouncer")).await.is_none());
    assert!(
        docker()
            .inspect_network(
                &format!("paasportal_net_{env}"),
                None::<bollard::query_parameters::InspectNetworkOptions>
            )
            .await
            .is_err(),
        "network left behind"
    );
    // Another project (without the private repository) on an Odoo version
    // whose image does not exist.
    let shop_url = format!("file://{}/shop.git", w.git.root.display());
    let other = w
        .stack
        .post(
            "/api/v1/projects",
            &t,
            json!({"organization_id": w.org, "name": "Other", "slug": "other", "git_url": shop_url, "git_branch": "main"}),
        )
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
    let missing = format!("{}/oec/odoo:99.0", registry());
    let r = w
        .stack
        .post(
            "/api/v1/odoo-versions",
            &t,
            json!({"version": "16.0", "image": missing}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = format!("noimg-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "noimage", "subdomain": sub, "odoo_version": "16.0", "project_id": other.id()}))
        .await;
    let _purge2 = Purge(env, sub);
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_message"].as_str().is_some_and(|e| e
            .starts_with(&format!("Failed to pull image {missing}: "))
            && e.contains("(IMAGE_NOT_FOUND)")),
        "{d}"
    );
    assert_eq!(d["current_step"], "pulling_image");
    let logs = w.logs(id).await;
    let failure = logs
        .iter()
        .find(|l| l["message"] == format!("Failed to pull image {missing}"))
        .expect("failure line");
    assert_eq!(
        failure["data"]["error_code"], "IMAGE_NOT_FOUND",
        "{failure}"
    );
    assert_eq!(failure["data"]["image"], missing.as_str());
    assert!(
        inspect(&format!("{env}_db")).await.is_none(),
        "database container left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_never_becomes_ready_fails_after_the_configured_attempts() {
    // PgBouncer's image as "PostgreSQL": it exits at once, never accepting connections.
    let not_postgres = format!("{}/oec/pgbouncer:1", registry());
    let w = world(&[
        ("OEC_POSTGRES_IMAGE", &not_postgres),
        ("OEC_DB_READY_TRIES", "3"),
    ])
    .await;
    let sub = format!("nodb-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "nodb", "subdomain": sub}))
        .await;
    let _purge = Purge(env, sub);
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_message"].as_str().is_some_and(
            |e| e.starts_with("PostgreSQL did not accept connections after 3 attempts")
        ),
        "{d}"
    );
    let logs = w.logs(id).await;
    let failure = logs
        .iter()
        .find(|l| l["level"] == "error" && l["step"] == "creating_database")
        .expect("failure line");
    assert_eq!(failure["data"]["attempts"], 3);
    assert_eq!(failure["data"]["container"], format!("{env}_db"));
    let messages = w.messages(id).await;
    assert!(messages.contains(&"Waiting for PostgreSQL to accept connections...".to_owned()));
    assert!(!messages.contains(&"PostgreSQL is ready and accepting connections".to_owned()));
    assert!(inspect(&format!("{env}_db")).await.is_none(), "cleaned up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_backup_is_restored_once_and_never_again() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    // Served on all interfaces: the download runs inside the Odoo container,
    // which reaches this machine through Docker's default bridge.
    let backup = Imitation::start("0.0.0.0:0", imitation::file(backup_zip())).await;
    let gateway = docker_gateway().await;
    let signature = "X-Amz-Signature=5ec12e7abc";
    let url = format!(
        "http://{gateway}:{}/backups/acme.zip?{signature}",
        backup.addr.port()
    );
    let sub = format!("mig-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "migrated", "subdomain": sub, "migration_source_url": url}))
        .await;
    let _purge = Purge(env, sub.clone());
    let mut sse = SseClient::connect(
        &w.stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    assert_eq!(sse.status, 200);
    let shown = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(
        shown.body["migration_source_url"],
        format!("http://{gateway}:{}/backups/acme.zip", backup.addr.port()),
        "the signature is never returned"
    );
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
    // The spec's migration_progress, phase by phase, each after its line.
    let frames = sse
        .until(Duration::from_secs(10), |m| {
            m.event.as_deref() == Some("deployment_finished")
        })
        .await;
    let phases: Vec<(String, i64)> = frames
        .iter()
        .filter(|m| m.event.as_deref() == Some("migration_progress"))
        .map(|m| {
            let d = &m.json()["data"];
            assert_eq!(d["migration_id"], json!(id), "{d}");
            assert_eq!(d["environment_id"], json!(env), "{d}");
            (
                d["step"].as_str().unwrap_or_default().to_owned(),
                d["progress_percent"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let expected: Vec<(String, i64)> = [
        ("download", 0),
        ("download", 25),
        ("database_restore", 25),
        ("database_restore", 60),
        ("filestore", 60),
        ("filestore", 85),
        ("sanitize", 85),
        ("sanitize", 100),
    ]
    .iter()
    .map(|(s, p)| ((*s).to_owned(), *p))
    .collect();
    assert_eq!(phases, expected);
    for expected in [
        "Restoring from migration backup...",
        "Restoring database from migration backup...",
        "Filestore restored",
    ] {
        assert!(
            messages.contains(&expected.to_owned()),
            "missing {expected}"
        );
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Migration restore complete ("))
    );
    assert_eq!(backup.requests().len(), 1);
    let db = format!("{env}_db");
    let q = |sql: &'static str| {
        let db = db.clone();
        async move { psql(&db, env, sql).await }
    };
    assert_eq!(
        q("SELECT name FROM res_partner WHERE id = 1").await,
        "Migrated Co"
    );
    assert_eq!(
        q("SELECT value FROM ir_config_parameter WHERE key = 'web.base.url'").await,
        format!("https://{sub}.apps.oec.test")
    );
    assert_eq!(
        q("SELECT count(*) FROM ir_config_parameter WHERE key = 'database.enterprise_code'").await,
        "0"
    );
    assert_ne!(
        q("SELECT value FROM ir_config_parameter WHERE key = 'database.uuid'").await,
        "old-uuid"
    );
    let stored = std::fs::read_to_string(format!(
        "/opt/paasportal/{env}/data/filestore/{env}/ab/ab12cd34"
    ))
    .expect("filestore restored");
    assert_eq!(stored, "attachment bytes");
    let e = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(e.body["migration_restore_completed"], true);
    assert!(e.body["migration_restore_completed_at"].is_string());
    assert_no_secret("logs", &log_text(&w, id).await, &["5ec12e7abc"]);
    // The restored database keeps its own users: oec hands out the master
    // password only.
    let creds = w
        .get(&format!("/api/v1/environments/{env}/credentials"))
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    assert!(creds.body["master_password"].is_string(), "{}", creds.text);
    assert!(creds.body["admin_password"].is_null(), "{}", creds.text);

    // A redeploy never restores again: the data written since survives.
    let _ = q("INSERT INTO res_partner (name) VALUES ('Created after migration')").await;
    let (id2, d2) = w.deploy_and_wait(env).await;
    assert_eq!(d2["status"], "success");
    let messages2 = w.messages(id2).await;
    assert!(
        !messages2.iter().any(|m| m.contains("migration backup")),
        "{messages2:?}"
    );
    assert_eq!(backup.requests().len(), 1, "downloaded once only");
    assert_eq!(
        q("SELECT count(*) FROM res_partner WHERE name IN ('Migrated Co', 'Created after migration')")
            .await,
        "2"
    );
    let _ = t;
}

#[tokio::test(flavor = "multi_thread")]
async fn odoo_18_gets_a_streaming_replica_behind_its_own_pgbouncer_until_it_is_turned_off() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    w.real_odoo("18.0").await;
    let sub = format!("rep-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "replicated", "subdomain": sub, "odoo_version": "18.0", "replica_enabled": true}))
        .await;
    let _purge = Purge(env, sub);
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
    assert!(messages.contains(&format!(
        "Read replica ready: postgres-replica-{env} behind {env}_pgbouncer-replica:6433"
    )));
    let in_recovery = psql(
        &format!("postgres-replica-{env}"),
        env,
        "SELECT pg_is_in_recovery()",
    )
    .await;
    // The replica streams what Odoo wrote to the primary.
    let replicated = psql(
        &format!("postgres-replica-{env}"),
        env,
        "SELECT state FROM ir_module_module WHERE name = 'base'",
    )
    .await;
    let conf =
        std::fs::read_to_string(format!("/opt/paasportal/{env}/odoo.conf")).unwrap_or_default();
    assert_eq!(in_recovery, "t");
    assert_eq!(replicated, "installed");
    assert!(conf.contains(&format!(
        "db_replica_host = {env}_pgbouncer-replica\ndb_replica_port = 6433\n"
    )));

    // Turned off: the redeploy runs Odoo without it, then removes it.
    let r = w
        .stack
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/environments/{env}"),
            Some(&t),
            Some(json!({"replica_enabled": false})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
    assert!(
        messages.contains(&format!(
            "Read replica no longer enabled: removed {env}_pgbouncer-replica, postgres-replica-{env} \
             and volume paasportal_pgdata_replica_{env}"
        )),
        "{}",
        messages.join("\n")
    );
    assert!(inspect(&format!("postgres-replica-{env}")).await.is_none());
    assert!(inspect(&format!("{env}_pgbouncer-replica")).await.is_none());
    let conf =
        std::fs::read_to_string(format!("/opt/paasportal/{env}/odoo.conf")).unwrap_or_default();
    assert!(!conf.contains("db_replica_host"), "{conf}");
    let primary = psql(
        &format!("{env}_db"),
        env,
        "SELECT state FROM ir_module_module WHERE name = 'base'",
    )
    .await;
    assert_eq!(primary, "installed", "the primary and its data stay");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_during_a_long_remote_git_clone_ends_cancelled_within_two_seconds() {
    // A git host that accepts connections and never answers: the clone on
    // the server blocks in a remote command until it is hung up.
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = tarpit.local_addr().expect("addr").port();
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    let url = format!("http://127.0.0.1:{port}/slow/repo.git");
    let r = w
        .stack
        .post(
            "/api/v1/repositories",
            &t,
            json!({"scope": "platform", "name": "slow-platform", "git_url": url, "branch": "main"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = format!("cancel-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let env = w
        .environment(json!({"name": "cancelme", "subdomain": sub}))
        .await;
    let _purge = Purge(env, sub);
    let id = w.stack.deploy(env).await;
    w.stack
        .wait_step(id, "cloning_platform_repos", Duration::from_secs(120))
        .await;
    // The clone is running on the server.
    let running = || {
        std::process::Command::new("pgrep")
            .args([
                "-u",
                &TargetEnv::load().user,
                "-f",
                &format!("127.0.0.1:{port}/slow"),
            ])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !running() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(running(), "the clone never started on the server");
    let asked = std::time::Instant::now();
    let r = w
        .stack
        .post(&format!("/api/v1/deployments/{id}/cancel"), &t, json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let d = w.stack.wait_terminal(id, Duration::from_secs(10)).await;
    let took = asked.elapsed();
    assert_eq!(d["status"], "cancelled");
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    // The remote command was hung up, not left behind.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!running(), "the remote git clone survived the cancel");
    // A cancelled first deployment leaves nothing behind either.
    assert!(
        inspect(&format!("{env}_db")).await.is_none(),
        "database container left behind"
    );
    assert!(inspect(&format!("{env}_pgbouncer")).await.is_none());
    let messages = w.messages(id).await;
    assert!(messages.contains(
        &"Removed the containers, network and volume this first deployment created".to_owned()
    ));
    drop(tarpit);
}
