//! A deployment's log: every line is masked, committed to PostgreSQL, and only
//! then published on `sse:events`. Lines are written by one task per
//! deployment in batches (whatever queued up while the previous batch was
//! committed), so a busy stage costs one INSERT per batch, not per line, and
//! order is kept by `seq`.
//!
//! The queue in front of the writer is bounded for the one source that can
//! flood it, command output (`debug`): past [`MAX_PENDING`] lines waiting,
//! further debug lines are counted instead of queued, and one warning says how
//! many were left out. Info, warning and error lines are never dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use oec_common::db::deployments::{self, NewLog, RunContext};
use oec_common::events::Publisher;
use oec_common::model::LogLevel;
use oec_common::model::steps::Step;
use oec_common::secrets::Masker;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const MAX_BATCH: usize = 1000;
/// Lines waiting for the writer past which command output is left out.
pub const MAX_PENDING: usize = 50_000;

enum Msg {
    Line(NewLog),
    Flush(oneshot::Sender<()>),
}

/// The fields every event of a deployment carries.
#[derive(Clone)]
pub struct EventContext {
    pub org_id: Uuid,
    pub base: serde_json::Map<String, Value>,
}

impl EventContext {
    pub fn new(ctx: &RunContext) -> Self {
        let base = json!({
            "deployment_id": ctx.deployment_id,
            "environment_id": ctx.environment_id,
            "project_id": ctx.project_id,
            "project_name": ctx.project_name,
            "environment_name": ctx.environment_name,
            "triggered_by": ctx.triggered_by,
            "branch": ctx.branch,
        });
        EventContext {
            org_id: ctx.organization_id,
            base: base.as_object().cloned().unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct Log {
    tx: mpsc::UnboundedSender<Msg>,
    seq: Arc<AtomicI64>,
    masker: Arc<Masker>,
    /// Lines sent and not yet written.
    pending: Arc<AtomicUsize>,
    /// Debug lines left out since the last warning about it.
    dropped: Arc<AtomicU64>,
}

/// State the writer reads when it builds events.
pub struct Progress {
    pub percent: AtomicI32,
}

impl Log {
    /// Starts the writer task of one deployment; `first_seq` is the last seq
    /// already stored.
    pub fn start(
        pool: PgPool,
        publisher: Publisher,
        deployment: Uuid,
        first_seq: i64,
        events: EventContext,
        progress: Arc<Progress>,
        masker: Masker,
    ) -> (Log, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(writer(
            pool,
            publisher,
            deployment,
            rx,
            events,
            progress,
            pending.clone(),
        ));
        (
            Log {
                tx,
                seq: Arc::new(AtomicI64::new(first_seq)),
                masker: Arc::new(masker),
                pending,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            task,
        )
    }

    pub fn line(&self, level: LogLevel, step: Step, message: &str, data: Option<Value>) {
        if level == LogLevel::Debug && self.pending.load(Ordering::SeqCst) >= MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let dropped = self.dropped.swap(0, Ordering::SeqCst);
        if dropped > 0 {
            self.send(
                LogLevel::Warning,
                step,
                format!("{dropped} lines of command output left out: the log writer fell behind"),
                None,
            );
        }
        self.send(level, step, self.masker.mask(message), data);
    }

    fn send(&self, level: LogLevel, step: Step, message: String, data: Option<Value>) {
        let data = data.map(|d| mask_value(&self.masker, d));
        self.pending.fetch_add(1, Ordering::SeqCst);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.tx.send(Msg::Line(NewLog {
            seq,
            level,
            message,
            step: Some(step.id()),
            data,
        }));
    }

    pub fn info(&self, step: Step, message: &str) {
        self.line(LogLevel::Info, step, message, None);
    }

    pub fn warning(&self, step: Step, message: &str) {
        self.line(LogLevel::Warning, step, message, None);
    }

    pub fn debug(&self, step: Step, message: &str) {
        self.line(LogLevel::Debug, step, message, None);
    }

    /// `text` with every known secret hidden, for anything stored or sent
    /// that is not a log line (step messages, the deployment's error).
    pub fn mask(&self, text: &str) -> String {
        self.masker.mask(text)
    }

    /// Waits until every line sent so far is stored and published.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn mask_value(m: &Masker, v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(m.mask(&s)),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| mask_value(m, v)).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, mask_value(m, v))).collect())
        }
        other => other,
    }
}

async fn writer(
    pool: PgPool,
    publisher: Publisher,
    deployment: Uuid,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    events: EventContext,
    progress: Arc<Progress>,
    pending: Arc<AtomicUsize>,
) {
    let mut batch = Vec::new();
    let mut flushes = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Line(l) => batch.push(l),
                Msg::Flush(f) => flushes.push(f),
            }
            next = if batch.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !batch.is_empty() {
            write_batch(&pool, &publisher, deployment, &batch, &events, &progress).await;
            pending.fetch_sub(batch.len(), Ordering::SeqCst);
            batch.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

async fn write_batch(
    pool: &PgPool,
    publisher: &Publisher,
    deployment: Uuid,
    batch: &[NewLog],
    events: &EventContext,
    progress: &Progress,
) {
    // Retry the commit a few times: a lost line is worse than a late one.
    let mut stored = None;
    for attempt in 0..5u64 {
        match deployments::insert_logs(pool, deployment, batch).await {
            Ok(rows) => {
                stored = Some(rows);
                break;
            }
            Err(e) => {
                tracing::warn!(%deployment, error = %e, attempt, "storing log lines failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200 * (attempt + 1))).await;
            }
        }
    }
    let Some(rows) = stored else {
        tracing::error!(%deployment, lines = batch.len(), "log lines could not be stored");
        return;
    };
    let percent = progress.percent.load(Ordering::SeqCst);
    let out: Vec<(Uuid, &str, Value)> = rows
        .iter()
        .map(|r| {
            let mut data = events.base.clone();
            data.insert("status".into(), json!("running"));
            data.insert("step".into(), json!(r.step));
            data.insert("message".into(), json!(r.message));
            data.insert("level".into(), json!(r.level));
            data.insert("timestamp".into(), json!(r.timestamp));
            data.insert("seq".into(), json!(r.seq));
            data.insert("progress_percent".into(), json!(percent));
            if let Some(d) = &r.data {
                data.insert("data".into(), d.clone());
            }
            (events.org_id, "deployment_progress", Value::Object(data))
        })
        .collect();
    if let Err(e) = publisher.publish_many(&out).await {
        // The lines are stored; live viewers catch up from PostgreSQL.
        tracing::warn!(%deployment, error = %e, "publishing log events failed");
    }
}
