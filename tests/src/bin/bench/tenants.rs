//! SSE fan-out with clients spread over organizations (issue 16).
//!
//! `oec-bench tenants --api URL --token T --orgs K --out FILE` makes K
//! organizations through the API, each with a user who is its admin, and
//! writes `org token` lines (before, and apart from, what is measured).
//!
//! `oec-bench sse-tenants --api URL --redis URL [--prefix P] --api-pid PID
//!   --tenants FILE --one FILE --clients N [--rate R] [--seconds S]
//!   [--repeat N]`: N clients as members of the K organizations of
//! `--tenants` (client `i` of organization `i % K`), events published to one
//! organization at a time (K·R events/s in turn, so each client gets R/s),
//! against the same N clients as members of the one organization of `--one`
//! at the same deliveries per second (R events/s), measured in turn in the
//! same run, `--repeat` times. It reports the api's CPU per 1,000
//! deliveries for both and their ratio (and the median ratio).
//!
//! `oec-bench sse-capacity ... --tenants FILE --clients N [--rate 1]
//!   --sources 127.0.0.2,...`: N clients on one api process over the
//! organizations of `--tenants`, R events/s each, connecting from several
//! loopback addresses (one address has ~28,000 ephemeral ports): deliveries
//! received of expected, p50/p99, api memory per client.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use oec_common::events::Publisher;
use serde_json::json;
use uuid::Uuid;

use crate::deploy::Api;
use crate::fleet::{Fleet, Target};
use crate::{arg, percentile, publish_in_turn, resolve, rss_kb};

/// An organization of the run, its admin's access token.
struct Tenant {
    org: Uuid,
    token: String,
}

/// `k` organizations through the API, each with a user who is its admin.
async fn tenants(api: &str, admin: &str, k: usize, run: &str) -> anyhow::Result<Vec<Tenant>> {
    let api = Api {
        client: reqwest::Client::new(),
        base: api.to_owned(),
        token: admin.to_owned(),
    };
    let started = Instant::now();
    let made: Vec<anyhow::Result<Tenant>> = futures_util::stream::iter(0..k)
        .map(|i| {
            let api = &api;
            async move {
                let slug = format!("t{run}-{i}");
                let org = api
                    .create("/organizations", json!({"name": slug, "slug": slug}))
                    .await?;
                let email = format!("{slug}@bench.oec");
                let user = api
                    .create(
                        "/users",
                        json!({"email": email, "name": slug, "password": "bench-password"}),
                    )
                    .await?;
                api.create(
                    &format!("/organizations/{org}/members"),
                    json!({"user_id": user, "role": "admin"}),
                )
                .await?;
                let (status, login) = api
                    .call(
                        reqwest::Method::POST,
                        "/auth/login",
                        Some(json!({"email": email, "password": "bench-password"})),
                    )
                    .await?;
                if status != 200 {
                    bail!("logging in {email}: {status} {login}");
                }
                Ok(Tenant {
                    org: org.parse()?,
                    token: login["access_token"]
                        .as_str()
                        .context("access_token")?
                        .to_owned(),
                })
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let out: Vec<Tenant> = made.into_iter().collect::<anyhow::Result<_>>()?;
    eprintln!(
        "made {k} organizations with a member each in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// CPU time (user + system) of a process so far, in milliseconds.
fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the line.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    Ok(ticks * 1000.0 / 100.0)
}

struct Row {
    clients: usize,
    orgs: usize,
    events_per_s: u64,
    expected: u64,
    received: usize,
    disconnected: u64,
    p50: f64,
    p99: f64,
    max: f64,
    cpu_ms: f64,
    kb_per_client: Option<f64>,
}

impl Row {
    fn cpu_per_1000(&self) -> f64 {
        self.cpu_ms / (self.received as f64 / 1000.0)
    }

    fn print(&self, scenario: &str) {
        println!(
            "{scenario},{},{},{},{},{},{},{:.2},{:.2},{:.2},{:.0},{:.2},{}",
            self.clients,
            self.orgs,
            self.events_per_s,
            self.expected,
            self.received,
            self.disconnected,
            self.p50,
            self.p99,
            self.max,
            self.cpu_ms,
            self.cpu_per_1000(),
            self.kb_per_client
                .map_or("n/a".into(), |k| format!("{k:.1}")),
        );
    }
}

const HEADER: &str = "scenario,clients,orgs,events_per_s,deliveries_expected,deliveries_received,disconnected,p50_ms,p99_ms,max_ms,api_cpu_ms,api_cpu_ms_per_1000_deliveries,rss_per_client_kb";

struct Setup {
    addr: String,
    publisher: Publisher,
    api_pid: u32,
    seconds: u64,
    rate: u64,
    sources: Vec<String>,
}

/// One measurement: `clients` streams over `tenants` (client `i` is a
/// member of tenant `i % len`), each getting `rate` events/s. They connect
/// in two halves: memory per client is the api's growth over the second
/// half, which no memory freed before the run (and kept by the allocator)
/// can hide.
async fn measure(s: &Setup, tenants: &[Tenant], clients: usize) -> anyhow::Result<Row> {
    let paths = std::env::temp_dir().join(format!("oec-bench-paths-{}", Uuid::new_v4()));
    let lines: Vec<String> = tenants
        .iter()
        .map(|t| format!("/api/v1/events/stream?token={}", t.token))
        .collect();
    std::fs::write(&paths, lines.join("\n"))?;
    let target = Target::SseMany {
        addr: s.addr.clone(),
        paths: paths.clone(),
        sources: s.sources.clone(),
    };
    let half = clients / 2;
    let first = Fleet::start(&target, half).await?;
    let rss_half = rss_kb(s.api_pid);
    let second = Fleet::start(&target, clients - half).await?;
    let rss = rss_kb(s.api_pid);
    let orgs: Vec<Uuid> = tenants.iter().map(|t| t.org).collect();
    // Each client gets `rate` events/s: its organization gets that many,
    // so all of them `rate × organizations` in all.
    let per_second = s.rate * orgs.len() as u64;
    let cpu0 = cpu_ms(s.api_pid)?;
    let sent = publish_in_turn(&s.publisher, &orgs, per_second, s.seconds).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu1 = cpu_ms(s.api_pid)?;
    let (mut samples, mut disconnected) = first.stop().await?;
    let (more, closed) = second.stop().await?;
    samples.extend(more);
    samples.sort_unstable();
    disconnected += closed;
    let _ = std::fs::remove_file(&paths);
    let members = |i: usize| {
        let of = |n: usize| n / orgs.len() + usize::from(i < n % orgs.len());
        (of(half) + of(clients - half)) as u64
    };
    let expected = sent.iter().enumerate().map(|(i, n)| n * members(i)).sum();
    Ok(Row {
        clients,
        orgs: orgs.len(),
        events_per_s: per_second,
        expected,
        received: samples.len(),
        disconnected,
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        max: percentile(&samples, 1.0),
        cpu_ms: cpu1 - cpu0,
        kb_per_client: match (rss_half, rss) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b) as f64 / (clients - half) as f64),
            _ => None,
        },
    })
}

async fn setup(args: &[String], rate_default: &str) -> anyhow::Result<Setup> {
    let api = arg(args, "--api").context("--api")?;
    let redis_url = arg(args, "--redis").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let prefix = arg(args, "--prefix").unwrap_or_default();
    let api_pid: u32 = arg(args, "--api-pid").context("--api-pid")?.parse()?;
    let host = api
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .context("an http:// api URL")?;
    let pool = deadpool_redis::Config::from_url(redis_url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))?;
    Ok(Setup {
        addr: resolve(host).await?,
        publisher: Publisher::new(pool, &prefix, 50_000),
        api_pid,
        seconds: arg(args, "--seconds")
            .unwrap_or_else(|| "10".into())
            .parse()?,
        rate: arg(args, "--rate")
            .unwrap_or_else(|| rate_default.into())
            .parse()?,
        sources: arg(args, "--sources")
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

/// `oec-bench tenants --api URL --token T --orgs K --out FILE`: makes the
/// organizations (not measured), one `org token` line each.
pub async fn make(args: &[String]) -> anyhow::Result<()> {
    let api = arg(args, "--api").context("--api")?;
    let admin = arg(args, "--token").context("--token")?;
    let k: usize = arg(args, "--orgs").context("--orgs")?.parse()?;
    let out = arg(args, "--out").context("--out")?;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let made = tenants(&api, &admin, k, &run).await?;
    let lines: Vec<String> = made
        .iter()
        .map(|t| format!("{} {}", t.org, t.token))
        .collect();
    std::fs::write(&out, lines.join("\n") + "\n")?;
    Ok(())
}

fn read_tenants(args: &[String], name: &str) -> anyhow::Result<Vec<Tenant>> {
    let file = arg(args, name).with_context(|| name.to_owned())?;
    std::fs::read_to_string(&file)
        .with_context(|| format!("reading {file}"))?
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (org, token) = l.split_once(' ').context("an `org token` line")?;
            Ok(Tenant {
                org: org.parse()?,
                token: token.to_owned(),
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn sse_tenants(args: &[String]) -> anyhow::Result<()> {
    let s = setup(args, "2").await?;
    let clients: usize = arg(args, "--clients")
        .unwrap_or_else(|| "10000".into())
        .parse()?;
    let repeat: usize = arg(args, "--repeat")
        .unwrap_or_else(|| "3".into())
        .parse()?;
    let spread = read_tenants(args, "--tenants")?;
    let one = read_tenants(args, "--one")?;
    println!("{HEADER}");
    // Side by side, in turn: a 2-core machine shared with the clients
    // varies from one minute to the next.
    let mut ratios = Vec::new();
    for _ in 0..repeat.max(1) {
        let single = measure(&s, &one, clients).await?;
        single.print("one_organization");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let many = measure(&s, &spread, clients).await?;
        many.print("tenants");
        let ratio = many.cpu_per_1000() / single.cpu_per_1000();
        println!("tenants_ratio_cpu_per_delivery,{ratio:.3}");
        ratios.push(ratio);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!("tenants_ratio_median,{:.3}", median(ratios));
    Ok(())
}

pub async fn sse_capacity(args: &[String]) -> anyhow::Result<()> {
    let s = setup(args, "1").await?;
    let clients: usize = arg(args, "--clients")
        .unwrap_or_else(|| "50000".into())
        .parse()?;
    let spread = read_tenants(args, "--tenants")?;
    println!("{HEADER}");
    let row = measure(&s, &spread, clients).await?;
    row.print("capacity");
    Ok(())
}
