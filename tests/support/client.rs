//! A small HTTP client for tests: SCIM requests with the token and content type a real
//! identity provider sends, answers as status, headers and JSON.
#![allow(dead_code)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use scim_sidecar::proxy::{Body, full};
use serde_json::Value;

/// A client for one listener.
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    token: Option<String>,
    inner: HyperClient<HttpConnector, Body>,
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON (panics with the body text if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a 2xx status (a PATCH may answer 200 or 204).
    #[track_caller]
    pub fn expect_success(self) -> Self {
        assert!(
            self.status.is_success(),
            "unexpected status {}; body: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        self
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }

    /// Asserts an RFC 7644 §3.12 error with this status and scimType, and returns its detail.
    #[track_caller]
    pub fn scim_error(self, status: u16, scim_type: Option<&str>) -> String {
        let r = self.expect(status);
        let j = r.json();
        assert_eq!(
            j["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{j}"
        );
        assert_eq!(j["status"], status.to_string(), "{j}");
        assert_eq!(j.get("scimType").and_then(Value::as_str), scim_type, "{j}");
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/scim+json"))
        );
        j["detail"].as_str().unwrap_or_default().to_owned()
    }
}

impl Client {
    /// A client for `addr`, sending `token` as a bearer token when given.
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Client {
            addr,
            token: token.map(str::to_owned),
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request; `path` is absolute (`/scim/v2/Users`).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            b = b.header("content-type", "application/scim+json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(full(body.unwrap_or_default())).expect("request");
        let resp = self.inner.request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], None).await
    }

    /// POST JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::POST, path, &[], Some(body.to_string().into()))
            .await
    }

    /// PUT JSON.
    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PUT, path, &[], Some(body.to_string().into()))
            .await
    }

    /// PATCH JSON.
    pub async fn patch(&self, path: &str, body: &Value) -> Resp {
        self.send(Method::PATCH, path, &[], Some(body.to_string().into()))
            .await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Sends raw bytes as the body.
    pub async fn raw(&self, method: Method, path: &str, body: &str) -> Resp {
        self.send(method, path, &[], Some(Bytes::from(body.to_owned())))
            .await
    }
}

/// A PatchOp body.
pub fn patch_body(ops: Value) -> Value {
    serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

/// A minimal User body.
pub fn user(name: &str) -> Value {
    serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name})
}
