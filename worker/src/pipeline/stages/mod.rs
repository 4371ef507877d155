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
mod pulling_image;
pub mod starting_container;
mod verifying_dns;

use oec_common::model::steps::Step;

use super::{Outcome, Run, StageError};

pub async fn run(step: Step, run: &mut Run) -> Result<Outcome, StageError> {
    match step {
        Step::Initializing => initializing::run(run).await,
        Step::Connecting => connecting::run(run).await,
        Step::CreatingNetwork => creating_network::run(run).await,
        Step::ConfiguringDns => configuring_dns::run(run).await,
        Step::CreatingDatabase => creating_database::run(run).await,
        Step::CloningPlatformRepos => cloning::platform(run).await,
        Step::CloningOrgRepos => cloning::organization(run).await,
        Step::CloningProjectRepo => cloning::project(run).await,
        Step::PullingImage => pulling_image::run(run).await,
        Step::GeneratingConfig => generating_config::run(run).await,
        Step::StartingContainer => starting_container::run(run).await,
        Step::InstallingDependencies => installing_dependencies::run(run).await,
        Step::InitializingDatabase => initializing_database::run(run).await,
        Step::VerifyingDns => verifying_dns::run(run).await,
        Step::ConfiguringTraefik => configuring_traefik::run(run).await,
        Step::HealthCheck => health_check::run(run).await,
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
