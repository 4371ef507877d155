//! Process metrics in the Prometheus text format (version 0.0.4): counters,
//! gauges and histograms with labels, kept in one process-wide registry and
//! rendered by `/metrics` (the api's route, or the worker's and scheduler's
//! `OEC_METRICS_BIND` listener, [`serve`]).
//!
//! Small on purpose: a metric is named where it is updated, with its help
//! text; updating takes one short lock, which is nothing next to the work it
//! counts (a request, a log batch, a stage).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

/// Histogram buckets in seconds, from a fast request to a slow stage.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

enum Value {
    Number(f64),
    /// Cumulative counts per bucket, then the sum and the count.
    Histogram(Box<[u64; BUCKETS.len()]>, f64, u64),
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<String, Value>,
}

static REGISTRY: LazyLock<Mutex<BTreeMap<&'static str, Family>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// `{k="v",...}` with Prometheus's escaping, in the order given.
fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn update(
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &[(&str, &str)],
    f: impl FnOnce(&mut Value),
) {
    let Ok(mut registry) = REGISTRY.lock() else {
        return;
    };
    let family = registry.entry(name).or_insert_with(|| Family {
        help,
        kind,
        series: BTreeMap::new(),
    });
    let value = family
        .series
        .entry(label_set(labels))
        .or_insert_with(|| match kind {
            Kind::Histogram => Value::Histogram(Box::new([0; BUCKETS.len()]), 0.0, 0),
            _ => Value::Number(0.0),
        });
    f(value);
}

/// Adds `by` to a counter.
pub fn count(name: &'static str, help: &'static str, labels: &[(&str, &str)], by: u64) {
    update(name, help, Kind::Counter, labels, |v| {
        if let Value::Number(n) = v {
            *n += by as f64;
        }
    });
}

/// Sets a gauge.
pub fn set(name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
    update(name, help, Kind::Gauge, labels, |v| {
        if let Value::Number(n) = v {
            *n = value;
        }
    });
}

/// Adds `by` (negative to take away) to a gauge.
pub fn add(name: &'static str, help: &'static str, labels: &[(&str, &str)], by: f64) {
    update(name, help, Kind::Gauge, labels, |v| {
        if let Value::Number(n) = v {
            *n += by;
        }
    });
}

/// Forgets every series of a gauge, before setting what a scrape read anew
/// (a combination of labels that is gone then reads as gone, not stale).
pub fn clear(name: &'static str) {
    if let Ok(mut registry) = REGISTRY.lock()
        && let Some(family) = registry.get_mut(name)
    {
        family.series.clear();
    }
}

/// Records one observation (seconds) in a histogram.
pub fn observe(name: &'static str, help: &'static str, labels: &[(&str, &str)], seconds: f64) {
    observe_all(name, help, labels, [seconds]);
}

/// Records several observations of one series under one lock.
pub fn observe_all(
    name: &'static str,
    help: &'static str,
    labels: &[(&str, &str)],
    seconds: impl IntoIterator<Item = f64>,
) {
    update(name, help, Kind::Histogram, labels, |v| {
        if let Value::Histogram(buckets, sum, n) = v {
            for s in seconds {
                for (b, le) in buckets.iter_mut().zip(BUCKETS) {
                    if s <= le {
                        *b += 1;
                    }
                }
                *sum += s;
                *n += 1;
            }
        }
    });
}

/// Every metric of the process, as Prometheus reads them.
pub fn render() -> String {
    let mut out = String::new();
    let Ok(registry) = REGISTRY.lock() else {
        return out;
    };
    for (name, family) in registry.iter() {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
        for (labels, value) in &family.series {
            match value {
                Value::Number(n) => {
                    let _ = writeln!(out, "{name}{labels} {n}");
                }
                Value::Histogram(buckets, sum, count) => {
                    // `le` joins the series' own labels.
                    let with = |le: &str| match labels.strip_suffix('}') {
                        Some(open) => format!("{open},le=\"{le}\"}}"),
                        None => format!("{{le=\"{le}\"}}"),
                    };
                    for (b, le) in buckets.iter().zip(BUCKETS) {
                        let _ = writeln!(out, "{name}_bucket{} {b}", with(&le.to_string()));
                    }
                    let _ = writeln!(out, "{name}_bucket{} {count}", with("+Inf"));
                    let _ = writeln!(out, "{name}_sum{labels} {sum}");
                    let _ = writeln!(out, "{name}_count{labels} {count}");
                }
            }
        }
    }
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` (anything else: 404) on `bind` until the process
/// ends: the worker's and the scheduler's listener.
pub async fn serve(bind: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics listening");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                // The request head only; a scrape has no body.
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    true
                })
                .await;
                if !matches!(read, Ok(true)) {
                    return;
                }
                let line = buf.split(|b| *b == b'\r').next().unwrap_or_default();
                let ok = line.starts_with(b"GET /metrics ") || line.starts_with(b"GET /metrics?");
                let (status, body) = if ok {
                    ("200 OK", render())
                } else {
                    ("404 Not Found", "only GET /metrics here\n".to_owned())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_prometheus_text_with_labels_escaped_and_cumulative_buckets() {
        count("t_total", "A counter.", &[("k", "a\"b")], 2);
        count("t_total", "A counter.", &[("k", "a\"b")], 1);
        observe("t_seconds", "A histogram.", &[("stage", "cloning")], 0.3);
        observe("t_seconds", "A histogram.", &[("stage", "cloning")], 7.0);
        set("t_gauge", "A gauge.", &[], 4.5);
        let text = render();
        assert!(text.contains("# TYPE t_total counter\n"), "{text}");
        assert!(text.contains("t_total{k=\"a\\\"b\"} 3\n"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{stage=\"cloning\",le=\"0.25\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{stage=\"cloning\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{stage=\"cloning\",le=\"10\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{stage=\"cloning\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_sum{stage=\"cloning\"} 7.3\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_count{stage=\"cloning\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE t_gauge gauge\nt_gauge 4.5\n"),
            "{text}"
        );
    }
}
