//! The one error type of the API. Every error answers
//! `{"error": "<snake_case_code>", "message": "...", "field"?: "..."}` with the
//! status chosen here; 5xx causes go to the log, never to the client.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use oec_common::auth::Permission;
use oec_common::model::fields::FieldError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("missing permission {}", .0.as_str())]
    Forbidden(Permission),
    #[error("only portal admins may do this")]
    PortalAdminOnly,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Another deployment of the environment is pending or running.
    #[error("deployment {0} is in progress")]
    DeploymentInProgress(uuid::Uuid),
    #[error("{0}")]
    QueueUnavailable(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// 422: a query parameter the endpoint does not take.
    #[error("{}", .0.message)]
    UnknownParameter(FieldError),
    /// 422 with its own code (not a field's).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotReady(String),
    /// 429, with `Retry-After` seconds.
    #[error("{message}")]
    TooMany {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// A parent that is not found makes the child not found: a resource of
    /// an invisible project answers as itself missing.
    pub fn not_found_as(self, what: &'static str) -> Self {
        match self {
            ApiError::NotFound(_) => ApiError::NotFound(what),
            e => e,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(FieldError {
            field: field.to_owned(),
            message: message.into(),
        })
    }

    fn code(&self) -> String {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::TooMany { code, .. }
            | ApiError::Unprocessable { code, .. } => (*code).to_owned(),
            ApiError::Forbidden(_) | ApiError::PortalAdminOnly => "forbidden".into(),
            ApiError::NotFound(what) => format!("{what}_not_found"),
            ApiError::Invalid(_) => "invalid_field".into(),
            ApiError::UnknownParameter(_) => "unknown_query_parameter".into(),
            ApiError::PayloadTooLarge(_) => "payload_too_large".into(),
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type".into(),
            ApiError::NotReady(_) => "not_ready".into(),
            ApiError::DeploymentInProgress(_) => "deployment_in_progress".into(),
            ApiError::QueueUnavailable(_) => "queue_unavailable".into(),
            ApiError::Internal(_) => "internal_error".into(),
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::Forbidden(p) => format!(
                "You do not have the permission {} here; ask an administrator of the organization or project.",
                p.as_str()
            ),
            ApiError::NotFound(what) => format!(
                "The {} does not exist or is not visible to you.",
                what.replace('_', " ")
            ),
            ApiError::Invalid(e) => format!("Invalid {}: {}", e.field, e.message),
            ApiError::UnknownParameter(e) => format!(
                "This endpoint takes no query parameter `{}` ({}).",
                e.field, e.message
            ),
            ApiError::Internal(_) => "Internal error; it has been logged. Try again later.".into(),
            ApiError::DeploymentInProgress(id) => format!(
                "Deployment {id} is pending or running here; wait for it to finish or cancel it."
            ),
            other => other.to_string(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database query"))
    }
}

/// Every error's body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable snake_case code, e.g. `invalid_field`, `organization_not_found`.
    error: String,
    /// What went wrong, for a person.
    message: String,
    /// The request field or query parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// With `deployment_in_progress`: the deployment that is.
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_id: Option<uuid::Uuid>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::PortalAdminOnly => StatusCode::FORBIDDEN,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } | ApiError::DeploymentInProgress(_) => StatusCode::CONFLICT,
            ApiError::QueueUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Invalid(_)
            | ApiError::UnknownParameter(_)
            | ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = ?e, "request failed");
        }
        let field = match self {
            ApiError::Invalid(e) | ApiError::UnknownParameter(e) => Some(e.field.clone()),
            _ => None,
        };
        let mut resp = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized { .. } = self {
            resp.insert_header(("WWW-Authenticate", "Bearer"));
        }
        if let ApiError::TooMany { retry_after, .. } = self {
            resp.insert_header(("Retry-After", retry_after.to_string()));
        }
        let deployment_id = match self {
            ApiError::DeploymentInProgress(id) => Some(*id),
            _ => None,
        };
        resp.json(ErrorBody {
            error: self.code(),
            message: self.message(),
            field,
            deployment_id,
        })
    }
}

/// A body that is JSON but not the request's shape is a 422 naming the
/// field; one that is not JSON at all is a 400.
pub fn deserialize_error(e: &serde_json::Error) -> ApiError {
    if !e.is_data() {
        return ApiError::bad_request("invalid_json", format!("The body is not valid JSON: {e}"));
    }
    let text = e.to_string();
    let field = ["missing field `", "unknown field `"].iter().find_map(|p| {
        text.split_once(p)
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(f, _)| f.to_owned())
    });
    match field {
        Some(f) => ApiError::invalid(&f, text),
        None => ApiError::invalid("body", text),
    }
}

/// Malformed, oversized or mistyped JSON bodies.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let e = match err {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::PayloadTooLarge(
            format!("The request body is larger than the limit of {limit} bytes."),
        ),
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType(
            "Send the body as JSON with `Content-Type: application/json`.".into(),
        ),
        JsonPayloadError::Deserialize(e) => deserialize_error(&e),
        other => ApiError::bad_request(
            "invalid_body",
            format!("The body could not be read: {other}"),
        ),
    };
    e.into()
}

/// A path segment of the wrong shape (e.g. an id that is not a UUID).
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(
        "invalid_id",
        format!("Invalid path parameter: {err}. Ids are UUIDs."),
    )
    .into()
}

pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("invalid_query", format!("Invalid query string: {err}")).into()
}

pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(ErrorBody {
        error: "not_found".into(),
        message: "No such route; the API lives under /api/v1.".into(),
        field: None,
        deployment_id: None,
    })
}

pub async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed().json(ErrorBody {
        error: "method_not_allowed".into(),
        message: "This method is not allowed on this path.".into(),
        field: None,
        deployment_id: None,
    })
}
