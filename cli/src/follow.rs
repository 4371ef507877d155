//! Following a deployment live over its event stream: on a terminal, the
//! stages as a live multi-line display (a spinner on the running stage,
//! ✓ ✗ ⚠ ↷ and durations on finished ones, the current line beneath, the
//! total at the end); otherwise plain lines, each log line once. A dropped
//! connection is resumed with `Last-Event-ID` (1 s doubling to 30 s, 10
//! attempts), so no line is missed or printed twice.

use std::time::Duration;

use anyhow::bail;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::Client;

/// How a followed deployment ended.
pub struct Ended {
    pub status: String,
    pub deployment: Value,
}

impl Ended {
    /// 0 success, 1 failed, 2 cancelled.
    pub fn exit_code(&self) -> i32 {
        match self.status.as_str() {
            "success" => 0,
            "cancelled" => 2,
            _ => 1,
        }
    }
}

/// Which log lines to show.
#[derive(Default, Clone)]
pub struct Filter {
    pub level: Option<String>,
    pub step: Option<String>,
}

impl Filter {
    fn keeps(&self, line: &Value) -> bool {
        self.level
            .as_deref()
            .is_none_or(|l| line["level"].as_str() == Some(l))
            && self
                .step
                .as_deref()
                .is_none_or(|s| line["step"].as_str() == Some(s))
    }
}

/// One log line as plain text.
pub fn plain_line(line: &Value) -> String {
    let time = line["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    format!(
        "{time} {:<7} [{}] {}",
        line["level"].as_str().unwrap_or_default().to_uppercase(),
        line["step"].as_str().unwrap_or("-"),
        line["message"].as_str().unwrap_or_default()
    )
}

fn icon(status: &str) -> &'static str {
    match status {
        "completed" => "✓",
        "failed" => "✗",
        "warning" => "⚠",
        "skipped" => "↷",
        "running" => "⟳",
        _ => "○",
    }
}

fn seconds(v: &Value) -> String {
    v.as_f64().map(|s| format!("{s:.1}s")).unwrap_or_default()
}

/// The live stage display of a terminal.
struct Stages {
    multi: MultiProgress,
    bars: Vec<(String, String, ProgressBar)>,
    line: ProgressBar,
}

impl Stages {
    fn new(progress: &Value) -> Stages {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(15));
        let mut bars = Vec::new();
        for step in progress["steps"].as_array().into_iter().flatten() {
            let bar = multi.add(ProgressBar::new_spinner());
            bars.push((
                step["id"].as_str().unwrap_or_default().to_owned(),
                step["name"].as_str().unwrap_or_default().to_owned(),
                bar,
            ));
        }
        let line = multi.add(ProgressBar::new_spinner());
        line.set_style(ProgressStyle::with_template("  {msg}").expect("template"));
        let s = Stages { multi, bars, line };
        s.update(progress);
        s
    }

    fn update(&self, progress: &Value) {
        let steps = progress["steps"].as_array().cloned().unwrap_or_default();
        for (id, name, bar) in &self.bars {
            let Some(step) = steps.iter().find(|s| s["id"].as_str() == Some(id)) else {
                continue;
            };
            let status = step["status"].as_str().unwrap_or("pending");
            if status == "running" {
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .expect("template")
                        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
                );
                bar.enable_steady_tick(Duration::from_millis(100));
                bar.set_message(name.clone());
            } else {
                bar.disable_steady_tick();
                bar.set_style(ProgressStyle::with_template("{msg}").expect("template"));
                bar.set_message(format!(
                    "{} {name} {}",
                    icon(status),
                    seconds(&step["duration_seconds"])
                ));
                bar.tick();
            }
        }
    }

    fn line(&self, text: &str) {
        self.line.set_message(text.to_owned());
    }

    fn finish(&self, progress: &Value, summary: &str) {
        self.update(progress);
        for (_, _, bar) in &self.bars {
            bar.finish();
        }
        self.line.finish_with_message(summary.to_owned());
        let _ = self.multi.clear();
        // What the display showed, kept on the screen once it stops.
        for (id, name, _) in &self.bars {
            if let Some(step) = progress["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["id"].as_str() == Some(id))
            {
                eprintln!(
                    "{} {name} {}",
                    icon(step["status"].as_str().unwrap_or("pending")),
                    seconds(&step["duration_seconds"])
                );
            }
        }
        eprintln!("{summary}");
    }
}

/// The line that ends a followed deployment.
fn summary(d: &Value) -> String {
    let mut s = format!(
        "Deployment {} {} in {}",
        d["id"].as_str().unwrap_or_default(),
        d["status"].as_str().unwrap_or_default(),
        seconds(&d["duration_seconds"])
    );
    if let Some(e) = d["error_message"].as_str() {
        s.push_str(&format!(": {e}"));
    }
    s
}

/// What following shows while the deployment runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// The live stage display (a terminal).
    Stages,
    /// Each kept log line once, on stdout.
    Lines,
    /// Nothing (`--output json` prints the deployment at the end).
    Nothing,
}

/// Follows `deployment` until it ends.
pub async fn follow(
    client: &mut Client,
    deployment: &str,
    show: Show,
    filter: &Filter,
) -> anyhow::Result<Ended> {
    let display = if show == Show::Stages {
        Some(Stages::new(
            &client
                .get(&format!("/deployments/{deployment}/progress"))
                .await?,
        ))
    } else {
        None
    };
    let mut last_id: Option<String> = None;
    let mut last_seq: i64 = -1;
    let mut step: Option<String> = None;
    let mut delay = Duration::from_secs(1);
    let mut failures = 0;
    loop {
        match client.events(deployment, last_id.as_deref()).await {
            Ok(mut events) => {
                while let Some(e) = events.next().await {
                    // A frame we already have (a replay overlapping what we saw).
                    let seq = e.id.as_deref().and_then(|i| i.parse::<i64>().ok());
                    if let Some(seq) = seq {
                        if seq <= last_seq {
                            continue;
                        }
                        last_seq = seq;
                        last_id = e.id.clone();
                    }
                    delay = Duration::from_secs(1);
                    failures = 0;
                    let v: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
                    let data = &v["data"];
                    match e.event.as_deref() {
                        Some("deployment_progress") => {
                            if let Some(d) = &display {
                                if data["step"].as_str() != step.as_deref() {
                                    step = data["step"].as_str().map(str::to_owned);
                                    d.update(
                                        &client
                                            .get(&format!("/deployments/{deployment}/progress"))
                                            .await?,
                                    );
                                }
                                d.line(data["message"].as_str().unwrap_or_default());
                            } else if show == Show::Lines && filter.keeps(data) {
                                println!("{}", plain_line(data));
                            }
                        }
                        Some("deployment_finished") => break,
                        _ => {}
                    }
                }
            }
            Err(e) => {
                // An answer from the API (not found, forbidden) is final.
                if e.downcast_ref::<crate::client::ApiError>().is_some() {
                    return Err(e);
                }
                eprintln!("event stream: {e:#}");
            }
        }
        let d = client.get(&format!("/deployments/{deployment}")).await?;
        let status = d["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "success" | "failed" | "cancelled") {
            let s = summary(&d);
            match &display {
                Some(disp) => {
                    let p = client
                        .get(&format!("/deployments/{deployment}/progress"))
                        .await?;
                    disp.finish(&p, &s);
                }
                None if show == Show::Lines => eprintln!("{s}"),
                None => {}
            }
            return Ok(Ended {
                status,
                deployment: d,
            });
        }
        failures += 1;
        if failures > 10 {
            bail!(
                "the event stream dropped 10 times in a row; `oec logs {deployment} --follow` resumes"
            );
        }
        eprintln!("(connection lost; resuming in {}s)", delay.as_secs());
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
