//! CORS for the origins in `OEC_CORS_ORIGINS` (none by default, so a
//! browser on another origin gets nothing it may read). A preflight from an
//! allowed origin is answered here (204); other requests from it get
//! `Access-Control-Allow-Origin` naming it and the headers a client reads
//! (`X-Total-Count`, `Link`, `X-Request-Id`, `Retry-After`). Tokens travel
//! in `Authorization`, never in cookies: credentials are not allowed.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::state::AppState;

const METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const HEADERS: &str = "authorization, content-type, idempotency-key, last-event-id, x-request-id";
const EXPOSED: &str = "x-total-count, link, x-request-id, retry-after";

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let allowed = req.app_data::<web::Data<AppState>>().and_then(|state| {
        let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
        let lower = origin.to_ascii_lowercase();
        state
            .settings
            .cors_origins
            .contains(&lower)
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    });
    let Some(origin) = allowed else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let res = HttpResponse::build(StatusCode::NO_CONTENT)
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, METHODS))
            .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, HEADERS))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
            .insert_header((header::VARY, "Origin"))
            .finish();
        return Ok(req.into_response(res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    Ok(res)
}
