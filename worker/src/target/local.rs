//! This machine as a target: commands through `sh -c`, the local Docker
//! engine. A dropped command (cancel) kills its whole process group.

use std::process::Stdio;

use anyhow::Context as _;
use bollard::Docker;
use tokio::io::AsyncReadExt as _;

use super::CommandOutput;
use super::ssh::LineSplitter;

pub struct LocalTarget {
    docker: Docker,
}

/// Kills a process group when dropped.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .status();
        }
    }
}

impl LocalTarget {
    pub fn new() -> anyhow::Result<LocalTarget> {
        Ok(LocalTarget {
            docker: Docker::connect_with_local_defaults()
                .context("connecting to the local Docker engine")?,
        })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Writes a file atomically (temporary file, then rename), creating its directory.
    pub async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = std::path::Path::new(path);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("oec-tmp");
        tokio::fs::write(&tmp, contents)
            .await
            .with_context(|| format!("writing {}", tmp.display()))?;
        tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).await?;
        tokio::fs::rename(&tmp, path)
            .await
            .with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    pub async fn run(
        &self,
        command: &str,
        on_line: &mut (dyn FnMut(&str) + Send),
    ) -> anyhow::Result<CommandOutput> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting sh")?;
        let mut guard = KillGroup(child.id());
        let mut out = child.stdout.take().context("stdout")?;
        let mut err = child.stderr.take().context("stderr")?;
        let (mut out_lines, mut err_lines) = (LineSplitter::default(), LineSplitter::default());
        let mut tail: Vec<String> = Vec::new();
        let mut emit = |line: String, tail: &mut Vec<String>| {
            on_line(&line);
            if tail.len() == 20 {
                tail.remove(0);
            }
            tail.push(line);
        };
        let (mut ob, mut eb) = (vec![0u8; 8192], vec![0u8; 8192]);
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            tokio::select! {
                n = out.read(&mut ob), if out_open => match n? {
                    0 => out_open = false,
                    n => for l in out_lines.push(&ob[..n]) { emit(l, &mut tail) },
                },
                n = err.read(&mut eb), if err_open => match n? {
                    0 => err_open = false,
                    n => for l in err_lines.push(&eb[..n]) { emit(l, &mut tail) },
                },
            }
        }
        for l in [out_lines.finish(), err_lines.finish()]
            .into_iter()
            .flatten()
        {
            emit(l, &mut tail);
        }
        let status = child.wait().await.context("waiting for sh")?;
        guard.0 = None;
        let exit_code = status.code().map(|c| c as u32).unwrap_or(128 + 9);
        Ok(CommandOutput { exit_code, tail })
    }
}
