//! oec-bench: the benchmark harness (run by `scripts/bench`, not by the tests).
//!
//! `oec-bench sse --url URL --token T --redis URL [--prefix P] --org UUID
//!   --clients 1000,5000,10000 --rate 10 --seconds 10 [--repeat N] [--api-pid PID]`
//! connects N SSE clients to any server that serves `sse:events`, publishes
//! events on the channel itself at a fixed rate, and reports publish-to-receive
//! latency (p50/p99) and the server's memory per client. The baseline, measured
//! in the same run, is the spec's design: one Redis subscription per client.
//! `--repeat N` measures each client count N times (one row each), since a
//! 2-core machine shared by server and clients varies from run to run.
//!
//! `oec-bench logs --database URL --redis URL --lines N` measures how many log
//! lines per second one deployment can commit and publish, against the
//! baseline of one INSERT and one PUBLISH per line.
//!
//! `oec-bench retention --database URL --api URL --token T --rows N` fills
//! `deployment_logs` with N rows past the retention cutoff, then measures the
//! cleanup's wall time and `/logs` p99 latency during it, against `/logs` p99
//! when idle, in the same run.
//!
//! `oec-bench deploy --api URL --token T [--runs N]`: fresh deployment and
//! redeploy wall time with a per-stage breakdown (see `deploy.rs`).

mod deploy;
mod fleet;
mod tenants;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use oec_common::events::{DeploymentProgress, DeploymentRef, Envelope, Event, Publisher};
use oec_common::model::steps::Step;
use oec_common::model::{DeploymentStatus, LogLevel};
use serde_json::json;
use uuid::Uuid;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // The fleet is single-threaded: it must not start a runtime's threads.
    if args.get(1).map(String::as_str) == Some("fleet") {
        return fleet::run(&args);
    }
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    match args.get(1).map(String::as_str) {
        Some("sse") => sse(&args).await,
        Some("tenants") => tenants::make(&args).await,
        Some("sse-tenants") => tenants::sse_tenants(&args).await,
        Some("sse-capacity") => tenants::sse_capacity(&args).await,
        Some("logs") => logs(&args).await,
        Some("retention") => retention(&args).await,
        Some("deploy") => deploy::deploy(&args).await,
        _ => bail!(
            "usage: oec-bench sse|sse-tenants|sse-capacity|logs|retention|deploy ... (see the file header or scripts/bench)"
        ),
    }
}

/// A log line's event whose data carries its send time, which the fleet
/// reads back from the frame.
fn progress_event(project: Uuid, seq: i64) -> Event {
    Event::DeploymentProgress(DeploymentProgress {
        deployment: DeploymentRef {
            deployment_id: Uuid::nil(),
            environment_id: Uuid::nil(),
            project_id: project,
            project_name: "bench".into(),
            environment_name: "bench".into(),
            triggered_by: None,
            branch: Some("main".into()),
        },
        status: DeploymentStatus::Running,
        progress_percent: 45,
        seq,
        step: Some(Step::PullingImage.id().into()),
        level: LogLevel::Info,
        message: "Pulling Odoo 18.0 image...".into(),
        timestamp: chrono::Utc::now(),
        data: Some(json!({"bench_sent_us": now_us()})),
    })
}

/// Events to the organizations in turn at `per_second` in all, for
/// `seconds`, from up to 4 publishers; returns how many went to each.
pub(crate) async fn publish_in_turn(
    publisher: &Publisher,
    orgs: &[Uuid],
    per_second: u64,
    seconds: u64,
) -> anyhow::Result<Vec<u64>> {
    let lanes = 4.min(orgs.len());
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for lane in 0..lanes {
        let publisher = publisher.clone();
        let mine: Vec<(usize, Uuid)> = orgs
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % lanes == lane)
            .collect();
        let rate = per_second as f64 * mine.len() as f64 / orgs.len() as f64;
        let project = Uuid::new_v4();
        tasks.push(tokio::spawn(async move {
            let mut sent = vec![0u64; mine.len()];
            let mut n = 0usize;
            while Instant::now() < end {
                let due = (start.elapsed().as_secs_f64() * rate) as usize;
                while n < due {
                    let (_, org) = mine[n % mine.len()];
                    let event = progress_event(project, n as i64 + 1);
                    publisher.publish(&Envelope::new(org, event)).await?;
                    sent[n % mine.len()] += 1;
                    n += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            anyhow::Ok((mine, sent))
        }));
    }
    let mut per_org = vec![0u64; orgs.len()];
    for t in tasks {
        let (mine, sent) = t.await??;
        for ((i, _), s) in mine.iter().zip(sent) {
            per_org[*i] = s;
        }
    }
    Ok(per_org)
}

async fn sse(args: &[String]) -> anyhow::Result<()> {
    let url = arg(args, "--url").context("--url")?;
    let token = arg(args, "--token").context("--token")?;
    let redis_url = arg(args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let prefix = arg(args, "--prefix").unwrap_or_default();
    let org: Uuid = arg(args, "--org").context("--org")?.parse()?;
    let rate: u64 = arg(args, "--rate").unwrap_or_else(|| "10".into()).parse()?;
    let seconds: u64 = arg(args, "--seconds")
        .unwrap_or_else(|| "10".into())
        .parse()?;
    let api_pid: Option<u32> = arg(args, "--api-pid").and_then(|p| p.parse().ok());
    let counts: Vec<usize> = arg(args, "--clients")
        .unwrap_or_else(|| "1000".into())
        .split(',')
        .filter_map(|c| c.parse().ok())
        .collect();
    let rest = url.strip_prefix("http://").context("http:// URL")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h.to_owned(), format!("/{p}")))
        .context("URL path")?;
    let sep = if path.contains('?') { '&' } else { '?' };
    let sse = fleet::Target::Sse {
        addr: resolve(&host).await?,
        path: format!("{path}{sep}token={token}"),
    };
    let pool = deadpool_redis::Config::from_url(redis_url.clone())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let publisher = Publisher::new(pool, &prefix, 50_000);
    // Baseline: the spec's design, one Redis subscription per client.
    let redis_host = redis_url
        .strip_prefix("redis://")
        .filter(|r| !r.contains('@'))
        .map(|r| r.split('/').next().unwrap_or(r))
        .context("the baseline needs a redis://host:port URL without credentials")?;
    let base_target = fleet::Target::Redis {
        addr: resolve(redis_host).await?,
        channel: publisher.channel().to_owned(),
    };
    println!(
        "clients,rate_per_client,deliveries_expected,deliveries_received,disconnected,p50_ms,p99_ms,max_ms,rss_per_client_kb,baseline_p50_ms,baseline_p99_ms,p99_ratio_vs_baseline"
    );
    // Memory per client is measured from the idle server's RSS: freed memory
    // stays with the allocator, so a delta from one run to the next would
    // under-count a repeated or smaller run.
    let rss_before = api_pid.and_then(rss_kb);
    let repeat: usize = arg(args, "--repeat")
        .unwrap_or_else(|| "1".into())
        .parse()?;
    for n in counts
        .iter()
        .flat_map(|&n| std::iter::repeat_n(n, repeat.max(1)))
    {
        // oec: N SSE clients on one api process.
        let clients = fleet::Fleet::start(&sse, n).await?;
        let rss_after = api_pid.and_then(rss_kb);
        let sent: u64 = publish_in_turn(&publisher, &[org], rate, seconds)
            .await?
            .iter()
            .sum();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (s, disconnected) = clients.stop().await?;
        let per_client = match (rss_before, rss_after) {
            (Some(b), Some(a)) => format!("{:.1}", a.saturating_sub(b) as f64 / n as f64),
            _ => "n/a".into(),
        };
        let base = match measure(&base_target, &publisher, n, org, rate, seconds).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!(
                    "baseline with {n} Redis subscriptions failed: {e:#} (Redis maxclients?)"
                );
                Vec::new()
            }
        };
        println!(
            "{n},{rate},{},{},{disconnected},{:.2},{:.2},{:.2},{per_client},{:.2},{:.2},{:.3}",
            sent * n as u64,
            s.len(),
            percentile(&s, 0.5),
            percentile(&s, 0.99),
            percentile(&s, 1.0),
            percentile(&base, 0.5),
            percentile(&base, 0.99),
            percentile(&s, 0.99) / percentile(&base, 0.99),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// `host:port` as `ip:port`, for the fleet.
async fn resolve(host: &str) -> anyhow::Result<String> {
    tokio::net::lookup_host(host)
        .await?
        .next()
        .map(|a| a.to_string())
        .with_context(|| format!("resolving {host}"))
}

/// Latencies of `n` fleet clients of `target` while events are published.
async fn measure(
    target: &fleet::Target,
    publisher: &Publisher,
    n: usize,
    org: Uuid,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Vec<u64>> {
    let clients = fleet::Fleet::start(target, n).await?;
    publish_in_turn(publisher, &[org], rate, seconds).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(clients.stop().await?.0)
}

async fn logs(args: &[String]) -> anyhow::Result<()> {
    use oec_common::db::deployments;
    let database = arg(args, "--database").context("--database")?;
    let redis_url = arg(args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let lines: i64 = arg(args, "--lines")
        .unwrap_or_else(|| "100000".into())
        .parse()?;
    let baseline_lines: i64 = arg(args, "--baseline-lines")
        .unwrap_or_else(|| "5000".into())
        .parse()?;
    let pool = oec_common::db::connect_and_migrate(&database, 10).await?;
    let redis = deadpool_redis::Config::from_url(redis_url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let publisher = Publisher::new(redis, &prefix, 50_000);
    let ctx = oec_tests::bare_deployment(&pool).await?;
    let reference = deployments::reference(&pool, oec_common::model::ids::DeploymentId(ctx.0))
        .await?
        .context("the bench deployment")?;

    // oec: the worker's batching writer.
    let (log, writer) = oec_worker::log::Log::start(
        pool.clone(),
        publisher.clone(),
        reference.clone(),
        1000,
        Default::default(),
        Default::default(),
    );
    let t0 = Instant::now();
    // Info lines: command output (debug) past the writer's bound would be
    // counted instead of stored, which is not what this measures.
    for i in 0..lines {
        log.line(
            LogLevel::Info,
            Step::CloningProjectRepo,
            &format!("remote: Counting objects: {i}% (done)"),
            None,
        );
    }
    log.flush().await;
    let oec_secs = t0.elapsed().as_secs_f64();
    drop(log);
    let _ = writer.await;

    // Baseline: one INSERT (its own commit) and one PUBLISH per line.
    let t0 = Instant::now();
    for i in 0..baseline_lines {
        let line = deployments::NewLog {
            seq: 10_000_000 + i,
            level: LogLevel::Debug,
            message: format!("remote: Counting objects: {i}% (done)"),
            step: Some("cloning_project_repo"),
            data: None,
            status: DeploymentStatus::Running,
            progress_percent: 10,
        };
        let rows = deployments::insert_logs(&pool, ctx.0, std::slice::from_ref(&line)).await?;
        for row in &rows {
            let event = oec_common::lifecycle::line_event(&reference.deployment, row);
            publisher.publish(&Envelope::new(ctx.1, event)).await?;
        }
    }
    let base_secs = t0.elapsed().as_secs_f64();
    let oec_rate = lines as f64 / oec_secs;
    let base_rate = baseline_lines as f64 / base_secs;
    println!(
        "lines,seconds,lines_per_second,baseline_lines,baseline_seconds,baseline_lines_per_second,ratio"
    );
    println!(
        "{lines},{oec_secs:.3},{oec_rate:.0},{baseline_lines},{base_secs:.3},{base_rate:.0},{:.1}",
        oec_rate / base_rate
    );
    Ok(())
}

/// Latencies (µs) of `GET {api}/deployments/{id}/logs?limit=100` until `stop`.
async fn read_logs_until(
    api: String,
    token: String,
    id: Uuid,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    let client = reqwest::Client::new();
    let url = format!("{api}/deployments/{id}/logs?limit=100");
    let mut out = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let t0 = Instant::now();
        let ok = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ok {
            out.push(t0.elapsed().as_micros() as u64);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.sort_unstable();
    out
}

async fn retention(args: &[String]) -> anyhow::Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let database = arg(args, "--database").context("--database")?;
    let api = arg(args, "--api").context("--api")?;
    let token = arg(args, "--token").context("--token")?;
    let redis_url = arg(args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let rows: i64 = arg(args, "--rows")
        .unwrap_or_else(|| "5000000".into())
        .parse()?;
    let pool = oec_common::db::connect_and_migrate(&database, 10).await?;
    let (old, _) = oec_tests::bare_deployment(&pool).await?;
    let (fresh, _) = oec_tests::bare_deployment(&pool).await?;
    sqlx::query("INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message)
                 SELECT gen_random_uuid(), $1, g, now(), 'info', 'fresh line ' || g FROM generate_series(1, 1000) g")
        .bind(fresh).execute(&pool).await?;
    let t0 = Instant::now();
    let chunk = 500_000i64;
    let mut start = 0;
    while start < rows {
        let n = chunk.min(rows - start);
        sqlx::query("INSERT INTO deployment_logs (id, deployment_id, seq, timestamp, level, message)
                     SELECT gen_random_uuid(), $1, $2 + g, now() - interval '200 days', 'debug', 'old line ' || g
                     FROM generate_series(1, $3) g")
            .bind(old).bind(start).bind(n).execute(&pool).await?;
        start += n;
    }
    sqlx::query("ANALYZE deployment_logs")
        .execute(&pool)
        .await?;
    eprintln!("seeded {rows} rows in {:.1}s", t0.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_logs_until(
        api.clone(),
        token.clone(),
        fresh,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    let idle = reader.await?;

    let mut vars: std::collections::HashMap<String, String> = std::env::vars().collect();
    vars.insert("DATABASE_URL".into(), database.clone());
    vars.insert("REDIS_URL".into(), redis_url.clone());
    vars.insert("LOG_RETENTION_DAYS".into(), "90".into());
    vars.entry("OEC_JWT_SECRET".into())
        .or_insert_with(|| "bench-secret-bench-secret-bench-secret".into());
    vars.entry("OEC_SECRET_KEY".into())
        .or_insert_with(|| "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into());
    let settings = oec_common::config::Settings::from_vars(oec_common::config::Process::Api, vars)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let redis = deadpool_redis::Config::from_url(redis_url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    let deps = oec_scheduler::Deps {
        pool: pool.clone(),
        publisher: Publisher::new(redis.clone(), "bench:", 10_000),
        redis,
        settings,
        replica: "bench".into(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_logs_until(
        api.clone(),
        token.clone(),
        fresh,
        stop.clone(),
    ));
    let t0 = Instant::now();
    let summary = oec_scheduler::Job::Retention.run(&deps).await?;
    let cleanup = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let during = reader.await?;
    eprintln!("{summary}");
    println!(
        "rows,cleanup_seconds,rows_per_second,idle_requests,idle_p50_ms,idle_p99_ms,during_requests,during_p50_ms,during_p99_ms,p99_ratio_during_vs_idle"
    );
    println!(
        "{rows},{cleanup:.1},{:.0},{},{:.2},{:.2},{},{:.2},{:.2},{:.2}",
        rows as f64 / cleanup,
        idle.len(),
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        percentile(&during, 0.99) / percentile(&idle, 0.99),
    );
    Ok(())
}
