//! JSON Web Tokens (RFC 7519) signed with JWS (RFC 7515), verified by hand on `ring`.
//!
//! [`parse`] splits a compact token and decodes its header and claims without trusting them;
//! [`Jwk::verify`] checks a signature with one public key of a JWK set (RFC 7517);
//! [`check_claims`] checks `exp`, `nbf` and `aud`. [`super::Authenticator`] puts them in that
//! order: the signature is checked before any claim is believed.
//!
//! Only asymmetric algorithms are accepted from external issuers (RS256/384/512, PS256,
//! ES256/384); `none` and `HS*` never are, so a public key can never be used as an HMAC secret
//! (the "algorithm confusion" attack). The sidecar's own tokens (HS256) are verified by
//! [`super::oauth::Signer`], not here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::AuthError;

/// The largest token accepted, in bytes. Real access tokens are 1–3 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An asymmetric JWS algorithm (RFC 7518 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    PS256,
    /// ECDSA with P-256 and SHA-256.
    ES256,
    /// ECDSA with P-384 and SHA-384.
    ES384,
}

impl Alg {
    /// Every accepted algorithm.
    pub const ALL: [Alg; 6] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::ES256,
        Alg::ES384,
    ];

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
        }
    }

    /// Parses an `alg` value (case-sensitive, RFC 7515 §4.1.1).
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// The key material of one JWK.
#[derive(Clone, Debug, PartialEq, Eq)]
enum KeyMaterial {
    /// `kty = "RSA"`: modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `kty = "EC"`, `crv = "P-256"`: the uncompressed point 0x04 ‖ x ‖ y.
    P256(Vec<u8>),
    /// `kty = "EC"`, `crv = "P-384"`.
    P384(Vec<u8>),
}

/// One public signing key of a JWK set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, when the set names it.
    pub kid: Option<String>,
    /// `alg`, when the set pins the key to one algorithm.
    alg: Option<String>,
    material: KeyMaterial,
}

fn b64(v: &Value, what: &str) -> Result<Vec<u8>, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("\"{what}\" is missing or not a string"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("\"{what}\" is not base64url"))
}

impl Jwk {
    /// Reads one key of a JWK set. `Ok(None)` for keys that are not public signing keys we
    /// can use (`use = "enc"`, `kty = "oct"`, other curves): skipped, not an error.
    pub fn from_json(v: &Value) -> Result<Option<Jwk>, String> {
        let o = v.as_object().ok_or("a key is not a JSON object")?;
        if o.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            return Ok(None);
        }
        let kid = o.get("kid").and_then(Value::as_str).map(str::to_owned);
        let alg = o.get("alg").and_then(Value::as_str).map(str::to_owned);
        let material = match o.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                let n = b64(&o["n"], "n")?;
                let e = b64(&o["e"], "e")?;
                // ring refuses moduli under 2048 bits when verifying; refuse them here too,
                // so the problem shows when the set is loaded.
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(format!(
                        "RSA key {} is shorter than 2048 bits",
                        kid.as_deref().unwrap_or("(no kid)")
                    ));
                }
                KeyMaterial::Rsa { n, e }
            }
            Some("EC") => {
                let (len, crv) = match o.get("crv").and_then(Value::as_str) {
                    Some("P-256") => (32, 256),
                    Some("P-384") => (48, 384),
                    _ => return Ok(None),
                };
                let x = b64(&o["x"], "x")?;
                let y = b64(&o["y"], "y")?;
                if x.len() != len || y.len() != len {
                    return Err("an EC key's x or y has the wrong length for its curve".into());
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if crv == 256 {
                    KeyMaterial::P256(point)
                } else {
                    KeyMaterial::P384(point)
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(Jwk { kid, alg, material }))
    }

    /// Whether this key may verify `alg`: the key type (and curve) must be the algorithm's,
    /// and a key pinned to an algorithm (`alg` in the JWK) only verifies that one.
    pub fn fits(&self, alg: Alg) -> bool {
        if self.alg.as_deref().is_some_and(|a| a != alg.name()) {
            return false;
        }
        matches!(
            (&self.material, alg),
            (
                KeyMaterial::Rsa { .. },
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256
            ) | (KeyMaterial::P256(_), Alg::ES256)
                | (KeyMaterial::P384(_), Alg::ES384)
        )
    }

    /// Checks `signature` over `message` with `alg`. False when the key does not fit `alg`.
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::ES256 | Alg::ES384 => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            // JWS ECDSA signatures are r ‖ s (RFC 7518 §3.4): ring's FIXED encoding.
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            KeyMaterial::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

/// Reads a JWK set document (`{"keys": [...]}`). Unusable keys are skipped; a set with no
/// usable key is an error.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for k in keys {
        if let Some(k) = Jwk::from_json(k)? {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err("no RSA or EC (P-256/P-384) signing key".into());
    }
    Ok(out)
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The claims.
    pub claims: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Whether a bearer token has the shape of a compact JWS (three dot-separated parts).
pub fn looks_like_jwt(token: &[u8]) -> bool {
    token.iter().filter(|b| **b == b'.').count() == 2
}

/// Splits and decodes a compact JWS. Errors: [`AuthError::Malformed`] for bad base64url or
/// JSON, [`AuthError::UnsupportedHeader`] for a `crit` header (RFC 7515 §4.1.11: we
/// understand no extension, so we must refuse).
pub fn parse(token: &[u8]) -> Result<Parsed<'_>, AuthError> {
    let text = std::str::from_utf8(token).map_err(|_| AuthError::Malformed)?;
    let mut parts = text.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| AuthError::Malformed)
    };
    let header: Map<String, Value> =
        serde_json::from_slice(&decode(h)?).map_err(|_| AuthError::Malformed)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode(p)?).map_err(|_| AuthError::Malformed)?;
    let signature = decode(s)?;
    if header.contains_key("crit") {
        return Err(AuthError::UnsupportedHeader);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AuthError::Malformed)?
        .to_owned();
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(AuthError::Malformed),
    };
    Ok(Parsed {
        alg,
        kid,
        claims,
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
    })
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or(AuthError::Malformed),
    }
}

/// Checks the time and audience claims of a verified token, `now` in Unix seconds.
///
/// `exp` is required and may be up to `leeway` seconds in the past; `nbf`, when present, up
/// to `leeway` in the future (clock skew between the issuer and us). `aud` — a string or an
/// array (RFC 7519 §4.1.3) — must hold one of `audiences`.
pub fn check_claims(
    claims: &Map<String, Value>,
    audiences: &[String],
    leeway: u64,
    now: u64,
) -> Result<(), AuthError> {
    let now = now as f64;
    let leeway = leeway as f64;
    let exp = numeric_date(claims, "exp")?.ok_or(AuthError::MissingExp)?;
    if now > exp + leeway {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now + leeway < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    if audience_matches(claims, audiences) {
        Ok(())
    } else {
        Err(AuthError::WrongAudience)
    }
}

/// Whether `aud` — a string or an array (RFC 7519 §4.1.3) — holds one of `audiences`.
pub fn audience_matches(claims: &Map<String, Value>, audiences: &[String]) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| audiences.iter().any(|x| x == a)),
        _ => false,
    }
}

/// The scopes and roles a token carries: `scope` and `scp` (space-separated strings, or
/// arrays as some issuers write them) and `roles` (Entra app roles).
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp", "roles"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// base64url without padding, for building tokens.
pub fn encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    /// The committed RSA test key (ring cannot generate RSA keys).
    pub(crate) fn rsa_key() -> RsaKeyPair {
        use rustls_pki_types::PrivatePkcs8KeyDer;
        use rustls_pki_types::pem::PemObject;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/auth/rsa-test-key.pem"
        );
        let der = PrivatePkcs8KeyDer::from_pem_file(path).expect("pem");
        RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("rsa key")
    }

    pub(crate) fn rsa_jwk(k: &RsaKeyPair, kid: &str) -> Value {
        let p: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "n": encode(&p.n), "e": encode(&p.e)})
    }

    pub(crate) fn ec_key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("gen");
        EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("key")
    }

    pub(crate) fn ec_jwk(k: &EcdsaKeyPair, kid: &str) -> Value {
        let pt = k.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": encode(&pt[1..33]), "y": encode(&pt[33..65])})
    }

    fn signing_input(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            encode(header.to_string().as_bytes()),
            encode(claims.to_string().as_bytes())
        )
    }

    pub(crate) fn sign_ec(k: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = k
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", encode(sig.as_ref()))
    }

    pub(crate) fn sign_rsa(
        k: &RsaKeyPair,
        pad: &'static dyn signature::RsaEncoding,
        header: &Value,
        claims: &Value,
    ) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0; k.public().modulus_len()];
        k.sign(pad, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .expect("sign");
        format!("{input}.{}", encode(&sig))
    }

    fn verify(jwk: &Value, token: &str) -> Result<(), AuthError> {
        let key = Jwk::from_json(jwk).expect("jwk").expect("usable");
        let p = parse(token.as_bytes())?;
        let alg = Alg::parse(&p.alg).ok_or(AuthError::UnsupportedAlg)?;
        if key.verify(alg, p.signing_input, &p.signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// RS256, RS384, RS512 and PS256 signatures by the test RSA key verify with its JWK;
    /// a changed payload does not; a JWK pinned to RS256 refuses PS256.
    #[test]
    fn rsa_signatures() {
        let k = rsa_key();
        let jwk = rsa_jwk(&k, "r1");
        let claims = json!({"sub": "x"});
        for (alg, pad) in [
            (
                "RS256",
                &signature::RSA_PKCS1_SHA256 as &dyn signature::RsaEncoding,
            ),
            ("RS384", &signature::RSA_PKCS1_SHA384),
            ("RS512", &signature::RSA_PKCS1_SHA512),
            ("PS256", &signature::RSA_PSS_SHA256),
        ] {
            let t = sign_rsa(&k, pad, &json!({"alg": alg, "kid": "r1"}), &claims);
            assert_eq!(verify(&jwk, &t), Ok(()), "{alg}");
            let mut parts: Vec<&str> = t.split('.').collect();
            let other = encode(br#"{"sub":"y"}"#);
            parts[1] = &other;
            assert_eq!(verify(&jwk, &parts.join(".")), Err(AuthError::BadSignature));
        }
        let mut pinned = jwk.clone();
        pinned["alg"] = json!("RS256");
        let t = sign_rsa(
            &k,
            &signature::RSA_PSS_SHA256,
            &json!({"alg": "PS256"}),
            &claims,
        );
        assert_eq!(verify(&pinned, &t), Err(AuthError::BadSignature));
    }

    /// ES256 verifies with the P-256 JWK; the header alg must match the key type, so an
    /// EC key never verifies an RS256 token and vice versa.
    #[test]
    fn ec_signatures_and_key_type() {
        let k = ec_key();
        let jwk = ec_jwk(&k, "e1");
        let t = sign_ec(&k, &json!({"alg": "ES256"}), &json!({"a": 1}));
        assert_eq!(verify(&jwk, &t), Ok(()));
        let relabelled = {
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[0] = encode(br#"{"alg":"RS256"}"#);
            parts.join(".")
        };
        assert_eq!(verify(&jwk, &relabelled), Err(AuthError::BadSignature));
        let rsa = rsa_jwk(&rsa_key(), "r");
        assert_eq!(verify(&rsa, &t), Err(AuthError::BadSignature));
        // A signature by another P-256 key.
        let other = sign_ec(&ec_key(), &json!({"alg": "ES256"}), &json!({"a": 1}));
        assert_eq!(verify(&jwk, &other), Err(AuthError::BadSignature));
    }

    /// `none`, `HS256` and unknown algorithms are not algorithms we verify.
    #[test]
    fn no_none_no_hmac() {
        assert_eq!(Alg::parse("none"), None);
        assert_eq!(Alg::parse("HS256"), None);
        assert_eq!(Alg::parse("rs256"), None);
        assert_eq!(Alg::parse("ES384"), Some(Alg::ES384));
    }

    /// Malformed tokens: bad base64url, padding, non-JSON parts, a missing alg, four parts,
    /// a `crit` header.
    #[test]
    fn malformed_tokens() {
        let h = encode(br#"{"alg":"ES256"}"#);
        let c = encode(br#"{"exp":1}"#);
        for t in [
            format!("{h}.{c}"),
            format!("{h}.{c}.AA.AA"),
            format!("{h}.!!!.AA"),
            format!("{h}=.{c}.AA"),
            format!("{}.{c}.AA", encode(b"not json")),
            format!("{}.{c}.AA", encode(br#"{"typ":"JWT"}"#)),
            format!("{h}.{}.AA", encode(b"[1]")),
        ] {
            assert_eq!(
                parse(t.as_bytes()).map(|_| ()),
                Err(AuthError::Malformed),
                "{t}"
            );
        }
        let crit = encode(br#"{"alg":"ES256","crit":["exp"]}"#);
        assert_eq!(
            parse(format!("{crit}.{c}.AA").as_bytes()).map(|_| ()),
            Err(AuthError::UnsupportedHeader)
        );
        assert!(parse(format!("{h}.{c}.AA").as_bytes()).is_ok());
    }

    /// `exp` is required and honoured with leeway, `nbf` too; `aud` as a string or a list.
    #[test]
    fn claims() {
        let aud = vec!["a".to_string(), "b".to_string()];
        let c = |v: Value| v.as_object().cloned().expect("object");
        let now = 1_000_000;
        assert_eq!(
            check_claims(&c(json!({"exp": now + 10, "aud": "a"})), &aud, 60, now),
            Ok(())
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": now - 30, "aud": ["x", "b"]})),
                &aud,
                60,
                now
            ),
            Ok(())
        );
        assert_eq!(
            check_claims(&c(json!({"exp": now - 61, "aud": "a"})), &aud, 60, now),
            Err(AuthError::Expired)
        );
        assert_eq!(
            check_claims(&c(json!({"aud": "a"})), &aud, 60, now),
            Err(AuthError::MissingExp)
        );
        assert_eq!(
            check_claims(&c(json!({"exp": "soon", "aud": "a"})), &aud, 60, now),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": now + 900, "nbf": now + 61, "aud": "a"})),
                &aud,
                60,
                now
            ),
            Err(AuthError::NotYetValid)
        );
        assert_eq!(
            check_claims(
                &c(json!({"exp": now + 900, "nbf": now + 59, "aud": "a"})),
                &aud,
                60,
                now
            ),
            Ok(())
        );
        for bad in [json!("c"), json!(["c"]), json!(1), Value::Null] {
            assert_eq!(
                check_claims(&c(json!({"exp": now + 10, "aud": bad})), &aud, 60, now),
                Err(AuthError::WrongAudience)
            );
        }
        assert_eq!(
            check_claims(&c(json!({"exp": now + 10})), &aud, 60, now),
            Err(AuthError::WrongAudience)
        );
    }

    /// JWK sets: unusable keys are skipped, short RSA keys and bad coordinates refused.
    #[test]
    fn jwk_sets() {
        let ec = ec_jwk(&ec_key(), "e");
        let set = json!({"keys": [{"kty": "oct", "k": "AAAA"}, {"kty": "EC", "crv": "P-521"},
                                  {"kty": "RSA", "use": "enc", "n": "AA", "e": "AQAB"}, ec]});
        let keys = parse_jwks(set.to_string().as_bytes()).expect("set");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("e"));
        assert!(parse_jwks(br#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#).is_err());
        let short = json!({"keys": [{"kty": "RSA", "n": encode(&[0xff; 128]), "e": "AQAB"}]});
        assert!(
            parse_jwks(short.to_string().as_bytes())
                .expect_err("short")
                .contains("2048")
        );
        let bad = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]});
        assert!(parse_jwks(bad.to_string().as_bytes()).is_err());
        assert!(parse_jwks(b"{}").is_err());
    }

    /// Scopes come from `scope`, `scp` and `roles`.
    #[test]
    fn scopes_from_claims() {
        let c = json!({"scope": "a b", "scp": ["c"], "roles": ["d"]});
        assert_eq!(
            scopes(c.as_object().expect("object")),
            vec!["a", "b", "c", "d"]
        );
    }
}
