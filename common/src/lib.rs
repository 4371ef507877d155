//! The vocabulary every oec process shares: configuration, the data model,
//! database access, authentication and permissions, secrets.
//!
//! Invariants: no HTTP here, and all SQL of the project lives in [`db`].

pub mod auth;
pub mod config;
pub mod db;
pub mod events;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod names;
pub mod queue;
pub mod secrets;
pub mod shutdown;
pub mod telemetry;
