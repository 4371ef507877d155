//! `odoo_conf_overrides`: user settings merged last into odoo.conf, grouped as
//! the spec shows (`{"performance": {"workers": 8}, "logging": {...}}`).
//!
//! Validation guarantees nothing can inject a line or a section into odoo.conf:
//! known groups only, keys `[a-z_]+`, scalar single-line values, and the keys oec
//! itself owns (database connection, paths, filters) are refused.

use serde_json::{Map, Value};

use super::fields::{FieldResult, invalid};

pub const GROUPS: &[&str] = &[
    "performance",
    "logging",
    "database",
    "server",
    "security",
    "email",
    "limits",
    "misc",
];

/// Keys oec sets itself: overriding them would break the deployment or leak
/// into another environment.
pub const RESERVED_KEYS: &[&str] = &[
    "addons_path",
    "data_dir",
    "db_host",
    "db_port",
    "db_user",
    "db_password",
    "db_name",
    "dbfilter",
    "db_replica_host",
    "db_replica_port",
    "logfile",
    "proxy_mode",
    "admin_passwd",
];

const MAX_KEYS: usize = 100;
const MAX_VALUE_LEN: usize = 1024;

/// Validates overrides and returns them as a JSON object of objects.
pub fn parse_overrides(field: &str, v: &Value) -> FieldResult<Value> {
    let Value::Object(groups) = v else {
        return invalid(
            field,
            "must be an object of groups, e.g. {\"performance\": {\"workers\": 8}}",
        );
    };
    let mut count = 0;
    let mut out = Map::new();
    for (group, entries) in groups {
        let at = format!("{field}.{group}");
        if !GROUPS.contains(&group.as_str()) {
            return invalid(
                &at,
                format!("unknown group; known groups: {}", GROUPS.join(", ")),
            );
        }
        let Value::Object(entries) = entries else {
            return invalid(&at, "must be an object of key: value");
        };
        let mut clean = Map::new();
        for (key, value) in entries {
            let at = format!("{at}.{key}");
            if key.is_empty()
                || key.len() > 64
                || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            {
                return invalid(
                    &at,
                    "keys must be lowercase letters and underscores ([a-z_]+)",
                );
            }
            if RESERVED_KEYS.contains(&key.as_str()) {
                return invalid(&at, "is managed by oec and cannot be overridden");
            }
            match value {
                Value::Bool(_) | Value::Number(_) => {}
                Value::String(s) => {
                    if s.len() > MAX_VALUE_LEN || s.chars().any(char::is_control) {
                        return invalid(&at, "must be a single line of at most 1024 characters");
                    }
                }
                _ => return invalid(&at, "must be a string, number or boolean"),
            }
            count += 1;
            if count > MAX_KEYS {
                return invalid(field, format!("at most {MAX_KEYS} overrides"));
            }
            clean.insert(key.clone(), value.clone());
        }
        out.insert(group.clone(), Value::Object(clean));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_specs_example_is_accepted() {
        let v = json!({"performance": {"workers": 8, "max_cron_threads": 2},
                       "logging": {"log_level": "debug", "log_handler": ":DEBUG"}});
        assert_eq!(parse_overrides("odoo_conf_overrides", &v).ok(), Some(v));
    }

    #[test]
    fn nothing_can_inject_a_line_or_take_over_a_managed_key() {
        let cases = [
            (json!([1]), "odoo_conf_overrides"),
            (json!({"nope": {}}), "odoo_conf_overrides.nope"),
            (json!({"logging": 1}), "odoo_conf_overrides.logging"),
            (
                json!({"logging": {"Log": "x"}}),
                "odoo_conf_overrides.logging.Log",
            ),
            (
                json!({"logging": {"log_level": "debug\n[options]\nadmin_passwd = x"}}),
                "odoo_conf_overrides.logging.log_level",
            ),
            (
                json!({"database": {"db_password": "x"}}),
                "odoo_conf_overrides.database.db_password",
            ),
            (
                json!({"logging": {"log_level": {"a": 1}}}),
                "odoo_conf_overrides.logging.log_level",
            ),
        ];
        for (v, field) in cases {
            let err = parse_overrides("odoo_conf_overrides", &v)
                .err()
                .map(|e| e.field);
            assert_eq!(err.as_deref(), Some(field), "{v}");
        }
    }
}
