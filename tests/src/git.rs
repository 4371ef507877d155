//! Local bare git repositories for deployments to clone (file:// URLs),
//! readable by the deployment account of scripts/services.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A folder of bare repositories, removed when dropped.
pub struct GitHost {
    pub root: PathBuf,
}

impl Drop for GitHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A file content that commits a symbolic link instead: `"@symlink:/etc/x"`.
pub const SYMLINK: &str = "@symlink:";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        // The repositories belong to the deployment account; also for the
        // git processes a push starts.
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("GIT_AUTHOR_NAME", "John Doe")
        .env("GIT_AUTHOR_EMAIL", "john@example.com")
        .env("GIT_COMMITTER_NAME", "John Doe")
        .env("GIT_COMMITTER_EMAIL", "john@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitHost {
    pub fn new() -> GitHost {
        let root = std::env::temp_dir().join(format!("oec-git-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).expect("git root");
        GitHost { root }
    }

    /// A bare repository `name` with one commit of `files` on `main`;
    /// returns its file:// URL.
    pub fn repo(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let work = self.root.join(format!("{name}.work"));
        std::fs::create_dir_all(&work).expect("work");
        git(&work, &["init", "-q", "-b", "main"]);
        self.commit(name, files, message);
        let bare = self.root.join(format!("{name}.git"));
        git(
            &self.root,
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap_or_default(),
                bare.to_str().unwrap_or_default(),
            ],
        );
        self.share();
        format!("file://{}", bare.display())
    }

    /// Another commit on `main`, pushed to the bare repository; its SHA.
    pub fn push(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        // Back to this process's user while it writes (git refuses otherwise).
        let _ = Command::new("chown")
            .args(["-R", "root", self.root.to_str().unwrap_or_default()])
            .status();
        let sha = self.commit(name, files, message);
        let work = self.root.join(format!("{name}.work"));
        let bare = self.root.join(format!("{name}.git"));
        git(
            &work,
            &["push", "-q", bare.to_str().unwrap_or_default(), "main"],
        );
        self.share();
        sha
    }

    fn commit(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let work = self.root.join(format!("{name}.work"));
        for (path, content) in files {
            let p = work.join(path);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).expect("dir");
            }
            // `@symlink:TARGET` commits a symbolic link to TARGET.
            match content.strip_prefix(SYMLINK) {
                Some(target) => {
                    let _ = std::fs::remove_file(&p);
                    std::os::unix::fs::symlink(target, p).expect("symlink")
                }
                None => std::fs::write(p, content).expect("file"),
            }
        }
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-q", "-m", message]);
        git(&work, &["rev-parse", "HEAD"])
    }

    pub fn head(&self, name: &str) -> String {
        git(
            &self.root.join(format!("{name}.work")),
            &["rev-parse", "HEAD"],
        )
    }

    /// The deployment account owns the repositories (git refuses to read a
    /// repository another user owns).
    fn share(&self) {
        let user = crate::TargetEnv::load().user;
        let status = Command::new("chown")
            .args(["-R", &user, self.root.to_str().unwrap_or_default()])
            .status()
            .expect("chown");
        assert!(status.success());
        let _ = Command::new("chmod")
            .args(["755", self.root.to_str().unwrap_or_default()])
            .status();
    }
}

impl Default for GitHost {
    fn default() -> Self {
        GitHost::new()
    }
}
