//! pulling_image: the Odoo version's image, with its registry credentials;
//! an image already on the server is reused. Fatal.

use std::time::Instant;

use crate::pipeline::docker;
use crate::pipeline::{Outcome, Stage, StageError, secs};

pub async fn run(s: &mut Stage<'_>) -> Result<Outcome, StageError> {
    let t0 = Instant::now();
    let plan = s.plan;
    let image = plan.env.odoo_image.clone();
    let auth = plan.registry_auth.clone();
    s.log
        .info(&format!("Pulling Odoo {} image...", s.ctx.odoo_version));
    s.log.debug(&format!("Image: {image}"));
    let docker = s.target.docker().clone();
    let log = s.log.clone();
    if docker::ensure_image(&docker, &image, auth.as_ref(), &mut |l| log.debug(l)).await? {
        let message = format!("Image ready (cached) ({})", secs(t0));
        s.log.info(&message);
        return Ok(Outcome::Completed(message));
    }
    let message = format!("Image ready ({})", secs(t0));
    s.log.info(&message);
    Ok(Outcome::Completed(message))
}
