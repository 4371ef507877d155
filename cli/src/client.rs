//! The API as the CLI calls it: bearer token, one refresh (and a saved new
//! pair) when the access token has expired, the API's errors as messages,
//! and a deployment's event stream that resumes with `Last-Event-ID`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{self, Config};

pub struct Client {
    http: reqwest::Client,
    config: Config,
}

/// An answer that is not a success, as the API words it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, HTTP {})",
            self.message,
            self.code,
            self.status.as_u16()
        )
    }
}

impl std::error::Error for ApiError {}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    refresh_token: String,
}

fn http() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("oec-cli/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    ApiError {
        status,
        code: body["error"].as_str().unwrap_or("error").to_owned(),
        message: body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()),
    }
    .into()
}

/// Signs in and saves the session.
pub async fn login(url: &str, email: &str, password: &str) -> anyhow::Result<()> {
    let api_url = url
        .trim_end_matches('/')
        .trim_end_matches("/api/v1")
        .to_owned();
    let resp = http()?
        .post(format!("{api_url}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .with_context(|| format!("reaching {api_url}"))?;
    if !resp.status().is_success() {
        return Err(error_of(resp).await);
    }
    let t: Tokens = resp.json().await.context("the login answer")?;
    config::save(&Config {
        api_url,
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        email: email.to_owned(),
    })
}

impl Client {
    pub fn from_config() -> anyhow::Result<Client> {
        Ok(Client {
            http: http()?,
            config: config::load()?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.config.api_url)
    }

    /// Trades the refresh token for a new pair and saves it.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(self.url("/auth/refresh"))
            .json(&json!({"refresh_token": self.config.refresh_token}))
            .send()
            .await?;
        if !resp.status().is_success() {
            let e = error_of(resp).await;
            bail!("{e}; the session ended: run `oec login` again");
        }
        let t: Tokens = resp.json().await?;
        self.config.access_token = t.access_token;
        self.config.refresh_token = t.refresh_token;
        config::save(&self.config)
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let (mut refreshed, mut dropped) = (false, 0u32);
        loop {
            let mut req = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(&self.config.access_token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(resp) => resp,
                // A GET is safe to send again: a dropped connection (the
                // pooled one was cut, the api restarted) is retried three
                // times, 0.5 s, 1 s and 2 s apart.
                Err(e)
                    if method == Method::GET
                        && dropped < 3
                        && (e.is_connect() || e.is_request()) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(500 << dropped)).await;
                    dropped += 1;
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("reaching {}", self.config.api_url));
                }
            };
            if resp.status() == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.refresh().await?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(error_of(resp).await);
            }
            return Ok(resp);
        }
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<Value> {
        Ok(self.send(Method::GET, path, None).await?.json().await?)
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self
            .send(Method::POST, path, Some(body))
            .await?
            .json()
            .await?)
    }

    /// Every row of a list, page after page.
    pub async fn list(&mut self, path: &str) -> anyhow::Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut rows = Vec::new();
        loop {
            let page = self
                .get(&format!("{path}{sep}limit=500&skip={}", rows.len()))
                .await?;
            let page = page.as_array().cloned().unwrap_or_default();
            let n = page.len();
            rows.extend(page);
            if n < 500 {
                return Ok(rows);
            }
        }
    }

    /// Opens a deployment's event stream after `last_id`; a 401 refreshes
    /// the token once.
    pub async fn events(
        &mut self,
        deployment: &str,
        last_id: Option<&str>,
    ) -> anyhow::Result<Events> {
        for attempt in 0..2 {
            let mut req = self
                .http
                .get(self.url(&format!("/deployments/{deployment}/events")))
                .bearer_auth(&self.config.access_token)
                .header("Accept", "text/event-stream");
            if let Some(id) = last_id {
                req = req.header("Last-Event-ID", id);
            }
            let resp = req.send().await?;
            if resp.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.refresh().await?;
                continue;
            }
            if !resp.status().is_success() {
                return Err(error_of(resp).await);
            }
            return Ok(Events {
                body: Box::pin(resp.bytes_stream()),
                buf: Vec::new(),
            });
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// One server-sent event.
#[derive(Debug, Default, Clone)]
pub struct Sse {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

pub struct Events {
    body: ByteStream,
    buf: Vec<u8>,
}

impl Events {
    /// The next event; `None` when the server ended the stream (or the
    /// connection dropped: the caller reconnects with the last id).
    pub async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(frame) = self.take_frame() {
                if let Some(e) = parse(&frame) {
                    return Some(e);
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    fn take_frame(&mut self) -> Option<String> {
        let text = &self.buf;
        let end = text
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|i| (i, i + 2))?;
        let frame = String::from_utf8_lossy(&text[..end.0]).into_owned();
        self.buf.drain(..end.1);
        Some(frame)
    }
}

/// A frame's fields; comments (keep-alives) only: `None`.
fn parse(frame: &str) -> Option<Sse> {
    let mut e = Sse::default();
    let mut data = Vec::new();
    for line in frame.lines() {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => e.id = Some(value.to_owned()),
            "event" => e.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    if e.event.is_none() && data.is_empty() {
        return None;
    }
    e.data = data.join("\n");
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_ids_events_and_multi_line_data_and_comments_are_skipped() {
        let e = parse("id: 7\nevent: deployment_progress\ndata: {\"a\":\ndata: 1}").expect("event");
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.event.as_deref(), Some("deployment_progress"));
        assert_eq!(e.data, "{\"a\":\n1}");
        assert!(parse(": keep-alive").is_none());
    }
}
