//! The deployment pipeline's stages, in the spec's order, with their display
//! names, descriptions and whether a failure ends the deployment.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Initializing,
    Connecting,
    CreatingNetwork,
    ConfiguringDns,
    CreatingDatabase,
    CloningPlatformRepos,
    CloningOrgRepos,
    CloningProjectRepo,
    PullingImage,
    GeneratingConfig,
    StartingContainer,
    InstallingDependencies,
    InitializingDatabase,
    VerifyingDns,
    ConfiguringTraefik,
    HealthCheck,
    StoppingContainer,
    RemovingEnvironment,
    Completed,
}

/// (step, id, name, description, fatal)
const TABLE: [(Step, &str, &str, &str, bool); 19] = [
    (
        Step::Initializing,
        "initializing",
        "Initializing",
        "Preparing deployment configuration",
        true,
    ),
    (
        Step::Connecting,
        "connecting",
        "Connecting",
        "Establishing SSH connection to the server",
        true,
    ),
    (
        Step::CreatingNetwork,
        "creating_network",
        "Creating Network",
        "Setting up the isolated Docker network",
        true,
    ),
    (
        Step::ConfiguringDns,
        "configuring_dns",
        "Configuring DNS",
        "Creating the DNS record early for propagation",
        false,
    ),
    (
        Step::CreatingDatabase,
        "creating_database",
        "Creating Database",
        "Starting PostgreSQL and PgBouncer",
        true,
    ),
    (
        Step::CloningPlatformRepos,
        "cloning_platform_repos",
        "Cloning Platform Repos",
        "Cloning platform addon repositories",
        false,
    ),
    (
        Step::CloningOrgRepos,
        "cloning_org_repos",
        "Cloning Organization Repos",
        "Cloning organization addon repositories",
        false,
    ),
    (
        Step::CloningProjectRepo,
        "cloning_project_repo",
        "Cloning Project Repository",
        "Cloning the project repository",
        true,
    ),
    (
        Step::PullingImage,
        "pulling_image",
        "Pulling Image",
        "Downloading Odoo Docker image",
        true,
    ),
    (
        Step::GeneratingConfig,
        "generating_config",
        "Generating Config",
        "Creating odoo.conf",
        true,
    ),
    (
        Step::StartingContainer,
        "starting_container",
        "Starting Container",
        "Launching Odoo container",
        true,
    ),
    (
        Step::InstallingDependencies,
        "installing_dependencies",
        "Installing Dependencies",
        "Installing apt.txt and requirements.txt",
        false,
    ),
    (
        Step::InitializingDatabase,
        "initializing_database",
        "Initializing Database",
        "Initializing or restoring the Odoo database",
        true,
    ),
    (
        Step::VerifyingDns,
        "verifying_dns",
        "Verifying DNS",
        "Checking DNS propagation before SSL",
        false,
    ),
    (
        Step::ConfiguringTraefik,
        "configuring_traefik",
        "Configuring Traefik",
        "Configuring HTTP routing and SSL",
        true,
    ),
    (
        Step::HealthCheck,
        "health_check",
        "Health Check",
        "Verifying the environment responds",
        false,
    ),
    (
        Step::StoppingContainer,
        "stopping_container",
        "Stopping Container",
        "Stopping the environment's containers",
        true,
    ),
    (
        Step::RemovingEnvironment,
        "removing_environment",
        "Removing Environment",
        "Removing containers, network, DNS record and files",
        true,
    ),
    (
        Step::Completed,
        "completed",
        "Completed",
        "Finalizing the deployment",
        true,
    ),
];

impl Step {
    /// The 16 pipeline stages, in order (without `Completed`).
    pub const PIPELINE: [Step; 16] = [
        Step::Initializing,
        Step::Connecting,
        Step::CreatingNetwork,
        Step::ConfiguringDns,
        Step::CreatingDatabase,
        Step::CloningPlatformRepos,
        Step::CloningOrgRepos,
        Step::CloningProjectRepo,
        Step::PullingImage,
        Step::GeneratingConfig,
        Step::StartingContainer,
        Step::InstallingDependencies,
        Step::InitializingDatabase,
        Step::VerifyingDns,
        Step::ConfiguringTraefik,
        Step::HealthCheck,
    ];

    fn row(self) -> &'static (Step, &'static str, &'static str, &'static str, bool) {
        // TABLE is in declaration order, so the discriminant is the index.
        &TABLE[self as usize]
    }

    pub fn id(self) -> &'static str {
        self.row().1
    }

    pub fn name(self) -> &'static str {
        self.row().2
    }

    pub fn description(self) -> &'static str {
        self.row().3
    }

    /// Whether a failure of this stage ends the deployment (the spec's
    /// non-fatal stages log a warning and the pipeline goes on).
    pub fn fatal(self) -> bool {
        self.row().4
    }

    pub fn parse(id: &str) -> Option<Step> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// Position in the pipeline, 0-based.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Progress percent after `finished` of the 16 stages.
pub fn progress_percent(finished: usize) -> i32 {
    percent_of(finished, 16)
}

/// Progress percent after `finished` of `total` stages.
pub fn percent_of(finished: usize, total: usize) -> i32 {
    ((finished.min(total) * 100) / total.max(1)) as i32
}

impl crate::model::Action {
    /// The stages a run of this action goes through, in order.
    pub fn steps(self) -> &'static [Step] {
        use crate::model::Action;
        match self {
            Action::Deploy => &Step::PIPELINE,
            Action::Stop => &[
                Step::Initializing,
                Step::Connecting,
                Step::StoppingContainer,
            ],
            Action::Start => &[
                Step::Initializing,
                Step::Connecting,
                Step::StartingContainer,
                Step::HealthCheck,
            ],
            Action::Restart => &[
                Step::Initializing,
                Step::Connecting,
                Step::StoppingContainer,
                Step::StartingContainer,
                Step::HealthCheck,
            ],
            Action::Teardown => &[
                Step::Initializing,
                Step::Connecting,
                Step::RemovingEnvironment,
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_pipeline_order_and_round_trips() {
        for (i, s) in Step::PIPELINE.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert_eq!(Step::parse(s.id()), Some(*s));
        }
        assert_eq!(Step::Completed.id(), "completed");
        assert_eq!(
            Step::parse("stopping_container"),
            Some(Step::StoppingContainer)
        );
        assert_eq!(
            Step::parse("removing_environment"),
            Some(Step::RemovingEnvironment)
        );
        let non_fatal: Vec<_> = Step::PIPELINE
            .iter()
            .filter(|s| !s.fatal())
            .map(|s| s.id())
            .collect();
        assert_eq!(
            non_fatal,
            [
                "configuring_dns",
                "cloning_platform_repos",
                "cloning_org_repos",
                "installing_dependencies",
                "verifying_dns",
                "health_check"
            ]
        );
    }

    #[test]
    fn progress_is_finished_stages_over_sixteen() {
        assert_eq!(progress_percent(0), 0);
        assert_eq!(progress_percent(8), 50);
        assert_eq!(progress_percent(12), 75);
        assert_eq!(progress_percent(16), 100);
    }
}
