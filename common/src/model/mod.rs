//! The data model's vocabulary: closed sets (roles, kinds, statuses) and the
//! validated field types every request is parsed into.

pub mod fields;
pub mod ids;
pub mod overrides;
pub mod steps;

/// A closed set of values stored as text; `parse` is the only way in.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
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

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(format!("unknown {} {s:?}, expected {}", stringify!($name), $name::choices()))
                })
            }
        }

        // Stored as TEXT: encoded from `as_str`, decoded through `parse`
        // (a value outside the set is a decode error, never a silent default).
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let s = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                $name::parse(s)
                    .ok_or_else(|| format!("unknown {} {s:?} in the database", stringify!($name)).into())
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
    /// A server check's progress (`server_checks.status`).
    CheckStatus { Pending => "pending", Running => "running", Done => "done" }
);
text_enum!(
    /// What a server check found (and did) about the server's proxy;
    /// `unknown`: not looked at, as Docker could not be used.
    ProxyState {
        UpToDate => "up_to_date",
        Started => "started",
        Created => "created",
        Replaced => "replaced",
        External => "external",
        Failed => "failed",
        Unknown => "unknown",
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
    Trigger { Manual => "manual", GitPush => "git_push", Api => "api", Scheduled => "scheduled", Rollback => "rollback", Redeploy => "redeploy" }
);
text_enum!(
    /// What a deployment run does to its environment: the whole pipeline
    /// (`deploy`), or one of the short lifecycle runs.
    Action { Deploy => "deploy", Stop => "stop", Start => "start", Restart => "restart", Teardown => "teardown" }
);
text_enum!(
    /// Why a `permissions_changed` event was sent.
    PermissionsReason { MembershipChanged => "membership_changed", SessionsEnded => "sessions_ended" }
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
    /// A deployment that still holds its environment: at most one at a time.
    pub const ACTIVE: &'static [DeploymentStatus] =
        &[DeploymentStatus::Pending, DeploymentStatus::Running];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeploymentStatus::Success | DeploymentStatus::Failed | DeploymentStatus::Cancelled
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The closed sets whose values cross the database and the wire.
    fn closed_values() -> Vec<&'static str> {
        let mut v: Vec<&str> = Vec::new();
        v.extend(DeploymentStatus::ALL.iter().map(|s| s.as_str()));
        v.extend(StepStatus::ALL.iter().map(|s| s.as_str()));
        v.extend(EnvironmentStatus::ALL.iter().map(|s| s.as_str()));
        v.extend(Trigger::ALL.iter().map(|s| s.as_str()));
        v.extend(CheckStatus::ALL.iter().map(|s| s.as_str()));
        v.extend(ProxyState::ALL.iter().map(|s| s.as_str()));
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(crate) fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// A status, trigger or log level is written as its enum everywhere but
    /// here: no source of api, worker, scheduler or common outside `model/`
    /// spells one as a string, in Rust (`"running"`) or in SQL (`'running'`).
    #[test]
    fn no_closed_set_literal_outside_the_model() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["api/src", "worker/src", "scheduler/src", "common/src"] {
            rust_files(&root.join(krate), &mut files);
        }
        let model = root.join("common/src/model");
        let levels: Vec<String> = LogLevel::ALL
            .iter()
            .flat_map(|l| [format!("'{l}'"), format!("\"level\": \"{l}\"")])
            .collect();
        let mut found = Vec::new();
        for file in files.iter().filter(|f| !f.starts_with(&model)) {
            let text = std::fs::read_to_string(file).expect("read");
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let statuses = closed_values().into_iter().flat_map(|v| {
                    // A JSON field of somebody else's API (`v["success"]`) is not ours.
                    let rust = format!("\"{v}\"");
                    let foreign = format!("[{rust}]");
                    let hit = line.replace(&foreign, "").contains(&rust);
                    [
                        hit.then(|| rust.clone()),
                        line.contains(&format!("'{v}'")).then(|| format!("'{v}'")),
                    ]
                });
                for hit in statuses
                    .flatten()
                    .chain(levels.iter().filter(|l| line.contains(l.as_str())).cloned())
                {
                    found.push(format!("{}:{}: {hit}", file.display(), n + 1));
                }
            }
        }
        assert!(
            found.is_empty(),
            "closed-set literals outside common::model:\n{}",
            found.join("\n")
        );
    }
}
