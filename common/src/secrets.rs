//! Secrets at rest and in text: AES-256-GCM encryption under `OEC_SECRET_KEY`,
//! and masking of secrets in anything written to a log, an event or an error.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// What a masked secret reads as.
pub const MASK: &str = "***";

/// The 32-byte key every secret is encrypted under.
#[derive(Clone)]
pub struct SecretKey(Key<Aes256Gcm>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("stored secret is not valid base64 or is too short")]
    Malformed,
    #[error("stored secret cannot be decrypted with OEC_SECRET_KEY (was the key changed?)")]
    Decrypt,
}

/// A secret as it is stored: base64(nonce ‖ ciphertext ‖ tag) under
/// `OEC_SECRET_KEY`. Only [`SecretKey::seal`] makes one and only
/// [`SecretKey::open`] reads it; the database hands back what was stored
/// (the `*_encrypted` columns decode into it). It is never serialized.
#[derive(Clone, PartialEq, Eq, sqlx::Type)]
#[sqlx(transparent)]
pub struct Sealed(String);

impl Sealed {
    /// The stored text (ciphertext: showing it reveals nothing).
    pub fn as_stored(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == 32).then(|| SecretKey(*Key::<Aes256Gcm>::from_slice(bytes)))
    }

    /// Encrypts `plaintext` under a fresh random nonce.
    pub fn seal(&self, plaintext: &str) -> Sealed {
        let cipher = Aes256Gcm::new(&self.0);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and nonce cannot fail for in-memory input.
        let ciphertext = cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Sealed(B64.encode(out))
    }

    pub fn open(&self, sealed: &Sealed) -> Result<String, SecretError> {
        let bytes = B64.decode(&sealed.0).map_err(|_| SecretError::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = Aes256Gcm::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| SecretError::Decrypt)
    }
}

/// Replaces the password (or token) in a URL's user-info with [`MASK`]:
/// `https://tok@host/x` → `https://***@host/x`, `postgres://u:pw@h/db` → `postgres://u:***@h/db`.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => MASK.to_owned(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], masked, &rest[at..])
}

/// What may be shown of a download URL: everything before its query string
/// or fragment (a presigned link's signature lives there).
pub fn shown_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// Masks a known set of secret values wherever they appear in a text.
#[derive(Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

/// `text` with every byte but the URL-unreserved ones (`A-Z a-z 0-9 - . _
/// ~`) as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Masker {
    /// Adds a secret in every encoding it may show up in: as is,
    /// percent-encoded (a URL, a credential file), and base64 (standard and
    /// URL-safe, e.g. inside an `Authorization: Basic` value). Values shorter
    /// than 4 characters are ignored, since masking them would mangle
    /// ordinary text and reveal nothing useful.
    pub fn add(&mut self, secret: impl Into<String>) {
        use base64::Engine as _;
        let s = secret.into();
        if s.len() < 4 {
            return;
        }
        let b = s.as_bytes();
        let forms = [
            percent_encode(&s),
            base64::engine::general_purpose::STANDARD.encode(b),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
            s.clone(),
        ];
        for f in forms {
            if !self.secrets.contains(&f) {
                self.secrets.push(f);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds the value of `Authorization: Basic` for this user and password.
    pub fn add_basic_auth(&mut self, user: &str, password: &str) {
        use base64::Engine as _;
        self.add(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = mask_all_urls(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

/// Masks the user-info of every URL in a free text (e.g. git's error output).
fn mask_all_urls(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    text.split_inclusive(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .map(|w| {
            if w.contains("://") {
                mask_url(w)
            } else {
                w.to_owned()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes(&[7u8; 32]).expect("32 bytes")
    }

    #[test]
    fn encrypt_then_decrypt_round_trips_and_hides_the_plaintext() {
        let k = key();
        let a = k.seal("hunter2-password");
        let b = k.seal("hunter2-password");
        assert_ne!(a, b, "nonces must differ");
        assert!(!a.as_stored().contains("hunter2"));
        assert_eq!(k.open(&a).expect("decrypts"), "hunter2-password");
    }

    #[test]
    fn a_wrong_key_or_tampered_text_fails_cleanly() {
        let stored = key().seal("s3cret");
        let other = SecretKey::from_bytes(&[8u8; 32]).expect("32 bytes");
        assert!(matches!(other.open(&stored), Err(SecretError::Decrypt)));
        assert!(matches!(
            key().open(&Sealed("!!".into())),
            Err(SecretError::Malformed)
        ));
        assert!(SecretKey::from_bytes(&[0u8; 31]).is_none());
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            mask_url("https://ghp_abc@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            mask_url("postgres://oec:pw@127.0.0.1/db"),
            "postgres://oec:***@127.0.0.1/db"
        );
        assert_eq!(
            mask_url("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(mask_url("https://h/x?a=b@c"), "https://h/x?a=b@c");
    }

    #[test]
    fn masker_hides_a_secret_in_every_encoding() {
        let mut m = Masker::default();
        m.add("t@k/en#9");
        m.add_basic_auth("t@k/en#9", "x-oauth-basic");
        for shown in [
            "t@k/en#9",
            "t%40k%2Fen%239",
            "dEBrL2VuIzk=",
            "dEBrL2VuIzk",
            "dEBrL2VuIzk6eC1vYXV0aC1iYXNpYw==",
        ] {
            assert_eq!(
                m.mask(&format!("a {shown} b")),
                format!("a {MASK} b"),
                "{shown}"
            );
        }
    }

    #[test]
    fn masker_hides_known_secrets_and_url_credentials() {
        let mut m = Masker::default();
        m.add("tok-123456");
        m.add("ab");
        let text = "fatal: Authentication failed for 'https://tok-123456@git.example/r.git' (tok-123456) ab";
        let out = m.mask(text);
        assert!(!out.contains("tok-123456"), "{out}");
        assert!(out.contains("'https://***@git.example/r.git'"), "{out}");
        assert!(out.ends_with(" ab"));
    }
}
