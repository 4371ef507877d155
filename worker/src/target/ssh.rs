//! A remote server over one SSH session (password or key). Its Docker engine
//! is reached through the same session: a private unix socket here forwards
//! each Docker API connection over a new SSH channel running
//! `docker system dial-stdio` on the server, so no Docker port is opened there.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_ssh2_tokio::{AuthMethod, Client, ServerCheckMethod};
use bollard::{API_DEFAULT_VERSION, Docker};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{CommandOutput, ConnectError, ConnectErrorCode};

pub enum Credentials {
    Password(String),
    Key(String),
}

pub struct SshParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    /// `SHA256:...` as `ssh-keygen -l` prints it; when set, the server's host
    /// key must match it.
    pub host_key_fingerprint: Option<String>,
}

/// Reads the server's host key without authenticating (the handshake is
/// abandoned as soon as the key is seen).
struct HostKeyProbe(Arc<std::sync::Mutex<Option<russh::keys::PublicKey>>>);

impl russh::client::Handler for HostKeyProbe {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKey,
    ) -> Result<bool, Self::Error> {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some(key.clone());
        }
        Ok(false)
    }
}

/// The server's host key, if its fingerprint is `expected` (any key when
/// nothing is expected yet: trust on first use): its `SHA256:` fingerprint
/// and the base64 blob the real session then pins, so the key cannot change
/// between the check and the login, and no credential is ever sent to a
/// server whose key was not checked.
async fn pinned_host_key(
    host: &str,
    port: u16,
    expected: Option<&str>,
    timeout: Duration,
) -> Result<(String, String), ConnectError> {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let config = Arc::new(russh::client::Config::default());
    let probe = russh::client::connect(config, (host, port), HostKeyProbe(seen.clone()));
    match tokio::time::timeout(timeout, probe).await {
        Err(_) => {
            return Err(ConnectError {
                code: ConnectErrorCode::Timeout,
                detail: format!("no answer within {timeout:?}"),
            });
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let text = format!("{e:?}").to_lowercase();
            if text.contains("refused") {
                return Err(ConnectError {
                    code: ConnectErrorCode::ConnectionRefused,
                    detail: e.to_string(),
                });
            }
        }
    }
    let key = seen
        .lock()
        .ok()
        .and_then(|k| k.clone())
        .ok_or_else(|| ConnectError {
            code: ConnectErrorCode::Unreachable,
            detail: "the server sent no host key".into(),
        })?;
    let actual = key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
    if let Some(expected) = expected
        && actual != expected
    {
        return Err(ConnectError {
            code: ConnectErrorCode::HostKeyMismatch,
            detail: format!("expected {expected}, the server presented {actual}"),
        });
    }
    let openssh = key.to_openssh().map_err(|e| ConnectError {
        code: ConnectErrorCode::Unreachable,
        detail: e.to_string(),
    })?;
    let blob = openssh
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| ConnectError {
            code: ConnectErrorCode::Unreachable,
            detail: "unreadable host key".into(),
        })?;
    Ok((actual, blob))
}

pub struct SshTarget {
    /// The fingerprint of the host key this session was pinned to.
    pub host_key_fingerprint: String,
    client: Arc<Client>,
    docker: Docker,
    forwarder: JoinHandle<()>,
    socket_dir: PathBuf,
}

impl Drop for SshTarget {
    fn drop(&mut self) {
        self.forwarder.abort();
        let _ = std::fs::remove_dir_all(&self.socket_dir);
    }
}

fn classify(e: &async_ssh2_tokio::Error) -> ConnectErrorCode {
    use async_ssh2_tokio::Error as E;
    match e {
        E::PasswordWrong | E::KeyAuthFailed | E::KeyboardInteractiveAuthFailed => {
            ConnectErrorCode::AuthFailed
        }
        E::KeyInvalid(_) => ConnectErrorCode::KeyInvalid,
        E::ServerCheckFailed => ConnectErrorCode::HostKeyMismatch,
        _ => {
            let text = format!("{e:?}").to_lowercase();
            if text.contains("refused") {
                ConnectErrorCode::ConnectionRefused
            } else if text.contains("timed out") || text.contains("timeout") {
                ConnectErrorCode::Timeout
            } else {
                ConnectErrorCode::Unreachable
            }
        }
    }
}

impl SshTarget {
    pub async fn connect(p: SshParams) -> Result<SshTarget, ConnectError> {
        let auth = match &p.credentials {
            Credentials::Password(pw) => AuthMethod::with_password(pw),
            Credentials::Key(k) => AuthMethod::with_key(k, None),
        };
        let (host_key_fingerprint, blob) = pinned_host_key(
            &p.host,
            p.port,
            p.host_key_fingerprint.as_deref(),
            p.connect_timeout,
        )
        .await?;
        let check = ServerCheckMethod::PublicKey(blob);
        let connect = Client::connect((p.host.as_str(), p.port), &p.user, auth, check);
        let client = match tokio::time::timeout(p.connect_timeout, connect).await {
            Err(_) => {
                return Err(ConnectError {
                    code: ConnectErrorCode::Timeout,
                    detail: format!("no answer within {:?}", p.connect_timeout),
                });
            }
            Ok(Err(e)) => {
                return Err(ConnectError {
                    code: classify(&e),
                    detail: e.to_string(),
                });
            }
            Ok(Ok(c)) => Arc::new(c),
        };
        let socket_dir =
            std::env::temp_dir().join(format!("oec-docker-{}", uuid::Uuid::new_v4().simple()));
        let (docker, forwarder) =
            forward_docker(client.clone(), &socket_dir)
                .await
                .map_err(|e| ConnectError {
                    code: ConnectErrorCode::Unreachable,
                    detail: format!("{e:#}"),
                })?;
        Ok(SshTarget {
            host_key_fingerprint,
            client,
            docker,
            forwarder,
            socket_dir,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// A TCP connection made by the server (SSH `direct-tcpip`).
    pub async fn open_tcp(
        &self,
        ip: std::net::IpAddr,
        port: u16,
    ) -> anyhow::Result<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + use<>> {
        let channel = self
            .client
            .open_direct_tcpip_channel(std::net::SocketAddr::new(ip, port), None)
            .await
            .with_context(|| format!("connecting to {ip}:{port} from the server"))?;
        Ok(channel.into_stream())
    }

    /// Runs a command under a pseudo-terminal, so that closing the channel
    /// (on cancel) hangs the remote process up instead of leaving it behind.
    pub async fn run(
        &self,
        command: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> anyhow::Result<CommandOutput> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let client = self.client.clone();
        let cmd = command.to_owned();
        let exec =
            tokio::spawn(async move { client.execute_io(&cmd, tx, None, None, true, None).await });
        // Aborts the remote command if this future is dropped (cancel).
        let _guard = AbortOnDrop(exec.abort_handle());
        let mut lines = LineSplitter::default();
        let mut tail = Tail::default();
        while let Some(chunk) = rx.recv().await {
            for line in lines.push(&chunk) {
                on_line(&line);
                tail.push(line);
            }
        }
        if let Some(line) = lines.finish() {
            on_line(&line);
            tail.push(line);
        }
        let exit_code = exec
            .await
            .context("ssh command task")?
            .context("running the command over SSH")?;
        Ok(CommandOutput {
            exit_code,
            tail: tail.0,
        })
    }
}

impl SshTarget {
    /// Writes a file atomically (temporary file, then rename), creating its
    /// directory; the content travels on the command's stdin, never in the
    /// command line.
    pub async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> anyhow::Result<()> {
        let cmd = super::write_file_command(path, mode)?;
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(16);
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(4);
        let client = self.client.clone();
        let exec = tokio::spawn(async move {
            client
                .execute_io(&cmd, out_tx, None, Some(in_rx), false, None)
                .await
        });
        let _guard = AbortOnDrop(exec.abort_handle());
        for chunk in contents.chunks(32 * 1024) {
            in_tx
                .send(chunk.to_vec())
                .await
                .context("sending the file")?;
        }
        // An empty chunk closes stdin.
        in_tx.send(Vec::new()).await.context("closing the file")?;
        let mut output = Vec::new();
        while let Some(chunk) = out_rx.recv().await {
            output.extend_from_slice(&chunk);
        }
        let code = exec
            .await
            .context("ssh write task")?
            .context("writing the file over SSH")?;
        anyhow::ensure!(
            code == 0,
            "writing {path} failed ({code}): {}",
            String::from_utf8_lossy(&output).trim()
        );
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The last 20 lines of a command's output.
#[derive(Default)]
struct Tail(Vec<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == 20 {
            self.0.remove(0);
        }
        self.0.push(line);
    }
}

/// Splits a byte stream into lines; a line may span chunks. Carriage returns
/// (a pty writes `\r\n`) are dropped.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            out.push(clean(&line[..line.len() - 1]));
        }
        out
    }

    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let line = clean(&self.buf);
        self.buf.clear();
        Some(line)
    }
}

fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_owned()
}

/// Serves a private unix socket whose connections are carried to the remote
/// Docker engine, and returns a bollard client on it.
async fn forward_docker(
    client: Arc<Client>,
    dir: &std::path::Path,
) -> anyhow::Result<(Docker, JoinHandle<()>)> {
    // Whoever can open the socket drives the server's Docker engine.
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .context("creating the Docker forwarding directory")?;
    let path = dir.join("docker.sock");
    let listener = UnixListener::bind(&path).context("binding the Docker forwarding socket")?;
    let forwarder = tokio::spawn(async move {
        while let Ok((mut local, _)) = listener.accept().await {
            let client = client.clone();
            tokio::spawn(async move {
                let Ok(channel) = client.get_channel().await else {
                    return;
                };
                if channel
                    .exec(true, "docker system dial-stdio")
                    .await
                    .is_err()
                {
                    return;
                }
                let mut remote = channel.into_stream();
                let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
            });
        }
    });
    let docker = Docker::connect_with_unix(&path.to_string_lossy(), 300, API_DEFAULT_VERSION)
        .context("creating the Docker client")?;
    Ok((docker, forwarder))
}

#[cfg(test)]
mod tests {
    use super::LineSplitter;

    #[test]
    fn lines_spanning_chunks_are_joined_and_crlf_is_trimmed() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\nx"), vec!["world", ""]);
        assert_eq!(s.finish().as_deref(), Some("x"));
        assert_eq!(s.finish(), None);
    }
}
