//! Validated request fields. Each `parse_*` returns the clean value or a
//! [`FieldError`] naming the field and what a valid value looks like.

use std::net::IpAddr;

/// A rejected field: the API answers 422 `invalid_field` with both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

pub type FieldResult<T> = Result<T, FieldError>;

pub fn invalid<T>(field: &str, message: impl Into<String>) -> FieldResult<T> {
    Err(FieldError {
        field: field.to_owned(),
        message: message.into(),
    })
}

/// A text value that only its `parse_*` function (or the database, which
/// holds only parsed values) makes: what reaches shells, paths and SQL is
/// typed as parsed, not as any `String`.
macro_rules! parsed_text {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

parsed_text!(
    /// A DNS label (slugs, subdomains, repository names): see [`parse_dns_label`].
    DnsLabel
);
parsed_text!(
    /// A git remote: see [`parse_git_url`].
    GitUrl
);
parsed_text!(
    /// A git branch name: see [`parse_branch`].
    Branch
);
parsed_text!(
    /// A Docker image reference: see [`parse_image`].
    ImageRef
);

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A display name: 1–100 characters after trimming, no control characters.
pub fn parse_name(field: &str, v: &str) -> FieldResult<String> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > 100 || has_control(v) || v.chars().any(is_invisible) {
        return invalid(
            field,
            "must be 1 to 100 characters without control, bidirectional-override or zero-width characters",
        );
    }
    Ok(v.to_owned())
}

/// Characters that change how a name reads without showing: bidirectional
/// embeddings, overrides and isolates, zero-width spaces and joiners, the
/// byte-order mark (a name must look like what it is).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

pub fn parse_email(field: &str, v: &str) -> FieldResult<String> {
    let v = v.trim().to_lowercase();
    let ok = v.len() <= 254
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(v.split_once('@'), Some((local, domain))
            if !local.is_empty() && domain.contains('.') && !domain.contains('@')
               && !domain.starts_with('.') && !domain.ends_with('.'));
    if !ok {
        return invalid(field, "must be an email address like name@example.com");
    }
    Ok(v)
}

/// A user's password: 12 to 1024 characters, and not one that is guessed
/// first (a common password, one character repeated, digits only).
pub fn parse_password(field: &str, v: &str) -> FieldResult<String> {
    if v.chars().count() < 12 || v.len() > 1024 {
        return invalid(field, "must be 12 to 1024 characters");
    }
    if is_common_password(v) {
        return invalid(
            field,
            "is too easy to guess (a common password); choose another, e.g. several unrelated words",
        );
    }
    Ok(v.to_owned())
}

/// Passwords of 12 or more characters found at the top of breach lists.
const COMMON_PASSWORDS: &[&str] = &[
    "123456789012",
    "1234567890123",
    "12345678910",
    "password1234",
    "password12345",
    "passwordpassword",
    "qwertyuiop12",
    "qwertyuiopasdfgh",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "1qaz2wsx3edc",
    "iloveyou1234",
    "administrator",
    "adminadmin123",
    "letmein12345",
    "welcome12345",
    "changeme1234",
    "trustno1trustno1",
    "abcdefghijkl",
    "abc123456789",
    "asdfghjkl123",
    "zaq12wsxcde3",
    "football1234",
    "baseball1234",
    "princess1234",
    "sunshine1234",
    "superman1234",
    "starwars1234",
    "monkey123456",
    "dragon123456",
    "master123456",
    "p@ssw0rd1234",
    "passw0rd1234",
    "q1w2e3r4t5y6",
    "aaaaaaaaaaaa",
];

fn is_common_password(v: &str) -> bool {
    let lower = v.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next();
    COMMON_PASSWORDS.contains(&lower.as_str())
        || chars.all(|c| Some(c) == first)
        || lower.chars().all(|c| c.is_ascii_digit())
}

/// One DNS label: lowercase letters, digits and inner hyphens, 1–63 characters.
/// Slugs and subdomains follow it, since both end up in host and path names.
pub fn parse_dns_label(field: &str, v: &str) -> FieldResult<DnsLabel> {
    let ok = (1..=63).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if !ok {
        return invalid(
            field,
            "must be 1 to 63 lowercase letters, digits or hyphens, not starting or ending with a hyphen",
        );
    }
    Ok(DnsLabel(v.to_owned()))
}

/// A host name (DNS rules) or an IP address.
pub fn parse_host(field: &str, v: &str) -> FieldResult<String> {
    if v.parse::<IpAddr>().is_ok() {
        return Ok(v.to_owned());
    }
    let v = v.to_ascii_lowercase();
    let ok = v.len() <= 253
        && !v.is_empty()
        && v.split('.').all(|l| parse_dns_label(field, l).is_ok())
        // A name made only of digits and dots is a malformed IPv4 address.
        && !v.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !ok {
        return invalid(field, "must be a host name or an IP address");
    }
    Ok(v)
}

/// A domain under which environments get their subdomain: at least two labels.
pub fn parse_domain(field: &str, v: &str) -> FieldResult<String> {
    let host = parse_host(field, v)?;
    if host.parse::<IpAddr>().is_ok() || !host.contains('.') {
        return invalid(field, "must be a domain name like apps.example.com");
    }
    Ok(host)
}

pub fn parse_port(field: &str, v: i64) -> FieldResult<u16> {
    match u16::try_from(v) {
        Ok(p) if p >= 1 => Ok(p),
        _ => invalid(field, "must be a port from 1 to 65535"),
    }
}

/// A POSIX user name, as sshd accepts it.
pub fn parse_unix_user(field: &str, v: &str) -> FieldResult<String> {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return invalid(
            field,
            "must be a Unix user name (lowercase letters, digits, _ and -)",
        );
    }
    Ok(v.to_owned())
}

/// A git remote: `https://`, `ssh://` or scp-like `user@host:path`; `file://`
/// only when the operator allows it (`OEC_ALLOW_FILE_REPOS=1`). Credentials
/// never travel in the URL: they go in the separate, encrypted `token`.
pub fn parse_git_url(field: &str, v: &str, allow_file: bool) -> FieldResult<GitUrl> {
    if v.is_empty() || v.len() > 2048 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid(
            field,
            "must be a git URL without spaces, at most 2048 characters",
        );
    }
    if v.starts_with('-') {
        return invalid(field, "must not start with '-'");
    }
    let after_scheme = |scheme: &str| v.strip_prefix(scheme);
    if let Some(rest) = after_scheme("https://").or_else(|| after_scheme("ssh://")) {
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if v.starts_with("https://") && userinfo.is_some() {
            return invalid(
                field,
                "must not contain credentials; put the token in `token`",
            );
        }
        if userinfo.is_some_and(|u| u.contains(':')) {
            return invalid(field, "must not contain a password");
        }
        let host = match hostport.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => hostport,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if parse_host(field, host).is_err() || rest.len() <= authority.len() + 1 {
            return invalid(field, "must name a host and a repository path");
        }
        return Ok(GitUrl(v.to_owned()));
    }
    if let Some(rest) = after_scheme("http://") {
        if !allow_file {
            return invalid(
                field,
                "plain http:// URLs are disabled (set OEC_ALLOW_FILE_REPOS=1 to allow local repositories)",
            );
        }
        if rest.split('/').next().unwrap_or_default().contains('@') {
            return invalid(
                field,
                "must not contain credentials; put the token in `token`",
            );
        }
        return Ok(GitUrl(v.to_owned()));
    }
    if let Some(path) = after_scheme("file://") {
        if !allow_file {
            return invalid(
                field,
                "file:// URLs are disabled (set OEC_ALLOW_FILE_REPOS=1 to allow them)",
            );
        }
        if !path.starts_with('/') {
            return invalid(field, "file:// URLs must be absolute");
        }
        return Ok(GitUrl(v.to_owned()));
    }
    if v.contains("://") {
        return invalid(field, "scheme must be https, ssh or file");
    }
    // scp-like: user@host:path
    if let Some((userhost, path)) = v.split_once(':')
        && let Some((user, host)) = userhost.split_once('@')
        && parse_unix_user(field, user).is_ok()
        && parse_host(field, host).is_ok()
        && !path.is_empty()
    {
        return Ok(GitUrl(v.to_owned()));
    }
    invalid(
        field,
        "must be an https://, ssh:// or user@host:path git URL",
    )
}

/// An http(s) URL to download from (e.g. a presigned backup link).
pub fn parse_download_url(field: &str, v: &str) -> FieldResult<String> {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    let ok = v.len() <= 4096
        && !v.chars().any(|c| c.is_whitespace() || c.is_control())
        && rest.is_some_and(|r| {
            let host = r.split(['/', '?']).next().unwrap_or_default();
            !host.is_empty() && !host.contains('@')
        });
    if ok {
        Ok(v.to_owned())
    } else {
        invalid(
            field,
            "must be an http:// or https:// URL without credentials, at most 4096 characters",
        )
    }
}

/// A branch name under git's ref-name rules (`git check-ref-format --branch`).
pub fn parse_branch(field: &str, v: &str) -> FieldResult<Branch> {
    const BAD: &[char] = &[' ', '~', '^', ':', '?', '*', '[', '\\'];
    let ok = !v.is_empty()
        && v.len() <= 255
        && v != "@"
        && !v.starts_with('-')
        && !v.starts_with('/')
        && !v.ends_with('/')
        && !v.ends_with('.')
        && !v.contains("..")
        && !v.contains("//")
        && !v.contains("@{")
        && !v
            .chars()
            .any(|c| c.is_control() || BAD.contains(&c) || c == '\u{7f}')
        && v.split('/')
            .all(|c| !c.starts_with('.') && !c.ends_with(".lock"));
    if !ok {
        return invalid(field, "must be a valid git branch name");
    }
    Ok(Branch(v.to_owned()))
}

/// An Odoo version such as `18.0`.
pub fn parse_odoo_version(field: &str, v: &str) -> FieldResult<String> {
    let ok = matches!(v.split_once('.'), Some((a, b))
        if (1..=3).contains(&a.len()) && (1..=3).contains(&b.len())
           && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()));
    if !ok {
        return invalid(field, "must be a version like 18.0");
    }
    Ok(v.to_owned())
}

/// A Docker image reference such as `registry.example.com/ns/odoo:18.0`.
pub fn parse_image(field: &str, v: &str) -> FieldResult<ImageRef> {
    let ok = (1..=255).contains(&v.len())
        && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/:@-".contains(&b));
    if !ok {
        return invalid(field, "must be an image reference like odoo:18.0");
    }
    Ok(ImageRef(v.to_owned()))
}

/// A secret such as a password or token: 1–4096 characters, one line.
pub fn parse_secret(field: &str, v: &str) -> FieldResult<String> {
    if v.is_empty() || v.len() > 4096 || v.contains(['\n', '\r', '\0']) {
        return invalid(field, "must be 1 to 4096 characters on one line");
    }
    Ok(v.to_owned())
}

/// A PEM or OpenSSH private key.
pub fn parse_private_key(field: &str, v: &str) -> FieldResult<String> {
    let v = v.trim();
    if v.len() > 16 * 1024 || !v.starts_with("-----BEGIN ") || !v.contains("PRIVATE KEY-----") {
        return invalid(
            field,
            "must be a PEM or OpenSSH private key (-----BEGIN ... PRIVATE KEY-----)",
        );
    }
    Ok(format!("{v}\n"))
}

/// An SSH host key fingerprint as `ssh-keygen -l` prints it: `SHA256:<base64>`.
pub fn parse_fingerprint(field: &str, v: &str) -> FieldResult<String> {
    let ok = matches!(v.strip_prefix("SHA256:"), Some(b64)
        if (40..=44).contains(&b64.len())
           && b64.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    if !ok {
        return invalid(
            field,
            "must be a fingerprint like SHA256:AbC... (ssh-keygen -lf key.pub)",
        );
    }
    Ok(v.to_owned())
}

/// An opaque identifier of a third-party API (e.g. a Cloudflare zone id).
pub fn parse_external_id(field: &str, v: &str) -> FieldResult<String> {
    if !(1..=64).contains(&v.len())
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return invalid(field, "must be 1 to 64 letters, digits, '-' or '_'");
    }
    Ok(v.to_owned())
}

pub fn parse_cpu_cores(field: &str, v: f64) -> FieldResult<f64> {
    if !v.is_finite() || !(0.1..=64.0).contains(&v) {
        return invalid(field, "must be from 0.1 to 64 cores");
    }
    Ok(v)
}

pub fn parse_int_range(field: &str, v: i64, min: i64, max: i64, unit: &str) -> FieldResult<i32> {
    if !(min..=max).contains(&v) {
        return invalid(field, format!("must be from {min} to {max} {unit}"));
    }
    Ok(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T>(r: FieldResult<T>) -> bool {
        r.is_ok()
    }

    #[test]
    fn passwords_are_long_and_not_common() {
        assert!(ok(parse_password("password", "correct horse battery")));
        for bad in [
            "short-pw-1",
            "PasswordPassword",
            "999999999999",
            "zzzzzzzzzzzzzz",
            "012345678901234",
        ] {
            assert!(!ok(parse_password("password", bad)), "{bad}");
        }
    }

    #[test]
    fn names_refuse_bidi_overrides_and_zero_width_characters() {
        assert!(ok(parse_name("name", "Acme GmbH — Zürich")));
        for bad in [
            "admin\u{202E}gnp.exe",
            "Ac\u{200B}me",
            "\u{2066}Acme\u{2069}",
            "\u{FEFF}Acme",
        ] {
            assert!(!ok(parse_name("name", bad)), "{bad:?}");
        }
    }

    #[test]
    fn dns_labels() {
        for good in ["a", "my-project", "x1", &"a".repeat(63)] {
            assert!(ok(parse_dns_label("slug", good)), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "a b",
            &"a".repeat(64),
            "ü",
        ] {
            assert!(!ok(parse_dns_label("slug", bad)), "{bad}");
        }
    }

    #[test]
    fn hosts() {
        for good in [
            "127.0.0.1",
            "::1",
            "example.com",
            "srv-1.example.com",
            "localhost",
        ] {
            assert!(ok(parse_host("host", good)), "{good}");
        }
        for bad in [
            "",
            "exa mple.com",
            "a..b",
            "-a.com",
            "1.2.3.999",
            "a;rm -rf /",
            "$(id)",
        ] {
            assert!(!ok(parse_host("host", bad)), "{bad}");
        }
    }

    #[test]
    fn git_urls() {
        for good in [
            "https://github.com/o/r.git",
            "ssh://git@github.com/o/r.git",
            "git@github.com:o/r.git",
            "https://git.example:8443/r",
        ] {
            assert!(ok(parse_git_url("git_url", good, false)), "{good}");
        }
        assert!(ok(parse_git_url("git_url", "file:///srv/git/r.git", true)));
        for bad in [
            "file:///srv/git/r.git",
            "http://github.com/o/r.git",
            "https://tok@github.com/o/r.git",
            "https://github.com",
            "--upload-pack=touch /tmp/x",
            "https://github.com/o/r.git; rm -rf /",
            "ext::sh -c touch% /tmp/pwned",
        ] {
            assert!(!ok(parse_git_url("git_url", bad, false)), "{bad}");
        }
    }

    #[test]
    fn branches_follow_git_ref_rules() {
        for good in ["main", "17.0", "feature/x-1", "release/2025.01"] {
            assert!(ok(parse_branch("branch", good)), "{good}");
        }
        for bad in [
            "", "-x", "a..b", "a b", "a~1", "a^", "a:b", "x.lock", ".hidden", "a/.b", "a//b",
            "a@{1}", "@", "end/", "end.", "a\nb",
        ] {
            assert!(!ok(parse_branch("branch", bad)), "{bad:?}");
        }
    }

    #[test]
    fn small_formats() {
        assert!(ok(parse_email("email", "A@Example.com")));
        assert_eq!(
            parse_email("email", " A@Example.com ").ok().as_deref(),
            Some("a@example.com")
        );
        assert!(!ok(parse_email("email", "nope")));
        assert!(!ok(parse_port("ssh_port", 0)));
        assert!(!ok(parse_port("ssh_port", 65536)));
        assert!(ok(parse_port("ssh_port", 22)));
        assert!(ok(parse_odoo_version("version", "18.0")));
        assert!(!ok(parse_odoo_version("version", "18")));
        assert!(ok(parse_image("image", "127.0.0.1:5000/oec/odoo:18.0")));
        assert!(!ok(parse_image("image", "odoo:18.0 --privileged")));
        assert!(ok(parse_fingerprint(
            "f",
            "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        )));
        assert!(!ok(parse_fingerprint("f", "MD5:aa:bb")));
        assert!(!ok(parse_cpu_cores("cpu_cores", f64::NAN)));
        assert!(!ok(parse_secret("password", "a\nb")));
        assert!(!ok(parse_unix_user("ssh_user", "root;id")));
    }
}
