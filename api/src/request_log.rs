//! Request ids and the access log.
//!
//! Every response carries `X-Request-Id`: the caller's own when it is 1–64
//! characters of `A-Z a-z 0-9 . _ -`, otherwise a new one. Each request logs
//! one line (method, path, status, milliseconds to the response head; in
//! JSON mode also as the fields `request_id`, `method`, `route`, `path`,
//! `status`, `latency_ms`) inside a span holding the id, so that an error logged while handling it carries
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
    let (status, route, result) = match result {
        Ok(mut res) => {
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(HEADER, v);
            }
            let route = res.request().match_pattern();
            (res.status().as_u16(), route, Ok(res))
        }
        Err(e) => (e.as_response_error().status_code().as_u16(), None, Err(e)),
    };
    // The route's pattern (`/api/v1/deployments/{id}`), never the path's
    // ids: a bounded set of labels. Paths that match no route share one.
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    let labels = [
        ("method", method.as_str()),
        ("route", route.as_str()),
        ("status", &status.to_string()),
    ];
    oec_common::metrics::count(
        "oec_http_requests_total",
        "HTTP requests answered, by method, route and status.",
        &labels,
        1,
    );
    oec_common::metrics::observe(
        "oec_http_request_duration_seconds",
        "Time to the response head, by method and route.",
        &labels[..2],
        ms / 1000.0,
    );
    // Fields for machines (JSON mode), the message for people.
    macro_rules! access {
        ($level:ident) => {
            tracing::$level!(
                target: "oec_api::access",
                request_id = %id,
                method = %method,
                route = %route,
                path = %path,
                status,
                latency_ms = (ms * 10.0).round() / 10.0,
                "{method} {path} {status} {ms:.1}ms"
            )
        };
    }
    if path.ends_with("/healthz") || path.ends_with("/readyz") || path == "/metrics" {
        access!(debug);
    } else if status >= 500 {
        access!(warn);
    } else {
        access!(info);
    }
    result
}
