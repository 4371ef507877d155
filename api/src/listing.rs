//! List responses: the page as a JSON array, the whole list's size in
//! `X-Total-Count` and the neighbouring pages in a `Link` header (RFC 8288:
//! `first`, `prev`, `next`, `last`), each the request's own path and query
//! with only `skip` and `limit` changed.

use actix_web::{HttpRequest, HttpResponse};
use oec_common::db::{Page, Paged};
use serde::Serialize;

pub fn respond<T: Serialize>(req: &HttpRequest, page: Page, list: Paged<T>) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("X-Total-Count", list.total.to_string()));
    let links = links(req.path(), req.query_string(), page, list.total);
    if !links.is_empty() {
        resp.insert_header(("Link", links));
    }
    resp.json(list.rows)
}

/// The `Link` header's value for `page` of a list of `total` rows.
fn links(path: &str, query: &str, page: Page, total: i64) -> String {
    // The caller's other parameters, kept byte for byte (already encoded).
    let kept: Vec<&str> = query
        .split('&')
        .filter(|part| {
            let name = part.split('=').next().unwrap_or_default();
            !part.is_empty() && name != "skip" && name != "limit"
        })
        .collect();
    let url = |skip: i64| {
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("<{path}?{q}skip={skip}&limit={}>", page.limit)
    };
    let last = if total == 0 {
        0
    } else {
        (total - 1) / page.limit * page.limit
    };
    let mut out = vec![format!("{}; rel=\"first\"", url(0))];
    // `skip` may be any i64 ≥ 0: no arithmetic here may overflow.
    if page.skip > 0 {
        let prev = page.skip.saturating_sub(page.limit).clamp(0, last);
        out.push(format!("{}; rel=\"prev\"", url(prev)));
    }
    let next = page.skip.saturating_add(page.limit);
    if next < total {
        out.push(format!("{}; rel=\"next\"", url(next)));
    }
    out.push(format!("{}; rel=\"last\"", url(last)));
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_other_parameters_and_step_by_the_limit() {
        let page = Page {
            skip: 10,
            limit: 10,
        };
        assert_eq!(
            links(
                "/api/v1/deployments",
                "status=failed&skip=10&limit=10",
                page,
                25
            ),
            "</api/v1/deployments?status=failed&skip=0&limit=10>; rel=\"first\", \
             </api/v1/deployments?status=failed&skip=0&limit=10>; rel=\"prev\", \
             </api/v1/deployments?status=failed&skip=20&limit=10>; rel=\"next\", \
             </api/v1/deployments?status=failed&skip=20&limit=10>; rel=\"last\""
        );
    }

    #[test]
    fn the_first_and_only_page_has_no_prev_or_next() {
        let page = Page { skip: 0, limit: 50 };
        assert_eq!(
            links("/api/v1/users", "", page, 3),
            "</api/v1/users?skip=0&limit=50>; rel=\"first\", \
             </api/v1/users?skip=0&limit=50>; rel=\"last\""
        );
        assert_eq!(
            links("/api/v1/users", "", page, 0),
            "</api/v1/users?skip=0&limit=50>; rel=\"first\", \
             </api/v1/users?skip=0&limit=50>; rel=\"last\""
        );
    }

    #[test]
    fn a_page_past_the_end_points_back_to_the_last() {
        let page = Page {
            skip: 90,
            limit: 20,
        };
        let l = links("/p", "", page, 45);
        assert!(l.contains("</p?skip=40&limit=20>; rel=\"prev\""), "{l}");
        assert!(!l.contains("rel=\"next\""), "{l}");
        assert!(l.ends_with("</p?skip=40&limit=20>; rel=\"last\""), "{l}");
    }
}
