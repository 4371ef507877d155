//! The dashboard: plain HTML, CSS and one ES module (`api/dashboard/`),
//! embedded in the binary and served on the API's own origin (`/`,
//! `/assets/*`), so it needs no CORS and nothing from elsewhere. It uses
//! only the public API and event streams, like any client.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

const INDEX: &str = include_str!("../dashboard/index.html");
const APP: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// Only this origin's scripts, styles and connections; no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/assets/app.js", web::get().to(app))
        .route("/assets/style.css", web::get().to(style));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn app() -> HttpResponse {
    asset("text/javascript; charset=utf-8", APP)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
