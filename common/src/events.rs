//! Live events: the envelope published on `sse:events`, and the capped Redis
//! stream that keeps recent events for clients that reconnect.
//!
//! Publishing appends to the stream and publishes on the channel in one Lua
//! script, so the stream order and the channel order are the same and every
//! event's `id` (the stream entry id) is known to subscribers.

use redis::Script;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The channel name (before the configured prefix), as the spec fixes it.
pub const CHANNEL: &str = "sse:events";
/// The replay stream (before the configured prefix).
pub const STREAM: &str = "sse:stream";

/// One event as published: `{"id", "org_id", "type", "data"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub id: String,
    pub org_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

/// The type of the event published when a user's memberships or roles
/// change; open streams re-check what they may deliver.
pub const PERMISSIONS_CHANGED: &str = "permissions_changed";

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

impl Event {
    /// The user a `permissions_changed` event is about.
    pub fn user_id(&self) -> Option<Uuid> {
        self.data.get("user_id")?.as_str()?.parse().ok()
    }

    /// The project the event belongs to, when it names one.
    pub fn project_id(&self) -> Option<Uuid> {
        self.data.get("project_id")?.as_str()?.parse().ok()
    }

    pub fn deployment_id(&self) -> Option<Uuid> {
        self.data.get("deployment_id")?.as_str()?.parse().ok()
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
    use super::is_after;

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
    pub async fn publish(
        &self,
        org_id: Uuid,
        kind: &str,
        data: serde_json::Value,
    ) -> anyhow::Result<String> {
        let body = serde_json::json!({"org_id": org_id, "type": kind, "data": data}).to_string();
        let mut conn = self.pool.get().await?;
        let id: String = self
            .script
            .key(&self.stream)
            .key(&self.channel)
            .arg(body)
            .arg(self.replay_max)
            .invoke_async(&mut conn)
            .await?;
        Ok(id)
    }

    /// Publishes several events in one round trip, in order; returns their ids.
    pub async fn publish_many(
        &self,
        events: &[(Uuid, &str, serde_json::Value)],
    ) -> anyhow::Result<Vec<String>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.get().await?;
        let mut pipe = redis::pipe();
        for (org_id, kind, data) in events {
            let body =
                serde_json::json!({"org_id": org_id, "type": kind, "data": data}).to_string();
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
    ) -> anyhow::Result<(Vec<Event>, Option<String>)> {
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
                    && let Ok(mut e) = serde_json::from_str::<Event>(&body)
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
