//! Ids with their own types where a mix-up would go unnoticed: the one that
//! crosses the queue (`DeploymentId`), from the job through the worker's
//! transitions and the deployment row, and the environment's the worker
//! names its server-side objects after (`EnvironmentId`). Each is a `Uuid` on the
//! wire and in PostgreSQL (serde and sqlx transparent).

use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl PartialEq<Uuid> for $name {
            fn eq(&self, other: &Uuid) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// A deployment's id: what a queue job carries.
    DeploymentId
);
id_type!(
    /// An environment's id: what every server-side name of an environment
    /// (containers, volumes, network, directory) is made from.
    EnvironmentId
);
