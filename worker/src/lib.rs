//! oec-worker: takes deployment jobs from the Redis queue and runs the
//! pipeline against the environment's server.

pub mod log;
pub mod pipeline;
pub mod target;
