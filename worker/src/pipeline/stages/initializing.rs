//! initializing: loads and checks the environment's configuration and its
//! server assignment. Fatal.

use std::time::Instant;

use oec_common::model::Action;
use oec_common::model::steps::Step;

use crate::pipeline::{Outcome, Run, StageError, secs};

pub async fn run(run: &mut Run) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let ctx = &run.ctx;
    let log = &run.log;
    log.info(
        Step::Initializing,
        &format!(
            "{} {} ({})",
            match ctx.action {
                Action::Deploy => "Deploying",
                Action::Stop => "Stopping",
                Action::Start => "Starting",
                Action::Restart => "Restarting",
                Action::Teardown => "Tearing down",
            },
            ctx.project_name,
            ctx.environment_name
        ),
    );
    log.info(
        Step::Initializing,
        &format!("Instance UUID: {}", ctx.environment_id),
    );
    log.info(
        Step::Initializing,
        &format!("Target server: {}", ctx.server_host),
    );
    if !(ctx.cpu_cores > 0.0 && ctx.ram_mb >= 512 && ctx.disk_gb >= 1) {
        return Err(StageError::new(format!(
            "Invalid environment resources: {} cores, {} MB RAM, {} GB disk",
            ctx.cpu_cores, ctx.ram_mb, ctx.disk_gb
        )));
    }
    let message = format!("Configuration loaded ({})", secs(t0));
    log.info(Step::Initializing, &message);
    Ok(Outcome::Completed(message))
}
