//! The fan-out of live events in one api process: one Redis subscription
//! ([`Hub`]) feeds a tokio broadcast channel with one receiver per actix
//! worker thread, whose router (`relay.rs`) wakes only the streams that may
//! see each event; every event is serialized once for all clients
//! ([`Prepared`]). Also the per-user and per-address counts of open streams
//! ([`StreamCounts`]). The endpoints that read all this are in `sse.rs`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::web;
use futures_util::StreamExt as _;
use oec_common::events::{Envelope, Event, Publisher, is_after};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::errors::ApiError;

/// Events read from the replay stream per round trip.
pub(crate) const REPLAY_BATCH: usize = 1_000;

/// An event as every client receives it, serialized once for all of them
/// (the strings are reference-counted, so a client's copy costs no allocation).
pub struct Prepared {
    pub event: Envelope,
    /// The whole SSE frame for `/events/stream` (id: the stream id).
    pub(crate) frame: web::Bytes,
    /// The frame for `/deployments/{id}/events` (id: the line's `seq`), for
    /// a log line.
    pub(crate) line_frame: Option<(i64, web::Bytes)>,
}

impl Prepared {
    pub fn new(event: Envelope) -> Prepared {
        let body = event.event.to_json();
        let kind = event.event.kind();
        let frame = sse_frame(kind, &event.id, &body);
        let line_frame = match &event.event {
            Event::DeploymentProgress(p) => {
                Some((p.seq, sse_frame(kind, &p.seq.to_string(), &body)))
            }
            _ => None,
        };
        Prepared {
            frame,
            line_frame,
            event,
        }
    }
}

/// One SSE frame: `event:`, `id:` (when not empty) and `data:`.
pub(crate) fn sse_frame(kind: &str, id: &str, body: &str) -> web::Bytes {
    let mut out = String::with_capacity(body.len() + kind.len() + id.len() + 24);
    out.push_str("event: ");
    out.push_str(kind);
    out.push('\n');
    if !id.is_empty() {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("data: ");
    out.push_str(body);
    out.push_str("\n\n");
    web::Bytes::from(out)
}

/// What the hub's subscription hands the threads: an event, or word that
/// it subscribed again after losing Redis (events published meanwhile may
/// never have reached Redis; a deployment's stream reads PostgreSQL then).
#[derive(Clone)]
pub enum Hubbed {
    Event(Arc<Prepared>),
    Resubscribed,
}

pub struct Hub {
    tx: broadcast::Sender<Hubbed>,
    client: redis::Client,
    publisher: Publisher,
    running: Arc<AtomicBool>,
}

impl Hub {
    /// The fan-out of the events channel. Its one subscription runs on the
    /// first actix worker thread that asks ([`Hub::run_here`]).
    pub fn new(redis_url: &str, publisher: Publisher, capacity: usize) -> anyhow::Result<Arc<Hub>> {
        let client = redis::Client::open(redis_url)?;
        let (tx, _) = broadcast::channel(capacity);
        Ok(Arc::new(Hub {
            tx,
            client,
            publisher,
            running: Arc::new(AtomicBool::new(false)),
        }))
    }

    /// Runs the subscription on this thread unless it runs already on
    /// another: the thread's relay then gets each event without a wake-up
    /// across threads (one fewer per event than a thread of its own). If
    /// that thread ends, the next worker thread to start runs it.
    pub fn run_here(&self) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        struct Running(Arc<AtomicBool>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let running = Running(self.running.clone());
        let (client, publisher, tx) =
            (self.client.clone(), self.publisher.clone(), self.tx.clone());
        actix_web::rt::spawn(async move {
            let _running = running;
            pump(client, publisher, tx).await;
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Hubbed> {
        self.tx.subscribe()
    }
}

/// The first wait before resubscribing, and the longest.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(250);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(30);

/// The wait before the next attempt: `delay` with full jitter in its upper
/// half (so the api processes of a fleet do not reconnect in step), and the
/// delay after that, doubled up to [`RESUBSCRIBE_MAX`].
fn backoff(delay: Duration) -> (Duration, Duration) {
    let unit = (Uuid::new_v4().as_u128() % 1_000) as u32;
    let wait = delay / 2 + delay / 2 * unit / 1_000;
    (wait, (delay * 2).min(RESUBSCRIBE_MAX))
}

async fn pump(client: redis::Client, publisher: Publisher, tx: broadcast::Sender<Hubbed>) {
    let mut last: Option<String> = None;
    let mut first = true;
    let mut delay = RESUBSCRIBE_FIRST;
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(publisher.channel()).await {
                Ok(()) => {
                    delay = RESUBSCRIBE_FIRST;
                    tracing::info!("subscribed to the events channel");
                    // Events published while we were not subscribed.
                    if let Some(id) = &last
                        && let Ok((missed, _)) = publisher
                            .replay_filtered(id, 100_000, REPLAY_BATCH, |_| true)
                            .await
                    {
                        for e in missed {
                            last = Some(e.id.clone());
                            let _ = tx.send(Hubbed::Event(Arc::new(Prepared::new(e))));
                        }
                    }
                    if !first {
                        let _ = tx.send(Hubbed::Resubscribed);
                    }
                    first = false;
                    let mut messages = pubsub.into_on_message();
                    while let Some(msg) = messages.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        let event = match serde_json::from_str::<Envelope>(&payload) {
                            Ok(e) => e,
                            Err(e) => {
                                tracing::warn!(error = %e, "an event on the channel does not match the event contract; skipped");
                                continue;
                            }
                        };
                        // The replay after a resubscribe may overlap the channel.
                        if !is_after(&event.id, last.as_deref()) {
                            continue;
                        }
                        last = Some(event.id.clone());
                        oec_common::metrics::count(
                            "oec_events_received_total",
                            "Events this api process received from the events channel.",
                            &[],
                            1,
                        );
                        let _ = tx.send(Hubbed::Event(Arc::new(Prepared::new(event))));
                    }
                    tracing::warn!("Redis event subscription ended; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "subscribing to the events channel failed"),
            },
            Err(e) => tracing::warn!(error = %e, "connecting to Redis for events failed"),
        }
        let (wait, next) = backoff(delay);
        delay = next;
        tracing::info!(
            wait_ms = wait.as_millis() as u64,
            "resubscribing to the events channel after a pause"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Open event streams per user and per client address on this process,
/// against `OEC_SSE_MAX_STREAMS_PER_USER` / `_PER_IP`.
#[derive(Default)]
pub struct StreamCounts {
    open: std::sync::Mutex<(HashMap<Uuid, usize>, HashMap<IpAddr, usize>)>,
}

/// One open stream's place in [`StreamCounts`]; given back when dropped.
pub struct StreamSlot {
    counts: Arc<StreamCounts>,
    user: Uuid,
    ip: Option<IpAddr>,
}

impl StreamCounts {
    pub(crate) fn take(
        counts: &Arc<StreamCounts>,
        settings: &oec_common::config::Settings,
        user: Uuid,
        ip: Option<IpAddr>,
    ) -> Result<StreamSlot, ApiError> {
        let mut open = counts
            .open
            .lock()
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("stream counts poisoned")))?;
        let (users, ips) = &mut *open;
        let by_user = users.get(&user).copied().unwrap_or(0);
        let by_ip = ip.map_or(0, |ip| ips.get(&ip).copied().unwrap_or(0));
        if by_user >= settings.sse_max_streams_per_user || by_ip >= settings.sse_max_streams_per_ip
        {
            return Err(ApiError::TooMany {
                code: "too_many_streams",
                message: format!(
                    "Too many open event streams (at most {} per user and {} per address); close one first.",
                    settings.sse_max_streams_per_user, settings.sse_max_streams_per_ip
                ),
                retry_after: 5,
            });
        }
        sse_clients(1.0);
        *users.entry(user).or_default() += 1;
        if let Some(ip) = ip {
            *ips.entry(ip).or_default() += 1;
        }
        Ok(StreamSlot {
            counts: counts.clone(),
            user,
            ip,
        })
    }
}

fn sse_clients(by: f64) {
    oec_common::metrics::add(
        "oec_sse_clients_connected",
        "Event streams open on this api process (both kinds).",
        &[],
        by,
    );
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        sse_clients(-1.0);
        let Ok(mut open) = self.counts.open.lock() else {
            return;
        };
        let (users, ips) = &mut *open;
        fn give_back<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: &K) {
            if let Some(n) = m.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(k);
                }
            }
        }
        give_back(users, &self.user);
        if let Some(ip) = &self.ip {
            give_back(ips, ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resubscribing_backs_off_with_jitter_up_to_the_maximum() {
        let mut delay = RESUBSCRIBE_FIRST;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let (wait, next) = backoff(delay);
            assert!(wait >= delay / 2 && wait <= delay, "{wait:?} of {delay:?}");
            waits.push(wait);
            delay = next;
        }
        assert_eq!(delay, RESUBSCRIBE_MAX);
        assert!(waits[5] > waits[0] * 8, "{waits:?}");
        // Jitter: not every process waits the same.
        let spread: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(RESUBSCRIBE_MAX).0).collect();
        assert!(spread.len() > 10, "{spread:?}");
    }
}
