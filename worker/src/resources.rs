//! Pure resource arithmetic: the spec's 70/30 split of an environment's CPU
//! and RAM between Odoo and PostgreSQL, Odoo's worker count, PgBouncer's pool
//! and PGTune-style PostgreSQL settings.

/// Odoo's share of the environment's CPU and RAM; PostgreSQL gets the rest.
pub const ODOO_SHARE: f64 = 0.7;

/// One side of the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share {
    pub cpu_cores: f64,
    pub ram_mb: u64,
}

impl Share {
    /// Docker's `--cpus` as nano-CPUs.
    pub fn nano_cpus(&self) -> i64 {
        (self.cpu_cores * 1e9).round() as i64
    }

    /// Docker's `--memory` in bytes.
    pub fn memory_bytes(&self) -> i64 {
        (self.ram_mb as i64) * 1024 * 1024
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    pub odoo: Share,
    pub database: Share,
}

/// 70% for Odoo, 30% for PostgreSQL: CPU rounded to a tenth of a core, RAM
/// to the megabyte; the two halves add up to the whole.
pub fn split(cpu_cores: f64, ram_mb: u64) -> Split {
    let odoo_cpu = (cpu_cores * ODOO_SHARE * 10.0).round() / 10.0;
    let odoo_ram = (ram_mb as f64 * ODOO_SHARE).round() as u64;
    let db_cpu = ((cpu_cores - odoo_cpu) * 10.0).round() / 10.0;
    Split {
        odoo: Share {
            cpu_cores: odoo_cpu,
            ram_mb: odoo_ram,
        },
        database: Share {
            cpu_cores: db_cpu.max(0.1),
            ram_mb: ram_mb - odoo_ram,
        },
    }
}

/// The spec's `workers = max(1, int(odoo_cpu_cores * 2))`.
pub fn odoo_workers(odoo_cpu_cores: f64) -> u32 {
    ((odoo_cpu_cores * 2.0).floor() as u32).max(1)
}

/// Odoo's memory limits from its share of RAM: the hard limit is the
/// container's memory, the soft limit four fifths of it.
pub fn odoo_memory_limits(odoo_ram_mb: u64) -> (u64, u64) {
    let hard = odoo_ram_mb * 1024 * 1024;
    (hard, hard / 5 * 4)
}

/// PgBouncer's server pool: 50 connections per GB of the environment's RAM
/// (at least 10).
pub fn pgbouncer_pool_size(env_ram_mb: u64) -> u64 {
    (env_ram_mb * 50 / 1024).max(10)
}

/// PostgreSQL settings for a web workload on SSD storage, computed from the
/// database's share of RAM and CPU the way PGTune does, as `-c name=value`
/// pairs in a stable order.
pub fn pgtune(db: Share, pool_size: u64) -> Vec<(&'static str, String)> {
    let ram_kb = db.ram_mb * 1024;
    // Room for the pool, the replica's and maintenance connections.
    let max_connections = pool_size + 20;
    let shared_buffers = ram_kb / 4;
    let effective_cache = ram_kb * 3 / 4;
    let maintenance = (ram_kb / 16).min(2 * 1024 * 1024);
    let wal_buffers = (shared_buffers * 3 / 100).clamp(64, 16 * 1024);
    let work_mem = ((ram_kb - shared_buffers) / (max_connections * 3)).max(64);
    let mut out = vec![
        ("max_connections", max_connections.to_string()),
        ("shared_buffers", size(shared_buffers)),
        ("effective_cache_size", size(effective_cache)),
        ("maintenance_work_mem", size(maintenance)),
        ("checkpoint_completion_target", "0.9".to_owned()),
        ("wal_buffers", size(wal_buffers)),
        ("default_statistics_target", "100".to_owned()),
        ("random_page_cost", "1.1".to_owned()),
        ("effective_io_concurrency", "200".to_owned()),
        ("work_mem", size(work_mem)),
        ("huge_pages", "off".to_owned()),
        ("min_wal_size", "1GB".to_owned()),
        ("max_wal_size", "4GB".to_owned()),
    ];
    let cores = db.cpu_cores.floor() as u64;
    if cores >= 2 {
        out.push(("max_worker_processes", cores.to_string()));
        out.push((
            "max_parallel_workers_per_gather",
            cores.div_ceil(2).to_string(),
        ));
        out.push(("max_parallel_workers", cores.to_string()));
        out.push((
            "max_parallel_maintenance_workers",
            cores.div_ceil(2).to_string(),
        ));
    }
    out
}

/// A size in kB as PostgreSQL reads it, in the largest exact unit.
fn size(kb: u64) -> String {
    if kb.is_multiple_of(1024 * 1024) {
        format!("{}GB", kb / (1024 * 1024))
    } else if kb.is_multiple_of(1024) {
        format!("{}MB", kb / 1024)
    } else {
        format!("{kb}kB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_matches_the_specs_example() {
        // The spec: 2 cores and 2 GB give "CPU=1.4 cores, RAM=1434m (70%)".
        let s = split(2.0, 2048);
        assert_eq!(s.odoo.cpu_cores, 1.4);
        assert_eq!(s.odoo.ram_mb, 1434);
        assert_eq!(s.database.cpu_cores, 0.6);
        assert_eq!(s.database.ram_mb, 614);
        assert_eq!(s.odoo.nano_cpus(), 1_400_000_000);
        assert_eq!(s.odoo.memory_bytes(), 1434 * 1024 * 1024);
    }

    #[test]
    fn split_halves_add_up() {
        for (cpu, ram) in [(0.5, 512), (1.0, 1000), (3.3, 4097), (16.0, 65536)] {
            let s = split(cpu, ram);
            assert_eq!(s.odoo.ram_mb + s.database.ram_mb, ram);
            assert!((s.odoo.cpu_cores + s.database.cpu_cores - cpu).abs() < 0.11);
        }
    }

    #[test]
    fn workers_follow_the_specs_formula() {
        assert_eq!(odoo_workers(0.35), 1);
        assert_eq!(odoo_workers(0.7), 1);
        assert_eq!(odoo_workers(1.4), 2);
        assert_eq!(odoo_workers(2.0), 4);
        assert_eq!(odoo_workers(2.8), 5);
    }

    #[test]
    fn memory_limits_match_the_specs_example() {
        assert_eq!(odoo_memory_limits(2560), (2_684_354_560, 2_147_483_648));
    }

    #[test]
    fn pool_is_fifty_per_gigabyte() {
        assert_eq!(pgbouncer_pool_size(2048), 100);
        assert_eq!(pgbouncer_pool_size(4096), 200);
        assert_eq!(pgbouncer_pool_size(512), 25);
        assert_eq!(pgbouncer_pool_size(100), 10);
    }

    #[test]
    fn pgtune_for_one_gigabyte_and_two_cores() {
        let s = pgtune(
            Share {
                cpu_cores: 2.0,
                ram_mb: 1024,
            },
            100,
        );
        let get = |k: &str| s.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("max_connections"), Some("120"));
        assert_eq!(get("shared_buffers"), Some("256MB"));
        assert_eq!(get("effective_cache_size"), Some("768MB"));
        assert_eq!(get("maintenance_work_mem"), Some("64MB"));
        assert_eq!(get("wal_buffers"), Some("7864kB"));
        // (1 GB - 256 MB) / (120 * 3) = 2184 kB
        assert_eq!(get("work_mem"), Some("2184kB"));
        assert_eq!(get("max_worker_processes"), Some("2"));
        assert_eq!(get("max_parallel_workers_per_gather"), Some("1"));
    }

    #[test]
    fn pgtune_small_database_has_floors_and_no_parallelism() {
        let s = pgtune(
            Share {
                cpu_cores: 0.6,
                ram_mb: 154,
            },
            10,
        );
        let get = |k: &str| s.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("shared_buffers"), Some("39424kB"));
        assert_eq!(get("wal_buffers"), Some("1182kB"));
        assert!(get("max_worker_processes").is_none());
        // maintenance_work_mem is capped at 2 GB for large machines.
        let big = pgtune(
            Share {
                cpu_cores: 8.0,
                ram_mb: 65536,
            },
            200,
        );
        assert!(big.contains(&("maintenance_work_mem", "2GB".to_owned())));
        assert!(big.contains(&("shared_buffers", "16GB".to_owned())));
        assert!(big.contains(&("wal_buffers", "16MB".to_owned())));
    }
}
