//! The scheduler against the real PostgreSQL and Redis: retention, the
//! reaper, and one run per tick across replicas.

use std::time::{Duration, Instant};

use chrono::Utc;
use oec_common::events::Publisher;
use oec_scheduler::{Deps, Job};
use oec_tests::stack::{ServerLogin, SseClient, Stack};
use oec_tests::{TestDatabase, test_settings};
use serde_json::json;
use uuid::Uuid;

async fn deps(db: &TestDatabase, extra: &[(&str, &str)]) -> Deps {
    let settings = test_settings(&db.url, extra);
    let pool = oec_common::db::connect_and_migrate(&db.url, 5)
        .await
        .expect("migrate");
    let redis = deadpool_redis::Config::from_url(settings.redis_url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("redis");
    let publisher = Publisher::new(redis.clone(), &settings.redis_prefix, 10_000);
    Deps {
        pool,
        redis,
        publisher,
        settings,
        replica: "test".into(),
    }
}

/// `oec-scheduler run {job}` with the stack's environment and `extra`: its stdout.
fn run_job(stack: &Stack, job: &str, extra: &[(&str, &str)]) -> String {
    let out = std::process::Command::new(oec_tests::binary("oec-scheduler"))
        .env_clear()
        .envs(stack.env.iter().cloned())
        .envs(extra.iter().copied())
        .args(["run", job])
        .output()
        .expect("run the job");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn redis_conn() -> redis::aio::MultiplexedConnection {
    redis::Client::open(oec_tests::redis_url())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("conn")
}

/// A deployment to hang log lines on, ended long ago.
async fn deployment(pool: &sqlx::PgPool) -> Uuid {
    let (dep, _) = oec_tests::bare_deployment(pool).await.expect("deployment");
    sqlx::query(
        "UPDATE deployments SET status = 'success', completed_at = now() - interval '400 days' WHERE id = $1",
    )
    .bind(dep)
    .execute(pool)
    .await
    .expect("ended");
    dep
}

/// Inserts `n` log lines at `age` before now.
async fn logs(pool: &sqlx::PgPool, dep: Uuid, first_seq: i64, n: i64, age: chrono::Duration) {
    sqlx::query(
        "INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message)
         SELECT gen_random_uuid(), $1, $2 + g, $3, 'info', 'line' FROM generate_series(0, $4 - 1) g",
    )
    .bind(dep)
    .bind(first_seq)
    .bind(Utc::now() - age)
    .bind(n)
    .execute(pool)
    .await
    .expect("logs");
}

async fn count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM deployment_logs")
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn retention_deletes_exactly_what_is_past_the_cutoff() {
    let db = TestDatabase::create().await;
    let d = deps(&db, &[("LOG_RETENTION_DAYS", "7")]).await;
    let dep = deployment(&d.pool).await;
    let week = chrono::Duration::days(7);
    logs(&d.pool, dep, 0, 3, week + chrono::Duration::seconds(1)).await;
    logs(&d.pool, dep, 100, 2, week - chrono::Duration::seconds(1)).await;
    let summary = Job::Retention.run(&d).await.expect("run");
    assert!(
        summary.starts_with("Deleted 3 deployment logs older than 7 days"),
        "{summary}"
    );
    assert_eq!(
        count(&d.pool).await,
        2,
        "a row a second younger than the cutoff stays"
    );
    // Deployments themselves are kept.
    let deployments: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
        .fetch_one(&d.pool)
        .await
        .expect("count");
    assert_eq!(deployments, 1);
}

#[tokio::test]
async fn retention_deletes_the_logs_even_when_redis_is_unreachable() {
    let db = TestDatabase::create().await;
    // Nothing listens on port 1: the queue cannot be pruned.
    let d = deps(
        &db,
        &[
            ("LOG_RETENTION_DAYS", "7"),
            ("REDIS_URL", "redis://127.0.0.1:1"),
        ],
    )
    .await;
    let dep = deployment(&d.pool).await;
    logs(&d.pool, dep, 0, 3, chrono::Duration::days(8)).await;
    let summary = Job::Retention.run(&d).await.expect("the run succeeds");
    assert!(
        summary.starts_with("Deleted 3 deployment logs older than 7 days"),
        "{summary}"
    );
    assert!(
        summary.contains("finished queue jobs not pruned"),
        "{summary}"
    );
    assert_eq!(count(&d.pool).await, 0);
}

#[tokio::test]
async fn zero_days_keeps_everything() {
    let db = TestDatabase::create().await;
    let d = deps(&db, &[("LOG_RETENTION_DAYS", "0")]).await;
    let dep = deployment(&d.pool).await;
    logs(&d.pool, dep, 0, 5, chrono::Duration::days(4000)).await;
    let summary = Job::Retention.run(&d).await.expect("run");
    assert!(summary.contains("kept forever"), "{summary}");
    assert_eq!(count(&d.pool).await, 5);
}

#[tokio::test]
async fn batches_delete_everything_due_and_optionally_the_orphaned_steps() {
    let db = TestDatabase::create().await;
    let d = deps(
        &db,
        &[
            ("LOG_RETENTION_DAYS", "30"),
            ("OEC_RETENTION_BATCH_SIZE", "10"),
            ("OEC_RETENTION_DELETE_STEPS", "1"),
        ],
    )
    .await;
    let dep = deployment(&d.pool).await;
    sqlx::query("INSERT INTO deployment_steps (deployment_id, step, status) VALUES ($1, 'initializing', 'completed')")
        .bind(dep)
        .execute(&d.pool)
        .await
        .expect("step");
    logs(&d.pool, dep, 0, 35, chrono::Duration::days(31)).await;
    let summary = Job::Retention.run(&d).await.expect("run");
    assert!(
        summary.contains("Deleted 35 deployment logs older than 30 days in 4 batches"),
        "{summary}"
    );
    assert!(summary.contains("deleted 1 steps"), "{summary}");
    assert_eq!(count(&d.pool).await, 0);
}

#[tokio::test]
async fn retention_deletes_sessions_that_ended_more_than_a_day_ago_only() {
    let db = TestDatabase::create().await;
    let d = deps(&db, &[("LOG_RETENTION_DAYS", "30")]).await;
    let user: Uuid = sqlx::query_scalar(
        "INSERT INTO users (id, email, name, password_hash)
         VALUES (gen_random_uuid(), 's@oec.test', 'S', 'x') RETURNING id",
    )
    .fetch_one(&d.pool)
    .await
    .expect("a user");
    // (revoked, expires): live; revoked an hour ago; revoked two days ago;
    // expired two days ago.
    let rows = [
        ("NULL", "now() + interval '1 day'"),
        ("now() - interval '1 hour'", "now() + interval '1 day'"),
        ("now() - interval '2 days'", "now() + interval '1 day'"),
        ("NULL", "now() - interval '2 days'"),
    ];
    for (revoked, expires) in rows {
        sqlx::query(&format!(
            "INSERT INTO sessions (id, user_id, current_refresh, revoked_at, expires_at)
             VALUES (gen_random_uuid(), $1, gen_random_uuid(), {revoked}, {expires})"
        ))
        .bind(user)
        .execute(&d.pool)
        .await
        .expect("session");
    }
    let summary = Job::Retention.run(&d).await.expect("run");
    assert!(summary.contains("removed 2 ended sessions"), "{summary}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&d.pool)
        .await
        .expect("count");
    assert_eq!(left, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_scheduler_replicas_run_each_tick_once() {
    let stack = Stack::start(0, &[]).await;
    let every_second = [
        ("OEC_REAPER_SCHEDULE", "* * * * * *"),
        ("OEC_RETENTION_SCHEDULE", "*/2 * * * * *"),
    ];
    let mut a = stack.spawn("oec-scheduler", &every_second);
    let mut b = stack.spawn("oec-scheduler", &every_second);
    a.wait_for("oec-scheduler started", Duration::from_secs(60))
        .await;
    b.wait_for("oec-scheduler started", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.signal("-TERM");
    b.signal("-TERM");
    assert!(
        a.wait_exit(Duration::from_secs(10))
            .await
            .is_some_and(|s| s.success())
    );
    assert!(
        b.wait_exit(Duration::from_secs(10))
            .await
            .is_some_and(|s| s.success())
    );
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT job, count(*) FROM scheduler_runs WHERE finished_at IS NOT NULL GROUP BY job ORDER BY job")
        .fetch_all(&stack.pool)
        .await
        .expect("runs");
    let runs = |job: &str| {
        rows.iter()
            .find(|(j, _)| j == job)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    assert!(runs("reaper") >= 4, "{rows:?}");
    assert!(runs("retention") >= 2, "{rows:?}");
    // What the processes did matches the claimed ticks one for one.
    let done = |job: &str| {
        [a.log(), b.log()]
            .iter()
            .map(|l| {
                l.lines()
                    .filter(|x| x.contains(job) && x.contains("job finished"))
                    .count()
            })
            .sum::<usize>() as i64
    };
    assert_eq!(done("reaper"), runs("reaper"));
    assert_eq!(done("retention"), runs("retention"));
    let ticks: Vec<(chrono::DateTime<Utc>,)> =
        sqlx::query_as("SELECT tick FROM scheduler_runs WHERE job = 'reaper' ORDER BY tick")
            .fetch_all(&stack.pool)
            .await
            .expect("ticks");
    for pair in ticks.windows(2) {
        assert_eq!(
            (pair[1].0 - pair[0].0).num_seconds(),
            1,
            "no tick skipped or doubled: {ticks:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_leaves_a_deployment_the_reaper_fails() {
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = tarpit.local_addr().expect("addr").port();
    let mut stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Port(port)).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let mut sse = SseClient::connect(
        &stack.url(&format!("/api/v1/events/stream?token={t}")),
        None,
    )
    .await;
    let id = stack.deploy(env).await;
    // Wait until the blocked stage (connecting, against the tarpit) runs.
    stack
        .wait_step(id, "connecting", Duration::from_secs(20))
        .await;
    stack.workers[0].signal("-KILL");
    stack.workers[0]
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("killed");
    let killed = Instant::now();
    let _scheduler = stack.spawn(
        "oec-scheduler",
        &[
            ("OEC_REAPER_SCHEDULE", "* * * * * *"),
            ("OEC_REAPER_STALE_SECS", "3"),
        ],
    );
    let d = stack.wait_terminal(id, Duration::from_secs(30)).await;
    let took = killed.elapsed();
    assert_eq!(d["status"], "failed");
    assert!(
        d["error_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Worker lost: no heartbeat since "),
        "{d}"
    );
    // Threshold (3 s) plus one tick (1 s), with a little slack for start-up.
    assert!(
        took < Duration::from_secs(3 + 1 + 3),
        "reaped after {took:?}"
    );
    let p = stack
        .get(&format!("/api/v1/deployments/{id}/progress"), &t)
        .await
        .body;
    assert_eq!(
        p["steps"][1]["status"], "failed",
        "the running step is failed too"
    );
    let e = stack
        .get(&format!("/api/v1/environments/{env}"), &t)
        .await
        .body;
    assert_eq!(e["status"], "failed");
    // The reaper's line, written with the final status, then the end.
    let seen = sse
        .until(Duration::from_secs(5), |m| {
            m.event.as_deref() == Some("deployment_finished")
                && m.json()["data"]["deployment_id"] == json!(id)
        })
        .await;
    let line = seen
        .iter()
        .find(|m| {
            m.event.as_deref() == Some("deployment_progress")
                && m.json()["data"]["deployment_id"] == json!(id)
                && m.json()["data"]["level"] == "error"
        })
        .expect("the reaper's line");
    assert_eq!(line.json()["data"]["status"], "failed", "{line:?}");
    assert!(
        line.json()["data"]["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Worker lost"),
        "{line:?}"
    );
    let last = seen.last().expect("events");
    assert_eq!(last.json()["data"]["status"], "failed", "{last:?}");
    assert!(
        last.json()["data"]["error_message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Worker lost"),
        "{last:?}"
    );
    drop(tarpit);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_deployment_whose_job_was_lost_runs_after_the_reaper_requeues_it() {
    let stack = Stack::start(0, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let t = stack.admin_token.clone();
    let id = stack.deploy(env).await;
    // Lose the job: delete every queue key of this stack.
    let prefix = stack.var("OEC_REDIS_PREFIX");
    let mut conn = redis_conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}oec:deployments*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert!(!keys.is_empty());
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("del");
    let worker = stack.spawn("oec-worker", &[]);
    worker
        .wait_for("oec-worker started", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack
            .get(&format!("/api/v1/deployments/{id}"), &t)
            .await
            .body["status"],
        "pending",
        "nothing to pick up"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = run_job(&stack, "reaper", &[("OEC_REAPER_PENDING_SECS", "3")]);
    assert!(out.contains("1 lost jobs enqueued again"), "{out}");
    let d = stack.wait_terminal(id, Duration::from_secs(60)).await;
    assert!(
        d["error_message"]
            .as_str()
            .is_some_and(|e| e.starts_with(oec_tests::stack::ABSENT_DB_IMAGE_ERROR)),
        "it ran: {d}"
    );
    worker.signal("-TERM");
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let _ = docker
        .remove_network(&format!("paasportal_net_{env}"))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_removes_the_queue_records_of_finished_jobs_past_their_age() {
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let id = stack.deploy(env).await;
    stack.wait_terminal(id, Duration::from_secs(60)).await;
    let cfg = oec_common::queue::config(&stack.var("OEC_REDIS_PREFIX"), 1);
    let mut conn = redis_conn().await;
    let mut finished_ids = Vec::new();
    // The worker acknowledges the job just after the deployment ends.
    let until = Instant::now() + Duration::from_secs(30);
    while finished_ids.is_empty() && Instant::now() < until {
        finished_ids = redis::cmd("SUNION")
            .arg(cfg.done_jobs_set())
            .arg(cfg.dead_jobs_set())
            .query_async::<Vec<String>>(&mut conn)
            .await
            .expect("sunion");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(finished_ids.len(), 1, "the job is recorded as finished");
    let task = &finished_ids[0];
    let meta = format!("{}:{task}", cfg.job_meta_hash());
    let data: i64 = redis::cmd("HLEN")
        .arg(cfg.job_data_hash())
        .query_async(&mut conn)
        .await
        .expect("hlen");
    assert_eq!(data, 1);

    let recent = run_job(
        &stack,
        "retention",
        &[("OEC_QUEUE_KEEP_FINISHED_SECS", "3600")],
    );
    assert!(
        recent.contains("removed 0 finished queue jobs"),
        "a job finished a moment ago is kept: {recent}"
    );
    let kept: bool = redis::cmd("EXISTS")
        .arg(&meta)
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(kept);

    let due = run_job(
        &stack,
        "retention",
        &[("OEC_QUEUE_KEEP_FINISHED_SECS", "0")],
    );
    assert!(due.contains("removed 1 finished queue jobs"), "{due}");
    let (data, finished, meta_left): (i64, Vec<String>, bool) = redis::pipe()
        .cmd("HLEN")
        .arg(cfg.job_data_hash())
        .cmd("SUNION")
        .arg(cfg.done_jobs_set())
        .arg(cfg.dead_jobs_set())
        .cmd("EXISTS")
        .arg(&meta)
        .query_async(&mut conn)
        .await
        .expect("after");
    assert_eq!((data, finished.len(), meta_left), (0, 0, false));
    // The deployment itself stays.
    let d = stack
        .get(&format!("/api/v1/deployments/{id}"), &stack.admin_token)
        .await;
    assert_eq!(d.status, 200);
    let docker = bollard::Docker::connect_with_local_defaults().expect("docker");
    let _ = docker
        .remove_network(&format!("paasportal_net_{env}"))
        .await;
}
