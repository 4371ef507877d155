//! Odoo's password hashes, made without Odoo: passlib's `pbkdf2_sha512`
//! format (`$pbkdf2-sha512$rounds$salt$checksum`, both in passlib's
//! "adapted base64": `.` for `+`, no padding), which every Odoo from 12 to
//! 19 verifies. oec writes the admin user's hash straight into `res_users`
//! instead of starting `odoo shell`, which loads the whole registry (4-5 s)
//! to do the same.

use std::num::NonZeroU32;

use base64::Engine as _;
use ring::pbkdf2;

/// Odoo 17-19's own work factor (`MIN_ROUNDS` in `res_users.py`); a hash
/// with fewer rounds would be replaced at the first sign-in.
pub const ROUNDS: u32 = 600_000;

/// The hash of `password` with a fresh random salt, as Odoo stores it.
pub fn hash(password: &str) -> String {
    // 16 bytes as passlib's default salt; 122 of their bits are random.
    let salt = uuid::Uuid::new_v4().into_bytes();
    hash_with(password, &salt, ROUNDS)
}

fn hash_with(password: &str, salt: &[u8], rounds: u32) -> String {
    // SHA-512's 64 bytes: what passlib keeps.
    let mut derived = [0u8; 64];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        NonZeroU32::new(rounds).unwrap_or(NonZeroU32::MIN),
        salt,
        password.as_bytes(),
        &mut derived,
    );
    format!(
        "$pbkdf2-sha512${rounds}${}${}",
        adapted_base64(salt),
        adapted_base64(&derived)
    )
}

fn adapted_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(bytes)
        .replace('+', ".")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value is Python's `hashlib.pbkdf2_hmac('sha512', ...)`
    /// written the way passlib writes it.
    #[test]
    fn the_hash_is_passlibs_pbkdf2_sha512() {
        let salt: Vec<u8> = (0..16).collect();
        assert_eq!(
            hash_with("correct horse", &salt, 1000),
            "$pbkdf2-sha512$1000$AAECAwQFBgcICQoLDA0ODw$Xpx07WjVx4vCIvrmBRj8uOoVVtGqJqtUv2J5bhizSQs7osCteF7W4A61dZDqSIqQjO.dxO6p5FT/Uy7QRBXSXA"
        );
    }

    #[test]
    fn each_hash_has_its_own_salt_and_odoos_rounds() {
        let (a, b) = (hash("x"), hash("x"));
        assert_ne!(a, b);
        assert!(a.starts_with("$pbkdf2-sha512$600000$"), "{a}");
        assert_eq!(a.split('$').count(), 5);
    }
}
