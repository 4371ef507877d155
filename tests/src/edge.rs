//! The server's edge as a client sees it: HTTPS through the proxy oec runs
//! on this machine, trusting only Pebble's roots, and a load generator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::TargetEnv;
use crate::world::{Purge, World, world};

/// A client that trusts only Pebble's roots and reaches `host` at this
/// machine (port 0: the URL's own port), as a browser would through DNS.
pub fn client(host: &str, roots: &str, follow: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .resolve(host, SocketAddr::from(([127, 0, 0, 1], 0)));
    if !follow {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    for block in roots.split_inclusive("-----END CERTIFICATE-----") {
        if block.contains("-----BEGIN CERTIFICATE-----") {
            let cert = reqwest::Certificate::from_pem(block.trim().as_bytes()).expect("pem");
            b = b.add_root_certificate(cert);
        }
    }
    b.build().expect("client")
}

/// A world with `extra` settings and one environment `name`, deployed from
/// an initialized database (these tests are about what comes after):
/// (world, environment, its purge, its hostname, Pebble's roots).
pub async fn deployed(name: &str, extra: &[(&str, &str)]) -> (World, Uuid, Purge, String, String) {
    let target = TargetEnv::load();
    let roots = std::fs::read_to_string(&target.acme_roots).expect("Pebble's roots");
    let w = world(extra).await;
    let sub = format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..6]);
    // Real Odoo answers the load's 50 requests/s (about 20 ms each) with
    // 70% of two cores and two HTTP workers; on 70% of one core and one
    // worker it falls behind and requests time out.
    let env = w
        .environment(
            json!({"name": name, "subdomain": sub, "cpu_cores": 2.0, "ram_mb": 2048,
                            "migration_source_url": w.initialized.url}),
        )
        .await;
    let purge = Purge(env, sub.clone());
    let (id, d) = w.deploy_and_wait(env).await;
    assert_eq!(
        d["status"],
        "success",
        "{d}\n{}",
        w.messages(id).await.join("\n")
    );
    (w, env, purge, format!("{sub}.apps.oec.test"), roots)
}

/// `GET https://{host}/web/health` 50 times a second, each request on its
/// own whatever the others take, until stopped. A failure is kept with the
/// time its request was sent (UTC), to set beside the deployments' logs.
pub struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(host: &str, roots: &str) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, f, s) = (ok.clone(), failed.clone(), stop.clone());
        let http = client(host, roots, false);
        let url = format!("https://{host}/web/health");
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut inflight = Vec::new();
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                let (http, url, ok, failed) = (http.clone(), url.clone(), o.clone(), f.clone());
                inflight.push(tokio::spawn(async move {
                    let sent = chrono::Utc::now().format("%H:%M:%S%.3f");
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => failed
                            .lock()
                            .expect("lock")
                            .push(format!("{sent} HTTP {}", r.status())),
                        Err(e) => failed.lock().expect("lock").push(format!("{sent} {e:?}")),
                    }
                }));
            }
            for t in inflight {
                let _ = t.await;
            }
        });
        Load {
            ok,
            failed,
            stop,
            task,
        }
    }

    /// Stops the load; the requests answered 200 and the failures.
    pub async fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("load");
        let failed = self.failed.lock().expect("lock").clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

/// Fails unless every request of a load of at least `min` answered 200;
/// on a failure, first prints every log line of `env`'s deployments with
/// its time, to set beside the failed requests' times.
pub async fn assert_no_failed_request(w: &World, env: Uuid, ok: u64, failed: &[String], min: u64) {
    if !failed.is_empty() {
        let list = w
            .get(&format!(
                "/api/v1/deployments?environment_id={env}&limit=50"
            ))
            .await;
        for d in list.body.as_array().cloned().unwrap_or_default() {
            let id = d["id"].as_str().unwrap_or_default();
            let Ok(id) = id.parse::<Uuid>() else { continue };
            for l in w.logs(id).await {
                eprintln!(
                    "deployment {} {} [{}] {}",
                    &id.to_string()[..8],
                    l["timestamp"].as_str().unwrap_or_default(),
                    l["step"].as_str().unwrap_or_default(),
                    l["message"].as_str().unwrap_or_default()
                );
            }
        }
    }
    let mut per_second = std::collections::BTreeMap::<&str, usize>::new();
    for f in failed {
        *per_second.entry(f.get(..8).unwrap_or(f)).or_default() += 1;
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed (sent at, per second: {per_second:?}): first {:?}, last {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)],
        failed.last()
    );
    assert!(ok >= min, "the load ran: {ok} requests");
}
