//! The measuring clients of the fan-out benchmark.
//!
//! The clients share a 2-core machine with the server they measure, so every
//! cycle they spend is taken from it. They run in a child process of their
//! own (`oec-bench fleet ...`, one per CPU, each with its share of the
//! connections): one thread, one epoll loop over its connections, no async
//! runtime, no lock, no allocation per event. The same
//! fleet measures oec's SSE stream and the baseline (one Redis subscription
//! per client), so both designs pay the same client costs.
//!
//! Protocol with the parent: the child prints `ready` once every connection
//! has seen its first message (`connected`, or Redis's `subscribe`
//! confirmation); it stops when a line arrives on stdin, then prints one
//! latency in microseconds per line, and `end closed=<connections lost>`.

use std::io::{BufRead as _, BufWriter, Read as _, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::{arg, now_us};

/// What the fleet connects to.
pub enum Target {
    /// An SSE stream: `GET {path}` on an HTTP/1.1 server.
    Sse { addr: String, path: String },
    /// SSE streams of several users: connection `i` gets `paths[i % len]`,
    /// from the source addresses `sources` in turn (several loopback
    /// addresses, for more connections than one address has ports).
    SseMany {
        addr: String,
        paths: std::path::PathBuf,
        sources: Vec<String>,
    },
    /// Redis pub/sub: `SUBSCRIBE {channel}`.
    Redis { addr: String, channel: String },
}

impl Target {
    fn args(&self) -> Vec<String> {
        match self {
            Target::Sse { addr, path } => {
                vec![
                    "--addr".into(),
                    addr.clone(),
                    "--sse-path".into(),
                    path.clone(),
                ]
            }
            Target::SseMany {
                addr,
                paths,
                sources,
            } => {
                let mut a = vec![
                    "--addr".into(),
                    addr.clone(),
                    "--sse-paths".into(),
                    paths.display().to_string(),
                ];
                if !sources.is_empty() {
                    a.extend(["--sources".into(), sources.join(",")]);
                }
                a
            }
            Target::Redis { addr, channel } => vec![
                "--addr".into(),
                addr.clone(),
                "--redis-channel".into(),
                channel.clone(),
            ],
        }
    }
}

/// A running fleet (the parent's side): one process per CPU, each with its
/// share of the connections, so that reading is as parallel as sending.
pub struct Fleet {
    procs: Vec<Proc>,
}

struct Proc {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Fleet {
    /// Starts `n` clients and waits until every one is connected.
    pub async fn start(target: &Target, n: usize) -> anyhow::Result<Fleet> {
        let count = std::thread::available_parallelism().map_or(1, |p| p.get());
        let mut procs = Vec::with_capacity(count);
        let mut offset = 0;
        for i in 0..count {
            let share = n / count + usize::from(i < n % count);
            if share == 0 {
                continue;
            }
            let mut child = tokio::process::Command::new(std::env::current_exe()?)
                .arg("fleet")
                .args(target.args())
                .args(["--n", &share.to_string(), "--offset", &offset.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting the client fleet")?;
            offset += share;
            let stdout = child.stdout.take().context("fleet stdout")?;
            procs.push(Proc {
                child,
                stdout: tokio::io::BufReader::new(stdout).lines(),
            });
        }
        for p in &mut procs {
            let line = tokio::time::timeout(Duration::from_secs(180), p.stdout.next_line())
                .await
                .context("the fleet's clients did not all connect within 180 s")??;
            if line.as_deref() != Some("ready") {
                bail!("the client fleet failed before connecting (see its stderr)");
            }
        }
        Ok(Fleet { procs })
    }

    /// Stops the clients; returns every latency (µs, sorted) and how many
    /// connections the server closed early.
    pub async fn stop(mut self) -> anyhow::Result<(Vec<u64>, u64)> {
        let mut samples = Vec::new();
        let mut closed = 0;
        for p in &mut self.procs {
            let mut stdin = p.child.stdin.take().context("fleet stdin")?;
            stdin.write_all(b"stop\n").await?;
        }
        for mut p in self.procs {
            let mut end = None;
            while let Some(line) = p.stdout.next_line().await? {
                if let Some(c) = line.strip_prefix("end closed=") {
                    end = Some(c.parse::<u64>()?);
                    break;
                }
                samples.push(line.parse::<u64>()?);
            }
            let status = p.child.wait().await?;
            match end {
                Some(c) if status.success() => closed += c,
                _ => bail!("the client fleet failed ({status})"),
            }
        }
        samples.sort_unstable();
        Ok((samples, closed))
    }
}

struct Conn {
    stream: TcpStream,
    /// Index into the requests (one per path).
    request: usize,
    requested: bool,
    announced: bool,
    open: bool,
    pending: Vec<u8>,
}

const STDIN: Token = Token(usize::MAX);
/// Connections being opened at once (a burst of 10,000 SYNs would overflow
/// the server's accept backlog and wait out SYN retransmissions).
const OPENING: usize = 256;
const KEY: &[u8] = b"bench_sent_us\":";

fn sse_request(path: &str, addr: SocketAddr) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

/// A non-blocking connection to `addr` from `source` (port chosen by the kernel).
fn connect_from(addr: SocketAddr, source: Option<std::net::IpAddr>) -> anyhow::Result<TcpStream> {
    let Some(ip) = source else {
        return Ok(TcpStream::connect(addr)?);
    };
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) => {} // EINPROGRESS
        Err(e) => bail!("connecting to {addr} from {ip}: {e}"),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// The child's side: `oec-bench fleet --addr HOST:PORT --n N --offset K
/// (--sse-path P | --sse-paths FILE [--sources IP,...] | --redis-channel C)`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let addr: SocketAddr = arg(args, "--addr").context("--addr")?.parse()?;
    let n: usize = arg(args, "--n").context("--n")?.parse()?;
    let offset: usize = arg(args, "--offset").map_or(Ok(0), |o| o.parse())?;
    let sources: Vec<std::net::IpAddr> = arg(args, "--sources")
        .map(|s| s.split(',').map(str::parse).collect::<Result<_, _>>())
        .transpose()?
        .unwrap_or_default();
    let (requests, marker): (Vec<Vec<u8>>, &[u8]) = match (
        arg(args, "--sse-path"),
        arg(args, "--sse-paths"),
        arg(args, "--redis-channel"),
    ) {
        (Some(path), None, None) => (vec![sse_request(&path, addr)], b"connected"),
        (None, Some(file), None) => (
            std::fs::read_to_string(&file)
                .with_context(|| format!("reading {file}"))?
                .lines()
                .filter(|l| !l.is_empty())
                .map(|p| sse_request(p, addr))
                .collect(),
            b"connected",
        ),
        (None, None, Some(channel)) => (
            vec![
                format!(
                    "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
                    channel.len()
                )
                .into_bytes(),
            ],
            b"subscribe",
        ),
        _ => bail!("one of --sse-path, --sse-paths or --redis-channel"),
    };
    if requests.is_empty() {
        bail!("no request paths");
    }

    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    poll.registry()
        .register(&mut SourceFd(&0), STDIN, Interest::READABLE)?;
    let mut conns: Vec<Conn> = Vec::with_capacity(n);
    let mut announced = 0usize;
    let mut closed = 0u64;
    let mut samples: Vec<u64> = Vec::with_capacity(n * 128);
    let mut buf = vec![0u8; 64 * 1024];
    let mut ready_sent = false;
    let mut stop = false;

    let open_more = |conns: &mut Vec<Conn>, poll: &Poll, announced: usize| {
        while conns.len() < n && conns.len() - announced < OPENING {
            let i = offset + conns.len();
            let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
            let mut stream = connect_from(addr, source)?;
            poll.registry().register(
                &mut stream,
                Token(conns.len()),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                request: i % requests.len(),
                requested: false,
                announced: false,
                open: true,
                pending: Vec::new(),
            });
        }
        anyhow::Ok(())
    };
    open_more(&mut conns, &poll, 0)?;

    while !stop {
        poll.poll(&mut events, None)?;
        for ev in &events {
            if ev.token() == STDIN {
                stop = true;
                continue;
            }
            let Some(c) = conns.get_mut(ev.token().0) else {
                continue;
            };
            if !c.open {
                continue;
            }
            if ev.is_writable() && !c.requested {
                if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                    bail!("connecting to {addr}: {e}");
                }
                let request = &requests[c.request];
                match std::io::Write::write(&mut c.stream, request) {
                    Ok(w) if w == request.len() => {
                        c.requested = true;
                        poll.registry().reregister(
                            &mut c.stream,
                            ev.token(),
                            Interest::READABLE,
                        )?;
                    }
                    Ok(_) => bail!("short write of the request to {addr}"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
                    Err(e) => bail!("sending the request to {addr}: {e}"),
                }
            }
            if !ev.is_readable() && !ev.is_read_closed() {
                continue;
            }
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) if !c.announced => {
                        bail!("{addr} closed a connection before its first message")
                    }
                    Ok(0) => {
                        c.open = false;
                        closed += 1;
                        break;
                    }
                    Ok(r) => {
                        c.pending.extend_from_slice(&buf[..r]);
                        if !c.announced && c.pending.windows(marker.len()).any(|w| w == marker) {
                            c.announced = true;
                            announced += 1;
                        }
                        scan(&mut c.pending, &mut samples);
                        // A short read emptied the socket; with edge-triggered
                        // readiness, any later data raises a new event.
                        if r < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => bail!("reading from {addr}: {e}"),
                }
            }
        }
        if conns.len() < n {
            open_more(&mut conns, &poll, announced)?;
        }
        if !ready_sent && announced == n {
            ready_sent = true;
            let mut out = std::io::stdout().lock();
            out.write_all(b"ready\n")?;
            out.flush()?;
        }
    }
    // Drain the stop line so the parent never blocks writing it.
    let _ = std::io::stdin().lock().read_line(&mut String::new());
    let mut out = BufWriter::new(std::io::stdout().lock());
    for s in &samples {
        writeln!(out, "{s}")?;
    }
    writeln!(out, "end closed={closed}")?;
    out.flush()?;
    Ok(())
}

/// Records the latency of every complete `"bench_sent_us":<n>` in `pending`
/// and drops what can no longer hold one (up to the last complete line).
fn scan(pending: &mut Vec<u8>, samples: &mut Vec<u64>) {
    let mut consumed = 0;
    let mut at = 0;
    while let Some(pos) = pending[at..].windows(KEY.len()).position(|w| w == KEY) {
        let start = at + pos + KEY.len();
        let digits = pending[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if start + digits == pending.len() {
            break;
        }
        let sent = pending[start..start + digits]
            .iter()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        samples.push(now_us().saturating_sub(sent));
        at = start + digits;
        consumed = at;
    }
    if let Some(nl) = pending[consumed..].iter().rposition(|&b| b == b'\n') {
        consumed += nl + 1;
    }
    pending.drain(..consumed);
}
