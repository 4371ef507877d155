//! One typed [`Settings`], loaded from the environment and validated at start.
//!
//! Every variable is documented in the README. A missing or malformed value
//! stops the process with one message naming every bad variable.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr as _;
use std::time::Duration;

use base64::Engine as _;

use crate::secrets::SecretKey;

pub use crate::telemetry::LogFormat;

/// The first portal admin, created at api start when no user exists yet.
#[derive(Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: String,
}

impl fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapAdmin")
            .field("email", &self.email)
            .field("password", &"***")
            .finish()
    }
}

/// The process reading its settings: each requires only what it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Api,
    Worker,
    Scheduler,
}

impl Process {
    pub fn name(self) -> &'static str {
        match self {
            Process::Api => "oec-api",
            Process::Worker => "oec-worker",
            Process::Scheduler => "oec-scheduler",
        }
    }
}

#[derive(Clone)]
pub struct Settings {
    pub database_url: String,
    pub database_max_connections: u32,
    pub redis_url: String,
    /// Prefix of every Redis key and channel; empty by default, so the events
    /// channel is exactly `sse:events`.
    pub redis_prefix: String,
    pub bind: SocketAddr,
    /// The worker's and the scheduler's `/metrics` listener (off when unset;
    /// the api serves `/metrics` on `OEC_BIND`).
    pub metrics_bind: Option<SocketAddr>,
    /// Origins a browser may call the api from (CORS); none by default.
    pub cors_origins: Vec<String>,
    /// The tokens' signing secret: required by the api only (the worker
    /// and the scheduler never see a token).
    pub jwt_secret: Option<String>,
    pub secret_key: SecretKey,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// Days deployment logs are kept; 0 keeps them forever.
    pub log_retention_days: u32,
    pub allow_file_repos: bool,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    /// Deployments one worker process runs at once.
    pub worker_concurrency: usize,
    /// How long a stopping worker lets running deployments finish.
    pub worker_grace: Duration,
    /// How often a worker heartbeats each deployment it runs (and notices a
    /// cancel request).
    pub heartbeat_interval: Duration,
    /// The longest one pipeline stage may take.
    pub stage_timeout: Duration,
    /// Where environments live on a server: `{root}/{uuid}/...`.
    pub deploy_root: String,
    /// Events kept in Redis for clients that reconnect.
    pub event_replay_max: usize,
    /// Interval of the `: keepalive` comment on SSE streams.
    pub sse_keepalive: Duration,
    /// Event streams one user may hold open on one api process.
    pub sse_max_streams_per_user: usize,
    /// Event streams one client address may hold open on one api process.
    pub sse_max_streams_per_ip: usize,
    /// Cron schedule (seconds first) of the log-retention job, parsed once.
    pub retention_schedule: cron::Schedule,
    /// Cron schedule of the stuck-deployment reaper.
    pub reaper_schedule: cron::Schedule,
    /// The timezone cron schedules are evaluated in.
    pub scheduler_timezone: chrono_tz::Tz,
    /// Log rows deleted per retention batch (each its own transaction).
    pub retention_batch_size: i64,
    /// Also delete the steps of deployments whose logs are all gone.
    pub retention_delete_steps: bool,
    /// Pause between retention batches, so the cleanup yields to live reads.
    pub retention_pause: Duration,
    /// A running deployment without a heartbeat this long is failed.
    pub reaper_stale_after: Duration,
    /// A pending deployment not picked up this long is re-enqueued (once),
    /// then failed.
    pub reaper_pending_after: Duration,
    /// The queue's records of finished jobs older than this are removed by
    /// the retention job.
    pub queue_keep_finished: Duration,
    /// What the worker's pipeline deploys with.
    pub pipeline: PipelineSettings,
    /// How far the environments of a server may exceed what its last check
    /// found: CPU cores (`OEC_CPU_OVERCOMMIT`, default 2.0) and memory
    /// (`OEC_RAM_OVERCOMMIT`, default 1.0).
    pub cpu_overcommit: f64,
    pub ram_overcommit: f64,
    /// A server check fails when less memory is available
    /// (`OEC_SERVER_MIN_FREE_MEMORY_MB`, default 1024) or less disk is
    /// free under the deploy root (`OEC_SERVER_MIN_FREE_DISK_MB`, 5120).
    pub server_min_free_memory_mb: u64,
    pub server_min_free_disk_mb: u64,
}

/// The edge proxy oec runs on every server (`oec-traefik`) and how the
/// pipeline checks what it serves.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Traefik v3 image (`OEC_PROXY_IMAGE`, default `traefik:v3`).
    pub image: String,
    /// ACME directory of the `letsencrypt` resolver (`OEC_ACME_DIRECTORY`,
    /// default Let's Encrypt production).
    pub acme_directory: String,
    /// Contact of the ACME account (`OEC_ACME_EMAIL`; none by default).
    pub acme_email: Option<String>,
    /// PEM certificates the proxy trusts for the ACME directory's own TLS
    /// (`OEC_ACME_CA_CERTIFICATES`, a file read at start; a private CA only).
    pub acme_ca_pem: Option<String>,
    /// PEM roots the health check trusts besides the public ones when it
    /// verifies an environment's certificate (`OEC_ACME_ROOTS`, a file read
    /// at start; a private CA only).
    pub acme_roots_pem: Option<String>,
    /// How long `configuring_traefik` waits for the proxy to route the
    /// environment (`OEC_ROUTE_TIMEOUT_SECS`, default 60).
    pub route_timeout: Duration,
    /// How long `health_check` waits for the public URL to answer with an
    /// issued certificate (`OEC_CERTIFICATE_TIMEOUT_SECS`, default 60).
    pub certificate_timeout: Duration,
}

/// The worker pipeline's knobs (images, DNS, timeouts, cleanup).
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Domain of environments when the organization has no DNS provider.
    pub apps_domain: String,
    /// PostgreSQL 15 image (the official image's interface).
    pub postgres_image: String,
    /// PgBouncer image (edoburu/pgbouncer's environment interface).
    pub pgbouncer_image: String,
    /// Base URL of Cloudflare's v4 API.
    pub cloudflare_api_url: String,
    /// Nameservers DNS verification asks; empty: the system's resolvers.
    pub dns_nameservers: Vec<SocketAddr>,
    pub dns_verify_timeout: Duration,
    pub dns_verify_interval: Duration,
    /// Readiness polls of PostgreSQL, one second apart.
    pub db_ready_tries: u32,
    /// How long the health check polls `/web/health`.
    pub health_timeout: Duration,
    /// Keep what a failed first deployment created, for debugging.
    pub keep_failed: bool,
    /// How long a redeploy lets the previous container finish its requests
    /// once the proxy stopped sending it new ones (`OEC_DRAIN_SECS`).
    pub drain: Duration,
    /// Snapshots kept per environment (`OEC_SNAPSHOT_KEEP`, the newest).
    pub snapshot_keep: u32,
    pub proxy: ProxySettings,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field(
                "database_url",
                &crate::secrets::mask_url(&self.database_url),
            )
            .field("redis_url", &crate::secrets::mask_url(&self.redis_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("bind", &self.bind)
            .field("metrics_bind", &self.metrics_bind)
            .field("cors_origins", &self.cors_origins)
            .field("log_retention_days", &self.log_retention_days)
            .finish_non_exhaustive()
    }
}

/// Every bad variable at once, so an operator fixes them in one go.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Reads the process environment.
    pub fn from_env(process: Process) -> Result<Self, ConfigError> {
        Self::from_vars(process, std::env::vars().collect())
    }

    /// Reads the process environment, or stops the process (exit code 2) with
    /// one message naming every bad variable, and installs logging.
    pub fn load_or_exit(process: Process) -> Self {
        match Self::from_env(process) {
            Ok(s) => {
                crate::telemetry::init(s.log_format);
                s
            }
            Err(e) => {
                eprintln!("{}: {e}", process.name());
                std::process::exit(2);
            }
        }
    }

    /// Reads the given variables (the process environment in production),
    /// requiring what `process` uses.
    pub fn from_vars(process: Process, vars: HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut r = Reader {
            vars,
            errors: Vec::new(),
        };
        let database_url = r.required("DATABASE_URL", |v| {
            if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                Ok(v.to_owned())
            } else {
                Err("must be a postgres:// URL".into())
            }
        });
        let database_max_connections =
            r.optional("OEC_DB_MAX_CONNECTIONS", 10, |v| parse_range(v, 1, 1000));
        let redis_url = r.required("REDIS_URL", |v| {
            if v.starts_with("redis://") || v.starts_with("rediss://") {
                Ok(v.to_owned())
            } else {
                Err("must be a redis:// URL".into())
            }
        });
        let redis_prefix = r.optional("OEC_REDIS_PREFIX", String::new(), |v| {
            if v.chars().all(|c| c.is_ascii_graphic()) {
                Ok(v.to_owned())
            } else {
                Err("must be printable ASCII without spaces".into())
            }
        });
        let bind = r.optional("OEC_BIND", SocketAddr::from(([127, 0, 0, 1], 8080)), |v| {
            v.parse()
                .map_err(|_| "must be host:port, e.g. 0.0.0.0:8080".into())
        });
        let metrics_bind = r.optional("OEC_METRICS_BIND", None, |v| {
            v.parse()
                .map(Some)
                .map_err(|_| "must be host:port, e.g. 0.0.0.0:9100".into())
        });
        let cors_origins = r.optional("OEC_CORS_ORIGINS", Vec::new(), |v| {
            v.split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    let bare = o.strip_suffix('/').unwrap_or(o);
                    let ok = bare.split_once("://").is_some_and(|(scheme, host)| {
                        matches!(scheme, "http" | "https")
                            && !host.is_empty()
                            && !host.contains(['/', '?', '#', ' '])
                    });
                    if ok {
                        Ok(bare.to_ascii_lowercase())
                    } else {
                        Err(format!(
                            "{o:?} is not an origin such as https://dashboard.example.com"
                        ))
                    }
                })
                .collect()
        });
        let jwt = |v: &str| -> Result<String, String> {
            if v.len() >= 32 {
                Ok(v.to_owned())
            } else {
                Err("must be at least 32 characters".into())
            }
        };
        let jwt_secret = match process {
            Process::Api => r.required("OEC_JWT_SECRET", jwt),
            Process::Worker | Process::Scheduler => None,
        };
        let secret_key = r.required("OEC_SECRET_KEY", |v| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .map_err(|_| "must be base64 (e.g. `openssl rand -base64 32`)".to_owned())?;
            SecretKey::from_bytes(&bytes)
                .ok_or_else(|| format!("must decode to 32 bytes, got {}", bytes.len()))
        });
        let access_token_ttl =
            r.optional("OEC_ACCESS_TOKEN_TTL_SECS", Duration::from_secs(900), |v| {
                parse_range(v, 10, 86_400).map(|n| Duration::from_secs(n.into()))
            });
        let refresh_token_ttl = r.optional(
            "OEC_REFRESH_TOKEN_TTL_SECS",
            Duration::from_secs(30 * 86_400),
            |v| parse_range(v, 60, 365 * 86_400).map(|n| Duration::from_secs(n.into())),
        );
        let email = r.optional("OEC_BOOTSTRAP_ADMIN_EMAIL", None, |v| {
            Ok(Some(v.to_owned()))
        });
        let password = r.optional("OEC_BOOTSTRAP_ADMIN_PASSWORD", None, |v| {
            crate::model::fields::parse_password("OEC_BOOTSTRAP_ADMIN_PASSWORD", v)
                .map(Some)
                .map_err(|e| e.message)
        });
        let bootstrap_admin = match (email, password) {
            (Some(email), Some(password)) => Some(BootstrapAdmin { email, password }),
            (None, None) => None,
            _ => {
                r.errors.push(
                    "OEC_BOOTSTRAP_ADMIN_EMAIL and OEC_BOOTSTRAP_ADMIN_PASSWORD: set both or neither"
                        .into(),
                );
                None
            }
        };
        let log_retention_days =
            r.optional("LOG_RETENTION_DAYS", 90, |v| parse_range(v, 0, 36_500));
        let allow_file_repos = r.optional("OEC_ALLOW_FILE_REPOS", false, parse_bool);
        let max_body_bytes = r.optional("OEC_MAX_BODY_BYTES", 1 << 20, |v| {
            parse_range(v, 1024, 64 << 20).map(|n| n as usize)
        });
        let log_format = r.optional("OEC_LOG_FORMAT", LogFormat::Pretty, |v| match v {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be `pretty` or `json`".into()),
        });

        let worker_concurrency =
            r.optional("OEC_WORKER_CONCURRENCY", 4, |v| parse_range(v, 1, 256)) as usize;
        let worker_grace = r.optional("OEC_WORKER_GRACE_SECS", Duration::from_secs(60), |v| {
            parse_range(v, 0, 3600).map(|n| Duration::from_secs(n.into()))
        });
        let heartbeat_interval = r.optional("OEC_HEARTBEAT_MS", Duration::from_millis(1000), |v| {
            parse_range(v, 100, 60_000).map(|n| Duration::from_millis(n.into()))
        });
        let stage_timeout = r.optional("OEC_STAGE_TIMEOUT_SECS", Duration::from_secs(900), |v| {
            parse_range(v, 1, 86_400).map(|n| Duration::from_secs(n.into()))
        });
        let deploy_root = r.optional("OEC_DEPLOY_ROOT", "/opt/paasportal".to_owned(), |v| {
            if v.starts_with('/')
                && v.len() > 1
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
            {
                Ok(v.trim_end_matches('/').to_owned())
            } else {
                Err("must be an absolute path of letters, digits, '/', '.', '_' and '-'".into())
            }
        });
        let event_replay_max = r.optional("OEC_EVENT_REPLAY_MAX", 50_000, |v| {
            parse_range(v, 10_000, 10_000_000)
        }) as usize;
        let sse_keepalive = r.optional("OEC_SSE_KEEPALIVE_SECS", Duration::from_secs(30), |v| {
            parse_range(v, 1, 3600).map(|n| Duration::from_secs(n.into()))
        });
        let sse_max_streams_per_user = r.optional("OEC_SSE_MAX_STREAMS_PER_USER", 32, |v| {
            parse_range(v, 1, 100_000)
        }) as usize;
        let sse_max_streams_per_ip = r.optional("OEC_SSE_MAX_STREAMS_PER_IP", 20_000, |v| {
            parse_range(v, 1, 1_000_000)
        }) as usize;

        let schedule = |v: &str| -> Result<cron::Schedule, String> {
            cron::Schedule::from_str(v).map_err(|e| {
                format!("must be a cron expression with seconds first, e.g. \"0 0 3 * * *\" ({e})")
            })
        };
        let default_schedule = |cron: &str| cron::Schedule::from_str(cron).ok();
        let retention_schedule = r
            .optional("OEC_RETENTION_SCHEDULE", None, |v| schedule(v).map(Some))
            .or_else(|| default_schedule("0 0 3 * * *"));
        let reaper_schedule = r
            .optional("OEC_REAPER_SCHEDULE", None, |v| schedule(v).map(Some))
            .or_else(|| default_schedule("0 * * * * *"));
        let scheduler_timezone = r.optional("OEC_SCHEDULER_TZ", chrono_tz::UTC, |v| {
            v.parse::<chrono_tz::Tz>()
                .map_err(|_| "must be an IANA timezone such as UTC or Europe/Paris".into())
        });
        let retention_batch_size = i64::from(r.optional("OEC_RETENTION_BATCH_SIZE", 1000, |v| {
            parse_range(v, 1, 1_000_000)
        }));
        let retention_delete_steps = r.optional("OEC_RETENTION_DELETE_STEPS", false, parse_bool);
        let retention_pause =
            r.optional("OEC_RETENTION_PAUSE_MS", Duration::from_millis(10), |v| {
                parse_range(v, 0, 60_000).map(|n| Duration::from_millis(n.into()))
            });
        let reaper_stale_after =
            r.optional("OEC_REAPER_STALE_SECS", Duration::from_secs(120), |v| {
                parse_range(v, 1, 86_400).map(|n| Duration::from_secs(n.into()))
            });
        let reaper_pending_after =
            r.optional("OEC_REAPER_PENDING_SECS", Duration::from_secs(120), |v| {
                parse_range(v, 1, 86_400).map(|n| Duration::from_secs(n.into()))
            });
        let queue_keep_finished = r.optional(
            "OEC_QUEUE_KEEP_FINISHED_SECS",
            Duration::from_secs(86_400),
            |v| parse_range(v, 0, 31_536_000).map(|n| Duration::from_secs(n.into())),
        );

        let image = |v: &str| -> Result<String, String> {
            crate::model::fields::parse_image("image", v)
                .map(|i| i.as_str().to_owned())
                .map_err(|_| "must be an image reference such as postgres:15".into())
        };
        let secs = |lo: u64, hi: u64| {
            move |v: &str| parse_range(v, lo, hi).map(|n| Duration::from_secs(n.into()))
        };
        let pipeline = PipelineSettings {
            apps_domain: r.optional("OEC_APPS_DOMAIN", "oec.localhost".to_owned(), |v| {
                if crate::model::fields::parse_domain("OEC_APPS_DOMAIN", v).is_ok() {
                    Ok(v.to_ascii_lowercase())
                } else {
                    Err("must be a domain name such as apps.example.com".into())
                }
            }),
            postgres_image: r.optional("OEC_POSTGRES_IMAGE", "postgres:15".to_owned(), image),
            pgbouncer_image: r.optional(
                "OEC_PGBOUNCER_IMAGE",
                "edoburu/pgbouncer:latest".to_owned(),
                image,
            ),
            cloudflare_api_url: r.optional(
                "OEC_CLOUDFLARE_API_URL",
                "https://api.cloudflare.com/client/v4".to_owned(),
                |v| {
                    if v.starts_with("https://") || v.starts_with("http://") {
                        Ok(v.trim_end_matches('/').to_owned())
                    } else {
                        Err("must be an http(s) URL".into())
                    }
                },
            ),
            dns_nameservers: r.optional("OEC_DNS_NAMESERVERS", Vec::new(), |v| {
                v.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        let s = s.trim();
                        s.parse::<SocketAddr>()
                            .or_else(|_| {
                                s.parse::<std::net::IpAddr>()
                                    .map(|ip| SocketAddr::new(ip, 53))
                            })
                            .map_err(|_| format!("`{s}` is not an IP or IP:port"))
                    })
                    .collect()
            }),
            dns_verify_timeout: r.optional(
                "OEC_DNS_VERIFY_TIMEOUT_SECS",
                Duration::from_secs(180),
                secs(0, 3600),
            ),
            dns_verify_interval: r.optional(
                "OEC_DNS_VERIFY_INTERVAL_SECS",
                Duration::from_secs(10),
                secs(1, 600),
            ),
            db_ready_tries: r.optional("OEC_DB_READY_TRIES", 30, |v| parse_range(v, 1, 600)),
            health_timeout: r.optional(
                "OEC_HEALTH_TIMEOUT_SECS",
                Duration::from_secs(120),
                secs(1, 3600),
            ),
            keep_failed: r.optional("OEC_KEEP_FAILED", false, parse_bool),
            drain: r.optional("OEC_DRAIN_SECS", Duration::from_secs(10), secs(0, 600)),
            snapshot_keep: r.optional("OEC_SNAPSHOT_KEEP", 3, |v| parse_range(v, 1, 100)),
            proxy: ProxySettings {
                image: r.optional("OEC_PROXY_IMAGE", "traefik:v3".to_owned(), image),
                acme_directory: r.optional(
                    "OEC_ACME_DIRECTORY",
                    "https://acme-v02.api.letsencrypt.org/directory".to_owned(),
                    |v| {
                        if v.starts_with("https://") && !v.contains(char::is_whitespace) {
                            Ok(v.to_owned())
                        } else {
                            Err("must be an https:// URL".into())
                        }
                    },
                ),
                acme_email: r.optional("OEC_ACME_EMAIL", None, |v| {
                    let ok = v.len() <= 254
                        && v.split_once('@').is_some_and(|(user, domain)| {
                            !user.is_empty()
                                && crate::model::fields::parse_domain("domain", domain).is_ok()
                        })
                        && v.chars().all(|c| c.is_ascii_graphic());
                    if ok {
                        Ok(Some(v.to_owned()))
                    } else {
                        Err("must be an email address".into())
                    }
                }),
                acme_ca_pem: r.optional("OEC_ACME_CA_CERTIFICATES", None, pem_file),
                acme_roots_pem: r.optional("OEC_ACME_ROOTS", None, pem_file),
                route_timeout: r.optional(
                    "OEC_ROUTE_TIMEOUT_SECS",
                    Duration::from_secs(60),
                    secs(1, 3600),
                ),
                certificate_timeout: r.optional(
                    "OEC_CERTIFICATE_TIMEOUT_SECS",
                    Duration::from_secs(60),
                    secs(0, 3600),
                ),
            },
        };
        let overcommit = |v: &str| match v.trim().parse::<f64>() {
            Ok(f) if (0.1..=100.0).contains(&f) => Ok(f),
            _ => Err("must be a number from 0.1 to 100".to_owned()),
        };
        let cpu_overcommit = r.optional("OEC_CPU_OVERCOMMIT", 2.0, overcommit);
        let ram_overcommit = r.optional("OEC_RAM_OVERCOMMIT", 1.0, overcommit);
        let server_min_free_memory_mb = r.optional("OEC_SERVER_MIN_FREE_MEMORY_MB", 1024, |v| {
            parse_range(v, 0, 1 << 30).map(u64::from)
        });
        let server_min_free_disk_mb = r.optional("OEC_SERVER_MIN_FREE_DISK_MB", 5120, |v| {
            parse_range(v, 0, 1 << 30).map(u64::from)
        });

        if !r.errors.is_empty() {
            return Err(ConfigError(r.errors));
        }
        // Every `required` value is present when no error was recorded.
        let (
            Some(database_url),
            Some(redis_url),
            Some(secret_key),
            Some(retention_schedule),
            Some(reaper_schedule),
        ) = (
            database_url,
            redis_url,
            secret_key,
            retention_schedule,
            reaper_schedule,
        )
        else {
            return Err(ConfigError(vec!["required variable missing".into()]));
        };
        Ok(Settings {
            database_url,
            database_max_connections,
            redis_url,
            redis_prefix,
            bind,
            metrics_bind,
            cors_origins,
            jwt_secret,
            secret_key,
            access_token_ttl,
            refresh_token_ttl,
            bootstrap_admin,
            log_retention_days,
            allow_file_repos,
            max_body_bytes,
            log_format,
            worker_concurrency,
            worker_grace,
            heartbeat_interval,
            stage_timeout,
            deploy_root,
            event_replay_max,
            sse_keepalive,
            sse_max_streams_per_user,
            sse_max_streams_per_ip,
            retention_schedule,
            reaper_schedule,
            scheduler_timezone,
            retention_batch_size,
            retention_delete_steps,
            retention_pause,
            reaper_stale_after,
            reaper_pending_after,
            queue_keep_finished,
            pipeline,
            cpu_overcommit,
            ram_overcommit,
            server_min_free_memory_mb,
            server_min_free_disk_mb,
        })
    }

    /// A Redis key or channel name under the configured prefix.
    pub fn redis_key(&self, name: &str) -> String {
        format!("{}{}", self.redis_prefix, name)
    }
}

struct Reader {
    vars: HashMap<String, String>,
    errors: Vec<String>,
}

impl Reader {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn required<T>(&mut self, name: &str, parse: impl Fn(&str) -> Result<T, String>) -> Option<T> {
        match self.get(name) {
            None => {
                self.errors.push(format!("{name}: missing"));
                None
            }
            Some(v) => match parse(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.errors.push(format!("{name}: {e}"));
                    None
                }
            },
        }
    }

    fn optional<T>(
        &mut self,
        name: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        match self.get(name) {
            None => default,
            Some(v) => match parse(v) {
                Ok(t) => t,
                Err(e) => {
                    self.errors.push(format!("{name}: {e}"));
                    default
                }
            },
        }
    }
}

fn parse_range(v: &str, min: u64, max: u64) -> Result<u32, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => u32::try_from(n).map_err(|_| "too large".into()),
        _ => Err(format!("must be an integer from {min} to {max}")),
    }
}

/// A file of PEM certificates, read now (so a typo stops the process at
/// start, not at the first deployment).
fn pem_file(path: &str) -> Result<Option<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if text.contains("-----BEGIN CERTIFICATE-----") {
        Ok(Some(text))
    } else {
        Err(format!("{path} holds no PEM certificate"))
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("must be 1 or 0".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

    /// The api's required variables and `extra`.
    fn api_vars(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut v = vars(&[
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("OEC_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("OEC_SECRET_KEY", KEY),
        ]);
        v.extend(vars(extra));
        v
    }

    #[test]
    fn every_bad_variable_is_named_at_once() {
        let err = Settings::from_vars(
            Process::Api,
            vars(&[
                ("REDIS_URL", "http://x"),
                ("OEC_SECRET_KEY", "c2hvcnQ="),
                ("OEC_BIND", "nope"),
                ("LOG_RETENTION_DAYS", "-1"),
            ]),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for name in [
            "DATABASE_URL: missing",
            "REDIS_URL",
            "OEC_JWT_SECRET: missing",
            "OEC_SECRET_KEY: must decode to 32 bytes",
            "OEC_BIND",
            "LOG_RETENTION_DAYS",
        ] {
            assert!(err.contains(name), "{name} not in {err}");
        }
    }

    #[test]
    fn defaults_apply_when_only_required_values_are_set() {
        let s = Settings::from_vars(Process::Api, api_vars(&[])).expect("valid settings");
        assert_eq!(s.redis_key("sse:events"), "sse:events");
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.log_retention_days, 90);
        assert!(!s.allow_file_repos);
        assert!(s.bootstrap_admin.is_none());
    }

    #[test]
    fn cors_origins_and_the_metrics_listener_are_parsed_or_refused() {
        let s = Settings::from_vars(
            Process::Api,
            api_vars(&[
                (
                    "OEC_CORS_ORIGINS",
                    " https://Dash.example.com/, http://localhost:5173 ,",
                ),
                ("OEC_METRICS_BIND", "0.0.0.0:9100"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            s.cors_origins,
            ["https://dash.example.com", "http://localhost:5173"]
        );
        assert_eq!(s.metrics_bind, Some(SocketAddr::from(([0, 0, 0, 0], 9100))));
        let d = Settings::from_vars(Process::Api, api_vars(&[])).expect("valid");
        assert!(d.cors_origins.is_empty() && d.metrics_bind.is_none());
        for bad in [
            "*",
            "dash.example.com",
            "https://x.test/path",
            "ftp://x.test",
            "https://",
        ] {
            let err = Settings::from_vars(Process::Api, api_vars(&[("OEC_CORS_ORIGINS", bad)]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("OEC_CORS_ORIGINS"), "{bad}: {err}");
        }
    }

    #[test]
    fn only_the_api_needs_the_jwt_secret() {
        let mut base = api_vars(&[("OEC_REAPER_SCHEDULE", "0 */5 * * * *")]);
        base.remove("OEC_JWT_SECRET");
        for process in [Process::Worker, Process::Scheduler] {
            let s = Settings::from_vars(process, base.clone()).expect("valid without a JWT secret");
            assert!(s.jwt_secret.is_none());
            // Parsed once, here: the scheduler gets a Schedule, not a string.
            assert_eq!(s.reaper_schedule.to_string(), "0 */5 * * * *");
            assert_eq!(s.scheduler_timezone, chrono_tz::UTC);
        }
        let err = Settings::from_vars(Process::Api, base)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("OEC_JWT_SECRET: missing"), "{err}");
    }

    #[test]
    fn bootstrap_admin_needs_both_values() {
        let err = Settings::from_vars(
            Process::Api,
            api_vars(&[("OEC_BOOTSTRAP_ADMIN_EMAIL", "a@b.c")]),
        );
        assert!(err.is_err());
    }
}
