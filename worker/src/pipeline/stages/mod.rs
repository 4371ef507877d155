//! One file per stage (the three cloning stages share `cloning.rs`).

mod cloning;
mod configuring_dns;
mod configuring_traefik;
mod connecting;
pub mod creating_database;
mod creating_network;
mod generating_config;
mod health_check;
mod initializing;
mod initializing_database;
mod installing_dependencies;
mod lifecycle;
mod pulling_image;
pub mod starting_container;
pub mod switch;
mod verifying_dns;

pub use cloning::GIT_PRELUDE;
use oec_common::model::Action;
use oec_common::model::steps::Step;

use super::{Outcome, Run, Stage, StageError};
use crate::log::StepLog;

pub async fn run(step: Step, run: &mut Run) -> Result<Outcome, StageError> {
    // The runner's own stages: they make what the later ones get.
    match step {
        Step::Initializing => return initializing::run(run).await,
        Step::Connecting => return connecting::run(run).await,
        _ => {}
    }
    let Run {
        ctx,
        pool,
        log,
        settings,
        plan,
        target,
        state,
        progress,
        ..
    } = run;
    let Some(target) = target.as_ref() else {
        return Err(StageError::new("not connected to the server"));
    };
    let mut s = Stage {
        ctx,
        pool,
        settings,
        plan,
        target,
        state,
        log: StepLog::new(log.clone(), step),
        progress,
    };
    let s = &mut s;
    match step {
        Step::Initializing | Step::Connecting => {
            Err(StageError::new("a runner stage cannot run as a later one"))
        }
        Step::CreatingNetwork => creating_network::run(s).await,
        Step::ConfiguringDns => configuring_dns::run(s).await,
        Step::CreatingDatabase => creating_database::run(s).await,
        Step::CloningPlatformRepos => cloning::platform(s).await,
        Step::CloningOrgRepos => cloning::organization(s).await,
        Step::CloningProjectRepo => cloning::project(s).await,
        Step::PullingImage => pulling_image::run(s).await,
        Step::GeneratingConfig => generating_config::run(s).await,
        Step::StartingContainer if s.ctx.action != Action::Deploy => lifecycle::start(s).await,
        Step::StartingContainer => starting_container::run(s).await,
        Step::InstallingDependencies => installing_dependencies::run(s).await,
        Step::InitializingDatabase => initializing_database::run(s).await,
        Step::VerifyingDns => verifying_dns::run(s).await,
        Step::ConfiguringTraefik => configuring_traefik::run(s).await,
        Step::HealthCheck => health_check::run(s).await,
        Step::StoppingContainer => lifecycle::stop(s).await,
        Step::RemovingEnvironment => lifecycle::teardown(s).await,
        Step::Completed => Ok(super::Outcome::Completed("Deployment completed".into())),
    }
}

/// The spec's `--restart unless-stopped`.
pub fn unless_stopped() -> bollard::models::RestartPolicy {
    bollard::models::RestartPolicy {
        name: Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED),
        maximum_retry_count: None,
    }
}

/// The spec's `--log-driver json-file --log-opt max-size=10m --log-opt max-file=3`.
pub fn json_file_logs() -> bollard::models::HostConfigLogConfig {
    bollard::models::HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(
            [("max-size", "10m"), ("max-file", "3")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
    }
}
