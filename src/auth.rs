//! Authentication of the identity provider: static bearer tokens (RFC 6750).
//!
//! The router calls [`Authenticator::check`] on every SCIM request before anything else is
//! read. Several tokens may be valid at once, so a token can be rotated without downtime.
//! Comparison is constant-time over SHA-256 digests, so neither the token's content nor its
//! length leaks through timing; tokens are never logged.

use http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that is not configured.
    Invalid,
}

impl AuthError {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(self) -> &'static str {
        match self {
            AuthError::Missing => "Bearer realm=\"scim-sidecar\"",
            AuthError::Invalid => "Bearer realm=\"scim-sidecar\", error=\"invalid_token\"",
        }
    }

    /// The SCIM error detail.
    pub fn detail(self) -> &'static str {
        match self {
            AuthError::Missing => "authentication required: send Authorization: Bearer <token>",
            AuthError::Invalid => "the bearer token is not valid",
        }
    }
}

/// Checks bearer tokens.
pub struct Authenticator {
    digests: Vec<[u8; 32]>,
}

fn digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authenticator {
    /// Accepts any of `tokens`.
    pub fn new(tokens: &[Secret]) -> Self {
        Authenticator {
            digests: tokens.iter().map(|t| digest(t.0.as_bytes())).collect(),
        }
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&HeaderValue>) -> Result<(), AuthError> {
        let Some(h) = header else {
            return Err(AuthError::Missing);
        };
        let h = h.as_bytes();
        // RFC 6750 §2.1: the scheme is case-insensitive.
        if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"bearer ") {
            return Err(AuthError::Missing);
        }
        let token = h[7..].trim_ascii();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let presented = digest(token);
        // Every configured token is compared, whatever matches first.
        let mut ok = subtle::Choice::from(0);
        for d in &self.digests {
            ok |= d.ct_eq(&presented);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(&[
            Secret("old-token-0123456789".into()),
            Secret("new-token-0123456789".into()),
        ])
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header")
    }

    /// Either of two rotated tokens passes; the scheme is case-insensitive.
    #[test]
    fn accepts_configured_tokens() {
        let a = auth();
        assert_eq!(a.check(Some(&hv("Bearer old-token-0123456789"))), Ok(()));
        assert_eq!(a.check(Some(&hv("bearer new-token-0123456789"))), Ok(()));
    }

    /// Missing, wrong, truncated and non-bearer credentials are refused.
    #[test]
    fn refuses_others() {
        let a = auth();
        assert_eq!(a.check(None), Err(AuthError::Missing));
        assert_eq!(
            a.check(Some(&hv("Basic dXNlcjpwYXNz"))),
            Err(AuthError::Missing)
        );
        assert_eq!(a.check(Some(&hv("Bearer "))), Err(AuthError::Missing));
        assert_eq!(
            a.check(Some(&hv("Bearer old-token-012345678"))),
            Err(AuthError::Invalid)
        );
        assert_eq!(
            a.check(Some(&hv("Bearer old-token-01234567890"))),
            Err(AuthError::Invalid)
        );
    }
}
