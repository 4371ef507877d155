//! verifying_dns: asks the configured nameservers (or the system's) for the
//! environment's A record until it points at the server, every interval up
//! to the timeout (10 s and 3 min by default). Non-fatal.

use std::time::Instant;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::pipeline::plan::server_ip;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let log = s.log.clone();
    log.info("Verifying DNS propagation before SSL...");
    let plan = s.plan;
    if plan.dns.is_none() {
        let message = format!(
            "DNS verification skipped ({}): No DNS provider configured",
            secs(t0)
        );
        log.warning(&message);
        return Ok(Outcome::Warning(message));
    }
    let host = plan.hostname.clone();
    let expected = server_ip(&s.ctx.server_host).await?;
    let settings = &s.settings.pipeline;
    let resolver = resolver(&settings.dns_nameservers)?;
    log.info(&format!(
        "Verifying DNS propagation (may take up to {})...",
        human(settings.dns_verify_timeout.as_secs())
    ));
    let deadline = tokio::time::Instant::now() + settings.dns_verify_timeout;
    loop {
        let seen = match lookup_a(&resolver, &host).await {
            Ok(ips) => ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
            Err(e) => {
                log.debug(&format!("{host}: {e}"));
                Vec::new()
            }
        };
        if seen.iter().any(|ip| *ip == expected.to_string()) {
            let message = format!("DNS verified - safe to proceed with SSL ({})", secs(t0));
            log.info(&message);
            return Ok(Outcome::Completed(message));
        }
        if !seen.is_empty() {
            log.debug(&format!(
                "{host} resolves to {} (expected {expected})",
                seen.join(", ")
            ));
        }
        if tokio::time::Instant::now() + settings.dns_verify_interval > deadline {
            break;
        }
        tokio::time::sleep(settings.dns_verify_interval).await;
    }
    let message = format!(
        "DNS verification timed out ({}) - proceeding anyway",
        secs(t0)
    );
    log.warning(&message);
    log.warning("SSL may take longer to provision");
    Ok(Outcome::Warning(message))
}

fn human(secs: u64) -> String {
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} seconds")
    }
}

/// The A records of `host`, asked of the resolver now (no cache).
pub(super) async fn lookup_a(
    resolver: &Resolver<TokioRuntimeProvider>,
    host: &str,
) -> Result<Vec<std::net::Ipv4Addr>, String> {
    let answer = resolver
        .ipv4_lookup(format!("{host}."))
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect())
}

/// The configured nameservers (`OEC_DNS_NAMESERVERS`), or the system's.
pub(super) fn resolver(
    nameservers: &[std::net::SocketAddr],
) -> Result<Resolver<TokioRuntimeProvider>, StageError> {
    let builder = if nameservers.is_empty() {
        Resolver::builder_tokio().map_err(|e| {
            StageError::new(format!(
                "Reading the system's DNS configuration failed: {e}"
            ))
        })?
    } else {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], servers),
            TokioRuntimeProvider::default(),
        )
    };
    let mut builder = builder;
    // Always ask again: the record is expected to change under us.
    builder.options_mut().cache_size = 0;
    builder
        .build()
        .map_err(|e| StageError::new(format!("DNS resolver: {e}")))
}
