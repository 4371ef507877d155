//! pulling_image: the Odoo version's image, with its registry credentials;
//! an image already on the server is reused. Fatal.

use std::time::Instant;

use oec_common::model::steps::Step;

use crate::pipeline::docker;
use crate::pipeline::{Outcome, Run, StageError, secs};

pub async fn run(run: &mut Run) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let step = Step::PullingImage;
    let plan = run.plan()?;
    let image = plan.env.odoo_image.clone();
    let auth = plan.registry_auth.clone();
    run.log.info(
        step,
        &format!("Pulling Odoo {} image...", run.ctx.odoo_version),
    );
    run.log.debug(step, &format!("Image: {image}"));
    let docker = run.target()?.docker().clone();
    let log = run.log.clone();
    if docker::ensure_image(&docker, &image, auth.as_ref(), &mut |l| log.debug(step, l)).await? {
        let message = format!("Image ready (cached) ({})", secs(t0));
        run.log.info(step, &message);
        return Ok(Outcome::Completed(message));
    }
    let message = format!("Image ready ({})", secs(t0));
    run.log.info(step, &message);
    Ok(Outcome::Completed(message))
}
