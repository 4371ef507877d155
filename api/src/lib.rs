//! oec-api: the REST API and the live event streams over PostgreSQL
//! and Redis. `main.rs` only loads settings and runs [`startup::Application`].

pub mod access;
pub mod cors;
pub mod dashboard;
pub mod errors;
pub mod extract;
pub mod hub;
pub mod listing;
pub mod login_limit;
pub mod openapi;
pub mod relay;
pub mod request_log;
pub mod routes;
pub mod sse;
pub mod startup;
pub mod state;
