pub mod reaper;
pub mod retention;
