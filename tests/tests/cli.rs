//! The `oec` command line against a real stack: `deploy --follow` on a
//! pseudo-terminal (util-linux `script`) draws the stages live and exits
//! with how the deployment ended; without a terminal every log line is
//! printed once; `--output json` is JSON.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use oec_tests::stack::{ABSENT_DB_IMAGE_ERROR, ServerLogin, Stack};
use oec_tests::world::*;
use oec_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, binary};
use serde_json::Value;
use uuid::Uuid;

/// A config folder of its own, signed in to `api` as the admin.
struct Cli {
    dir: PathBuf,
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cli {
    fn login(api: &str) -> Cli {
        let dir = std::env::temp_dir().join(format!("oec-cli-{}", Uuid::new_v4().simple()));
        let cli = Cli { dir };
        let mut child = Command::new(binary("oec"))
            .env("OEC_CONFIG_DIR", &cli.dir)
            .args([
                "login",
                "--url",
                api,
                "--email",
                ADMIN_EMAIL,
                "--password-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("oec login");
        {
            use std::io::Write as _;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "{ADMIN_PASSWORD}").expect("password");
        }
        let out = child.wait_with_output().expect("login");
        assert!(out.status.success(), "{}", text(&out));
        let config = cli.dir.join("config.json");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config)
            .expect("config")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the tokens' file is the user's alone");
        cli
    }

    /// `oec ARGS` without a terminal.
    async fn run(&self, args: &[&str]) -> Output {
        oec(
            self.dir.clone(),
            args.iter().map(|a| a.to_string()).collect(),
        )
        .await
    }

    /// `oec ARGS` on a pseudo-terminal of 120 columns: what it drew.
    async fn run_on_terminal(&self, args: &[&str]) -> Output {
        let cmd = format!(
            "stty cols 120 rows 60; exec {} {}",
            binary("oec").display(),
            args.join(" ")
        );
        tokio::process::Command::new("script")
            .env("OEC_CONFIG_DIR", &self.dir)
            .env("TERM", "xterm-256color")
            .args(["-q", "-e", "-f", "-c", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("script (util-linux)")
    }
}

/// `oec ARGS` without a terminal, with the config folder `dir`.
async fn oec(dir: PathBuf, args: Vec<String>) -> Output {
    tokio::process::Command::new(binary("oec"))
        .env("OEC_CONFIG_DIR", dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("oec")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The deployment id in `Deployment <id> ...`.
fn deployment_id(output: &str) -> Uuid {
    output
        .split("Deployment ")
        .find_map(|rest| rest.get(..36).and_then(|id| Uuid::parse_str(id).ok()))
        .unwrap_or_else(|| panic!("no deployment id in {output}"))
}

/// Every log line of a deployment, as the API lists it, in the CLI's text.
async fn api_lines(stack: &Stack, id: Uuid) -> Vec<String> {
    let r = stack
        .get(
            &format!("/api/v1/deployments/{id}/logs?limit=500"),
            &stack.admin_token,
        )
        .await;
    r.body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| {
            format!(
                "[{}] {}",
                l["step"].as_str().unwrap_or("-"),
                l["message"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// The CLI's plain lines without their time and level: `[step] message`.
fn plain(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            l.split_once(" [")
                .map(|(_, rest)| format!("[{rest}"))
                .unwrap_or_else(|| l.to_owned())
        })
        .collect()
}

async fn step_names(stack: &Stack, id: Uuid) -> Vec<(String, String)> {
    stack
        .get(
            &format!("/api/v1/deployments/{id}/progress"),
            &stack.admin_token,
        )
        .await
        .body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_follow_draws_the_stages_live_and_exits_0_and_logs_print_each_line_once() {
    let w = world(&[]).await;
    let sub = format!("cli{}", &Uuid::new_v4().simple().to_string()[..8]);
    let (env, _purge) = w.staging(&sub).await;
    let cli = Cli::login(&w.stack.address);

    let out = cli
        .run_on_terminal(&["deploy", &env.to_string(), "--follow"])
        .await;
    let drawn = text(&out);
    assert_eq!(out.status.code(), Some(0), "{drawn}");
    let id = deployment_id(&drawn);
    // Live: a spinner was drawn on a running stage, the display redrawn
    // in place (cursor movements), and the total said at the end.
    assert!(drawn.chars().any(|c| "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏".contains(c)), "{drawn}");
    assert!(drawn.contains("\u{1b}["), "no redraw: {drawn}");
    assert!(
        drawn.contains(&format!("Deployment {id} success in ")),
        "{drawn}"
    );
    // Every stage is on the screen with its mark and duration.
    for (name, status) in step_names(&w.stack, id).await {
        let mark = match status.as_str() {
            "completed" => "✓",
            "warning" => "⚠",
            "skipped" => "↷",
            other => panic!("{name} ended {other} in a successful deployment"),
        };
        assert!(
            drawn
                .lines()
                .any(|l| l.contains(&format!("{mark} {name} "))),
            "{mark} {name} missing: {drawn}"
        );
    }

    // Without a terminal: the log, each line once, as /logs has it.
    let want = api_lines(&w.stack, id).await;
    assert!(want.len() > 20, "{want:?}");
    let logs = cli.run(&["logs", &id.to_string()]).await;
    assert!(logs.status.success(), "{}", text(&logs));
    assert_eq!(plain(&logs.stdout), want);
    let followed = cli.run(&["logs", &id.to_string(), "--follow"]).await;
    assert_eq!(followed.status.code(), Some(0), "{}", text(&followed));
    assert_eq!(plain(&followed.stdout), want, "the stream's lines differ");
    let errors = cli
        .run(&[
            "logs",
            &id.to_string(),
            "--level",
            "info",
            "--step",
            "health_check",
        ])
        .await;
    assert!(
        plain(&errors.stdout)
            .iter()
            .all(|l| l.starts_with("[health_check] "))
    );

    // --output json is JSON, on every command.
    for args in [
        vec!["envs"],
        vec!["status"],
        vec!["status", &env.to_string()],
        vec!["history", &env.to_string()],
        vec!["logs", &id.to_string()],
    ] {
        let mut a = args.clone();
        a.extend(["--output", "json"]);
        let out = cli.run(&a).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out)));
        assert!(v.is_array(), "{args:?}: {v}");
    }
    let history: Value = serde_json::from_slice(
        &cli.run(&["history", &env.to_string(), "-o", "json"])
            .await
            .stdout,
    )
    .expect("json");
    assert_eq!(history[0]["id"], id.to_string());
    assert_eq!(history[0]["status"], "success");

    // A connection dropped mid-deployment: the CLI resumes after the last
    // event it had (Last-Event-ID), and every line is printed once.
    let cutter = Cutter::start(&w.stack.address).await;
    let through = Cli::login(&cutter.address);
    let deploy = tokio::spawn(oec(
        through.dir.clone(),
        vec!["deploy".into(), env.to_string(), "--follow".into()],
    ));
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let cut = cutter.cut();
    assert!(cut > 0, "no open connection to cut");
    let out = deploy.await.expect("deploy");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connection lost; resuming"),
        "{}",
        text(&out)
    );
    let again = deployment_id(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(plain(&out.stdout), api_lines(&w.stack, again).await);
}

/// A TCP relay to the api whose open connections can be cut at once (the
/// server and the client see the connection end; new ones are relayed).
struct Cutter {
    address: String,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Cutter {
    async fn start(upstream: &str) -> Cutter {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = format!("http://{}", listener.local_addr().expect("addr"));
        let (cut, _) = tokio::sync::broadcast::channel(4);
        let tx = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut stop = tx.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = stop.recv() => {}
                    }
                });
            }
        });
        Cutter { address, cut }
    }

    /// Cuts every open connection; how many there were.
    fn cut(&self) -> usize {
        self.cut.send(()).unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_follow_shows_the_failed_stage_and_exits_1_and_plain_mode_prints_each_line_once() {
    // Deployments of this stack fail at creating_database.
    let stack = Stack::start(1, &[]).await;
    let (_, project, server) = stack.world("acme", ServerLogin::Key).await;
    let env = stack.environment(project, server, "staging").await;
    let cli = Cli::login(&stack.address);

    let out = cli
        .run_on_terminal(&["deploy", &env.to_string(), "--follow"])
        .await;
    let drawn = text(&out);
    assert_eq!(out.status.code(), Some(1), "{drawn}");
    let id = deployment_id(&drawn);
    assert!(
        drawn.lines().any(|l| l.contains("✗ Creating Database")),
        "{drawn}"
    );
    assert!(drawn.contains(ABSENT_DB_IMAGE_ERROR), "{drawn}");
    assert!(
        drawn.contains(&format!("Deployment {id} failed in ")),
        "{drawn}"
    );

    // The same without a terminal: each line once, on stdout; the end on stderr.
    let out = cli.run(&["deploy", &env.to_string(), "--follow"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let second = deployment_id(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(plain(&out.stdout), api_lines(&stack, second).await);
    let json = cli
        .run(&["deploy", &env.to_string(), "--follow", "-o", "json"])
        .await;
    assert_eq!(json.status.code(), Some(1), "{}", text(&json));
    let d: Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(d["status"], "failed");
    // A mistake is a message and exit code 1, never a panic.
    let out = cli.run(&["deploy", "no-such-environment"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no environment named"),
        "{}",
        text(&out)
    );
}
