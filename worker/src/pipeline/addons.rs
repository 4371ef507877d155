//! The addons a deployment deploys, and what changed since the environment's
//! last successful deployment. An addon is a directory of a repository with
//! a `__manifest__.py`; its content hash is git's own hash of that directory
//! (the tree object at the checked-out commit), its version the manifest's.
//! The first repository in the addons path that has an addon wins, as in
//! Odoo. Everything is read from git objects, never by following a path on
//! the server, so a symlink in a repository reads nothing outside it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::target::shell::quote;

/// The largest manifest read; a larger one is read as having no version.
const MAX_MANIFEST: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addon {
    /// The repository directory (under `addons/`) it comes from.
    pub repo: String,
    /// Git's hash of the addon's directory.
    pub hash: String,
    /// The manifest's `version`, as written there.
    pub version: Option<String>,
}

pub type Addons = BTreeMap<String, Addon>;

/// What changed between the last successful deployment and this one.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Changes {
    /// In both, with another content hash or manifest version.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// There was no record to compare with (a first deployment, or one made
    /// before oec recorded addons).
    pub no_baseline: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

pub fn diff(baseline: Option<&Addons>, now: &Addons) -> Changes {
    let Some(before) = baseline else {
        return Changes {
            no_baseline: true,
            ..Default::default()
        };
    };
    let mut c = Changes::default();
    for (name, a) in now {
        match before.get(name) {
            None => c.added.push(name.clone()),
            Some(b) if b.hash != a.hash || b.version != a.version => c.changed.push(name.clone()),
            Some(_) => {}
        }
    }
    c.removed = before
        .keys()
        .filter(|n| !now.contains_key(*n))
        .cloned()
        .collect();
    c
}

/// The command printing, for each repository directory (`(name, path)`,
/// in the addons path's order), its addons: a `@@oec-{nonce} addon {repo}
/// {tree} {name}` line followed by the manifest's text.
pub fn scan_command(dirs: &[(String, String)], nonce: &str) -> String {
    let mut cmd = String::from(crate::pipeline::stages::GIT_PRELUDE);
    for (repo, path) in dirs {
        let d = quote(path);
        let marker = quote(&format!("@@oec-{nonce} addon {repo}"));
        cmd.push_str(&format!(
            "g -C {d} ls-tree HEAD 2>/dev/null | while read -r mode type tree name; do \
               [ \"$type\" = tree ] || continue; \
               case \"$name\" in ''|*[!A-Za-z0-9_]*) continue;; esac; \
               set -- $(g -C {d} ls-tree -l \"$tree\" -- __manifest__.py); \
               if [ \"$1\" = 100644 ] || [ \"$1\" = 100755 ]; then \
                 echo {marker} \"$tree\" \"$name\"; \
                 if [ \"$4\" -le {MAX_MANIFEST} ]; then g -C {d} cat-file blob \"$3\"; fi; echo; \
               fi; \
             done; "
        ));
    }
    cmd.push_str("true");
    cmd
}

/// Reads [`scan_command`]'s output; the first repository with an addon wins.
pub fn parse(lines: &[String], nonce: &str) -> Addons {
    let marker = format!("@@oec-{nonce} addon ");
    let mut found: Vec<(String, Addon, String)> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix(&marker) {
            let mut p = rest.splitn(3, ' ');
            let (repo, hash, name) = (
                p.next().unwrap_or_default(),
                p.next().unwrap_or_default(),
                p.next().unwrap_or_default(),
            );
            found.push((
                name.to_owned(),
                Addon {
                    repo: repo.to_owned(),
                    hash: hash.to_owned(),
                    version: None,
                },
                String::new(),
            ));
        } else if let Some((_, _, text)) = found.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let mut addons = Addons::new();
    for (name, mut addon, text) in found {
        addon.version = manifest_version(&text);
        addons.entry(name).or_insert(addon);
    }
    addons
}

/// The `'version': '…'` of a manifest (a Python dict literal).
pub fn manifest_version(text: &str) -> Option<String> {
    for quote in ['\'', '"'] {
        let key = format!("{quote}version{quote}");
        let mut rest = text;
        while let Some(at) = rest.find(&key) {
            rest = &rest[at + key.len()..];
            let after = rest.trim_start();
            let Some(after) = after.strip_prefix(':') else {
                continue;
            };
            let after = after.trim_start();
            let Some(q) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
                continue;
            };
            let value = &after[1..];
            if let Some(end) = value.find(q) {
                let v = value[..end].trim();
                if !v.is_empty() && v.len() <= 64 {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

/// Odoo's `adapt_version`: a manifest's `1.2` is `18.0.1.2` in the database.
pub fn adapt_version(series: &str, version: &str) -> String {
    if version == series || !version.starts_with(&format!("{series}.")) {
        format!("{series}.{version}")
    } else {
        version.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addon(hash: &str, version: Option<&str>) -> Addon {
        Addon {
            repo: "r".into(),
            hash: hash.into(),
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn versions_are_read_from_manifests() {
        assert_eq!(
            manifest_version("{'name': 'A', 'version': '17.0.1.2', 'depends': []}").as_deref(),
            Some("17.0.1.2")
        );
        assert_eq!(
            manifest_version("{\n  \"version\" : \"1.0\",\n}").as_deref(),
            Some("1.0")
        );
        assert_eq!(manifest_version("{'summary': 'no version here'}"), None);
        assert_eq!(adapt_version("18.0", "1.2"), "18.0.1.2");
        assert_eq!(adapt_version("18.0", "18.0.1.2"), "18.0.1.2");
    }

    #[test]
    fn the_first_repository_wins_and_changes_are_named() {
        let n = "abc";
        let lines: Vec<String> = [
            "@@oec-abc addon primary t1 sale_x",
            "{'version': '1.1'}",
            "",
            "@@oec-abc addon org t9 sale_x",
            "{'version': '9.9'}",
            "@@oec-abc addon org t2 stock_y",
            "{'name': 'no version'}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let now = parse(&lines, n);
        assert_eq!(now["sale_x"], addon("t1", Some("1.1")).with_repo("primary"));
        assert_eq!(now["stock_y"], addon("t2", None).with_repo("org"));
        let before: Addons = [
            ("sale_x".to_owned(), addon("t1", Some("1.0"))),
            ("gone".to_owned(), addon("t3", None)),
        ]
        .into();
        let c = diff(Some(&before), &now);
        assert_eq!(c.changed, vec!["sale_x"]);
        assert_eq!(c.added, vec!["stock_y"]);
        assert_eq!(c.removed, vec!["gone"]);
        assert!(diff(None, &now).no_baseline);
        assert!(diff(Some(&now), &now).is_empty());
    }

    impl Addon {
        fn with_repo(mut self, repo: &str) -> Self {
            self.repo = repo.into();
            self
        }
    }
}
