//! Pure odoo.conf generation, as the spec's "Generating Config" stage shows
//! it: addons in priority order ending with Odoo's base addons, the database
//! through PgBouncer, one database per environment, workers and memory limits
//! from Odoo's share of the resources, the replica for Odoo 18+, and the
//! user's overrides merged last.

use serde_json::Value;

/// Odoo's own addons inside the official image.
pub const BASE_ADDONS: &str = "/usr/lib/python3/dist-packages/odoo/addons";
/// Where the environment's addons directory is mounted in the container.
pub const EXTRA_ADDONS: &str = "/mnt/extra-addons";

pub struct ConfInput<'a> {
    pub environment: oec_common::model::ids::EnvironmentId,
    /// Repository directories under `addons/`, highest priority first.
    pub addon_dirs: &'a [String],
    pub db_password: &'a str,
    /// Odoo's master password, for its database manager.
    pub admin_passwd: &'a str,
    pub workers: u32,
    /// Odoo's share of RAM, in MB.
    pub odoo_ram_mb: u64,
    pub replica: bool,
    /// Validated overrides (`common::model::overrides`): `{group: {key: value}}`.
    pub overrides: &'a Value,
}

/// The file's text and the number of overrides applied.
pub fn generate(c: &ConfInput<'_>) -> (String, usize) {
    let (hard, soft) = crate::resources::odoo_memory_limits(c.odoo_ram_mb);
    let addons = c
        .addon_dirs
        .iter()
        .map(|d| format!("{EXTRA_ADDONS}/{d}"))
        .chain(std::iter::once(BASE_ADDONS.to_owned()))
        .collect::<Vec<_>>()
        .join(",");
    let env = c.environment;
    let mut lines: Vec<(String, String)> = vec![
        ("addons_path".into(), addons),
        ("data_dir".into(), "/var/lib/odoo".into()),
        ("db_host".into(), crate::names::pgbouncer_container(env)),
        ("db_port".into(), "6432".into()),
        ("db_user".into(), "odoo".into()),
        ("db_name".into(), env.to_string()),
        ("db_password".into(), c.db_password.to_owned()),
    ];
    if c.replica {
        lines.push((
            "db_replica_host".into(),
            crate::names::replica_pgbouncer_container(env),
        ));
        lines.push(("db_replica_port".into(), "6433".into()));
    }
    lines.extend([
        ("dbfilter".into(), format!("^{env}$")),
        ("workers".into(), c.workers.to_string()),
        ("limit_memory_hard".into(), hard.to_string()),
        ("limit_memory_soft".into(), soft.to_string()),
        ("limit_time_cpu".into(), "900".into()),
        ("proxy_mode".into(), "True".into()),
        ("logfile".into(), "False".into()),
        // Not in the spec's example: stock Odoo's master password is
        // `admin` and its database manager lists every database.
        ("admin_passwd".into(), c.admin_passwd.to_owned()),
        ("list_db".into(), "False".into()),
    ]);
    let mut applied = 0;
    if let Value::Object(groups) = c.overrides {
        for entries in groups.values() {
            let Value::Object(entries) = entries else {
                continue;
            };
            for (key, value) in entries {
                let value = render(value);
                applied += 1;
                match lines.iter_mut().find(|(k, _)| k == key) {
                    Some(line) => line.1 = value,
                    None => lines.push((key.clone(), value)),
                }
            }
        }
    }
    let mut out = String::from("[options]\n");
    for (k, v) in lines {
        out.push_str(&k);
        out.push_str(" = ");
        out.push_str(&v);
        out.push('\n');
    }
    (out, applied)
}

/// A JSON scalar as odoo.conf writes it (Python's True/False).
fn render(v: &Value) -> String {
    match v {
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        Value::Null => "False".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ENV: &str = "3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c";

    fn dirs() -> Vec<String> {
        vec![
            "my-project".into(),
            "org-modules".into(),
            "platform-utils".into(),
        ]
    }

    #[test]
    fn matches_the_specs_example_byte_for_byte_plus_the_database_manager_lines() {
        let spec = "[options]
addons_path = /mnt/extra-addons/my-project,/mnt/extra-addons/org-modules,/mnt/extra-addons/platform-utils,/usr/lib/python3/dist-packages/odoo/addons
data_dir = /var/lib/odoo
db_host = 3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c_pgbouncer
db_port = 6432
db_user = odoo
db_name = 3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c
db_password = {generated_secure_password}
dbfilter = ^3f4a5e2b-9c1d-4e8a-b2c3-7d6e5f4a3b2c$
workers = 4
limit_memory_hard = 2684354560
limit_memory_soft = 2147483648
limit_time_cpu = 900
proxy_mode = True
logfile = False
admin_passwd = {generated_master_password}
list_db = False
";
        let (text, n) = generate(&ConfInput {
            environment: oec_common::model::ids::EnvironmentId(ENV.parse().expect("uuid")),
            addon_dirs: &dirs(),
            db_password: "{generated_secure_password}",
            admin_passwd: "{generated_master_password}",
            workers: crate::resources::odoo_workers(2.0),
            odoo_ram_mb: 2560,
            replica: false,
            overrides: &json!({}),
        });
        assert_eq!(text, spec);
        assert_eq!(n, 0);
    }

    #[test]
    fn replica_keys_for_odoo_18() {
        let (text, _) = generate(&ConfInput {
            environment: oec_common::model::ids::EnvironmentId(ENV.parse().expect("uuid")),
            addon_dirs: &[],
            db_password: "pw",
            admin_passwd: "master",
            workers: 1,
            odoo_ram_mb: 1024,
            replica: true,
            overrides: &json!({}),
        });
        assert!(text.contains(&format!(
            "\ndb_replica_host = {ENV}_pgbouncer-replica\ndb_replica_port = 6433\n"
        )));
        assert!(text.contains("\naddons_path = /usr/lib/python3/dist-packages/odoo/addons\n"));
    }

    #[test]
    fn overrides_replace_defaults_in_place_and_append_the_rest() {
        let overrides = json!({
            "performance": {"workers": 8, "max_cron_threads": 2},
            "logging": {"log_level": "debug", "log_handler": ":DEBUG"},
            "server": {"list_db": false}
        });
        let (text, n) = generate(&ConfInput {
            environment: oec_common::model::ids::EnvironmentId(ENV.parse().expect("uuid")),
            addon_dirs: &dirs(),
            db_password: "pw",
            admin_passwd: "master",
            workers: 4,
            odoo_ram_mb: 2560,
            replica: false,
            overrides: &overrides,
        });
        assert_eq!(n, 5);
        assert!(text.contains("\nworkers = 8\nlimit_memory_hard"));
        assert!(!text.contains("workers = 4"));
        assert!(text.ends_with("logfile = False\nadmin_passwd = master\nlist_db = False\nlog_handler = :DEBUG\nlog_level = debug\nmax_cron_threads = 2\n"));
    }
}
