//! Safe redeploys for real (issue 13): module upgrades of what changed, with
//! the loader's progress; a snapshot before, and a rollback of the database
//! and the container when the upgrade fails, under HTTPS load through the
//! server's Traefik; deployments of a given commit and of a past
//! deployment's commit. Real Odoo 17.0 upgrades the tests' real modules
//! (`-u`, migration scripts).

use oec_tests::edge::{Load, assert_no_failed_request, deployed};
use oec_tests::odoo::{Module, refs};
use oec_tests::world::*;
use serde_json::{Value, json};
use uuid::Uuid;

/// The files of several modules, for one push.
fn files(modules: &[Module]) -> Vec<(String, String)> {
    modules.iter().flat_map(Module::files).collect()
}

/// `name`'s state and latest_version in the environment's database.
async fn module(env: Uuid, name: &str) -> String {
    psql(
        &format!("{env}_db"),
        env,
        &format!(
            "SELECT latest_version || ' ' || write_date FROM ir_module_module WHERE name = '{name}'"
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_addon_is_upgraded_alone_and_a_failing_upgrade_is_rolled_back_under_load() {
    let (w, env, _purge, host, roots) = deployed("upg", &[("OEC_DRAIN_SECS", "1")]).await;
    // Three addons of the project, installed as a user would install them.
    let three = files(&[
        Module::new("oec_a", "1.0"),
        Module::new("oec_b", "1.0").depends(&["oec_a"]),
        Module::new("oec_c", "1.0"),
    ]);
    w.git.push("shop", &refs(&three), "Add three modules");
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    assert_eq!(
        d["module_changes"]["added"],
        json!(["oec_a", "oec_b", "oec_c"]),
        "{d}"
    );
    assert_eq!(
        d["module_changes"]["upgraded"],
        json!([]),
        "not installed yet: {d}"
    );
    let odoo = format!("{env}_odoo");
    exec(
        &odoo,
        &[
            "odoo",
            "-d",
            &env.to_string(),
            "-i",
            "oec_a,oec_b,oec_c",
            "--stop-after-init",
            "--no-http",
        ],
        "odoo",
    )
    .await;
    let (a0, b0) = (module(env, "oec_a").await, module(env, "oec_b").await);
    assert!(a0.starts_with("17.0.1.0 "), "{a0}");
    let db = format!("{env}_db");
    psql(
        &db,
        env,
        "INSERT INTO oec_c_record (name) VALUES ('first'), ('second')",
    )
    .await;

    // 1. One addon changes: it alone is upgraded (a new field, and a
    //    post-migrate.py that fills it), and the loader's lines are the
    //    step's module progress.
    let c11 = Module::new("oec_c", "1.1").field("note", "Char").migration(
        "1.1",
        "post",
        "cr.execute(\"UPDATE oec_c_record SET note = 'filled from ' || %s\", (version,))\n\
         cr.execute(\"CREATE TABLE oec_marker (v text)\")\n\
         cr.execute(\"INSERT INTO oec_marker VALUES ('c ' || %s)\", (version,))",
    );
    w.git.push("shop", &refs(&c11.files()), "C 1.1");
    let (id, d) = w.deploy_and_wait(env).await;
    let logs = w.logs(id).await;
    assert_eq!(d["status"], "success", "{d}\n{logs:#?}");
    assert_eq!(d["module_changes"]["changed"], json!(["oec_c"]), "{d}");
    assert_eq!(d["module_changes"]["upgraded"], json!(["oec_c"]), "{d}");
    assert!(
        d["snapshot"]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{d}"
    );
    assert_eq!(module(env, "oec_a").await, a0, "oec_a was not upgraded");
    assert_eq!(module(env, "oec_b").await, b0, "oec_b was not upgraded");
    assert!(module(env, "oec_c").await.starts_with("17.0.1.1 "));
    assert_eq!(
        psql(&db, env, "SELECT v FROM oec_marker").await,
        "c 17.0.1.0"
    );
    assert_eq!(
        psql(
            &db,
            env,
            "SELECT string_agg(name || ':' || note, ',' ORDER BY name) FROM oec_c_record"
        )
        .await,
        "first:filled from 17.0.1.0,second:filled from 17.0.1.0",
        "the new field exists and post-migrate.py filled it"
    );
    let modules: Vec<&Value> = logs
        .iter()
        .filter(|l| l["step"] == "initializing_database" && l["data"]["module"].is_string())
        .collect();
    assert_eq!(
        modules.len(),
        1,
        "one module loaded for the upgrade: {modules:?}"
    );
    let m = &modules[0]["data"];
    assert_eq!(m["module"], "oec_c");
    assert!(m["module_index"].as_u64().is_some_and(|i| i >= 1));
    assert_eq!(
        m["module_count"], 5,
        "base, web and the three installed addons: {m}"
    );

    // 2. A failing upgrade: oec_a's migration writes a row and commits,
    //    then oec_b's raises. The database comes back from the snapshot
    //    and the previous container serves throughout.
    psql(
        &format!("{env}_db"),
        env,
        "INSERT INTO oec_marker VALUES ('before')",
    )
    .await;
    let broken = files(&[
        Module::new("oec_a", "1.2").migration(
            "1.2",
            "post",
            "cr.execute(\"INSERT INTO oec_marker VALUES ('a 1.2')\")",
        ),
        Module::new("oec_b", "1.2").depends(&["oec_a"]).migration(
            "1.2",
            "pre",
            "raise ValueError('the column x cannot be cast')",
        ),
    ]);
    w.git.push("shop", &refs(&broken), "A and B 1.2");
    let before = inspect(&odoo).await.and_then(|c| c.id);
    let load = Load::start(&host, &roots);
    let (id, d) = w.deploy_and_wait(env).await;
    let (ok, failed) = load.stop().await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "failed", "{d}\n{}", messages.join("\n"));
    assert_eq!(d["rolled_back"], true, "{d}");
    let error = d["error_message"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("Module upgrade failed (exit 255)")
            && error.contains("the column x cannot be cast"),
        "{error}"
    );
    assert!(
        d["rollback_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{d}"
    );
    assert_no_failed_request(&w, env, ok, &failed, 50).await;
    assert_eq!(
        psql(
            &format!("{env}_db"),
            env,
            "SELECT string_agg(v, ',' ORDER BY v) FROM oec_marker"
        )
        .await,
        "before,c 17.0.1.0",
        "the row the failed upgrade wrote is gone, the earlier ones are there"
    );
    assert_eq!(module(env, "oec_a").await, a0, "oec_a is back at 1.0");
    assert_eq!(
        inspect(&odoo).await.and_then(|c| c.id),
        before,
        "the previous container serves"
    );
    assert!(inspect(&format!("{odoo}_next")).await.is_none());
    let e = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(e.body["status"], "running", "{}", e.text);
    for m in [
        "Rollback: removed the new container; the previous one keeps serving",
        "Upgrading 2 modules: oec_a, oec_b",
    ] {
        assert!(
            messages.iter().any(|l| l == m),
            "{m:?} in\n{}",
            messages.join("\n")
        );
    }
    assert!(
        messages
            .iter()
            .any(|l| l
                .starts_with("Rollback: database and filestore restored from the snapshot at ")),
        "{}",
        messages.join("\n")
    );
    let conf = std::fs::read_to_string(format!("/opt/paasportal/{env}/odoo.conf")).expect("conf");
    assert!(
        conf.contains("addons_path"),
        "odoo.conf is the serving one's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_given_commit_is_deployed_and_a_past_deployment_is_redeployed() {
    let (w, env, _purge, _host, _roots) = deployed("commit", &[("OEC_DRAIN_SECS", "0")]).await;
    let t = w.stack.admin_token.clone();
    let first = w.git.head("shop");
    let second = w
        .git
        .push("shop", &[("NOTES.md", "second\n")], "Second commit");

    // The branch's head, then the first commit by its abbreviated id.
    let (head_id, d) = w.deploy_and_wait(env).await;
    assert_eq!(d["git_commit"], second.as_str(), "{d}");
    let r = w
        .stack
        .post(
            "/api/v1/deployments",
            &t,
            json!({"environment_id": env, "git_commit": first[..10].to_uppercase(), "trigger": "rollback"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["requested_commit"], first[..10].to_owned());
    let d = w.stack.wait_terminal(r.id(), DEPLOY).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(r.id()).await.join("\n")
    );
    assert_eq!(d["git_commit"], first.as_str());
    assert_eq!(d["trigger"], "rollback");

    // A past deployment's commit again.
    let r = w
        .stack
        .post(
            &format!("/api/v1/deployments/{head_id}/redeploy"),
            &t,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["trigger"], "redeploy");
    assert_eq!(r.body["redeploy_of"], head_id.to_string());
    let d = w.stack.wait_terminal(r.id(), DEPLOY).await;
    assert_eq!(d["status"], "success", "{d}");
    assert_eq!(d["git_commit"], second.as_str());

    // A commit the repository does not have fails in its stage, clearly.
    let r = w
        .stack
        .post(
            "/api/v1/deployments",
            &t,
            json!({"environment_id": env, "git_commit": "0123456789abcdef0123456789abcdef01234567"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let d = w.stack.wait_terminal(r.id(), DEPLOY).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert!(
        d["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Failed to clone ")),
        "{d}"
    );
    assert_eq!(d["current_step"], "cloning_project_repo");
    let e = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(
        e.body["status"], "running",
        "the previous deployment serves: {}",
        e.text
    );
    let logs = w.logs(r.id()).await;
    assert!(
        logs.iter()
            .any(|l| l["data"]["error"].as_str().is_some_and(|e| e.contains(
                "commit 0123456789abcdef0123456789abcdef01234567 is not in the repository"
            ))),
        "{logs:#?}"
    );

    // Bad input is refused before anything is queued.
    for (body, field) in [
        (
            json!({"environment_id": env, "git_commit": "xyz"}),
            "git_commit",
        ),
        (
            json!({"environment_id": env, "trigger": "redeploy"}),
            "trigger",
        ),
    ] {
        let r = w.stack.post("/api/v1/deployments", &t, body).await;
        assert_eq!(r.status, 422, "{}", r.text);
        assert!(r.text.contains(field), "{}", r.text);
    }
    // History shows each with its trigger.
    let h = w
        .get(&format!("/api/v1/deployments?project_id={}", w.project))
        .await;
    let triggers: Vec<&str> = h
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["trigger"].as_str())
        .collect();
    for t in ["manual", "rollback", "redeploy"] {
        assert!(triggers.contains(&t), "{triggers:?}");
    }
}

/// Cancels redeploys at five moments under HTTPS load: before the new
/// container exists, while it is held, during the module upgrade, while it
/// becomes healthy, and while the old one is drained. Every time the
/// deployment ends `cancelled`, the environment says `running`, the
/// previous container serves (no request failed), no new container is left
/// and the database is the previous version's.
#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_cancelled_at_five_moments_leaves_the_environment_serving() {
    let (w, env, _purge, host, roots) = deployed(
        "cancel",
        &[("OEC_DRAIN_SECS", "4"), ("OEC_HEALTH_TIMEOUT_SECS", "60")],
    )
    .await;
    let t = w.stack.admin_token.clone();
    w.git
        .push("shop", &refs(&Module::new("oec_c", "1.0").files()), "Add C");
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    let odoo = format!("{env}_odoo");
    exec(
        &odoo,
        &[
            "odoo",
            "-d",
            &env.to_string(),
            "-i",
            "oec_c",
            "--stop-after-init",
            "--no-http",
        ],
        "odoo",
    )
    .await;
    let installed = module(env, "oec_c").await;
    assert!(installed.starts_with("17.0.1.0 "), "{installed}");

    type Moment = fn(&str, &[String]) -> bool;
    let moments: [(&str, Moment); 5] = [
        ("before the new container exists", |step, _| {
            matches!(
                step,
                "connecting"
                    | "creating_network"
                    | "configuring_dns"
                    | "creating_database"
                    | "cloning_platform_repos"
                    | "cloning_org_repos"
                    | "cloning_project_repo"
            )
        }),
        ("while the new container is held", |step, _| {
            matches!(step, "starting_container" | "installing_dependencies")
        }),
        ("during the module upgrade", |_, m| {
            m.iter().any(|l| l.starts_with("Upgrading 1 module: oec_c"))
        }),
        ("while the new container becomes healthy", |_, m| {
            m.iter().any(|l| {
                l.starts_with("Letting ")
                    && l.ends_with("into the proxy once its health check passes...")
            })
        }),
        ("while the old container is drained", |_, m| {
            m.iter().any(|l| l.starts_with("New container healthy ("))
        }),
    ];
    let load = Load::start(&host, &roots);
    for (n, (what, reached)) in moments.iter().enumerate() {
        let before = inspect(&odoo).await.and_then(|c| c.id);
        // Each upgrade's migration takes 3 s, which makes its moment wide.
        let version = format!("1.{}", n + 1);
        let c =
            Module::new("oec_c", &version).migration(&version, "pre", "import time\ntime.sleep(3)");
        w.git
            .push("shop", &refs(&c.files()), &format!("C {version}"));
        let id = w.stack.deploy(env).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let d = w.get(&format!("/api/v1/deployments/{id}")).await.body;
            let step = d["current_step"].as_str().unwrap_or_default().to_owned();
            let messages = w.messages(id).await;
            let status = d["status"].as_str().unwrap_or_default();
            assert!(
                status == "pending" || status == "running",
                "{what}: ended before the moment: {d}\n{}",
                messages.join("\n")
            );
            if status == "running" && reached(&step, &messages) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: never reached"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let r = w
            .stack
            .post(&format!("/api/v1/deployments/{id}/cancel"), &t, json!({}))
            .await;
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        let d = w.stack.wait_terminal(id, DEPLOY).await;
        let messages = w.messages(id).await;
        assert_eq!(
            d["status"],
            "cancelled",
            "{what}: {d}\n{}",
            messages.join("\n")
        );
        let e = w.get(&format!("/api/v1/environments/{env}")).await;
        assert_eq!(e.body["status"], "running", "{what}: {}", e.text);
        assert_eq!(
            inspect(&odoo).await.and_then(|c| c.id),
            before,
            "{what}: the previous container serves"
        );
        assert!(
            inspect(&format!("{odoo}_next")).await.is_none(),
            "{what}: no new container left"
        );
        assert_eq!(
            module(env, "oec_c").await,
            installed,
            "{what}: the database is the previous version's"
        );
    }
    let (ok, failed) = load.stop().await;
    assert_no_failed_request(&w, env, ok, &failed, 200).await;
}
