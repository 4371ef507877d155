//! `oec`: oec from a terminal. Sign in once (`oec login`), then deploy,
//! follow, read logs, cancel and look at environments. Every command takes
//! `--output json` for scripts. Exit codes: 0 success; 1 a failed
//! deployment or an error; 2 a cancelled deployment.

mod client;
mod config;
mod follow;

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::client::Client;

#[derive(Parser)]
#[command(
    name = "oec",
    version,
    about = "Deploy Odoo environments with oec and watch them live"
)]
struct Cli {
    /// How to print answers.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in; the API URL and the session are kept in the config folder (0600).
    Login {
        /// The oec API, e.g. https://oec.example.com.
        #[arg(long, env = "OEC_URL")]
        url: String,
        #[arg(long, env = "OEC_EMAIL")]
        email: Option<String>,
        /// Read the password from standard input (one line) instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The environments you can see.
    Envs,
    /// Every environment with its latest deployment, or one environment.
    Status { env: Option<String> },
    /// Deploy an environment (its branch's head, or --commit).
    Deploy {
        /// The environment: its id, or its name when that is unique.
        env: String,
        #[arg(long)]
        commit: Option<String>,
        /// Follow it live until it ends; the exit code says how it ended.
        #[arg(long, short)]
        follow: bool,
    },
    /// A deployment's log lines.
    Logs {
        deployment: String,
        /// Keep printing new lines until the deployment ends.
        #[arg(long, short)]
        follow: bool,
        /// Only lines of this level (debug, info, warning, error).
        #[arg(long)]
        level: Option<String>,
        /// Only lines of this stage (e.g. cloning_project_repo).
        #[arg(long)]
        step: Option<String>,
    },
    /// Cancel a pending or running deployment.
    Cancel { deployment: String },
    /// An environment's deployments, newest first.
    History { env: String },
    /// Shell completions: `oec completions bash > /etc/bash_completion.d/oec`.
    Completions { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    match run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if json {
                println!("{}", json!({"error": format!("{e:#}")}));
            } else {
                eprintln!("oec: {e:#}");
            }
            std::process::exit(1);
        }
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A plain table: a header and left-aligned columns.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(headers.iter().map(|h| h.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r.clone()));
    }
}

/// An environment by id, or by name when exactly one visible environment has it.
async fn environment(client: &mut Client, env: &str) -> anyhow::Result<Value> {
    if uuid::Uuid::parse_str(env).is_ok() {
        return client.get(&format!("/environments/{env}")).await;
    }
    let all = client.list("/environments").await?;
    let named: Vec<&Value> = all.iter().filter(|e| e["name"] == env).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("no environment named {env:?} is visible to you (`oec envs` lists them)"),
        many => bail!(
            "{} environments are named {env:?}; give one's id: {}",
            many.len(),
            many.iter()
                .map(|e| s(&e["id"]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    let line = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    } else {
        rpassword::prompt_password("Password: ")?
    };
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        bail!("no password given");
    }
    Ok(p)
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let json = cli.output == Output::Json;
    let mut client = match &cli.command {
        Command::Login {
            url,
            email,
            password_stdin,
        } => {
            let email = match email {
                Some(e) => e.clone(),
                None => {
                    eprint!("Email: ");
                    let mut e = String::new();
                    std::io::stdin().lock().read_line(&mut e)?;
                    e.trim().to_owned()
                }
            };
            let password = read_password(*password_stdin)?;
            client::login(url, &email, &password).await?;
            let dir = config::dir()?;
            if json {
                print_json(&json!({"signed_in": true, "email": email, "config": dir}));
            } else {
                println!(
                    "Signed in to {url} as {email} (session kept in {})",
                    dir.display()
                );
            }
            return Ok(0);
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "oec", &mut std::io::stdout());
            return Ok(0);
        }
        _ => Client::from_config()?,
    };
    match cli.command {
        Command::Login { .. } | Command::Completions { .. } => unreachable!("handled above"),
        Command::Envs => {
            let envs = client.list("/environments").await?;
            if json {
                print_json(&Value::Array(envs));
            } else {
                let rows: Vec<Vec<String>> = envs
                    .iter()
                    .map(|e| {
                        ["id", "name", "kind", "status", "odoo_version", "hostname"]
                            .iter()
                            .map(|k| s(&e[*k]))
                            .collect()
                    })
                    .collect();
                table(&["id", "name", "kind", "status", "odoo", "hostname"], &rows);
            }
        }
        Command::Status { env } => {
            let envs = match env {
                Some(e) => vec![environment(&mut client, &e).await?],
                None => client.list("/environments").await?,
            };
            let mut out = Vec::new();
            for e in envs {
                let latest = client
                    .get(&format!("/deployments/environment/{}/latest", s(&e["id"])))
                    .await?;
                out.push(json!({"environment": e, "latest_deployment": latest}));
            }
            if json {
                print_json(&Value::Array(out));
            } else {
                let rows: Vec<Vec<String>> = out
                    .iter()
                    .map(|o| {
                        let (e, l) = (&o["environment"], &o["latest_deployment"]);
                        vec![
                            s(&e["name"]),
                            s(&e["status"]),
                            s(&e["hostname"]),
                            if l["has_deployment"] == true {
                                format!("v{} {}", s(&l["version"]), s(&l["status"]))
                            } else {
                                "-".into()
                            },
                            s(&l["deployment_id"]),
                        ]
                    })
                    .collect();
                table(
                    &["environment", "status", "hostname", "latest", "deployment"],
                    &rows,
                );
            }
        }
        Command::Deploy {
            env,
            commit,
            follow,
        } => {
            let e = environment(&mut client, &env).await?;
            let mut body = json!({"environment_id": e["id"]});
            if let Some(c) = commit {
                body["git_commit"] = json!(c);
            }
            let d = client.post("/deployments", &body).await?;
            let id = s(&d["id"]);
            if !follow {
                if json {
                    print_json(&d);
                } else {
                    println!(
                        "Deployment {id} (v{}) queued for {}",
                        s(&d["version"]),
                        s(&e["name"])
                    );
                }
                return Ok(0);
            }
            if !json {
                eprintln!(
                    "Deployment {id} (v{}) of {}",
                    s(&d["version"]),
                    s(&e["name"])
                );
            }
            let show = if json {
                follow::Show::Nothing
            } else if std::io::stderr().is_terminal() {
                follow::Show::Stages
            } else {
                follow::Show::Lines
            };
            let ended = follow::follow(&mut client, &id, show, &follow::Filter::default()).await?;
            if json {
                print_json(&ended.deployment);
            }
            return Ok(ended.exit_code());
        }
        Command::Logs {
            deployment,
            follow,
            level,
            step,
        } => {
            let filter = follow::Filter { level, step };
            if follow && !json {
                let ended =
                    follow::follow(&mut client, &deployment, follow::Show::Lines, &filter).await?;
                return Ok(ended.exit_code());
            }
            let mut query = Vec::new();
            if let Some(l) = &filter.level {
                query.push(format!("level={l}"));
            }
            if let Some(st) = &filter.step {
                query.push(format!("step={st}"));
            }
            let mut lines = Vec::new();
            loop {
                let mut q = query.clone();
                q.push(format!("skip={}", lines.len()));
                q.push("limit=500".into());
                let page = client
                    .get(&format!("/deployments/{deployment}/logs?{}", q.join("&")))
                    .await?;
                let rows = page["logs"].as_array().cloned().unwrap_or_default();
                let n = rows.len();
                lines.extend(rows);
                if n < 500 {
                    break;
                }
            }
            if json {
                print_json(&Value::Array(lines));
            } else {
                for l in &lines {
                    println!("{}", follow::plain_line(l));
                }
            }
        }
        Command::Cancel { deployment } => {
            let r = client
                .post(&format!("/deployments/{deployment}/cancel"), &json!({}))
                .await
                .with_context(|| format!("cancelling {deployment}"))?;
            if json {
                print_json(&r);
            } else {
                println!("{}", s(&r["message"]));
            }
        }
        Command::History { env } => {
            let e = environment(&mut client, &env).await?;
            let rows = client
                .list(&format!("/deployments?environment_id={}", s(&e["id"])))
                .await?;
            if json {
                print_json(&Value::Array(rows));
            } else {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|d| {
                        vec![
                            format!("v{}", s(&d["version"])),
                            s(&d["status"]),
                            s(&d["trigger"]),
                            s(&d["git_commit"]).chars().take(10).collect(),
                            d["duration_seconds"]
                                .as_f64()
                                .map(|x| format!("{x:.1}s"))
                                .unwrap_or_else(|| "-".into()),
                            s(&d["created_at"]),
                            s(&d["id"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "version", "status", "trigger", "commit", "duration", "created", "id",
                    ],
                    &rows,
                );
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
