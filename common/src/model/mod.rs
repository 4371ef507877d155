//! The data model's vocabulary: closed sets (roles, kinds, statuses) and the
//! validated field types every request is parsed into.

pub mod fields;
pub mod overrides;
pub mod steps;

/// A closed set of values stored as text; `parse` is the only way in.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages: `a|b|c`.
            pub fn choices() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join("|")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// A user's role in an organization.
    OrgRole { Owner => "owner", Admin => "admin", Member => "member" }
);
text_enum!(
    /// A user's role in a project.
    ProjectRole { Admin => "admin", Member => "member", Viewer => "viewer" }
);
text_enum!(
    /// How oec logs in to a server over SSH.
    AuthMethod { Password => "password", Key => "key" }
);
text_enum!(
    /// Who an addon repository belongs to, which decides its addons_path priority.
    RepoScope { Platform => "platform", Organization => "organization", Project => "project" }
);
text_enum!(
    DnsKind { Cloudflare => "cloudflare" }
);
text_enum!(
    EnvironmentKind { Production => "production", Staging => "staging", Development => "development" }
);
text_enum!(
    EnvironmentStatus {
        Created => "created",
        Deploying => "deploying",
        Running => "running",
        Failed => "failed",
        Stopped => "stopped",
    }
);
text_enum!(
    DeploymentStatus {
        Pending => "pending",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);
text_enum!(
    /// Why a deployment was started.
    Trigger { Manual => "manual", GitPush => "git_push", Api => "api", Scheduled => "scheduled", Rollback => "rollback" }
);
text_enum!(
    LogLevel { Debug => "debug", Info => "info", Warning => "warning", Error => "error" }
);
text_enum!(
    StepStatus {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
        Skipped => "skipped",
        Warning => "warning",
    }
);

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Success | DeploymentStatus::Failed | DeploymentStatus::Cancelled
        )
    }
}
