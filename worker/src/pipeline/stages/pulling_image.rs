//! pulling_image: the Odoo version's image, with its registry credentials;
//! an image already on the server is reused. Fatal.

use std::time::Instant;

use oec_common::model::steps::Step;
use serde_json::json;

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
    if docker::has_image(&docker, &image).await? {
        let message = format!("Image ready (cached) ({})", secs(t0));
        run.log.info(step, &message);
        return Ok(Outcome::Completed(message));
    }
    let log = run.log.clone();
    docker::pull(&docker, &image, auth.as_ref(), &mut |l| log.debug(step, l))
        .await
        .map_err(|e| {
            let not_found = e.contains("not found") || e.contains("manifest unknown");
            let denied = e.contains("unauthorized") || e.contains("denied");
            StageError::with_data(
                format!("Failed to pull image {image}"),
                json!({
                    "image": image,
                    "error_code": if not_found { "IMAGE_NOT_FOUND" } else if denied { "REGISTRY_AUTH_FAILED" } else { "PULL_FAILED" },
                    "error": e,
                    "hint": if not_found { "check the image name and tag of this Odoo version" }
                            else if denied { "check the Odoo version's registry credentials" }
                            else { "check that the server can reach the registry" },
                }),
            )
        })?;
    let message = format!("Image ready ({})", secs(t0));
    run.log.info(step, &message);
    Ok(Outcome::Completed(message))
}
