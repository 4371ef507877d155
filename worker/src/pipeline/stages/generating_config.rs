//! generating_config: odoo.conf (`crate::odoo_conf`, a pure function) written
//! to `{root}/{uuid}/odoo.conf` on the server. Fatal.

use std::time::Instant;

use oec_common::model::steps::Step;

use crate::odoo_conf::{ConfInput, generate};
use crate::pipeline::{Outcome, Run, StageError, secs};
use crate::resources::odoo_workers;

pub async fn run(run: &mut Run) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let step = Step::GeneratingConfig;
    run.log.info(step, "Generating Odoo configuration...");
    let plan = run.plan()?;
    let env = run.ctx.environment_id;
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
        crate::names::env_dir(&run.settings.deploy_root, env)
    );
    run.target()?
        .write_file(&path, text.as_bytes(), 0o640)
        .await
        .map_err(|e| StageError::new(format!("Writing {path} failed: {e:#}")))?;
    run.log.info(step, "Configuration generated");
    run.log
        .debug(step, &format!("Wrote {path} ({} bytes)", text.len()));
    run.log
        .debug(step, &format!("odoo.conf ready ({})", secs(t0)));
    let message = format!("Generated odoo.conf with {overrides} custom overrides");
    run.log.info(step, &message);
    Ok(Outcome::Completed(message))
}
