//! The worker's log writer against the real PostgreSQL and Redis.

use std::sync::Arc;

use oec_common::events::Publisher;
use oec_common::model::steps::Step;
use oec_tests::TestDatabase;
use oec_worker::log::{Log, MAX_PENDING, Progress};

/// A fresh database with one deployment, and its log writer.
async fn start() -> (
    TestDatabase,
    sqlx::PgPool,
    uuid::Uuid,
    Log,
    tokio::task::JoinHandle<()>,
) {
    let db = TestDatabase::create().await;
    let pool = oec_common::db::connect_and_migrate(&db.url, 5)
        .await
        .expect("pool");
    let (deployment, _) = oec_tests::bare_deployment(&pool).await.expect("deployment");
    let redis = deadpool_redis::Config::from_url(oec_tests::redis_url())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("redis");
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let reference = oec_common::db::deployments::reference(
        &pool,
        oec_common::model::ids::DeploymentId(deployment),
    )
    .await
    .expect("reference")
    .expect("the deployment");
    let (log, writer) = Log::start(
        pool.clone(),
        Publisher::new(redis, &prefix, 10_000),
        reference,
        0,
        Arc::new(Progress::default()),
        Default::default(),
    );
    (db, pool, deployment, log, writer)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_command_output_is_bounded_and_says_what_it_left_out() {
    let (_db, pool, deployment, log, writer) = start().await;
    // Far more output than the writer can take at once, sent in one go,
    // with important lines in between.
    let flood = MAX_PENDING * 3;
    for i in 0..flood {
        log.debug(Step::CloningProjectRepo, &format!("output line {i}"));
        if i % 20_000 == 0 {
            log.info(Step::CloningProjectRepo, &format!("milestone {i}"));
        }
    }
    log.info(Step::CloningProjectRepo, "done");
    log.flush().await;
    drop(log);
    writer.await.expect("writer");

    let (debug, info, warnings): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE level = 'debug'), count(*) FILTER (WHERE level = 'info'),
                count(*) FILTER (WHERE level = 'warning') FROM deployment_logs WHERE deployment_id = $1",
    )
    .bind(deployment)
    .fetch_one(&pool)
    .await
    .expect("counts");
    // Every important line is there; the output was cut, and said so.
    assert_eq!(
        info,
        (flood as i64 / 20_000) + 2,
        "no info line is ever dropped"
    );
    assert!(
        debug < flood as i64,
        "the flood was bounded ({debug} stored)"
    );
    assert!(debug >= MAX_PENDING as i64 - 100);
    assert!(warnings >= 1);
    let left_out: Vec<String> = sqlx::query_scalar(
        "SELECT message FROM deployment_logs WHERE deployment_id = $1 AND level = 'warning' ORDER BY seq",
    )
    .bind(deployment)
    .fetch_all(&pool)
    .await
    .expect("warnings");
    let counted: i64 = left_out
        .iter()
        .map(|m| {
            assert!(
                m.ends_with("lines of command output left out: the log writer fell behind"),
                "{m}"
            );
            m.split(' ')
                .next()
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        debug + counted,
        flood as i64,
        "every debug line is stored or counted"
    );
    // seq stays gapless and ordered.
    let (min, max, n): (i64, i64, i64) = sqlx::query_as(
        "SELECT min(seq), max(seq), count(*) FROM deployment_logs WHERE deployment_id = $1",
    )
    .bind(deployment)
    .fetch_one(&pool)
    .await
    .expect("seq");
    assert_eq!((min, max), (1, n));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_or_other_control_character_in_command_output_loses_no_line() {
    let (_db, pool, deployment, log, writer) = start().await;
    // One batch: good lines around a NUL, an escape sequence and a NUL in
    // the data (PostgreSQL refuses \0 in text and in jsonb).
    let step = Step::InstallingDependencies;
    log.info(step, "before");
    log.debug(step, "binary\u{0}output");
    log.warning(
        step,
        "\u{1b}[31mcoloured\u{1b}[0m \u{1b}]0;title\u{7}warning",
    );
    log.line(
        oec_common::model::LogLevel::Error,
        step,
        "with data",
        Some(serde_json::json!({"output": ["a\u{0}b"], "k\u{0}": 1})),
    );
    log.info(step, "after");
    log.flush().await;
    drop(log);
    writer.await.expect("writer");
    let rows: Vec<(String, String, Option<serde_json::Value>)> = sqlx::query_as(
        "SELECT level, message, data FROM deployment_logs WHERE deployment_id = $1 ORDER BY seq",
    )
    .bind(deployment)
    .fetch_all(&pool)
    .await
    .expect("rows");
    let messages: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "before",
            "binary\u{fffd}output",
            "coloured warning",
            "with data",
            "after"
        ]
    );
    assert_eq!(
        rows[3].2,
        Some(serde_json::json!({"output": ["a\u{fffd}b"], "k\u{fffd}": 1}))
    );
}
