//! oec-worker: takes deployment jobs from the Redis queue and runs the
//! pipeline against the environment's server.

pub mod dependencies;
pub mod log;
pub use oec_common::names;
pub mod odoo_conf;
pub mod pipeline;
pub mod probe;
pub mod proxy;
pub mod resources;
pub mod servers;
pub mod target;
