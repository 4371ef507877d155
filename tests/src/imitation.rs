//! A tiny HTTP/1.1 server for what cannot be reached from here: Cloudflare's
//! API (an accepted imitation: it cannot be reached from here) and a download link for a backup. It
//! records every request it gets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_default()
    }
}

/// What the handler answers: status, content type, body.
pub type Reply = (u16, &'static str, Vec<u8>);
pub type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct Imitation {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Imitation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Imitation {
    /// Listens on `bind` (port 0 picks one).
    pub async fn start(bind: &str, handler: Handler) -> Imitation {
        let listener = TcpListener::bind(bind).await.expect("bind imitation");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, handler, seen).await;
                });
            }
        });
        Imitation {
            addr,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    handler: Handler,
    seen: Arc<Mutex<Vec<Request>>>,
) -> std::io::Result<()> {
    // One request per connection (`Connection: close`).
    let mut reader = BufReader::new(stream);
    {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).await?;
        let request = Request {
            method,
            path,
            headers,
            body,
        };
        let (status, ctype, out) = handler(&request);
        if let Ok(mut s) = seen.lock() {
            s.push(request);
        }
        // A 401 challenges for Basic credentials, as HTTP servers (git
        // hosts among them) do; git only sends credentials when challenged.
        let challenge = if status == 401 {
            "WWW-Authenticate: Basic realm=\"oec-test\"\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{challenge}Content-Length: {}\r\nConnection: close\r\n\r\n",
            out.len()
        );
        let stream = reader.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&out).await?;
        stream.flush().await?;
    }
    Ok(())
}

/// Cloudflare's v4 DNS records API for one zone, keeping records in memory.
/// Every record it creates or updates is also written to dnsmasq's host
/// folder, as if it had propagated, so DNS verification sees it for real.
pub fn cloudflare(token: &str, zone: &str, dns_hosts_dir: &str) -> Handler {
    let token = format!("Bearer {token}");
    let base = format!("/client/v4/zones/{zone}/dns_records");
    let dir = dns_hosts_dir.to_owned();
    let records: Arc<Mutex<Vec<serde_json::Value>>> = Arc::new(Mutex::new(Vec::new()));
    Arc::new(move |r: &Request| {
        let json = |status: u16, v: serde_json::Value| {
            (status, "application/json", v.to_string().into_bytes())
        };
        if r.header("authorization") != Some(token.as_str()) {
            return json(
                403,
                serde_json::json!({"success": false, "errors": [{"code": 9109, "message": "Invalid access token"}], "result": null}),
            );
        }
        let Some(rest) = r.path.strip_prefix(&base) else {
            return json(
                404,
                serde_json::json!({"success": false, "errors": [{"code": 7003, "message": "Could not route"}]}),
            );
        };
        let mut records = records.lock().expect("records");
        match r.method.as_str() {
            "GET" => {
                let name = rest
                    .split("name=")
                    .nth(1)
                    .unwrap_or_default()
                    .split('&')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let found: Vec<_> = records
                    .iter()
                    .filter(|x| x["name"] == name.as_str())
                    .cloned()
                    .collect();
                json(
                    200,
                    serde_json::json!({"success": true, "errors": [], "result": found}),
                )
            }
            "POST" | "PUT" => {
                let mut rec = r.json();
                let id = if r.method == "PUT" {
                    rest.trim_start_matches('/').to_owned()
                } else {
                    uuid::Uuid::new_v4().simple().to_string()
                };
                rec["id"] = serde_json::json!(id);
                records.retain(|x| x["id"] != id.as_str());
                records.push(rec.clone());
                let name = rec["name"].as_str().unwrap_or_default();
                let content = rec["content"].as_str().unwrap_or_default();
                let _ = std::fs::write(format!("{dir}/{name}"), format!("{content} {name}\n"));
                json(
                    200,
                    serde_json::json!({"success": true, "errors": [], "result": rec}),
                )
            }
            "DELETE" => {
                let id = rest.trim_start_matches('/');
                let Some(at) = records.iter().position(|x| x["id"] == id) else {
                    return json(
                        404,
                        serde_json::json!({"success": false, "errors": [{"code": 81044, "message": "Record does not exist."}], "result": null}),
                    );
                };
                let rec = records.remove(at);
                let name = rec["name"].as_str().unwrap_or_default();
                let _ = std::fs::remove_file(format!("{dir}/{name}"));
                json(
                    200,
                    serde_json::json!({"success": true, "errors": [], "result": {"id": id}}),
                )
            }
            _ => json(
                405,
                serde_json::json!({"success": false, "errors": [{"code": 10000, "message": "method"}]}),
            ),
        }
    })
}

/// Serves `body` at every path.
pub fn file(body: Vec<u8>) -> Handler {
    Arc::new(move |_| (200, "application/zip", body.clone()))
}

/// Answers 401 to everything, as a git host does to a bad token.
pub fn unauthorized() -> Handler {
    Arc::new(|_| (401, "text/plain", b"Unauthorized".to_vec()))
}
