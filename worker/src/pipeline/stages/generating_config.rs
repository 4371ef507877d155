//! generating_config: odoo.conf (`crate::odoo_conf`, a pure function) written
//! to `{root}/{uuid}/odoo.conf` on the server (replacing the file, so a
//! serving container keeps the one it started with; a redeploy keeps that
//! one as `odoo.conf.previous` for a rollback). Fatal.

use std::time::Instant;

use crate::odoo_conf::{ConfInput, generate};
use crate::pipeline::{Outcome, Stage, StageError, secs};
use crate::resources::odoo_workers;
use crate::target::shell::quote;

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    s.log.info("Generating Odoo configuration...");
    let plan = s.plan;
    let env = s.ctx.environment_id;
    let dirs = plan.addon_dirs();
    let (text, overrides) = generate(&ConfInput {
        environment: env,
        addon_dirs: &dirs,
        db_password: &plan.db_password,
        admin_passwd: &plan.admin_passwd,
        workers: odoo_workers(plan.split.odoo.cpu_cores),
        odoo_ram_mb: plan.split.odoo.ram_mb,
        replica: plan.replica(),
        overrides: &plan.env.odoo_conf_overrides,
    });
    let path = format!(
        "{}/odoo.conf",
        crate::names::env_dir(&s.settings.deploy_root, env)
    );
    if s.plan.redeploy {
        // The serving container's file, which a rollback puts back.
        let (conf, prev) = (quote(&path), quote(&format!("{path}.previous")));
        let out = s
            .target
            .run(
                &format!("if [ -f {conf} ]; then mv -f {conf} {prev}; else rm -f {prev}; fi"),
                &mut |_| {},
            )
            .await?;
        if !out.success() {
            return Err(StageError::new(format!(
                "Keeping the previous odoo.conf failed: {}",
                out.tail.join(" ")
            )));
        }
    }
    s.target
        .write_file(&path, text.as_bytes(), 0o640)
        .await
        .map_err(|e| StageError::new(format!("Writing {path} failed: {e:#}")))?;
    s.log.info("Configuration generated");
    s.log.debug(&format!("Wrote {path} ({} bytes)", text.len()));
    s.log.debug(&format!("odoo.conf ready ({})", secs(t0)));
    let message = format!("Generated odoo.conf with {overrides} custom overrides");
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}
