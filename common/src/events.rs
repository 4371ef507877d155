//! Live events: the envelope published on `sse:events`, and the capped Redis
//! stream that keeps recent events for clients that reconnect.
//!
//! Publishing appends to the stream and publishes on the channel in one Lua
//! script, so the stream order and the channel order are the same and every
//! event's `id` (the stream entry id) is known to subscribers.

use chrono::{DateTime, Utc};
use redis::Script;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{DeploymentStatus, EnvironmentStatus, LogLevel, PermissionsReason};

/// The channel name (before the configured prefix), as the spec fixes it.
pub const CHANNEL: &str = "sse:events";
/// The replay stream (before the configured prefix).
pub const STREAM: &str = "sse:stream";

/// The documented schema of every event (JSON Schema), served at
/// `/api/v1/events/schema`; the tests check every frame they receive
/// against it.
pub const SCHEMA: &str = include_str!("events.schema.json");

/// The frame every event stream starts with: the spec's `connected` event,
/// whose data is `{"status": "connected"}` alone.
pub const CONNECTED: &[u8] = b"event: connected\ndata: {\"status\":\"connected\"}\n\n";

/// Every event a client can receive, serialized as the spec's
/// `{"type": ..., "data": {...}}`. The schema clients read is
/// `events.schema.json` (served at `/api/v1/events/schema`); a test checks
/// real events against it. The spec's `replica.health_updated` and
/// `alert_triggered` become variants here when something emits them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// One log line of a deployment, with the deployment's state when it
    /// was written. The same JSON live, replayed, and on either stream.
    DeploymentProgress(DeploymentProgress),
    /// A deployment reached a terminal status.
    DeploymentFinished(DeploymentFinished),
    /// An environment's status changed.
    EnvironmentStatus(EnvironmentStatusChanged),
    /// A user's memberships, roles or sessions changed: open streams
    /// re-check what they may deliver. Sent only to the user it names, or
    /// (no user) to everyone in its organization or project.
    PermissionsChanged(PermissionsChanged),
    /// A migration restore moved to a new phase or finished one (the
    /// spec's `migration_progress`), after the log line that says so.
    MigrationProgress(MigrationProgress),
}

/// The deployment an event belongs to, as every deployment event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct DeploymentRef {
    pub deployment_id: Uuid,
    pub environment_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
    pub environment_name: String,
    pub triggered_by: Option<Uuid>,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentProgress {
    #[serde(flatten)]
    pub deployment: DeploymentRef,
    /// The deployment's status when the line was written.
    pub status: DeploymentStatus,
    pub progress_percent: i32,
    /// The line's place in the deployment's log (the per-deployment
    /// stream's event id).
    pub seq: i64,
    pub step: Option<String>,
    pub level: LogLevel,
    pub message: String,
    pub timestamp: DateTime<Utc>,
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFinished {
    #[serde(flatten)]
    pub deployment: DeploymentRef,
    pub status: DeploymentStatus,
    pub progress_percent: i32,
    pub step: Option<String>,
    pub error_message: Option<String>,
    pub duration_seconds: Option<f64>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentStatusChanged {
    pub environment_id: Uuid,
    pub project_id: Uuid,
    /// The deployment that moved it.
    pub deployment_id: Option<Uuid>,
    pub status: EnvironmentStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationProgress {
    #[serde(flatten)]
    pub deployment: DeploymentRef,
    /// The restore's id: the deployment that runs it (an environment's
    /// backup is restored by exactly one deployment).
    pub migration_id: Uuid,
    /// `download`, `database_restore`, `filestore` or `sanitize`.
    pub step: String,
    /// The restore's own progress, 0 to 100.
    pub progress_percent: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionsChanged {
    pub organization_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub reason: PermissionsReason,
}

impl Event {
    /// The `type` (the SSE `event:` name).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DeploymentProgress(_) => "deployment_progress",
            Event::DeploymentFinished(_) => "deployment_finished",
            Event::EnvironmentStatus(_) => "environment_status",
            Event::PermissionsChanged(_) => "permissions_changed",
            Event::MigrationProgress(_) => "migration_progress",
        }
    }

    /// The project the event belongs to, when it names one.
    pub fn project_id(&self) -> Option<Uuid> {
        match self {
            Event::DeploymentProgress(e) => Some(e.deployment.project_id),
            Event::DeploymentFinished(e) => Some(e.deployment.project_id),
            Event::EnvironmentStatus(e) => Some(e.project_id),
            Event::PermissionsChanged(e) => e.project_id,
            Event::MigrationProgress(e) => Some(e.deployment.project_id),
        }
    }

    pub fn deployment_id(&self) -> Option<Uuid> {
        match self {
            Event::DeploymentProgress(e) => Some(e.deployment.deployment_id),
            Event::DeploymentFinished(e) => Some(e.deployment.deployment_id),
            Event::EnvironmentStatus(e) => e.deployment_id,
            Event::PermissionsChanged(_) => None,
            Event::MigrationProgress(e) => Some(e.deployment.deployment_id),
        }
    }

    /// The `permissions_changed` this is, if it is one.
    pub fn permissions(&self) -> Option<&PermissionsChanged> {
        match self {
            Event::PermissionsChanged(p) => Some(p),
            _ => None,
        }
    }

    /// The body clients receive: `{"type", "data"}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }
}

/// An event with what routes it: `{"id", "org_id", "type", "data"}` as
/// published on `sse:events` and kept in the replay stream. `id` (the
/// stream entry id) is empty until published; `org_id` is nil for an event
/// about a user alone (their sessions ended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub org_id: Uuid,
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    pub fn new(org_id: Uuid, event: Event) -> Self {
        Envelope {
            id: String::new(),
            org_id,
            event,
        }
    }
}

/// What decides who may receive an event, read without decoding the rest of
/// it (serde skips the other fields).
#[derive(Debug, Clone, Deserialize)]
pub struct Routing {
    pub org_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: RoutingData,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RoutingData {
    pub project_id: Option<Uuid>,
    /// The user a `permissions_changed` event is about (none: everyone in
    /// its organization or project).
    pub user_id: Option<Uuid>,
}

impl Routing {
    pub fn is_permissions_changed(&self) -> bool {
        self.kind == "permissions_changed"
    }
}

/// A stream entry id `ms-seq`, ordered as Redis orders them.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Whether event `id` comes after `last` in stream order. An event without a
/// readable id is never taken for a duplicate.
pub fn is_after(id: &str, last: Option<&str>) -> bool {
    match (parse_id(id), last.and_then(parse_id)) {
        (Some(id), Some(last)) => id > last,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DeploymentStatus, EnvironmentStatus, LogLevel, PermissionsReason};

    fn schema_enum(def: &serde_json::Value) -> Vec<String> {
        def["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    fn names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> Vec<String> {
        all.iter().map(|v| name(*v).to_owned()).collect()
    }

    #[test]
    fn the_schemas_closed_sets_are_the_models() {
        let s: serde_json::Value = serde_json::from_str(SCHEMA).expect("json");
        let d = &s["$defs"];
        assert_eq!(
            schema_enum(&d["DeploymentStatus"]),
            names(DeploymentStatus::ALL, DeploymentStatus::as_str)
        );
        assert_eq!(
            schema_enum(&d["EnvironmentStatus"]),
            names(EnvironmentStatus::ALL, EnvironmentStatus::as_str)
        );
        assert_eq!(
            schema_enum(&d["LogLevel"]),
            names(LogLevel::ALL, LogLevel::as_str)
        );
        let terminal: Vec<DeploymentStatus> = DeploymentStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            schema_enum(&d["deployment_finished"]["properties"]["data"]["properties"]["status"]),
            names(&terminal, DeploymentStatus::as_str)
        );
        assert_eq!(
            schema_enum(&d["permissions_changed"]["properties"]["data"]["properties"]["reason"]),
            names(PermissionsReason::ALL, PermissionsReason::as_str)
        );
    }

    /// Event bodies are made here (and by `lifecycle`) only: no other source
    /// of api, worker, scheduler or common names an event type as a string
    /// or builds a `{"type", "data"}` body with `json!`.
    #[test]
    fn no_event_body_is_built_outside_the_contract() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for krate in ["api/src", "worker/src", "scheduler/src", "common/src"] {
            crate::model::tests::rust_files(&root.join(krate), &mut files);
        }
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("json");
        let kinds: Vec<String> = schema["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .filter_map(|r| r["$ref"].as_str()?.strip_prefix("#/$defs/"))
            .map(|k| format!("\"{k}\""))
            .collect();
        assert_eq!(kinds.len(), 6, "{kinds:?}");
        let here = root.join("common/src/events.rs");
        let mut found = Vec::new();
        for file in files.iter().filter(|f| **f != here) {
            let text = std::fs::read_to_string(file).expect("read");
            let lines: Vec<&str> = text.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for k in kinds.iter().filter(|k| line.contains(k.as_str())) {
                    found.push(format!("{}:{}: {k}", file.display(), n + 1));
                }
                // A json! whose first lines hold "type" and "data" keys (a
                // DNS record's "type" alone is not an event).
                if line.contains("json!(") {
                    let body = lines[n..lines.len().min(n + 3)].join(" ");
                    if body.contains("\"type\"") && body.contains("\"data\"") {
                        found.push(format!("{}:{}: json! event body", file.display(), n + 1));
                    }
                }
            }
        }
        assert!(
            found.is_empty(),
            "event bodies outside common::events:\n{}",
            found.join("\n")
        );
    }

    #[test]
    fn an_envelope_is_the_specs_type_and_data_plus_its_routing() {
        let e = Envelope::new(
            Uuid::nil(),
            Event::EnvironmentStatus(EnvironmentStatusChanged {
                environment_id: Uuid::from_u128(1),
                project_id: Uuid::from_u128(2),
                deployment_id: None,
                status: EnvironmentStatus::Running,
            }),
        );
        let json = serde_json::to_value(&e).expect("serialize");
        assert_eq!(json["type"], "environment_status");
        assert_eq!(json["data"]["status"], EnvironmentStatus::Running.as_str());
        assert_eq!(json["org_id"], Uuid::nil().to_string());
        assert!(json.get("id").is_none(), "no id before it is published");
        let back: Envelope = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, e);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&e.event.to_json()).expect("json"),
            serde_json::json!({"type": "environment_status", "data": {
                "environment_id": Uuid::from_u128(1), "project_id": Uuid::from_u128(2),
                "deployment_id": null, "status": EnvironmentStatus::Running}})
        );
    }

    #[test]
    fn stream_ids_order_by_time_then_sequence() {
        assert!(is_after("1700000000001-0", Some("1700000000000-5")));
        assert!(is_after("1700000000000-6", Some("1700000000000-5")));
        assert!(!is_after("1700000000000-5", Some("1700000000000-5")));
        assert!(!is_after("1699999999999-9", Some("1700000000000-0")));
        // Numeric, not lexical: 10 comes after 9.
        assert!(is_after("10-0", Some("9-0")));
        assert!(is_after("1-0", None));
        assert!(is_after("", Some("1-0")));
    }
}

const PUBLISH: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
local msg = '{"id":"' .. id .. '",' .. string.sub(ARGV[1], 2)
redis.call('PUBLISH', KEYS[2], msg)
return id
"#;

/// Where events go: the channel and the stream, under the configured prefix.
#[derive(Clone)]
pub struct Publisher {
    pool: deadpool_redis::Pool,
    channel: String,
    stream: String,
    script: Script,
    replay_max: usize,
}

impl Publisher {
    pub fn new(pool: deadpool_redis::Pool, prefix: &str, replay_max: usize) -> Self {
        Publisher {
            pool,
            channel: format!("{prefix}{CHANNEL}"),
            stream: format!("{prefix}{STREAM}"),
            script: Script::new(PUBLISH),
            replay_max,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Publishes an event and returns its id.
    pub async fn publish(&self, event: &Envelope) -> anyhow::Result<String> {
        let mut ids = self.publish_many(std::slice::from_ref(event)).await?;
        ids.pop()
            .ok_or_else(|| anyhow::anyhow!("publishing returned no id"))
    }

    /// Publishes events and logs (does not return) a failure: for callers
    /// whose events are already committed to PostgreSQL, where a live
    /// viewer catches up from there.
    pub async fn publish_or_warn(&self, events: &[Envelope]) {
        if let Err(e) = self.publish_many(events).await {
            let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
            tracing::warn!(error = %e, events = ?kinds, "publishing events failed");
        }
    }

    /// Publishes several events in one round trip, in order; returns their ids.
    pub async fn publish_many(&self, events: &[Envelope]) -> anyhow::Result<Vec<String>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        for event in events {
            let body = serde_json::to_string(event)?;
            pipe.invoke_script(
                self.script
                    .key(&self.stream)
                    .key(&self.channel)
                    .arg(body)
                    .arg(self.replay_max),
            );
        }
        match pipe.query_async::<Vec<String>>(&mut conn).await {
            Ok(ids) => Ok(ids),
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // First use on this Redis (or after SCRIPT FLUSH): load, then retry once.
                redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(PUBLISH)
                    .query_async::<String>(&mut conn)
                    .await?;
                Ok(pipe.query_async::<Vec<String>>(&mut conn).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Events after `last_id` (exclusive), oldest first, at most `count`.
    /// The events after `last_id` that `keep` accepts, scanning at most
    /// `max` entries in batches of `batch`: only a batch and the kept events
    /// are in memory at once, and an event is decoded in full only when kept.
    pub async fn replay_filtered(
        &self,
        last_id: &str,
        max: usize,
        batch: usize,
        mut keep: impl FnMut(&Routing) -> bool,
    ) -> anyhow::Result<(Vec<Envelope>, Option<String>)> {
        let mut conn = self.pool.get().await?;
        let mut kept = Vec::new();
        let mut from = last_id.to_owned();
        let mut scanned_up_to = None;
        let mut scanned = 0;
        while scanned < max {
            let n = batch.min(max - scanned);
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg(&self.stream)
                .arg(format!("({from}"))
                .arg("+")
                .arg("COUNT")
                .arg(n)
                .query_async(&mut conn)
                .await?;
            let got = entries.len();
            for (id, fields) in entries {
                if let Some((_, body)) = fields.into_iter().find(|(k, _)| k == "e")
                    && serde_json::from_str::<Routing>(&body).is_ok_and(|r| keep(&r))
                    && let Ok(mut e) = serde_json::from_str::<Envelope>(&body)
                {
                    e.id = id.clone();
                    kept.push(e);
                }
                from = id;
            }
            scanned += got;
            if got > 0 {
                scanned_up_to = Some(from.clone());
            }
            if got < n {
                break;
            }
        }
        Ok((kept, scanned_up_to))
    }
}
