//! The API's OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the request and response types'
//! `ToSchema` derives, served at `/api/v1/openapi.json`.
//!
//! What every operation shares is added here rather than on each handler:
//! the bearer security requirement (all but the public operations), and the
//! error answers the extractors and the permission checks give anywhere
//! (400 for a malformed id, body or query; 401 and 403; 404 for a missing
//! or invisible resource in the path; 413 and 415 for bodies; 422 for an
//! invalid field or an unknown query parameter), each with [`ErrorBody`].

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::errors::ErrorBody;
use crate::routes::{
    auth, deployments, dns_providers, environments, health, odoo_versions, organizations, projects,
    repositories, servers, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "oec",
        description = "Deploys Odoo environments onto your own servers and streams every step live. \
                       Errors answer `{\"error\": code, \"message\": ..., \"field\"?: ...}`; \
                       lists answer a JSON array with `X-Total-Count` and `Link` headers.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        auth::login, auth::refresh, auth::logout, auth::change_password, auth::me,
        users::create, users::list, users::update, users::delete, users::reset_password,
        organizations::create, organizations::list, organizations::get, organizations::update,
        organizations::delete, organizations::add_member, organizations::list_members,
        organizations::change_member, organizations::remove_member,
        projects::create, projects::list, projects::get, projects::update, projects::delete,
        projects::add_member, projects::list_members, projects::change_member,
        projects::remove_member,
        servers::create, servers::list, servers::get, servers::update, servers::delete,
        servers::check, servers::reset_host_key,
        odoo_versions::create, odoo_versions::list, odoo_versions::get, odoo_versions::update,
        odoo_versions::delete,
        repositories::create, repositories::list, repositories::get, repositories::update,
        repositories::delete,
        dns_providers::create, dns_providers::list, dns_providers::get, dns_providers::update,
        dns_providers::delete,
        environments::create, environments::list, environments::get, environments::update,
        environments::delete, environments::stop, environments::start, environments::restart,
        environments::credentials,
        deployments::create, deployments::list, deployments::get, deployments::latest,
        deployments::stats, deployments::logs, deployments::export, deployments::progress,
        deployments::cancel, deployments::redeploy, deployments::event_schema,
        crate::sse::deployment_events, crate::sse::events_stream,
        health::healthz, health::readyz, health::metrics, openapi_json,
    ),
    components(schemas(ErrorBody, oec_common::model::steps::Step)),
    modifiers(&Shared),
)]
pub struct ApiDoc;

/// Operations anyone may call, without a token.
const PUBLIC: &[&str] = &[
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/events/schema",
    "/api/v1/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
];

struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    Http::builder()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        for (path, item) in doc.paths.paths.iter_mut() {
            let public = PUBLIC.contains(&path.as_str());
            let has_id = path.contains('{');
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                shared(op, public, has_id);
            }
        }
        link_created(doc);
    }
}

/// Links from each create (`POST /things` answering 201) to the operations
/// on the created one (`/things/{id}...` with `id` as their only path
/// parameter), with `id` taken from the answer: clients and stateful
/// testers can follow a resource from its creation.
fn link_created(doc: &mut utoipa::openapi::OpenApi) {
    let targets: Vec<(String, String)> = doc
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.matches('{').count() == 1 && path.contains("/{id}"))
        .flat_map(|(path, item)| {
            [&item.get, &item.put, &item.patch, &item.delete, &item.post]
                .into_iter()
                .flatten()
                .filter_map(|op| op.operation_id.clone())
                .map(|id| (path.clone(), id))
                .collect::<Vec<_>>()
        })
        .collect();
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(create) = item.post.as_mut().filter(|_| !path.contains('{')) else {
            continue;
        };
        let Some(RefOr::T(created)) = create.responses.responses.get_mut("201") else {
            continue;
        };
        let prefix = format!("{path}/{{id}}");
        for (target, op_id) in &targets {
            if target == &prefix || target.starts_with(&format!("{prefix}/")) {
                created.links.insert(
                    op_id.clone(),
                    RefOr::T(
                        Link::builder()
                            .operation_id(op_id.clone())
                            .parameter("id", "$response.body#/id")
                            .build(),
                    ),
                );
            }
        }
    }
}

fn shared(op: &mut Operation, public: bool, has_id: bool) {
    // Handler names repeat across resources: the tag makes them unique.
    if let (Some(id), Some(tag)) = (&op.operation_id, op.tags.as_ref().and_then(|t| t.first())) {
        op.operation_id = Some(format!("{}_{id}", tag.replace('-', "_")));
    }
    let has_body = op.request_body.is_some();
    if !public && op.security.is_none() {
        op.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
    let mut add = |status: &str, why: &str| {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error(why));
    };
    if public && !has_body {
        // Public reads take no input that can be wrong except the query.
        add("422", "An unknown or invalid query parameter.");
        return;
    }
    add("400", "A malformed id, query string or JSON body.");
    if !public {
        add(
            "401",
            "No token, an expired or revoked one, or an ended session.",
        );
        add("403", "The token's user lacks the permission.");
    }
    if !public || has_id {
        add(
            "404",
            "The resource, or one the request names, does not exist or is not visible to you.",
        );
    }
    if has_body {
        add("413", "The body is larger than `OEC_MAX_BODY_BYTES`.");
        add("415", "The body is not sent as `application/json`.");
    }
    add(
        "422",
        "An invalid field (named in `field`) or an unknown query parameter.",
    );
}

/// An error answer with the API's one error body.
pub fn error(description: &str) -> RefOr<Response> {
    RefOr::T(
        Response::builder()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build(),
    )
}

/// The document, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        camel_case_links(&mut doc);
        doc.to_string()
    })
}

/// utoipa 5.5 writes a link's `operationId` as `operation_id`: renamed
/// here, in every response's `links`.
fn camel_case_links(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let Some(obj) = link.as_object_mut()
                        && let Some(id) = obj.remove("operation_id")
                    {
                        obj.insert("operationId".into(), id);
                    }
                }
            }
            map.values_mut().for_each(camel_case_links);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
