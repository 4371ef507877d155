//! Quoting for remote shells: every value put into a command goes through
//! [`quote`], so user strings never become shell syntax.

/// Quotes `s` as one POSIX shell word.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn safe_words_stay_bare_and_everything_else_is_single_quoted() {
        assert_eq!(quote("paasportal_net_3f4a"), "paasportal_net_3f4a");
        assert_eq!(quote("/opt/paasportal/x"), "/opt/paasportal/x");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(id)"), "'$(id)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("a;rm -rf /"), "'a;rm -rf /'");
    }

    #[test]
    fn quoted_words_survive_a_real_shell() {
        for s in ["it's", "$(id)", "`id`", "a\nb", "\\", "\"", "*", "-n"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .expect("sh");
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }
}
