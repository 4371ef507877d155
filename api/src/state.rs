use oec_common::auth::TokenIssuer;
use oec_common::config::Settings;
use sqlx::PgPool;

/// What every handler can reach.
pub struct AppState {
    pub pool: PgPool,
    pub redis: deadpool_redis::Pool,
    pub tokens: TokenIssuer,
    pub settings: Settings,
}
