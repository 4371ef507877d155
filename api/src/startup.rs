//! Builds the HTTP server: binds the listener itself (port 0 allowed, so tests
//! start the real server on a free port), connects PostgreSQL and Redis.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use oec_common::auth::{self, TokenIssuer};
use oec_common::config::Settings;
use oec_common::db;

use crate::errors;
use crate::routes;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool =
            db::connect_and_migrate(&settings.database_url, settings.database_max_connections)
                .await?;
        let sealed = db::environments::seal_migration_sources(&pool, &settings.secret_key).await?;
        if sealed > 0 {
            tracing::info!(sealed, "encrypted migration URLs stored in plaintext");
        }
        if let Some(admin) = &settings.bootstrap_admin {
            let email =
                oec_common::model::fields::parse_email("OEC_BOOTSTRAP_ADMIN_EMAIL", &admin.email)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let hash = auth::hash_password(&admin.password)?;
            if db::users::bootstrap_admin(&pool, &email, &hash).await? {
                tracing::info!(%email, "created the first portal admin");
            }
        }
        let redis = deadpool_redis::Config::from_url(settings.redis_url.clone())
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .context("creating the Redis pool (REDIS_URL)")?;
        let publisher = oec_common::events::Publisher::new(
            redis.clone(),
            &settings.redis_prefix,
            settings.event_replay_max,
        );
        let hub = crate::hub::Hub::new(&settings.redis_url, publisher.clone(), 16_384)?;
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let max_body = settings.max_body_bytes;
        let jwt_secret = settings
            .jwt_secret
            .clone()
            .context("OEC_JWT_SECRET is required by oec-api")?;
        let (queue, checks) = AppState::queues(&settings);
        let state = web::Data::new(AppState {
            pool,
            redis,
            tokens: TokenIssuer::new(
                &jwt_secret,
                settings.access_token_ttl,
                settings.refresh_token_ttl,
            ),
            settings,
            publisher,
            hub,
            streams: Default::default(),
            replays: tokio::sync::Semaphore::new(2),
            queue,
            checks,
        });
        let server = HttpServer::new(move || {
            // Runs once on each worker thread: that thread's relay of the hub.
            let local = web::Data::new(crate::relay::LocalHub::start(
                &state.hub,
                state.settings.sse_keepalive,
            ));
            App::new()
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff")),
                )
                .wrap(actix_web::middleware::from_fn(crate::cors::middleware))
                .wrap(actix_web::middleware::from_fn(
                    crate::request_log::middleware,
                ))
                .app_data(state.clone())
                .app_data(local)
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(errors::json_error),
                )
                .app_data(web::PayloadConfig::default().limit(max_body))
                .app_data(web::PathConfig::default().error_handler(errors::path_error))
                .app_data(web::QueryConfig::default().error_handler(errors::query_error))
                .configure(routes::health::configure)
                .configure(crate::dashboard::configure)
                .service(web::scope("/api/v1").configure(routes::configure))
                .default_service(web::to(errors::not_found))
        })
        .disable_signals()
        // Events are small writes that must leave at once: no Nagle delay
        // waiting for the previous one's ACK.
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// Runs until `stop` resolves, then stops accepting connections and
    /// drains in-flight requests.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        tokio::select! {
            r = &mut server => r,
            () = stop => {
                // The server future must keep running to carry out the stop.
                let ((), r) = tokio::join!(handle.stop(true), server);
                r
            }
        }
    }
}
