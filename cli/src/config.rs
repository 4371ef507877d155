//! What `oec login` keeps: the API's URL and the session's tokens, in
//! `$OEC_CONFIG_DIR`, else `$XDG_CONFIG_HOME/oec`, else `~/.config/oec`,
//! as `config.json`, readable by its owner only (0600, folder 0700).

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// `https://oec.example.com`, without `/api/v1`.
    pub api_url: String,
    pub access_token: String,
    pub refresh_token: String,
    pub email: String,
}

pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("OEC_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("oec"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither OEC_CONFIG_DIR, XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config").join("oec"))
}

fn path() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("config.json"))
}

pub fn load() -> anyhow::Result<Config> {
    let p = path()?;
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("not signed in: run `oec login --url https://your-oec`")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not oec's configuration; run `oec login` again",
            p.display()
        )
    })
}

/// Writes the configuration through a temporary file renamed over the old
/// one, created 0600 so the tokens are never readable by others.
pub fn save(c: &Config) -> anyhow::Result<()> {
    let d = dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .with_context(|| format!("creating {}", d.display()))?;
    let tmp = d.join(".config.json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(serde_json::to_string_pretty(c)?.as_bytes())?;
    f.sync_all()?;
    // A file made before this version kept its mode: 0600 either way.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path()?)?;
    Ok(())
}
