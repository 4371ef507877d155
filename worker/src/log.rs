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

use oec_common::db::deployments::{NewLog, Referenced};
use oec_common::events::{Envelope, Publisher};
use oec_common::lifecycle;
use oec_common::model::steps::Step;
use oec_common::model::{DeploymentStatus, LogLevel};
use oec_common::secrets::Masker;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

const MAX_BATCH: usize = 1000;
/// Lines waiting for the writer past which command output is left out.
pub const MAX_PENDING: usize = 50_000;

enum Msg {
    Line(NewLog),
    Flush(oneshot::Sender<()>),
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
    progress: Arc<Progress>,
}

/// The deployment's progress as the pipeline moves it; each line records
/// it when written (its status is `running` while the worker writes lines).
#[derive(Default)]
pub struct Progress {
    pub percent: AtomicI32,
}

impl Log {
    /// Starts the writer task of one deployment; `first_seq` is the last seq
    /// already stored.
    pub fn start(
        pool: PgPool,
        publisher: Publisher,
        deployment: Referenced,
        first_seq: i64,
        progress: Arc<Progress>,
        masker: Masker,
    ) -> (Log, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(writer(pool, publisher, deployment, rx, pending.clone()));
        (
            Log {
                tx,
                seq: Arc::new(AtomicI64::new(first_seq)),
                masker: Arc::new(masker),
                pending,
                dropped: Arc::new(AtomicU64::new(0)),
                progress,
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
        self.send(level, step, self.masker.mask(&printable(message)), data);
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
            status: DeploymentStatus::Running,
            progress_percent: self.progress.percent.load(Ordering::SeqCst),
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

    /// A line's text as the log stores it (printable, masked), for the
    /// last lines the deployment's end writes itself.
    pub fn clean(&self, text: &str) -> String {
        self.masker.mask(&printable(text))
    }

    /// Waits until every line sent so far is stored and published.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// A deployment's log bound to one step: what a stage writes to.
#[derive(Clone)]
pub struct StepLog {
    log: Log,
    step: Step,
}

impl StepLog {
    pub fn new(log: Log, step: Step) -> Self {
        StepLog { log, step }
    }

    pub fn step(&self) -> Step {
        self.step
    }

    pub fn line(&self, level: LogLevel, message: &str, data: Option<Value>) {
        self.log.line(level, self.step, message, data);
    }

    pub fn info(&self, message: &str) {
        self.log.info(self.step, message);
    }

    pub fn warning(&self, message: &str) {
        self.log.warning(self.step, message);
    }

    pub fn debug(&self, message: &str) {
        self.log.debug(self.step, message);
    }

    pub fn mask(&self, text: &str) -> String {
        self.log.mask(text)
    }
}

fn mask_value(m: &Masker, v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(m.mask(&printable(&s))),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| mask_value(m, v)).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .map(|(k, v)| (printable(&k), mask_value(m, v)))
                .collect(),
        ),
        other => other,
    }
}

/// Text as it can be stored and shown: terminal escape sequences (colours,
/// cursor moves, titles) removed, a carriage return's overwritten text
/// dropped (a progress bar keeps its last state), and every other control
/// character but tab shown as U+FFFD. PostgreSQL refuses a NUL, and a
/// viewer's terminal must not obey what a command printed.
pub fn printable(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push(c),
            // CSI: ESC [ (or U+009B), parameters, one final byte @..~.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                skip_csi(&mut chars);
            }
            '\u{9b}' => skip_csi(&mut chars),
            // OSC (titles, hyperlinks) and other strings: up to BEL or ESC \.
            '\u{1b}' if matches!(chars.peek(), Some(']' | 'P' | 'X' | '^' | '_')) => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            // Any other escape: ESC and the one character it selects.
            '\u{1b}' => {
                chars.next();
            }
            '\r' if chars.peek().is_none() => {}
            '\r' => out.clear(),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

async fn writer(
    pool: PgPool,
    publisher: Publisher,
    deployment: Referenced,
    mut rx: mpsc::UnboundedReceiver<Msg>,
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
            write_batch(&pool, &publisher, &deployment, &batch).await;
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
    deployment: &Referenced,
    batch: &[NewLog],
) {
    let id = deployment.deployment.deployment_id;
    // A batch PostgreSQL refuses is split, so one bad line never takes
    // another with it; the parts are written in order.
    let mut parts = vec![batch];
    while let Some(part) = parts.pop() {
        match store(pool, deployment, part).await {
            // The lines are stored; live viewers catch up from PostgreSQL
            // if publishing fails.
            Ok(events) => {
                oec_common::metrics::count(
                    "oec_log_lines_written_total",
                    "Deployment log lines committed to PostgreSQL.",
                    &[],
                    part.len() as u64,
                );
                publisher.publish_or_warn(&events).await;
                // From the line's stored timestamp to its event on the channel.
                let now = chrono::Utc::now();
                let lags = events.iter().filter_map(|e| match &e.event {
                    oec_common::events::Event::DeploymentProgress(p) => Some(
                        ((now - p.timestamp).num_microseconds().unwrap_or(0) as f64 / 1e6).max(0.0),
                    ),
                    _ => None,
                });
                oec_common::metrics::observe_all(
                    "oec_event_publish_lag_seconds",
                    "From a log line's commit (its timestamp) to its publication on the events channel.",
                    &[],
                    lags,
                );
            }
            Err(e) if part.len() > 1 => {
                tracing::warn!(deployment = %id, error = %e, lines = part.len(), "a batch of log lines was refused; splitting it");
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
            }
            Err(e) => {
                tracing::error!(deployment = %id, seq = part[0].seq, error = %e, "a log line could not be stored");
            }
        }
    }
}

/// Commits lines, retrying a few times while the database is unreachable (a
/// lost line is worse than a late one); a refusal is answered at once.
async fn store(
    pool: &PgPool,
    deployment: &Referenced,
    lines: &[NewLog],
) -> sqlx::Result<Vec<Envelope>> {
    let mut attempt = 0u64;
    loop {
        match lifecycle::log_lines(pool, deployment, lines).await {
            Err(e) if attempt < 4 && !matches!(e, sqlx::Error::Database(_)) => {
                tracing::warn!(deployment = %deployment.deployment.deployment_id, error = %e, attempt, "storing log lines failed; retrying");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_keeps_text_and_drops_what_a_terminal_would_obey() {
        assert_eq!(printable("plain\ttext é"), "plain\ttext é");
        assert_eq!(printable("a\u{0}b"), "a\u{fffd}b");
        assert_eq!(printable("\u{1b}[1;31mred\u{1b}[0m done"), "red done");
        assert_eq!(printable("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(printable("\u{1b}]8;;http://x\u{1b}\\link"), "link");
        assert_eq!(printable("\u{9b}2Jcleared"), "cleared");
        assert_eq!(printable("10%\r50%\r100%"), "100%");
        assert_eq!(printable("line\r"), "line");
        assert_eq!(printable("bell\u{7}\u{7f}"), "bell\u{fffd}\u{fffd}");
        assert_eq!(printable("esc at end \u{1b}"), "esc at end ");
    }
}
