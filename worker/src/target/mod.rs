//! The one seam between the pipeline and a machine: run a command (streaming
//! its output lines), write a file, and a Docker client for that machine.
//! Invariant: only this module does SSH or Docker I/O setup.

pub mod local;
pub mod shell;
pub mod ssh;

use bollard::Docker;

/// What a finished command left behind.
#[derive(Debug)]
pub struct CommandOutput {
    pub exit_code: u32,
    /// The last lines of output, for error messages.
    pub tail: Vec<String>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Why a connection could not be made, in the spec's `error_code` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectErrorCode {
    AuthFailed,
    HostKeyMismatch,
    ConnectionRefused,
    Timeout,
    Unreachable,
    KeyInvalid,
}

impl ConnectErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectErrorCode::AuthFailed => "AUTH_FAILED",
            ConnectErrorCode::HostKeyMismatch => "HOST_KEY_MISMATCH",
            ConnectErrorCode::ConnectionRefused => "CONNECTION_REFUSED",
            ConnectErrorCode::Timeout => "TIMEOUT",
            ConnectErrorCode::Unreachable => "UNREACHABLE",
            ConnectErrorCode::KeyInvalid => "KEY_INVALID",
        }
    }

    /// What to try, in the spirit of the spec's troubleshooting hints.
    pub fn hint(self) -> &'static str {
        match self {
            ConnectErrorCode::AuthFailed => "check the server's SSH user and password or key",
            ConnectErrorCode::HostKeyMismatch => {
                "the server's host key differs from the stored fingerprint"
            }
            ConnectErrorCode::ConnectionRefused => "check the SSH port and that sshd runs",
            ConnectErrorCode::Timeout => "check the server address and firewall rules",
            ConnectErrorCode::Unreachable => "check the server address",
            ConnectErrorCode::KeyInvalid => "the stored private key cannot be read",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {detail}")]
pub struct ConnectError {
    pub code: ConnectErrorCode,
    pub detail: String,
}

/// A machine to deploy on.
pub enum Target {
    Ssh(ssh::SshTarget),
    Local(local::LocalTarget),
}

impl Target {
    /// Runs `command` through the machine's shell; each output line goes to
    /// `on_line` as it arrives.
    pub async fn run(
        &self,
        command: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> anyhow::Result<CommandOutput> {
        match self {
            Target::Ssh(t) => t.run(command, on_line).await,
            Target::Local(t) => t.run(command, on_line).await,
        }
    }

    /// Writes `contents` to `path` with `mode`, creating the directory.
    pub async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> anyhow::Result<()> {
        match self {
            Target::Ssh(t) => t.write_file(path, contents, mode).await,
            Target::Local(t) => t.write_file(path, contents, mode).await,
        }
    }

    /// A TCP connection to `ip:port` made by the machine (a container's
    /// address, or the machine's own loopback, is reachable from it only).
    pub async fn connect(&self, ip: std::net::IpAddr, port: u16) -> anyhow::Result<Box<dyn Conn>> {
        Ok(match self {
            Target::Ssh(t) => Box::new(t.open_tcp(ip, port).await?),
            Target::Local(_) => Box::new(tokio::net::TcpStream::connect((ip, port)).await?),
        })
    }

    /// The HTTP status of `GET http://{ip}:{port}{path}` as seen from the
    /// machine.
    pub async fn http_status(
        &self,
        ip: std::net::IpAddr,
        port: u16,
        path: &str,
    ) -> anyhow::Result<u16> {
        let timeout = std::time::Duration::from_secs(5);
        let fut = async {
            let stream = self.connect(ip, port).await?;
            http_status_over(stream, &ip.to_string(), path).await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
    }

    pub fn docker(&self) -> &Docker {
        match self {
            Target::Ssh(t) => t.docker(),
            Target::Local(t) => t.docker(),
        }
    }
}

/// The remote command that writes stdin to `path` atomically.
fn write_file_command(path: &str, mode: u32) -> anyhow::Result<String> {
    anyhow::ensure!(
        path.starts_with('/') && !path.ends_with('/'),
        "not an absolute file path: {path}"
    );
    let dir = std::path::Path::new(path)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let tmp = format!("{path}.oec-tmp");
    Ok(format!(
        "mkdir -p {d} && (umask 077 && cat > {t}) && chmod {mode:o} {t} && mv -f {t} {p}",
        d = shell::quote(&dir),
        t = shell::quote(&tmp),
        p = shell::quote(path),
    ))
}

/// A byte stream to a TCP port, made by a machine.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Conn for T {}

/// A minimal HTTP/1.0 GET with `Host: {host}`: the status code of the answer.
pub async fn http_status_over<S>(mut stream: S, host: &str, path: &str) -> anyhow::Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: oec-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer"))?;
    Ok(status)
}
