//! Pure merging of the repositories' `apt.txt` and `requirements.txt`:
//! comments and blank lines ignored, duplicates dropped (first seen wins),
//! lines that would be options to apt or pip refused.

/// One file found in a repository.
pub struct DepFile {
    pub repo: String,
    /// `apt.txt` or `requirements.txt`.
    pub kind: String,
    pub content: String,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dependencies {
    pub apt: Vec<String>,
    pub pip: Vec<String>,
    /// Repositories that contributed, in order.
    pub sources: Vec<String>,
    /// Lines not used, with the reason.
    pub ignored: Vec<String>,
}

impl Dependencies {
    pub fn is_empty(&self) -> bool {
        self.apt.is_empty() && self.pip.is_empty()
    }

    /// A stable text of the merged set and the image it is installed on.
    pub fn canonical(&self, base_image_id: &str) -> String {
        format!(
            "image {base_image_id}\napt {}\npip {}\n",
            self.apt.join(" "),
            self.pip.join(" ")
        )
    }
}

pub fn merge(files: &[DepFile]) -> Dependencies {
    let mut d = Dependencies::default();
    for f in files {
        let mut used = false;
        for raw in f.content.lines() {
            let line = raw.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if f.kind == "apt.txt" {
                for pkg in line.split_whitespace() {
                    if valid_apt(pkg) {
                        used = true;
                        if !d.apt.iter().any(|p| p == pkg) {
                            d.apt.push(pkg.to_owned());
                        }
                    } else {
                        d.ignored
                            .push(format!("{}/apt.txt: `{pkg}` is not a package name", f.repo));
                    }
                }
            } else if line.starts_with('-') {
                d.ignored.push(format!(
                    "{}/requirements.txt: options such as `{line}` are not supported",
                    f.repo
                ));
            } else {
                used = true;
                if !d.pip.iter().any(|p| p == line) {
                    d.pip.push(line.to_owned());
                }
            }
        }
        if used && !d.sources.contains(&f.repo) {
            d.sources.push(f.repo.clone());
        }
    }
    d
}

/// Debian package names, optionally with `=version` or `:arch`.
fn valid_apt(p: &str) -> bool {
    p.len() <= 200
        && p.starts_with(|c: char| c.is_ascii_alphanumeric())
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.:=~".contains(&b))
}

/// SHA-256 of `text`, in hex.
pub fn fingerprint(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(repo: &str, kind: &str, content: &str) -> DepFile {
        DepFile {
            repo: repo.into(),
            kind: kind.into(),
            content: content.into(),
        }
    }

    #[test]
    fn merges_deduplicates_and_ignores_comments() {
        let d = merge(&[
            file(
                "a",
                "apt.txt",
                "# system\npostgresql-client\nlibldap2-dev libsasl2-dev\n\n",
            ),
            file(
                "a",
                "requirements.txt",
                "python-ldap==3.4.3  # ldap\n\nstripe==5.4.0\n",
            ),
            file("b", "apt.txt", "libldap2-dev\n"),
            file(
                "b",
                "requirements.txt",
                "stripe==5.4.0\nrequests-oauthlib==1.3.1\n",
            ),
            file("c", "requirements.txt", "# nothing\n"),
        ]);
        assert_eq!(d.apt, ["postgresql-client", "libldap2-dev", "libsasl2-dev"]);
        assert_eq!(
            d.pip,
            [
                "python-ldap==3.4.3",
                "stripe==5.4.0",
                "requests-oauthlib==1.3.1"
            ]
        );
        assert_eq!(d.sources, ["a", "b"]);
        assert!(d.ignored.is_empty());
    }

    #[test]
    fn refuses_options_and_odd_names() {
        let d = merge(&[
            file("a", "apt.txt", "-o=APT::x\ngood-pkg\n$(reboot)\n"),
            file(
                "a",
                "requirements.txt",
                "--index-url http://evil\n-r other.txt\nsix==1.16.0\n",
            ),
        ]);
        assert_eq!(d.apt, ["good-pkg"]);
        assert_eq!(d.pip, ["six==1.16.0"]);
        assert_eq!(d.ignored.len(), 4);
    }

    #[test]
    fn fingerprint_is_sha256() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let d = merge(&[file("a", "apt.txt", "x")]);
        assert_ne!(
            fingerprint(&d.canonical("sha256:1")),
            fingerprint(&d.canonical("sha256:2"))
        );
    }
}
