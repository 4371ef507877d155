//! Request ids and the access log.
//!
//! Every response carries `X-Request-Id`: the caller's own when it is 1–64
//! characters of `A-Z a-z 0-9 . _ -`, otherwise a new one. Each request logs
//! one line (method, path, status, milliseconds to the response head) inside
//! a span holding the id, so that an error logged while handling it carries
//! the id too. The query string is never logged: it may hold an access token
//! (`?token=` of the event streams).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument as _;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn acceptable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned);
    let method = req.method().clone();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let t0 = Instant::now();
    let result = next.call(req).instrument(span.clone()).await;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let _entered = span.enter();
    // Handlers and extractors turn their errors into responses; an error
    // that still gets here (none of ours) is rendered by actix, without the
    // header, and logged with its status.
    let (status, result) = match result {
        Ok(mut res) => {
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(HEADER, v);
            }
            (res.status().as_u16(), Ok(res))
        }
        Err(e) => (e.as_response_error().status_code().as_u16(), Err(e)),
    };
    if path.ends_with("/healthz") || path.ends_with("/readyz") {
        tracing::debug!(target: "oec_api::access", "{method} {path} {status} {ms:.1}ms");
    } else if status >= 500 {
        tracing::warn!(target: "oec_api::access", "{method} {path} {status} {ms:.1}ms");
    } else {
        tracing::info!(target: "oec_api::access", "{method} {path} {status} {ms:.1}ms");
    }
    result
}
