//! Redis going away and coming back under running deployments, on a Redis of
//! this test's own (the machine's shared Redis is never touched): requests
//! after the restart are answered, the queue's lost jobs are enqueued again
//! by the reaper, and no log line is lost on the live streams.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oec_tests::stack::SseClient;
use oec_tests::world::*;
use serde_json::json;
use uuid::Uuid;

/// A redis-server child on a free port, without persistence: a restart
/// comes back empty, as the worst case for the queue.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = OwnRedis { port, child: None };
        r.up();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye to the clients.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restart_under_deployments_answers_every_request_and_loses_no_line() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    // Two workers, one deployment each: the third waits in the queue.
    let w = world(&[("REDIS_URL", &url), ("OEC_WORKER_CONCURRENCY", "1")]).await;
    let s = &w.stack;
    let t = s.admin_token.clone();
    let _scheduler = s.spawn(
        "oec-scheduler",
        &[
            ("OEC_REAPER_SCHEDULE", "* * * * * *"),
            ("OEC_REAPER_PENDING_SECS", "3"),
        ],
    );
    let mut envs = Vec::new();
    let mut purges = Vec::new();
    for i in 0..4 {
        let sub = format!("redis{i}-{}", &Uuid::new_v4().simple().to_string()[..6]);
        let env = w
            .environment(json!({"name": format!("redis{i}"), "subdomain": sub}))
            .await;
        envs.push(env);
        purges.push(Purge(env, sub));
    }
    let mut all =
        SseClient::connect(&s.url(&format!("/api/v1/events/stream?token={t}")), None).await;
    assert_eq!(all.status, 200);

    let running = [s.deploy(envs[0]).await, s.deploy(envs[1]).await];
    let mut streams = Vec::new();
    for id in running {
        let c = SseClient::connect(
            &s.url(&format!("/api/v1/deployments/{id}/events?token={t}")),
            None,
        )
        .await;
        assert_eq!(c.status, 200);
        streams.push(c);
    }
    for id in running {
        s.wait_step(id, "creating_database", DEPLOY).await;
    }
    let waiting = s.deploy(envs[2]).await;
    let d = s.get(&format!("/api/v1/deployments/{waiting}"), &t).await;
    assert_eq!(d.body["status"], "pending", "{}", d.text);

    // Redis dies: the api says so, and a deployment it cannot queue is
    // answered 503 and not left pending.
    redis.kill();
    let ready = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    let r = s
        .post(
            "/api/v1/deployments",
            &t,
            json!({"environment_id": envs[3]}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.code(), "queue_unavailable");
    let refused = s
        .get(
            &format!("/api/v1/deployments?environment_id={}", envs[3]),
            &t,
        )
        .await;
    let refused = &refused.body[0];
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        refused["error_message"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be queued"),
        "{refused}"
    );
    // Down long enough for a connection's own reconnection attempts to
    // give up (the redis crate's default: 6 tries over about 6 s).
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Redis is back, empty. The first requests are answered as if nothing
    // happened.
    redis.up();
    let ready = s.send(reqwest::Method::GET, "/readyz", None, None).await;
    assert_eq!(
        ready.status, 200,
        "readyz right after the restart: {}",
        ready.text
    );
    let after = s
        .post(
            "/api/v1/deployments",
            &t,
            json!({"environment_id": envs[3]}),
        )
        .await;
    assert_eq!(
        after.status, 202,
        "the first POST after the restart: {}",
        after.text
    );
    let after = after.id();

    // Every deployment ends well: the running ones, the one whose queued
    // job Redis lost (enqueued again by the reaper), the one queued after.
    for id in [running[0], running[1], waiting, after] {
        let d = s.wait_terminal(id, DEPLOY).await;
        assert_eq!(
            d["status"],
            "success",
            "{id}: {d}\n{}",
            w.messages(id).await.join("\n")
        );
    }

    // No line lost: each live stream of a deployment that ran through the
    // outage delivered every stored line once, in order.
    for (id, mut c) in running.into_iter().zip(streams) {
        let got = c
            .until(Duration::from_secs(30), |m| {
                m.event.as_deref() == Some("deployment_finished")
            })
            .await;
        assert_eq!(
            got.last().and_then(|m| m.event.as_deref()),
            Some("deployment_finished"),
            "{id}: the stream did not reach the end"
        );
        let seqs: Vec<i64> = got
            .iter()
            .filter(|m| m.event.as_deref() == Some("deployment_progress"))
            .map(|m| {
                m.json()["data"]["seq"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("no seq in {m:?}"))
            })
            .collect();
        let stored: Vec<i64> = w
            .logs(id)
            .await
            .iter()
            .map(|l| l["seq"].as_i64().expect("seq"))
            .collect();
        assert!(stored.len() > 20, "{stored:?}");
        assert_eq!(seqs, stored, "{id}: the stream's lines against /logs");
        assert_eq!(
            stored,
            (1..=stored.len() as i64).collect::<Vec<_>>(),
            "{id}: stored lines are contiguous"
        );
    }

    // The api's subscription came back: the global stream carries the
    // end of the deployment queued after the restart.
    let finished: HashSet<String> = all
        .until(Duration::from_secs(10), |_| false)
        .await
        .iter()
        .filter(|m| m.event.as_deref() == Some("deployment_finished"))
        .filter_map(|m| {
            m.json()["data"]["deployment_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        finished.contains(&after.to_string()),
        "{finished:?} lacks {after}"
    );
    let log = s.api.log();
    assert!(
        log.contains("retrying once on a fresh Redis connection"),
        "the api's log does not show the retry"
    );
}
