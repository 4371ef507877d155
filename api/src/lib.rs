//! oec-api: the REST API (and, later, the live event streams) over PostgreSQL
//! and Redis. `main.rs` only loads settings and runs [`startup::Application`].

pub mod access;
pub mod errors;
pub mod extract;
pub mod routes;
pub mod sse;
pub mod startup;
pub mod state;
