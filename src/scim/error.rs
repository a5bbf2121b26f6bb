//! SCIM errors (RFC 7644 §3.12): the one error type of the protocol layer and its wire form.
//!
//! Everything below the router that can fail a SCIM request ends up as a [`ScimError`]; the
//! service turns it into a response (`scim::Response::error`): [`ScimError::body`] as the
//! body, and `Retry-After` from [`ScimError::retry_after`] on a 503. Store errors are mapped to
//! it once, in `mapping::error`.

use std::fmt;

use http::StatusCode;

/// The `scimType` error keywords of RFC 7644 §3.12, Table 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax was invalid or names an attribute the server cannot filter on.
    InvalidFilter,
    /// The filter yields more results than the server is willing to process.
    TooMany,
    /// One or more attribute values are already in use or reserved.
    Uniqueness,
    /// An attempt to modify an immutable or read-only attribute.
    Mutability,
    /// The request body structure was invalid or did not conform to the request schema.
    InvalidSyntax,
    /// The `path` attribute of a PATCH operation was invalid or malformed.
    InvalidPath,
    /// The PATCH `path` did not yield an attribute or value that could be operated on.
    NoTarget,
    /// A required value was missing, or a value was not compatible with the attribute type.
    InvalidValue,
    /// The specified SCIM protocol version is not supported.
    InvalidVers,
    /// The request would reveal sensitive information.
    Sensitive,
}

impl ScimType {
    /// The keyword as it appears in the `scimType` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidVers => "invalidVers",
            ScimType::Sensitive => "sensitive",
        }
    }
}

/// A failed SCIM request: HTTP status, optional `scimType`, and a human-readable detail.
///
/// The detail is shown to the client, so it must never carry secrets, tokens or SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScimError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// RFC 7644 `scimType`, for 400 and 409 errors.
    pub scim_type: Option<ScimType>,
    /// Human-readable explanation, naming the attribute or value at fault.
    pub detail: String,
    /// Seconds for a `Retry-After` header (503 and 429 answers).
    pub retry_after: Option<u32>,
}

/// The error message schema URN.
pub const ERROR_URN: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

impl ScimError {
    /// An error with a status and detail but no `scimType`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 with the given `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::BAD_REQUEST,
            scim_type: Some(scim_type),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 `invalidValue`.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 `invalidSyntax`.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 400 `invalidFilter`.
    pub fn invalid_filter(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidFilter, detail)
    }

    /// 400 `invalidPath`.
    pub fn invalid_path(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidPath, detail)
    }

    /// 400 `mutability`.
    pub fn mutability(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::Mutability, detail)
    }

    /// 404 for a resource or endpoint that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        ScimError {
            status: StatusCode::CONFLICT,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 412: an `If-Match` precondition did not hold.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// 503 with `Retry-After`: the store is unreachable; the client should retry.
    pub fn unavailable(detail: impl Into<String>, retry_after: u32) -> Self {
        ScimError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            scim_type: None,
            detail: detail.into(),
            retry_after: Some(retry_after),
        }
    }

    /// 500: a fault of the sidecar or an unexpected store answer; details go to the log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// The RFC 7644 §3.12 JSON body. `status` is a string, as the RFC's examples show and
    /// Entra ID expects.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "schemas": [ERROR_URN],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(obj)) = (self.scim_type, body.as_object_mut()) {
            obj.insert("scimType".into(), t.as_str().into());
        }
        body
    }
}

impl fmt::Display for ScimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scim_type {
            Some(t) => write!(
                f,
                "{} {}: {}",
                self.status.as_u16(),
                t.as_str(),
                self.detail
            ),
            None => write!(f, "{}: {}", self.status.as_u16(), self.detail),
        }
    }
}

impl std::error::Error for ScimError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body follows RFC 7644 §3.12: error schema, status as a string, scimType when set.
    #[test]
    fn body_has_rfc_shape() {
        let e = ScimError::invalid_filter("attribute 'title' is not stored");
        let b = e.body();
        assert_eq!(b["schemas"][0], ERROR_URN);
        assert_eq!(b["status"], "400");
        assert_eq!(b["scimType"], "invalidFilter");
        assert_eq!(b["detail"], "attribute 'title' is not stored");
        let nf = ScimError::not_found("no User with id 7").body();
        assert!(nf.get("scimType").is_none());
        assert_eq!(nf["status"], "404");
    }
}
