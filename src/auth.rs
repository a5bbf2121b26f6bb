//! Authentication of the identity provider, beside (or instead of) each other:
//!
//! - **static bearer tokens** (RFC 6750), the "Secret Token" of Entra ID and Okta. Several
//!   may be valid at once, so a token can be rotated without downtime. Comparison is
//!   constant-time over SHA-256 digests, so neither the token's content nor its length leaks
//!   through timing;
//! - **JWTs from external issuers** (`[[auth.jwt]]`, [`jwt`], [`jwks`]): Entra ID's own
//!   tokens, an Okta authorization server, any issuer publishing a JWK set;
//! - **the sidecar's own access tokens**, issued by its client-credentials token endpoint
//!   ([`oauth`]).
//!
//! The router calls [`Authenticator::check`] on every SCIM request before anything else is
//! read; the [`Principal`] it returns says whether the credential may write. Tokens are never
//! logged; a refusal is counted by its [`AuthError::reason`].

pub mod jwks;
pub mod jwt;
pub mod oauth;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode};
use subtle::{Choice, ConstantTimeEq};

use crate::config::Auth;

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that is neither a configured token nor a JWT.
    Invalid,
    /// A token over [`jwt::MAX_TOKEN_BYTES`].
    TooLarge,
    /// Bad base64url or JSON, a missing `alg`, a claim of the wrong type.
    Malformed,
    /// A `crit` header: an extension we do not understand (RFC 7515 §4.1.11).
    UnsupportedHeader,
    /// `alg` is `none`, HMAC from an external issuer, or not in the issuer's allow-list.
    UnsupportedAlg,
    /// `iss` names no configured issuer.
    WrongIssuer,
    /// No key with the token's `kid`, even after a refetch.
    UnknownKid,
    /// The issuer's keys could not be fetched.
    KeysUnavailable,
    /// The signature does not verify.
    BadSignature,
    /// No `exp` claim.
    MissingExp,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is ahead (beyond the leeway).
    NotYetValid,
    /// `aud` holds none of the accepted audiences.
    WrongAudience,
}

impl AuthError {
    /// The metric label of `scim_sidecar_auth_failures_total`.
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::UnsupportedHeader => "unsupported_header",
            AuthError::UnsupportedAlg => "unsupported_alg",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::BadSignature => "bad_signature",
            AuthError::MissingExp => "missing_exp",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "wrong_audience",
        }
    }

    /// 401, or 503 when the issuer's keys cannot be fetched (the client should retry, not
    /// drop its credential).
    pub fn status(self) -> StatusCode {
        match self {
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    pub fn challenge(self) -> &'static str {
        match self {
            AuthError::Missing => "Bearer realm=\"scim-sidecar\"",
            _ => "Bearer realm=\"scim-sidecar\", error=\"invalid_token\"",
        }
    }

    /// The SCIM error detail. Says what is wrong, never what the token holds.
    pub fn detail(self) -> &'static str {
        match self {
            AuthError::Missing => "authentication required: send Authorization: Bearer <token>",
            AuthError::Invalid => "the bearer token is not valid",
            AuthError::TooLarge => "the bearer token is too large",
            AuthError::Malformed => "the bearer token is not a well-formed JWT",
            AuthError::UnsupportedHeader => {
                "the token has a critical header this server does not understand"
            }
            AuthError::UnsupportedAlg => "the token's signing algorithm is not accepted",
            AuthError::WrongIssuer => "the token's issuer is not accepted",
            AuthError::UnknownKid => "the token is signed with an unknown key",
            AuthError::KeysUnavailable => {
                "the token issuer's signing keys are unavailable; retry later"
            }
            AuthError::BadSignature => "the token's signature is not valid",
            AuthError::MissingExp => "the token has no expiry (exp)",
            AuthError::Expired => "the token has expired",
            AuthError::NotYetValid => "the token is not valid yet (nbf)",
            AuthError::WrongAudience => "the token's audience (aud) is not this service",
        }
    }
}

/// How a request authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A configured bearer token.
    Static,
    /// A JWT from an `[[auth.jwt]]` issuer.
    Jwt,
    /// An access token from the sidecar's own token endpoint.
    OAuth,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// May read and search, never write.
    pub read_only: bool,
    /// Which kind of credential it used.
    pub via: Via,
    /// Which credential, for the audit log, never the secret: `token:1a2b3c4d` (the first
    /// hex digits of the token's SHA-256), `jwt:<issuer> sub=<subject>`, `oauth:<client>`.
    pub who: String,
}

/// `token:` and the first four bytes of a digest in hex: names a static token without
/// revealing it.
fn fingerprint(d: &[u8; 32]) -> String {
    let head = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    format!("token:{head:08x}")
}

/// `sub`, else `azp` or `appid` (Entra's client id), of a token's claims.
pub(crate) fn subject(claims: &serde_json::Map<String, serde_json::Value>) -> &str {
    ["sub", "azp", "appid"]
        .iter()
        .find_map(|k| claims.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("-")
}

/// Checks SCIM requests' credentials.
pub struct Authenticator {
    /// Digests of static tokens, and whether each is read-only.
    statics: Vec<([u8; 32], bool)>,
    issuers: Vec<jwks::Issuer>,
    own: Option<Arc<oauth::Signer>>,
}

pub(crate) fn digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Authenticator {
    /// Accepts the static tokens of `auth`, JWTs of its issuers, and tokens of `own` (the
    /// token endpoint's signer). `Err` names an issuer whose keys cannot be loaded, with its
    /// index in `auth.jwt`.
    pub fn new(auth: &Auth, own: Option<Arc<oauth::Signer>>) -> Result<Self, (usize, String)> {
        let mut issuers = Vec::new();
        for (i, j) in auth.jwt.iter().enumerate() {
            issuers.push(jwks::Issuer::new(j.clone()).map_err(|e| (i, e))?);
        }
        Ok(Authenticator {
            statics: auth
                .tokens
                .iter()
                .map(|t| (digest(t.secret.0.as_bytes()), t.read_only))
                .collect(),
            issuers,
            own,
        })
    }

    /// Fetches every issuer's keys once (start-up).
    pub async fn prefetch(&self) {
        for i in &self.issuers {
            i.prefetch().await;
        }
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, header: Option<&HeaderValue>) -> Result<Principal, AuthError> {
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
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let presented = digest(token);
        // Every configured token is compared, whatever matches first; a token listed twice
        // with different scopes is read-only.
        let mut ok = Choice::from(0);
        let mut read_only = Choice::from(0);
        for (d, ro) in &self.statics {
            let eq = d.ct_eq(&presented);
            ok |= eq;
            read_only |= eq & Choice::from(u8::from(*ro));
        }
        if bool::from(ok) {
            return Ok(Principal {
                read_only: bool::from(read_only),
                via: Via::Static,
                who: fingerprint(&presented),
            });
        }
        if (self.issuers.is_empty() && self.own.is_none()) || !jwt::looks_like_jwt(token) {
            return Err(AuthError::Invalid);
        }
        self.check_jwt(token).await
    }

    /// Whether an `Authorization` header value carries one of this sidecar's SCIM
    /// credentials, so that the router can remove it from requests passed to the app (a
    /// client that misspells the SCIM path must not hand the app its SCIM token).
    ///
    /// How much is checked, and why it is enough: a configured static token is matched
    /// exactly (constant time, as in [`Authenticator::check`]); a JWT is matched by its
    /// claims alone — an `iss` of a configured issuer (or the sidecar's own) with an `aud`
    /// that issuer is configured for — without verifying its signature or expiry. Removing
    /// a forged or expired token that names the SCIM audience harms nobody, and the app's
    /// own JWTs, even from the same issuer, are for another audience, so they pass. Cost:
    /// nothing for requests without `Authorization: Bearer`; one SHA-256 and, for a JWT,
    /// one base64 and JSON parse of its claims.
    pub fn is_scim_credential(&self, h: &[u8]) -> bool {
        if h.len() < 7 || !h[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let token = h[7..].trim_ascii();
        if token.is_empty() || token.len() > jwt::MAX_TOKEN_BYTES {
            return false;
        }
        let presented = digest(token);
        let mut ok = Choice::from(0);
        for (d, _) in &self.statics {
            ok |= d.ct_eq(&presented);
        }
        if bool::from(ok) {
            return true;
        }
        if !jwt::looks_like_jwt(token) {
            return false;
        }
        let Ok(t) = jwt::parse(token) else {
            return false;
        };
        let iss = t.claims.get("iss").and_then(|v| v.as_str());
        if self.own.is_some() && iss == Some(oauth::OWN_ISSUER) {
            return true;
        }
        self.issuers.iter().any(|i| {
            Some(i.config.issuer.as_str()) == iss
                && jwt::audience_matches(&t.claims, &i.config.audiences)
        })
    }

    /// A JWT: pick the issuer by `iss` (not yet trusted), verify the signature with that
    /// issuer's keys, then believe the claims.
    async fn check_jwt(&self, token: &[u8]) -> Result<Principal, AuthError> {
        let t = jwt::parse(token)?;
        let iss = t.claims.get("iss").and_then(|v| v.as_str());
        if let Some(own) = &self.own {
            if iss == Some(oauth::OWN_ISSUER) {
                return own.verify(&t);
            }
        }
        let issuer = self
            .issuers
            .iter()
            .find(|i| Some(i.config.issuer.as_str()) == iss)
            .ok_or(AuthError::WrongIssuer)?;
        let cfg = &issuer.config;
        let alg = jwt::Alg::parse(&t.alg)
            .filter(|a| cfg.algorithms.contains(a))
            .ok_or(AuthError::UnsupportedAlg)?;
        let keys = issuer.keys_for(t.kid.as_deref(), alg).await?;
        if !keys
            .iter()
            .any(|k| k.verify(alg, t.signing_input, &t.signature))
        {
            return Err(AuthError::BadSignature);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        jwt::check_claims(&t.claims, &cfg.audiences, cfg.leeway.as_secs(), now)?;
        let read_only = cfg.read_only
            || cfg
                .write_scope
                .as_deref()
                .is_some_and(|w| !jwt::scopes(&t.claims).contains(&w));
        Ok(Principal {
            read_only,
            via: Via::Jwt,
            who: format!("jwt:{} sub={}", cfg.issuer, subject(&t.claims)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::jwt::tests::{ec_jwk, ec_key, rsa_jwk, rsa_key, sign_ec, sign_rsa};
    use super::*;
    use crate::config::{JwtIssuer, KeySource, Secret, StaticToken};

    const ISS: &str = "https://issuer.example/";

    fn statics() -> Vec<StaticToken> {
        ["old-token-0123456789", "new-token-0123456789"]
            .into_iter()
            .map(|t| StaticToken {
                secret: Secret(t.into()),
                read_only: false,
            })
            .chain([StaticToken {
                secret: Secret("read-token-0123456789".into()),
                read_only: true,
            }])
            .collect()
    }

    fn auth() -> Authenticator {
        Authenticator::new(
            &Auth {
                tokens: statics(),
                ..Auth::default()
            },
            None,
        )
        .expect("auth")
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header")
    }

    fn bearer(t: &str) -> HeaderValue {
        hv(&format!("Bearer {t}"))
    }

    fn ok(read_only: bool, via: Via) -> Result<(bool, Via), AuthError> {
        Ok((read_only, via))
    }

    /// What these tests check of a principal (its `who` is checked on its own).
    fn kind(p: Principal) -> (bool, Via) {
        (p.read_only, p.via)
    }

    /// Either of two rotated tokens passes; the scheme is case-insensitive; a token marked
    /// read-only authenticates as read-only.
    #[tokio::test]
    async fn accepts_configured_tokens() {
        let a = auth();
        assert_eq!(
            a.check(Some(&hv("Bearer old-token-0123456789")))
                .await
                .map(kind),
            ok(false, Via::Static)
        );
        assert_eq!(
            a.check(Some(&hv("bearer new-token-0123456789")))
                .await
                .map(kind),
            ok(false, Via::Static)
        );
        assert_eq!(
            a.check(Some(&hv("Bearer read-token-0123456789")))
                .await
                .map(kind),
            ok(true, Via::Static)
        );
    }

    /// Missing, wrong, truncated, oversized and non-bearer credentials are refused.
    #[tokio::test]
    async fn refuses_others() {
        let a = auth();
        assert_eq!(a.check(None).await, Err(AuthError::Missing));
        assert_eq!(
            a.check(Some(&hv("Basic dXNlcjpwYXNz"))).await,
            Err(AuthError::Missing)
        );
        assert_eq!(a.check(Some(&hv("Bearer "))).await, Err(AuthError::Missing));
        assert_eq!(
            a.check(Some(&hv("Bearer old-token-012345678"))).await,
            Err(AuthError::Invalid)
        );
        assert_eq!(
            a.check(Some(&hv("Bearer old-token-01234567890"))).await,
            Err(AuthError::Invalid)
        );
        // Without JWT issuers, a JWT-shaped token is just a wrong token.
        assert_eq!(
            a.check(Some(&bearer("a.b.c"))).await,
            Err(AuthError::Invalid)
        );
        let big = "x".repeat(jwt::MAX_TOKEN_BYTES + 1);
        assert_eq!(a.check(Some(&bearer(&big))).await, Err(AuthError::TooLarge));
    }

    struct Fixture {
        auth: Authenticator,
        ec: ring::signature::EcdsaKeyPair,
        rsa: ring::signature::RsaKeyPair,
        _dir: tempfile::TempDir,
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    /// An authenticator with one issuer whose JWK set file holds an EC key "e1" and an RSA
    /// key "r1"; RS256 and ES256 allowed; writes need `scim.write`.
    fn fixture(own: Option<Arc<oauth::Signer>>) -> Fixture {
        let ec = ec_key();
        let rsa = rsa_key();
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("jwks.json");
        let set = json!({"keys": [ec_jwk(&ec, "e1"), rsa_jwk(&rsa, "r1")]});
        std::fs::write(&file, set.to_string()).expect("write");
        let issuer = JwtIssuer {
            issuer: ISS.into(),
            audiences: vec!["api://scim".into()],
            algorithms: vec![jwt::Alg::ES256, jwt::Alg::RS256],
            leeway: Duration::from_secs(60),
            keys: KeySource::File(file),
            refresh_min: Duration::from_secs(60),
            write_scope: Some("scim.write".into()),
            read_only: false,
        };
        let auth = Authenticator::new(
            &Auth {
                tokens: statics(),
                jwt: vec![issuer],
                oauth: None,
            },
            own,
        )
        .expect("auth");
        Fixture {
            auth,
            ec,
            rsa,
            _dir: dir,
        }
    }

    fn claims(extra: Value) -> Value {
        let mut c =
            json!({"iss": ISS, "aud": "api://scim", "exp": now() + 300, "scp": "scim.write"});
        let o = c.as_object_mut().expect("object");
        for (k, v) in extra.as_object().expect("object") {
            // null removes the claim.
            if v.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
        c
    }

    impl Fixture {
        async fn es(&self, header: Value, claims: Value) -> Result<Principal, AuthError> {
            let t = sign_ec(&self.ec, &header, &claims);
            self.auth.check(Some(&bearer(&t))).await
        }
    }

    /// Valid ES256 and RS256 tokens pass; without the write scope a token is read-only;
    /// static tokens still work beside JWTs.
    #[tokio::test]
    async fn jwt_accepted() {
        let f = fixture(None);
        let h = json!({"alg": "ES256", "kid": "e1", "typ": "JWT"});
        assert_eq!(
            f.es(h.clone(), claims(json!({}))).await.map(kind),
            ok(false, Via::Jwt)
        );
        assert_eq!(
            f.es(h.clone(), claims(json!({"scp": "scim.read"})))
                .await
                .map(kind),
            ok(true, Via::Jwt)
        );
        assert_eq!(
            f.es(
                h.clone(),
                claims(
                    json!({"aud": ["other", "api://scim"], "roles": ["scim.write"], "scp": null})
                )
            )
            .await
            .map(kind),
            ok(false, Via::Jwt)
        );
        // No kid: every key that fits the algorithm is tried.
        assert_eq!(
            f.es(json!({"alg": "ES256"}), claims(json!({})))
                .await
                .map(kind),
            ok(false, Via::Jwt)
        );
        let t = sign_rsa(
            &f.rsa,
            &ring::signature::RSA_PKCS1_SHA256,
            &json!({"alg": "RS256", "kid": "r1"}),
            &claims(json!({})),
        );
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await.map(kind),
            ok(false, Via::Jwt)
        );
        assert_eq!(
            f.auth
                .check(Some(&bearer("read-token-0123456789")))
                .await
                .map(kind),
            ok(true, Via::Static)
        );
    }

    /// Each way a JWT can be wrong is refused with its own reason.
    #[tokio::test]
    async fn jwt_refused() {
        let f = fixture(None);
        let h = json!({"alg": "ES256", "kid": "e1"});
        let cases = [
            (claims(json!({"exp": now() - 120})), AuthError::Expired),
            (claims(json!({"exp": null})), AuthError::MissingExp),
            (claims(json!({"nbf": now() + 600})), AuthError::NotYetValid),
            (
                claims(json!({"iss": "https://evil.example/"})),
                AuthError::WrongIssuer,
            ),
            (claims(json!({"iss": null})), AuthError::WrongIssuer),
            (
                claims(json!({"aud": "api://other"})),
                AuthError::WrongAudience,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(f.es(h.clone(), c.clone()).await, Err(want), "{c}");
        }
        assert_eq!(
            f.es(json!({"alg": "ES256", "kid": "nope"}), claims(json!({})))
                .await,
            Err(AuthError::UnknownKid)
        );
        assert_eq!(
            f.es(
                json!({"alg": "ES256", "kid": "e1", "crit": ["x"]}),
                claims(json!({}))
            )
            .await,
            Err(AuthError::UnsupportedHeader)
        );
        // The EC key's signature presented as the RSA key's.
        assert_eq!(
            f.es(json!({"alg": "RS256", "kid": "r1"}), claims(json!({})))
                .await,
            Err(AuthError::BadSignature)
        );
        // RS384 is a real algorithm, but not in this issuer's allow-list.
        let t = sign_rsa(
            &f.rsa,
            &ring::signature::RSA_PKCS1_SHA384,
            &json!({"alg": "RS384", "kid": "r1"}),
            &claims(json!({})),
        );
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await,
            Err(AuthError::UnsupportedAlg)
        );
    }

    /// `alg: none` and an HS256 token whose HMAC key is the issuer's RSA public key (the
    /// algorithm-confusion attack) are refused; so are forged payloads and bad encodings.
    #[tokio::test]
    async fn jwt_attacks() {
        let f = fixture(None);
        let c = claims(json!({}));
        let enc = |v: &Value| jwt::encode(v.to_string().as_bytes());
        let none = format!("{}.{}.", enc(&json!({"alg": "none"})), enc(&c));
        assert_eq!(
            f.auth.check(Some(&bearer(&none))).await,
            Err(AuthError::UnsupportedAlg)
        );
        let public = rsa_jwk(&f.rsa, "r1");
        for secret in [
            public.to_string().into_bytes(),
            ring::signature::KeyPair::public_key(&f.rsa)
                .as_ref()
                .to_vec(),
        ] {
            let input = format!("{}.{}", enc(&json!({"alg": "HS256", "kid": "r1"})), enc(&c));
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
            let tag = ring::hmac::sign(&key, input.as_bytes());
            let t = format!("{input}.{}", jwt::encode(tag.as_ref()));
            assert_eq!(
                f.auth.check(Some(&bearer(&t))).await,
                Err(AuthError::UnsupportedAlg)
            );
        }
        // A valid signature over another payload.
        let good = sign_ec(&f.ec, &json!({"alg": "ES256", "kid": "e1"}), &c);
        let parts: Vec<&str> = good.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            enc(&claims(json!({"scp": "scim.write admin"}))),
            parts[2]
        );
        assert_eq!(
            f.auth.check(Some(&bearer(&forged))).await,
            Err(AuthError::BadSignature)
        );
        for bad in [
            format!("{}.%%%.{}", parts[0], parts[2]),
            format!("{}.{}.{}", enc(&json!([1])), parts[1], parts[2]),
        ] {
            assert_eq!(
                f.auth.check(Some(&bearer(&bad))).await,
                Err(AuthError::Malformed)
            );
        }
    }

    /// The sidecar's own tokens: accepted while valid, read-only when issued so, refused
    /// when signed with another key or expired.
    #[tokio::test]
    async fn own_tokens() {
        let signer = Arc::new(
            oauth::Signer::new(Some(b"k".repeat(32).as_slice()), Duration::from_secs(600))
                .expect("signer"),
        );
        let f = fixture(Some(signer.clone()));
        let t = signer.issue("entra", false, now());
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await.map(kind),
            ok(false, Via::OAuth)
        );
        let t = signer.issue("reader", true, now());
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await.map(kind),
            ok(true, Via::OAuth)
        );
        let other = oauth::Signer::new(None, Duration::from_secs(600)).expect("signer");
        let t = other.issue("entra", false, now());
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await,
            Err(AuthError::BadSignature)
        );
        let t = signer.issue("entra", false, now() - 3600);
        assert_eq!(
            f.auth.check(Some(&bearer(&t))).await,
            Err(AuthError::Expired)
        );
    }
}
