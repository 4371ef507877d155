//! Tenant isolation on a real server (this machine over sshd, its Docker
//! engine, local git repositories): nothing a project's repository contains
//! runs on the server or reaches beyond its environment's `data/` and
//! `logs/`. Each test is named after the finding it covers.

use std::path::Path;
use std::process::Command;

use oec_common::secrets::Sealed;
use oec_tests::TargetEnv;
use oec_tests::world::*;
use serde_json::json;
use uuid::Uuid;

/// Python that tries every route out of the container it runs in, as root:
/// hooks and an fsmonitor command into every `.git` it can reach, a marker
/// file into every mount and every directory one level below it.
const PLANT: &str = r##"
import glob, os
TAG = "__TAG__"
HOOK = "#!/bin/sh\ntouch /tmp/oec-pwned-hook-" + TAG + "\n"
def mounts():
    out = ["/env", "/mnt/extra-addons", "/etc/odoo", "/var/lib/odoo", "/var/log/odoo"]
    try:
        for line in open("/proc/self/mountinfo"):
            mp = line.split()[4]
            if not mp.startswith(("/proc", "/sys", "/dev")):
                out.append(mp)
    except OSError:
        pass
    return out
def plant():
    for mp in mounts():
        for g in glob.glob(mp + "/.git") + glob.glob(mp + "/*/.git") + glob.glob(mp + "/*/*/.git"):
            try:
                os.makedirs(g + "/hooks", exist_ok=True)
                for h in ("reference-transaction", "post-checkout", "post-merge", "post-index-change"):
                    with open(g + "/hooks/" + h, "w") as f:
                        f.write(HOOK)
                    os.chmod(g + "/hooks/" + h, 0o755)
                with open(g + "/config", "a") as f:
                    f.write("[core]\n\tfsmonitor = touch /tmp/oec-pwned-fsmonitor-" + TAG + "\n")
            except OSError:
                pass
        for d in [mp] + glob.glob(mp + "/*/"):
            try:
                open(os.path.join(d, "oec-pwned-" + TAG), "w").close()
            except OSError:
                pass
"##;

/// The sdist's setup.py: plants at once, then wraps binaries of the image
/// (the dependencies image keeps them) so that whatever runs them later
/// plants again.
const SETUP: &str = r##"
import os
CODE = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "plant.py")).read()
exec(CODE)
plant()
os.makedirs("/usr/local/lib", exist_ok=True)
with open("/usr/local/lib/oec_pwn.py", "w") as f:
    f.write(CODE)
for b in ("/usr/bin/find", "/usr/bin/chown", "/usr/bin/tar", "/usr/bin/cp", "/usr/bin/git"):
    if os.path.exists(b) and not os.path.exists(b + ".oec-real"):
        os.rename(b, b + ".oec-real")
        with open(b, "w") as f:
            f.write("#!/usr/bin/python3\nimport os, sys\nsys.path.insert(0, '/usr/local/lib')\n"
                    "import oec_pwn\noec_pwn.plant()\nos.execv(%r, [%r] + sys.argv[1:])\n" % (b + ".oec-real", b))
        os.chmod(b, 0o755)
from setuptools import setup
setup(name="oecpwn", version="1.0", py_modules=[])
"##;

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every path under `dir` whose name contains `needle`.
fn find_named(dir: &Path, needle: &str, skip: &[&Path]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if skip.iter().any(|s| *s == p) {
            continue;
        }
        if e.file_name().to_string_lossy().contains(needle) {
            found.push(p.display().to_string());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&p, needle, skip));
        }
    }
    found
}

/// Files under a checkout's `.git/hooks` (a fresh clone has none).
fn hooks_in(checkout: &Path) -> Vec<String> {
    std::fs::read_dir(checkout.join(".git/hooks"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repositorys_code_reaches_nothing_outside_its_environment_over_three_deployments() {
    let w = world(&[]).await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
    // The project's repository ships a local sdist that requirements.txt
    // names, as a project admin can.
    let build = std::env::temp_dir().join(format!("oec-sdist-{tag}"));
    let pkg = build.join("oecpwn-1.0");
    std::fs::create_dir_all(&pkg).expect("sdist dir");
    std::fs::write(pkg.join("plant.py"), PLANT.replace("__TAG__", &tag)).expect("plant.py");
    std::fs::write(pkg.join("setup.py"), SETUP).expect("setup.py");
    std::fs::write(
        pkg.join("PKG-INFO"),
        "Metadata-Version: 1.0\nName: oecpwn\nVersion: 1.0\n",
    )
    .expect("PKG-INFO");
    let work = w.git.root.join("shop.work");
    sh(&format!(
        "tar -C {} -czf {}/oecpwn-1.0.tar.gz oecpwn-1.0",
        build.display(),
        work.display()
    ));
    let _ = std::fs::remove_dir_all(&build);
    w.git.push(
        "shop",
        &[(
            "requirements.txt",
            "/mnt/extra-addons/proj/oecpwn-1.0.tar.gz\n",
        )],
        "Add a helper package",
    );
    let sub = format!("iso-{}", &tag[..6]);
    let (env, _purge) = w.staging(&sub).await;
    let root = format!("/opt/paasportal/{env}");

    for n in 1..=3 {
        let (id, d) = w.deploy_and_wait(env).await;
        let messages = w.messages(id).await;
        assert_eq!(
            d["status"],
            "success",
            "deployment {n}: {d}\n{}",
            messages.join("\n")
        );
        if n == 1 {
            assert!(
                messages.iter().any(|m| m == "Total pip packages: 2"),
                "the sdist was installed:\n{}",
                messages.join("\n")
            );
            // The package's code did run as root in the container: it may
            // write to data/ and logs/, and it changed the image.
            assert!(
                Path::new(&format!("{root}/data/oec-pwned-{tag}")).exists(),
                "the planted code did not run"
            );
            let image = sh(&format!(
                "docker images --format '{{{{.Repository}}}}:{{{{.Tag}}}}' oec-deps-{env}"
            ));
            let image = image.trim();
            assert!(!image.is_empty(), "no dependencies image");
            let find = sh(&format!(
                "docker run --rm --network none --entrypoint /bin/cat {image} /usr/bin/find | head -c 200"
            ));
            assert!(find.contains("oec_pwn"), "find was not wrapped: {find}");
        }
    }

    // Nothing outside data/ and logs/ was written by it.
    let data = format!("{root}/data");
    let logs = format!("{root}/logs");
    let outside = find_named(
        Path::new(&root),
        "oec-pwned",
        &[Path::new(&data), Path::new(&logs)],
    );
    assert!(outside.is_empty(), "written outside data/logs: {outside:?}");
    for dir in ["/opt/paasportal", "/", "/tmp"] {
        let hits: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(&tag))
                    .collect()
            })
            .unwrap_or_default();
        assert!(hits.is_empty(), "{dir} has {hits:?}");
    }
    // No hook, no fsmonitor in any checkout.
    for entry in std::fs::read_dir(format!("{root}/addons"))
        .expect("addons")
        .flatten()
    {
        let checkout = entry.path();
        assert_eq!(hooks_in(&checkout), Vec::<String>::new(), "{checkout:?}");
        let config = std::fs::read_to_string(checkout.join(".git/config")).unwrap_or_default();
        assert!(!config.contains("fsmonitor"), "{checkout:?}: {config}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn git_on_the_server_never_runs_a_planted_hook_fsmonitor_filter_or_include() {
    let w = world(&[]).await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
    let sub = format!("hook-{}", &tag[..6]);
    let (env, _purge) = w.staging(&sub).await;
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );

    // Plant every kind of repository-local code in the project's checkout,
    // as anything that could write there (e.g. an older oec's helper) would.
    let checkout = format!("/opt/paasportal/{env}/addons/proj");
    let marker = |what: &str| format!("/tmp/oec-pwned-{what}-{tag}");
    let hook = format!("#!/bin/sh\ntouch {}\n", marker("hook"));
    let mut script = format!("set -e; cd {checkout}/.git; mkdir -p hooks info; ");
    for h in [
        "reference-transaction",
        "post-checkout",
        "post-merge",
        "post-index-change",
        "pre-auto-gc",
    ] {
        script.push_str(&format!(
            "printf '%s' '{hook}' > hooks/{h}; chmod 755 hooks/{h}; "
        ));
    }
    script.push_str(&format!(
        "printf '[core]\\n\\tfsmonitor = touch {fs}\\n[filter \"pwn\"]\\n\\tsmudge = sh -c \"touch {sm}; cat\"\\n\\tclean = cat\\n[include]\\n\\tpath = /tmp/oec-include-{tag}\\n' >> config; \
         printf '* filter=pwn\\n' > info/attributes; \
         printf '[core]\\n\\tsshCommand = touch {inc}\\n\\thooksPath = {checkout}/.git/hooks\\n' > /tmp/oec-include-{tag}; \
         chown -R {user} {checkout}/.git /tmp/oec-include-{tag}",
        fs = marker("fsmonitor"),
        sm = marker("smudge"),
        inc = marker("include"),
        user = TargetEnv::load().user,
    ));
    sh(&script);
    // A new commit, so that the redeploy's reset checks files out.
    w.git.push(
        "shop",
        &[("shop_portal/models.py", "# new\n")],
        "Add models",
    );
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    assert_eq!(d["git_commit"], w.git.head("shop"));
    assert!(Path::new(&format!("{checkout}/shop_portal/models.py")).exists());
    for what in ["hook", "fsmonitor", "smudge", "include"] {
        assert!(
            !Path::new(&marker(what)).exists(),
            "the planted {what} ran on the server"
        );
    }
    // The checkout's git state is oec's again.
    assert_eq!(hooks_in(Path::new(&checkout)), Vec::<String>::new());
    let config = std::fs::read_to_string(format!("{checkout}/.git/config")).unwrap_or_default();
    for planted in ["fsmonitor", "filter", "include"] {
        assert!(!config.contains(planted), "{config}");
    }
    let _ = std::fs::remove_file(format!("/tmp/oec-include-{tag}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn dependency_files_are_read_from_git_objects_never_through_a_symlink_and_are_capped() {
    let w = world(&[]).await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
    // A file only the deployment account can read.
    let secret = format!("/tmp/oec-secret-{tag}");
    std::fs::write(&secret, format!("SECRETVALUE{tag}\n")).expect("secret");
    sh(&format!(
        "chown {} {secret} && chmod 600 {secret}",
        TargetEnv::load().user
    ));
    let symlink = format!("{}{secret}", oec_tests::git::SYMLINK);
    let large = format!("six==1.16.0\n{}", "# padding\n".repeat(8000));
    w.git.push(
        "shop",
        &[
            ("requirements.txt", symlink.as_str()),
            ("apt.txt", symlink.as_str()),
        ],
        "Link the dependency files",
    );
    let big = w
        .git
        .repo("big-reqs", &[("requirements.txt", large.as_str())], "big");
    let r = w
        .stack
        .post(
            "/api/v1/repositories",
            &w.stack.admin_token,
            json!({"scope": "organization", "organization_id": w.org, "name": "big-reqs",
                   "git_url": big, "branch": "main"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = format!("link-{}", &tag[..6]);
    let (env, _purge) = w.staging(&sub).await;
    let (id, d) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    let _ = std::fs::remove_file(&secret);
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
    let all = w
        .get(&format!("/api/v1/deployments/{id}/logs?limit=500"))
        .await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert!(
        !all.text.contains("SECRETVALUE"),
        "the linked file was read"
    );
    for expected in [
        "proj/requirements.txt is not a regular file, ignored",
        "proj/apt.txt is not a regular file, ignored",
        "big-reqs/requirements.txt is larger than 65536 bytes, ignored",
        // The platform repository's regular file is still read.
        "Total pip packages: 1",
    ] {
        assert!(
            messages.iter().any(|m| m == expected),
            "missing {expected:?} in\n{}",
            messages.join("\n")
        );
    }
}

/// Signs in to the environment's Odoo as `admin` through its JSON-RPC
/// route, on the container's address; the user id, or `None` when refused.
async fn odoo_login(env: Uuid, password: &str) -> Option<i64> {
    let odoo = inspect(&format!("{env}_odoo"))
        .await
        .expect("odoo container");
    let ip = odoo
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(&format!("paasportal_net_{env}")).cloned())
        .and_then(|n| n.ip_address)
        .expect("address");
    let body = json!({"jsonrpc": "2.0", "method": "call",
        "params": {"db": env.to_string(), "login": "admin", "password": password}});
    let r: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{ip}:8069/web/session/authenticate"))
        .json(&body)
        .send()
        .await
        .expect("authenticate")
        .json()
        .await
        .expect("json-rpc");
    if let Some(e) = r.get("error") {
        assert_eq!(e["data"]["name"], "odoo.exceptions.AccessDenied", "{r}");
        return None;
    }
    r["result"]["uid"].as_i64()
}

#[tokio::test(flavor = "multi_thread")]
async fn odoos_database_manager_and_admin_user_get_generated_passwords_read_once() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    let tag = Uuid::new_v4().simple().to_string()[..6].to_owned();
    let sub = format!("dbm-{tag}");
    let (env, _purge) = w.fresh_staging(&sub).await;
    let creds = format!("/api/v1/environments/{env}/credentials");
    let r = w.get(&creds).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (409, Some("credentials_not_ready")),
        "{}",
        r.text
    );
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    let conf = std::fs::read_to_string(format!("/opt/paasportal/{env}/odoo.conf")).expect("conf");
    assert!(conf.contains("\nlist_db = False\n"), "{conf}");
    let line = conf
        .lines()
        .find(|l| l.starts_with("admin_passwd = "))
        .expect("admin_passwd");
    let master = line.trim_start_matches("admin_passwd = ").to_owned();
    assert!(master.len() >= 32 && master != "admin", "{line}");

    // A project member may not read it; a project admin reads it once.
    let (member, member_token) = w.stack.user("viewer").await;
    let r = w
        .stack
        .post(
            &format!("/api/v1/projects/{}/members", w.project),
            &t,
            json!({"user_id": member, "role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = w.stack.get(&creds, &member_token).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = w.get(&creds).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["master_password"], master.as_str());
    // Odoo's admin user signs in with the generated password, no longer
    // with stock Odoo's `admin`.
    assert_eq!(r.body["admin_login"], "admin", "{}", r.text);
    let admin_password = r.body["admin_password"]
        .as_str()
        .expect("admin_password")
        .to_owned();
    assert!(admin_password.len() >= 32, "{admin_password}");
    assert_ne!(admin_password, master);
    assert_eq!(odoo_login(env, &admin_password).await, Some(2));
    assert_eq!(odoo_login(env, "admin").await, None);
    let r = w.get(&creds).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (409, Some("credentials_already_read"))
    );
    // It is masked everywhere else, and stored encrypted.
    for path in [
        format!("/api/v1/deployments/{id}/logs?limit=500"),
        format!("/api/v1/deployments/{id}/logs/export?format=json"),
        format!("/api/v1/deployments/{id}/progress"),
        format!("/api/v1/environments/{env}"),
    ] {
        let text = w.get(&path).await.text;
        assert!(!text.contains(&master), "{path} shows the master password");
        assert!(
            !text.contains(&admin_password),
            "{path} shows the admin password"
        );
    }
    let (stored_master, stored_admin): (String, String) = sqlx::query_as(
        "SELECT admin_passwd_encrypted, odoo_admin_password_encrypted FROM environments WHERE id = $1",
    )
    .bind(env)
    .fetch_one(&w.stack.pool)
    .await
    .expect("stored");
    assert!(!stored_master.contains(&master));
    assert!(!stored_admin.contains(&admin_password));
    // The override may turn the list on; admin_passwd cannot be overridden.
    let r = w
        .stack
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/environments/{env}"),
            Some(&t),
            Some(json!({"odoo_conf_overrides": {"security": {"admin_passwd": "admin"}}})),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = w
        .stack
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/environments/{env}"),
            Some(&t),
            Some(json!({"odoo_conf_overrides": {"database": {"list_db": true}}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    let conf = std::fs::read_to_string(format!("/opt/paasportal/{env}/odoo.conf")).expect("conf");
    assert!(conf.contains("\nlist_db = True\n"), "{conf}");
    assert!(conf.contains(line), "the master password stays: {conf}");
}

#[tokio::test(flavor = "multi_thread")]
async fn git_tokens_never_reach_a_command_line_and_are_masked_in_every_encoding() {
    use base64::Engine as _;
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    // A git host that takes its time and refuses every token.
    let git_host = oec_tests::imitation::Imitation::start(
        "127.0.0.1:0",
        std::sync::Arc::new(|_| {
            std::thread::sleep(std::time::Duration::from_millis(700));
            (401, "text/plain", b"Unauthorized".to_vec())
        }),
    )
    .await;
    let token = "ghp_t@k/en#9c7e5f1a";
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
    let sub = format!("tok-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let (env, _purge) = w.staging(&sub).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{token}:x-oauth-basic"));
    let encodings = [
        token.to_owned(),
        oec_common::secrets::percent_encode(token),
        base64::engine::general_purpose::STANDARD.encode(token),
        basic.clone(),
    ];
    // Every process's command line, sampled while the deployment runs.
    let sampler = command_lines();
    let (id, d) = w.deploy_and_wait(env).await;
    let ps = sampler.stop();
    assert_eq!(d["status"], "failed", "{d}");
    assert!(ps.contains("git"), "the sampler saw the clone");
    // git sent the token, decoded, as Basic credentials.
    let sent: Vec<String> = git_host
        .requests
        .lock()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.header("authorization").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        sent.contains(&format!("Basic {basic}")),
        "the git host got {sent:?}"
    );
    let mut texts = vec![("ps", ps)];
    for path in [
        format!("/api/v1/deployments/{id}"),
        format!("/api/v1/deployments/{id}/logs?limit=500"),
        format!("/api/v1/deployments/{id}/progress"),
        format!("/api/v1/deployments/{id}/logs/export?format=json"),
        format!("/api/v1/deployments/{id}/logs/export?format=txt"),
    ] {
        texts.push(("api", w.get(&path).await.text));
    }
    for (what, text) in &texts {
        for e in &encodings {
            assert!(!text.contains(e.as_str()), "{what} shows the token as {e}");
        }
    }
    // No credentials file stays on the server.
    let left = find_named(
        Path::new(&format!("/opt/paasportal/{env}")),
        "credentials",
        &[],
    );
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostnames_are_unique_across_the_platform_and_dns_changes_only_its_own_records() {
    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    let tag = Uuid::new_v4().simple().to_string()[..6].to_owned();
    let sub = format!("shared-{tag}");
    let (env, _purge) = w.staging(&sub).await;
    let got = w.get(&format!("/api/v1/environments/{env}")).await;
    assert_eq!(got.body["hostname"], format!("{sub}.apps.oec.test"));

    // Another project of the organization, on a second server: the same
    // subdomain (hence hostname) is refused.
    let target = TargetEnv::load();
    let server_body = |org: Uuid, name: &str| {
        json!({"organization_id": org, "name": name, "host": target.host, "ssh_port": target.port,
               "ssh_user": target.user, "auth_method": "key", "private_key": target.private_key()})
    };
    let r = w
        .stack
        .post("/api/v1/servers", &t, server_body(w.org, "second"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let second = r.id();
    let r = w
        .stack
        .post(
            "/api/v1/projects",
            &t,
            json!({"organization_id": w.org, "name": "Other", "slug": "other",
                   "git_url": "https://git.example.com/o/r.git", "git_branch": "main"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let other_project = r.id();
    let env_body = |project: Uuid, server: Uuid, subdomain: &str| {
        json!({"project_id": project, "server_id": server, "name": "prod", "kind": "production",
               "subdomain": subdomain, "odoo_version": "17.0"})
    };
    let r = w
        .stack
        .post(
            "/api/v1/environments",
            &t,
            env_body(other_project, second, &sub),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (409, Some("subdomain_taken")),
        "{}",
        r.text
    );
    // Another organization claiming the same apps domain cannot either.
    let r = w
        .stack
        .post(
            "/api/v1/organizations",
            &t,
            json!({"name": "Rival", "slug": "rival"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rival = r.id();
    let r = w
        .stack
        .post(
            "/api/v1/dns-providers",
            &t,
            json!({"organization_id": rival, "kind": "cloudflare", "api_token": "rival-token-123",
                   "zone_id": "zone-rival", "apps_domain": "apps.oec.test"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rival_server = w
        .stack
        .post("/api/v1/servers", &t, server_body(rival, "theirs"))
        .await
        .id();
    let rival_project = w
        .stack
        .post(
            "/api/v1/projects",
            &t,
            json!({"organization_id": rival, "name": "Theirs", "slug": "theirs",
                   "git_url": "https://git.example.com/o/r.git", "git_branch": "main"}),
        )
        .await
        .id();
    let r = w
        .stack
        .post(
            "/api/v1/environments",
            &t,
            env_body(rival_project, rival_server, &sub),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (409, Some("subdomain_taken")),
        "{}",
        r.text
    );

    // A record that exists at the provider and is not this environment's
    // is left alone (a takeover would repoint it).
    let foreign = format!("foreign-{tag}");
    let foreign_host = format!("{foreign}.apps.oec.test");
    let planted = reqwest::Client::new()
        .post(format!(
            "http://{}/client/v4/zones/{ZONE}/dns_records",
            w.cloudflare.addr
        ))
        .bearer_auth(CF_TOKEN)
        .json(&json!({"type": "A", "name": foreign_host, "content": "10.9.9.9", "ttl": 300}))
        .send()
        .await
        .expect("plant a record");
    assert!(planted.status().is_success());
    let victim = w
        .environment(json!({"name": "victim", "subdomain": foreign,
                            "migration_source_url": w.initialized.url}))
        .await;
    let _purge_victim = Purge(victim, foreign.clone());
    let (id, d) = w.deploy_and_wait(victim).await;
    let messages = w.messages(id).await;
    assert_eq!(d["status"], "success", "{d}\n{}", messages.join("\n"));
    assert!(
        messages.iter().any(|m| m.contains(&format!(
            "the record {foreign_host} exists and was not created by this environment"
        ))),
        "{}",
        messages.join("\n")
    );
    assert!(
        w.cloudflare.requests().iter().all(|r| r.method != "PUT"),
        "a record was changed"
    );
    // The environment's own record is created, remembered and updated.
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    let puts = w
        .cloudflare
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .count();
    assert_eq!(puts, 1, "the redeploy updates its own record");
}

/// Everything under a Redis key prefix, keys and values, as text.
fn redis_dump(prefix: &str) -> String {
    let client = redis::Client::open(oec_tests::redis_url()).expect("redis");
    let mut conn = client.get_connection().expect("redis connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .expect("keys");
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query(&mut conn).expect("type");
        let value: redis::Value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query(&mut conn),
            "hash" => redis::cmd("HGETALL").arg(&key).query(&mut conn),
            "list" => redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut conn),
            "set" => redis::cmd("SMEMBERS").arg(&key).query(&mut conn),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut conn),
            "stream" => redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query(&mut conn),
            _ => Ok(redis::Value::Nil),
        }
        .expect("value");
        out.push_str(&format!("{key} {kind} {}\n", text_of(&value)));
    }
    out
}

fn text_of(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().map(text_of).collect::<Vec<_>>().join(" ")
        }
        redis::Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| format!("{}={}", text_of(k), text_of(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_scan_over_everything_two_deployments_produce_finds_no_secret_in_any_encoding() {
    use base64::Engine as _;
    use oec_tests::imitation::{self, Imitation};
    use oec_tests::stack::SseClient;
    use std::time::Duration;

    let w = world(&[]).await;
    let t = w.stack.admin_token.clone();
    // Every kind of secret oec holds: a repository token with URL-special
    // characters (besides the world's), registry credentials, a presigned
    // migration URL, the DNS token, the server's private key, and the
    // passwords the pipeline generates (read from the database below).
    let token = "ghp_sc@n/t0k#e5d7";
    let url = w
        .git
        .repo("scan-addons", &[("README.md", "x\n")], "scan addons");
    let r = w
        .stack
        .post(
            "/api/v1/repositories",
            &t,
            json!({"scope": "project", "project_id": w.project, "name": "scan-addons",
                   "git_url": url, "branch": "main", "token": token}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let registry_password = "reg-pass-4d9e1f7a2b";
    let r = w
        .stack
        .post(
            "/api/v1/odoo-versions",
            &t,
            json!({"version": "19.0", "image": format!("{}/oec/odoo:18.0", registry()),
                   "registry_username": "bot", "registry_password": registry_password}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let backup = Imitation::start("0.0.0.0:0", imitation::file(backup_zip())).await;
    let signature = "sig-8c1d2e3f4a5b6c7d";
    let migration_url = format!(
        "http://{}:{}/b.zip?X-Amz-Signature={signature}",
        docker_gateway().await,
        backup.addr.port()
    );
    let tag = Uuid::new_v4().simple().to_string()[..6].to_owned();
    let (sub_a, sub_b) = (format!("scan-{tag}"), format!("scanm-{tag}"));
    let fresh = w
        .environment(json!({"name": "fresh", "subdomain": sub_a, "odoo_version": "19.0"}))
        .await;
    let migrated = w
        .environment(
            json!({"name": "migrated", "subdomain": sub_b, "migration_source_url": migration_url}),
        )
        .await;
    let _purge = (Purge(fresh, sub_a), Purge(migrated, sub_b));

    // The admin's live stream, and every command line, while both deploy.
    let mut live = SseClient::connect(
        &w.stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let sampler = command_lines();
    let ids = [w.stack.deploy(fresh).await, w.stack.deploy(migrated).await];
    for id in ids {
        let d = w.stack.wait_terminal(id, DEPLOY).await;
        assert_eq!(
            d["status"],
            "success",
            "{d}\n{}",
            w.messages(id).await.join("\n")
        );
    }
    let ps = sampler.stop();
    assert!(ps.contains("git"), "the sampler saw the clones");

    let mut corpus: Vec<(String, String)> = vec![("ps".into(), ps)];
    let frames = live.until(Duration::from_secs(2), |_| false).await;
    let live_text: String = frames.iter().map(|m| format!("{}\n", m.data)).collect();
    assert!(live_text.contains("deployment_progress"), "{live_text}");
    corpus.push(("/events/stream".into(), live_text));
    for id in ids {
        let mut s = SseClient::connect(
            &w.stack
                .url(&format!("/api/v1/deployments/{id}/events?token={t}")),
            None,
        )
        .await;
        let frames = s
            .until(Duration::from_secs(10), |m| {
                m.event.as_deref() == Some("deployment_finished")
            })
            .await;
        corpus.push((
            format!("/deployments/{id}/events"),
            frames.iter().map(|m| format!("{}\n", m.data)).collect(),
        ));
        for path in [
            format!("/api/v1/deployments/{id}"),
            format!("/api/v1/deployments/{id}/logs?limit=500"),
            format!("/api/v1/deployments/{id}/progress"),
            format!("/api/v1/deployments/{id}/logs/export?format=json"),
            format!("/api/v1/deployments/{id}/logs/export?format=txt"),
        ] {
            corpus.push((path.clone(), w.get(&path).await.text));
        }
    }
    for path in [
        "/api/v1/environments".to_owned(),
        format!("/api/v1/environments/{fresh}"),
        format!("/api/v1/environments/{migrated}"),
        format!("/api/v1/deployments?project_id={}", w.project),
        format!("/api/v1/deployments/environment/{fresh}/latest"),
        format!("/api/v1/deployments/project/{}/stats", w.project),
        "/api/v1/servers".to_owned(),
        format!("/api/v1/servers/{}", w.server),
        "/api/v1/repositories".to_owned(),
        "/api/v1/dns-providers".to_owned(),
        "/api/v1/odoo-versions".to_owned(),
        format!("/api/v1/projects/{}", w.project),
        format!("/api/v1/organizations/{}", w.org),
    ] {
        let r = w.get(&path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        corpus.push((path, r.text));
    }
    let redis = redis_dump(&w.stack.redis_keys.0);
    assert!(redis.contains("deployment_progress"), "{redis}");
    corpus.push(("redis".into(), redis));
    corpus.push(("api output".into(), w.stack.api.log()));
    for worker in &w.stack.workers {
        corpus.push(("worker output".into(), worker.log()));
    }
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT row_to_json(d)::text FROM deployments d
         UNION ALL SELECT row_to_json(s)::text FROM deployment_steps s
         UNION ALL SELECT row_to_json(l)::text FROM deployment_logs l
         UNION ALL SELECT (to_jsonb(e) - 'db_password_encrypted' - 'admin_passwd_encrypted'
                           - 'odoo_admin_password_encrypted' - 'migration_source_encrypted')::text
                   FROM environments e",
    )
    .fetch_all(&w.stack.pool)
    .await
    .expect("rows");
    corpus.push(("deployment and environment rows".into(), rows.join("\n")));

    // The generated secrets, from the database; the credentials endpoint
    // (not part of the corpus) hands out the same ones.
    let key = oec_common::secrets::SecretKey::from_bytes(
        &base64::engine::general_purpose::STANDARD
            .decode(oec_tests::SECRET_KEY_B64)
            .expect("key"),
    )
    .expect("key");
    let mut secrets: Vec<String> = vec![
        token.into(),
        REPO_TOKEN.into(),
        CF_TOKEN.into(),
        registry_password.into(),
        signature.into(),
        oec_tests::SECRET_KEY_B64.into(),
        "test-jwt-secret-test-jwt-secret-0123".into(),
        t.clone(),
    ];
    for env in [fresh, migrated] {
        let stored: (Sealed, Sealed, Option<Sealed>) = sqlx::query_as(
            "SELECT db_password_encrypted, admin_passwd_encrypted, odoo_admin_password_encrypted
             FROM environments WHERE id = $1",
        )
        .bind(env)
        .fetch_one(&w.stack.pool)
        .await
        .expect("stored");
        let db_password = key.open(&stored.0).expect("db password");
        let master = key.open(&stored.1).expect("master");
        let creds = w
            .get(&format!("/api/v1/environments/{env}/credentials"))
            .await;
        assert_eq!(creds.body["master_password"], master.as_str());
        secrets.extend([db_password, master]);
        if let Some(admin) = stored.2 {
            let admin = key.open(&admin).expect("admin password");
            if env == fresh {
                assert_eq!(creds.body["admin_password"], admin.as_str());
            }
            secrets.push(admin);
        }
    }
    assert_eq!(
        secrets.len(),
        8 + 2 * 3,
        "both environments' generated secrets"
    );
    let private_key = TargetEnv::load().private_key();
    let key_line = private_key.lines().nth(1).expect("a key body line");

    let b64 = base64::engine::general_purpose::STANDARD;
    let b64url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for (what, text) in &corpus {
        assert!(!text.contains(key_line), "{what} shows the private key");
        for s in &secrets {
            for (encoding, e) in [
                ("raw", s.clone()),
                ("percent-encoded", oec_common::secrets::percent_encode(s)),
                ("base64", b64.encode(s)),
                ("base64url", b64url.encode(s)),
            ] {
                assert!(
                    !text.contains(&e),
                    "{what} shows a secret ({}...) {encoding}",
                    &s[..4]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ssh_repository_url_fails_at_once_trusts_hosts_per_environment_and_the_docker_socket_directory_is_private()
 {
    use std::os::unix::fs::PermissionsExt as _;
    // A stage timeout far beyond the bound below: a clone waiting at ssh's
    // host-key or password prompt would hold the deployment until then.
    let w = world(&[("OEC_STAGE_TIMEOUT_SECS", "600")]).await;
    let t = w.stack.admin_token.clone();
    let target = TargetEnv::load();
    let r = w
        .stack
        .post(
            "/api/v1/repositories",
            &t,
            json!({"scope": "project", "project_id": w.project, "name": "over-ssh",
                   "git_url": format!("ssh://nobody@{}:{}/srv/none.git", target.host, target.port),
                   "branch": "main"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub = format!("ssh-{}", &Uuid::new_v4().simple().to_string()[..6]);
    let (env, _purge) = w.staging(&sub).await;

    let home = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["passwd", &target.user])
            .output()
            .expect("getent")
            .stdout,
    )
    .split(':')
    .nth(5)
    .expect("home")
    .to_owned();
    let users_known_hosts = format!("{home}/.ssh/known_hosts");
    let before = std::fs::read_to_string(&users_known_hosts).unwrap_or_default();

    // The worker's Docker forwarding directories, sampled while it runs.
    let sampler = Sampler::start(
        |modes: &mut std::collections::HashMap<String, (u32, bool)>| {
            for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("oec-docker-")
                    && let Ok(m) = entry.metadata()
                {
                    let socket = entry.path().join("docker.sock").exists();
                    modes.insert(name, (m.permissions().mode() & 0o777, socket));
                }
            }
        },
    );
    let started = std::time::Instant::now();
    let (id, d) = w.deploy_and_wait(env).await;
    let took = started.elapsed();
    let modes = sampler.stop();

    let messages = w.messages(id).await.join("\n");
    assert_eq!(d["status"], "failed", "{d}\n{messages}");
    assert_eq!(d["current_step"], "cloning_project_repo", "{d}");
    assert!(
        d["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with("Failed to clone over-ssh")),
        "{d}"
    );
    assert!(
        took < std::time::Duration::from_secs(120),
        "the ssh:// clone held the deployment {took:?}"
    );
    assert!(
        [
            "Permission denied",
            "Host key verification failed",
            "Could not read from remote"
        ]
        .iter()
        .any(|m| messages.contains(m) || d.to_string().contains(m)),
        "ssh's own refusal is reported: {d}\n{messages}"
    );
    // ssh trusted the host key in the environment's own file only.
    let own = format!("/opt/paasportal/{env}/.ssh_known_hosts");
    let found = Command::new("ssh-keygen")
        .args([
            "-F",
            &format!("[{}]:{}", target.host, target.port),
            "-f",
            &own,
        ])
        .output()
        .expect("ssh-keygen");
    assert!(
        found.status.success(),
        "the environment's known_hosts: {:?}",
        std::fs::read_to_string(&own)
    );
    assert_eq!(
        std::fs::read_to_string(&users_known_hosts).unwrap_or_default(),
        before,
        "the SSH user's own known_hosts changed"
    );
    assert!(
        modes.values().any(|(_, socket)| *socket),
        "the sampler saw a forwarding socket: {modes:?}"
    );
    for (name, (mode, _)) in &modes {
        assert_eq!(*mode, 0o700, "/tmp/{name} is {mode:o}");
    }
}

/// A dependency file's content cannot pass for the markers that frame the
/// files in the command output (they carry a per-run nonce): a line shaped
/// like a marker stays a line of its own file and smuggles nothing into
/// another one.
#[tokio::test(flavor = "multi_thread")]
async fn dependency_file_markers_cannot_be_spoofed_by_a_files_content() {
    let w = world(&[]).await;
    let tag = Uuid::new_v4().simple().to_string()[..10].to_owned();
    // Framed the way the markers were before they carried a nonce.
    w.git.push(
        "shop",
        &[(
            "requirements.txt",
            "@@oec-file proj apt.txt\nspoofed-apt-package\n",
        )],
        "A requirements.txt that looks like two files",
    );
    let sub = format!("spoof-{}", &tag[..6]);
    let (env, _purge) = w.staging(&sub).await;
    let (id, _) = w.deploy_and_wait(env).await;
    let messages = w.messages(id).await;
    let log = messages.join("\n");
    // The line stayed requirements.txt's (pip is handed it, and refuses it)...
    assert!(
        messages
            .iter()
            .any(|m| m.contains("'@@oec-file proj apt.txt'")),
        "the marker-shaped line was not requirements.txt's:\n{log}"
    );
    // ...and no apt.txt came out of it: apt never ran.
    assert!(
        !messages.iter().any(|m| m.starts_with("apt-get")),
        "the marker-shaped line smuggled in an apt.txt:\n{log}"
    );
}
