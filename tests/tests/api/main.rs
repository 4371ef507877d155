//! Black-box tests of the API against real PostgreSQL and Redis.

mod auth;
mod bad_input;
mod crud;
mod lists;
mod openapi;
mod permissions;
mod resources;
mod routing;
mod secrets;
mod sessions;
mod streams;
