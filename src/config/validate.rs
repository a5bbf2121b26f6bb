//! From [`RawConfig`] to [`Config`]: expand variables, check every value, collect every
//! problem with its line and a fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::raw::{
    BoolOrStr, NumOrStr, RawAuth, RawConfig, RawCredential, RawJwt, RawOAuth, S, StrOrList,
};
use super::{
    Auth, Config, Env, JwtIssuer, KeySource, Listen, Log, LogFormat, OAuth, OAuthClient, Scim,
    Secret, StaticToken, Tls,
};
use crate::auth::jwt::Alg;
use crate::mapping::{Origin, Problem};
use crate::proxy::UpstreamConfig;
use crate::scim::UnknownPolicy;
use crate::server::forwarded::Cidr;

/// Validates a config file's text. `dir` is the directory relative paths are resolved from.
pub fn from_str(
    src: &str,
    file: Arc<str>,
    dir: &Path,
    env: &dyn Env,
) -> Result<Config, Vec<Problem>> {
    from_str_filtered(src, file, dir, env, &|_| true)
}

/// [`from_str`], keeping only the problems `keep` accepts: the config is built whatever the
/// others say (for a command that reads only part of it).
pub fn from_str_filtered(
    src: &str,
    file: Arc<str>,
    dir: &Path,
    env: &dyn Env,
    keep: &dyn Fn(&Problem) -> bool,
) -> Result<Config, Vec<Problem>> {
    let unreadable = |e: toml::de::Error| {
        vec![Problem::error(
            &Origin {
                file: file.clone(),
                line: e.span().map_or(0, |s| line_of(src, s.start)),
            },
            e.message().to_owned(),
            Some("see config/scim-sidecar.toml for every key and its meaning".into()),
        )]
    };
    // Twice: typed for the sections the sidecar itself reads, and as a spanned document for
    // the parts each kind of store reads itself (`[backend.*]`, `[resource.*]`).
    let doc = toml::de::DeTable::parse(src).map_err(unreadable)?;
    let raw: RawConfig = toml::from_str(src).map_err(unreadable)?;
    let mut v = Cx {
        file: file.clone(),
        src,
        dir,
        env,
        problems: Vec::new(),
        files: Vec::new(),
    };
    let mut config = v.config(raw, doc.get_ref());
    v.problems.retain(|p| keep(p));
    if v.problems.iter().any(|p| !p.warning) {
        return Err(v.problems);
    }
    config.warnings = v.problems;
    Ok(config)
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The config checker: expands variables, checks values, and collects every problem with
/// its file and line. The config loader drives it; each kind of store uses it to parse its own
/// part of the file ([`crate::backend::StoreKind`]).
pub struct Cx<'a> {
    pub(crate) file: Arc<str>,
    pub(crate) src: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) env: &'a dyn Env,
    pub(crate) problems: Vec<Problem>,
    /// Files read besides the config file ([`Config::files`]).
    pub(crate) files: Vec<PathBuf>,
}

impl Cx<'_> {
    /// The file and line of a byte range of the file.
    pub fn origin(&self, span: std::ops::Range<usize>) -> Origin {
        Origin {
            file: self.file.clone(),
            line: line_of(self.src, span.start),
        }
    }

    /// Reports an error at `origin`.
    pub fn error(&mut self, origin: &Origin, message: impl Into<String>, fix: Option<&str>) {
        self.problems
            .push(Problem::error(origin, message, fix.map(str::to_owned)));
    }

    /// Reports a warning at `origin`.
    pub fn warn(&mut self, origin: &Origin, message: impl Into<String>, fix: Option<&str>) {
        self.problems.push(Problem {
            warning: true,
            ..Problem::error(origin, message, fix.map(str::to_owned))
        });
    }

    /// A string value with `${VAR}` expanded.
    pub fn string(&mut self, s: &S, what: &str) -> Option<String> {
        match super::interpolate::expand(s.get_ref(), self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                let o = self.origin(s.span());
                self.error(&o, format!("{what}: {e}"), None);
                None
            }
        }
    }

    /// [`Cx::string`] of an optional value.
    pub fn opt_string(&mut self, s: &Option<S>, what: &str) -> Option<String> {
        s.as_ref().and_then(|s| self.string(s, what))
    }

    /// A path, relative ones resolved from the config file's directory.
    pub fn path(&mut self, s: &S, what: &str) -> Option<PathBuf> {
        let p = PathBuf::from(self.string(s, what)?);
        Some(if p.is_absolute() { p } else { self.dir.join(p) })
    }

    /// A duration (`"250ms"`, `"5s"`), or `default` when absent or wrong (wrong is reported).
    pub fn duration(&mut self, s: &Option<S>, what: &str, default: Duration) -> Duration {
        let Some(s) = s else { return default };
        let Some(text) = self.string(s, what) else {
            return default;
        };
        match parse_duration(&text) {
            Some(d) => d,
            None => {
                let o = self.origin(s.span());
                self.error(
                    &o,
                    format!("{what}: \"{text}\" is not a duration"),
                    Some("write e.g. \"250ms\", \"5s\", \"2m\""),
                );
                default
            }
        }
    }

    /// A duration that must not be zero (a deadline of 0 would close every connection).
    fn positive(&mut self, o: &Origin, s: &Option<S>, what: &str, default: Duration) -> Duration {
        let value = self.duration(s, what, default);
        if value.is_zero() {
            self.error(o, format!("{what} must be more than 0s"), None);
            return default;
        }
        value
    }

    /// A whole number in `range`, written as a number or a string with variables.
    pub fn number(
        &mut self,
        n: &Option<NumOrStr>,
        at: &Origin,
        what: &str,
        range: (i64, i64),
        default: i64,
    ) -> i64 {
        let value = match n {
            None => return default,
            Some(NumOrStr::Num(i)) => Some(*i),
            Some(NumOrStr::Str(s)) => match super::interpolate::expand(s, self.env) {
                Ok(t) => t.trim().parse().ok(),
                Err(e) => {
                    self.error(at, format!("{what}: {e}"), None);
                    return default;
                }
            },
        };
        match value {
            Some(i) if (range.0..=range.1).contains(&i) => i,
            _ => {
                self.error(
                    at,
                    format!(
                        "{what} must be a whole number from {} to {}",
                        range.0, range.1
                    ),
                    None,
                );
                default
            }
        }
    }

    /// A boolean, written as one or as a string with variables.
    pub fn boolean(
        &mut self,
        b: &Option<BoolOrStr>,
        at: &Origin,
        what: &str,
        default: bool,
    ) -> bool {
        match b {
            None => default,
            Some(BoolOrStr::Bool(b)) => *b,
            Some(BoolOrStr::Str(s)) => match super::interpolate::expand(s, self.env)
                .map(|t| t.trim().to_ascii_lowercase())
            {
                Ok(t) if t == "true" => true,
                Ok(t) if t == "false" => false,
                _ => {
                    self.error(at, format!("{what} must be true or false"), None);
                    default
                }
            },
        }
    }

    fn config(&mut self, raw: RawConfig, doc: &toml::de::DeTable<'_>) -> Config {
        let top = Origin {
            file: self.file.clone(),
            line: 1,
        };
        let listen = self.listen(&raw, &top);
        let mut upstream = raw.upstream.as_ref().and_then(|u| self.upstream(u));
        if let Some(u) = &mut upstream {
            // A [listen] key: the client's pauses are the listener's business.
            u.body_idle_timeout = listen.body_idle_timeout;
            if let (Some(a), Some(raw)) = (u.url.authority(), &raw.upstream) {
                if loops_back(&listen.addr, a) {
                    let uo = self.origin(raw.get_ref().url.span());
                    self.error(
                        &uo,
                        format!(
                            "upstream.url \"{}\" is the sidecar's own listen.addr ({}): every request for the app would come back to the sidecar, over and over",
                            u.url, listen.addr
                        ),
                        Some("point upstream.url at the app's own port (UPSTREAM_URL in the examples), and listen.addr at the one clients use (SCIM_SIDECAR_LISTEN)"),
                    );
                }
            }
        }
        let scim = self.scim(&raw, &top);
        let auth = self.auth(&raw, &top, &scim.base_path);
        let admin = raw.admin.as_ref().and_then(|a| {
            let addr = self.string(&a.get_ref().addr, "admin.addr")?;
            let o = self.origin(a.get_ref().addr.span());
            self.check_addr(&addr, &o, "admin.addr");
            Some(addr)
        });
        let log = self.log(&raw);
        let audit = raw.audit.as_ref().and_then(|a| {
            let out = self.string(&a.get_ref().output, "audit.output")?;
            Some(match out.as_str() {
                "stdout" | "-" => crate::audit::Output::Stdout,
                path => crate::audit::Output::File(self.resolve(PathBuf::from(path))),
            })
        });
        let backends = self.backends(doc, &top);
        let resources = self.resources(doc, &top);
        let state = self.state(&raw, &backends, &resources);
        if let Some(a) = &admin {
            // Port 0 asks the OS for a free port, so two listeners may both say :0.
            if *a == listen.addr && !a.ends_with(":0") {
                self.error(
                    &top,
                    "admin.addr and listen.addr are the same address",
                    Some("give the admin listener its own port"),
                );
            }
        }
        Config {
            file: self.file.clone(),
            listen,
            upstream,
            scim,
            auth,
            admin,
            log,
            backends,
            resources,
            state,
            audit,
            warnings: Vec::new(),
            files: Vec::new(),
        }
        .with_files(std::mem::take(&mut self.files))
    }

    fn check_addr(&mut self, addr: &str, o: &Origin, what: &str) {
        let ok = addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            self.error(
                o,
                format!("{what}: \"{addr}\" is not host:port"),
                Some("write e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8443\""),
            );
        }
    }

    fn listen(&mut self, raw: &RawConfig, top: &Origin) -> Listen {
        let Some(l) = &raw.listen else {
            self.error(
                top,
                "missing [listen]",
                Some("add [listen] with addr = \"127.0.0.1:8080\""),
            );
            return Listen::defaults(String::new());
        };
        let o = self.origin(l.span());
        let l = l.get_ref();
        let addr = match &l.addr {
            Some(a) => {
                let ao = self.origin(a.span());
                let addr = self.string(a, "listen.addr").unwrap_or_default();
                self.check_addr(&addr, &ao, "listen.addr");
                addr
            }
            None => {
                self.error(
                    &o,
                    "listen.addr is missing",
                    Some("add addr = \"127.0.0.1:8080\""),
                );
                String::new()
            }
        };
        let tls = l.tls.as_ref().and_then(|t| {
            let t = t.get_ref();
            let cert = self.path(&t.cert, "listen.tls.cert")?;
            let key = self.path(&t.key, "listen.tls.key")?;
            for (p, s, what) in [(&cert, &t.cert, "certificate"), (&key, &t.key, "key")] {
                if !p.exists() {
                    let o = self.origin(s.span());
                    self.error(
                        &o,
                        format!("TLS {what} file {} does not exist", p.display()),
                        None,
                    );
                }
            }
            Some(Tls { cert, key })
        });
        let d = Listen::defaults(addr);
        let max_connections = self.number(
            &l.max_connections,
            &o,
            "listen.max_connections",
            (1, 1_000_000),
            d.max_connections as i64,
        );
        let mut trusted_proxies = Vec::new();
        for t in &l.trusted_proxies {
            let Some(text) = self.string(t, "listen.trusted_proxies") else {
                continue;
            };
            match text.parse::<Cidr>() {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => {
                    let to = self.origin(t.span());
                    self.error(
                        &to,
                        format!("listen.trusted_proxies: \"{text}\" {e}"),
                        Some("write an address or a CIDR range, e.g. \"10.0.0.0/8\" or \"::1\""),
                    );
                }
            }
        }
        Listen {
            tls,
            shutdown_timeout: self.duration(
                &l.shutdown_timeout,
                "listen.shutdown_timeout",
                d.shutdown_timeout,
            ),
            drain_delay: self.duration(&l.drain_delay, "listen.drain_delay", d.drain_delay),
            header_read_timeout: self.positive(
                &o,
                &l.header_read_timeout,
                "listen.header_read_timeout",
                d.header_read_timeout,
            ),
            idle_timeout: self.positive(&o, &l.idle_timeout, "listen.idle_timeout", d.idle_timeout),
            tls_handshake_timeout: self.positive(
                &o,
                &l.tls_handshake_timeout,
                "listen.tls_handshake_timeout",
                d.tls_handshake_timeout,
            ),
            body_idle_timeout: self.positive(
                &o,
                &l.body_idle_timeout,
                "listen.body_idle_timeout",
                d.body_idle_timeout,
            ),
            http2_keepalive_interval: self.positive(
                &o,
                &l.http2_keepalive_interval,
                "listen.http2_keepalive_interval",
                d.http2_keepalive_interval,
            ),
            max_connections: usize::try_from(max_connections).unwrap_or(d.max_connections),
            trusted_proxies,
            ..d
        }
    }

    fn upstream(&mut self, u: &toml::Spanned<super::raw::RawUpstream>) -> Option<UpstreamConfig> {
        let o = self.origin(u.span());
        let u = u.get_ref();
        let uo = self.origin(u.url.span());
        let text = self.string(&u.url, "upstream.url")?;
        let url: http::Uri = match text.parse() {
            Ok(url) => url,
            Err(e) => {
                self.error(
                    &uo,
                    format!("upstream.url \"{text}\" is not a URL: {e}"),
                    Some("write e.g. \"http://127.0.0.1:3000\""),
                );
                return None;
            }
        };
        if url.scheme_str() != Some("http") || url.authority().is_none() {
            self.error(
                &uo,
                format!("upstream.url \"{text}\" must be http://host:port"),
                Some("the sidecar runs next to the app: point it at the app's plain-HTTP port, e.g. http://127.0.0.1:3000"),
            );
            return None;
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            self.error(
                &uo,
                format!("upstream.url \"{text}\" must not have a path"),
                Some("requests keep their own path; use http://host:port"),
            );
        }
        let preserve_host = self.boolean(&u.preserve_host, &o, "upstream.preserve_host", true);
        let pool_max_idle = self.number(
            &u.pool_max_idle,
            &o,
            "upstream.pool_max_idle",
            (0, 10_000),
            64,
        );
        Some(UpstreamConfig {
            url,
            connect_timeout: self.duration(
                &u.connect_timeout,
                "upstream.connect_timeout",
                Duration::from_secs(5),
            ),
            timeout: self.duration(&u.timeout, "upstream.timeout", Duration::from_secs(60)),
            preserve_host,
            pool_idle_timeout: self.duration(
                &u.pool_idle_timeout,
                "upstream.pool_idle_timeout",
                Duration::from_secs(90),
            ),
            pool_max_idle_per_host: usize::try_from(pool_max_idle).unwrap_or(64),
            body_idle_timeout: super::Listen::defaults(String::new()).body_idle_timeout,
        })
    }

    fn scim(&mut self, raw: &RawConfig, top: &Origin) -> Scim {
        let empty = super::raw::RawScim {
            base_path: None,
            public_url: None,
            max_body_bytes: None,
            default_count: None,
            max_count: None,
            max_members: None,
            members_in_flight: None,
            unknown_attributes: None,
            retry_after: None,
            documentation_uri: None,
            body_timeout: None,
            allowed_hosts: Vec::new(),
        };
        let (s, o) = match &raw.scim {
            Some(s) => (s.get_ref(), self.origin(s.span())),
            None => (&empty, top.clone()),
        };
        let mut base_path = self
            .opt_string(&s.base_path, "scim.base_path")
            .unwrap_or_else(|| "/scim/v2".into());
        if !base_path.starts_with('/')
            || base_path.trim_end_matches('/').is_empty()
            || base_path.contains(['?', '#'])
        {
            self.error(
                &o,
                format!("scim.base_path \"{base_path}\" must be a path below the root"),
                Some("write e.g. \"/scim/v2\""),
            );
        }
        base_path = base_path.trim_end_matches('/').to_owned();
        let public_url = self
            .opt_string(&s.public_url, "scim.public_url")
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &public_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                self.error(
                    &o,
                    format!("scim.public_url \"{u}\" must be an absolute http(s) URL"),
                    Some("write e.g. \"https://app.example.com/scim/v2\""),
                );
            }
        }
        let max_body_bytes = self.number(
            &s.max_body_bytes,
            &o,
            "scim.max_body_bytes",
            (1024, 64 << 20),
            1 << 20,
        );
        let max_count = self.number(&s.max_count, &o, "scim.max_count", (1, 100_000), 1000);
        let default_count = self.number(
            &s.default_count,
            &o,
            "scim.default_count",
            (1, 100_000),
            100,
        );
        if default_count > max_count {
            self.error(&o, "scim.default_count is larger than scim.max_count", None);
        }
        let max_members = self.number(
            &s.max_members,
            &o,
            "scim.max_members",
            (1, 100_000_000),
            100_000,
        );
        let members_in_flight = self.number(
            &s.members_in_flight,
            &o,
            "scim.members_in_flight",
            (1, 1_000_000_000),
            200_000,
        );
        if members_in_flight < max_members {
            self.error(
                &o,
                "scim.members_in_flight is smaller than scim.max_members: a group at the limit could never be read",
                Some("make members_in_flight at least max_members (the default is twice it)"),
            );
        }
        let unknown_attributes = match self
            .opt_string(&s.unknown_attributes, "scim.unknown_attributes")
            .as_deref()
        {
            None | Some("ignore") => UnknownPolicy::Ignore,
            Some("reject") => UnknownPolicy::Reject,
            Some(other) => {
                self.error(
                    &o,
                    format!("scim.unknown_attributes \"{other}\" is not \"ignore\" or \"reject\""),
                    None,
                );
                UnknownPolicy::Ignore
            }
        };
        let retry_after = self.number(&s.retry_after, &o, "scim.retry_after", (1, 3600), 5);
        let mut allowed_hosts = Vec::new();
        for h in &s.allowed_hosts {
            let Some(text) = self.string(h, "scim.allowed_hosts") else {
                continue;
            };
            let host = text.trim().to_ascii_lowercase();
            if host.is_empty()
                || host.parse::<http::uri::Authority>().is_err()
                || host.contains('@')
            {
                let ho = self.origin(h.span());
                self.error(
                    &ho,
                    format!("scim.allowed_hosts: \"{text}\" is not a host name or host:port"),
                    Some("write the Host a client uses, e.g. \"app.example.com\" or \"app.example.com:8443\""),
                );
                continue;
            }
            allowed_hosts.push(host);
        }
        if public_url.is_some() && !allowed_hosts.is_empty() {
            self.warn(
                &o,
                "scim.allowed_hosts is ignored: scim.public_url is set and every URL uses it",
                None,
            );
        }
        Scim {
            base_path,
            public_url,
            max_body_bytes: max_body_bytes as u64,
            default_count: default_count as u64,
            max_count: max_count as u64,
            max_members: max_members as u64,
            members_in_flight: members_in_flight as u64,
            unknown_attributes,
            retry_after: retry_after as u32,
            documentation_uri: self.opt_string(&s.documentation_uri, "scim.documentation_uri"),
            body_timeout: self.positive(
                &o,
                &s.body_timeout,
                "scim.body_timeout",
                Duration::from_secs(30),
            ),
            allowed_hosts,
        }
    }

    fn auth(&mut self, raw: &RawConfig, top: &Origin, base_path: &str) -> Auth {
        let Some(a) = &raw.auth else {
            self.error(
                top,
                "missing [auth]: SCIM requests must be authenticated",
                Some("add [auth] with bearer_tokens = [\"${SCIM_TOKEN}\"]"),
            );
            return Auth::default();
        };
        let o = self.origin(a.span());
        let a = a.get_ref();
        let tokens = self.tokens(a);
        let mut jwt = Vec::new();
        for j in &a.jwt {
            let jo = self.origin(j.span());
            if let Some(issuer) = self.jwt(j.get_ref(), &jo) {
                if jwt.iter().any(|x: &JwtIssuer| x.issuer == issuer.issuer) {
                    self.error(
                        &jo,
                        format!(
                            "[[auth.jwt]] issuer \"{}\" is configured twice",
                            issuer.issuer
                        ),
                        Some("list every audience of one issuer in one entry's `audience`"),
                    );
                } else {
                    jwt.push(issuer);
                }
            }
        }
        let oauth = a.oauth.as_ref().and_then(|x| {
            let oo = self.origin(x.span());
            self.oauth(x.get_ref(), &oo, base_path)
        });
        let none = tokens.is_empty() && jwt.is_empty() && oauth.is_none();
        if none && self.problems.iter().all(|p| p.warning) {
            self.error(
                &o,
                "no credential configured",
                Some("add bearer_tokens = [\"${SCIM_TOKEN}\"], bearer_token_files, [[auth.jwt]] or [auth.oauth]"),
            );
        }
        Auth { tokens, jwt, oauth }
    }

    /// `read_only` of a credential table.
    fn read_only(&mut self, c: &RawCredential, o: &Origin, what: &str) -> bool {
        self.boolean(&c.table.read_only, o, what, false)
    }

    fn tokens(&mut self, a: &RawAuth) -> Vec<StaticToken> {
        let mut tokens = Vec::new();
        for t in &a.bearer_tokens {
            let to = self.origin(t.span());
            let c = t.get_ref();
            let text = match (&c.plain, &c.table.token, &c.table.file) {
                (Some(p), None, None) | (None, Some(p), None) => p,
                _ => {
                    self.error(
                        &to,
                        "auth.bearer_tokens: an entry needs `token` (and no `file`)",
                        Some("write \"${SCIM_TOKEN}\" or { token = \"${SCIM_TOKEN}\", read_only = true }"),
                    );
                    continue;
                }
            };
            let read_only = self.read_only(c, &to, "auth.bearer_tokens read_only");
            if let Some(v) = self.expand(text, &to, "auth.bearer_tokens") {
                tokens.push((v, read_only, to));
            }
        }
        for f in &a.bearer_token_files {
            let fo = self.origin(f.span());
            let c = f.get_ref();
            let text = match (&c.plain, &c.table.file, &c.table.token) {
                (Some(p), None, None) | (None, Some(p), None) => p,
                _ => {
                    self.error(
                        &fo,
                        "auth.bearer_token_files: an entry needs `file` (and no `token`)",
                        Some("write \"/run/secrets/scim-token\" or { file = \"/run/secrets/scim-token\", read_only = true }"),
                    );
                    continue;
                }
            };
            let read_only = self.read_only(c, &fo, "auth.bearer_token_files read_only");
            let Some(p) = self.expand(text, &fo, "auth.bearer_token_files") else {
                continue;
            };
            let p = self.resolve(PathBuf::from(p));
            self.files.push(p.clone());
            match std::fs::read_to_string(&p) {
                Ok(v) => tokens.push((v.trim().to_owned(), read_only, fo)),
                Err(e) => self.error(
                    &fo,
                    format!("cannot read token file {}: {e}", p.display()),
                    None,
                ),
            }
        }
        let mut out = Vec::new();
        for (t, read_only, to) in tokens {
            if t.is_empty() {
                self.error(&to, "a bearer token is empty", Some("set the variable it reads to a long random value, e.g. `openssl rand -hex 32`"));
            } else if t.chars().any(char::is_whitespace) {
                self.error(&to, "a bearer token contains whitespace", None);
            } else {
                if t.len() < 16 {
                    self.warn(
                        &to,
                        "a bearer token is shorter than 16 characters",
                        Some("use a long random value, e.g. `openssl rand -hex 32`"),
                    );
                }
                out.push(StaticToken {
                    secret: Secret(t),
                    read_only,
                });
            }
        }
        out
    }

    /// A string with `${VAR}` expanded, reported at `o`.
    fn expand(&mut self, text: &str, o: &Origin, what: &str) -> Option<String> {
        match super::interpolate::expand(text, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(o, format!("{what}: {e}"), None);
                None
            }
        }
    }

    fn resolve(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() { p } else { self.dir.join(p) }
    }

    /// One `[[auth.jwt]]` issuer.
    fn jwt(&mut self, j: &RawJwt, o: &Origin) -> Option<JwtIssuer> {
        let preset = self.opt_string(&j.preset, "auth.jwt.preset");
        let tenant = self.opt_string(&j.tenant, "auth.jwt.tenant");
        // Preset values fill what the entry does not set itself.
        let (mut issuer, mut audiences, mut url, mut algs) = (None, Vec::new(), None, Vec::new());
        match (preset.as_deref(), &tenant) {
            (None, None) => {}
            (None, Some(_)) => self.error(
                o,
                "auth.jwt.tenant is only used with preset = \"entra\"",
                None,
            ),
            (Some("entra"), Some(t)) => {
                let ok = !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                if !ok {
                    self.error(
                        o,
                        format!("auth.jwt.tenant \"{t}\" is not a tenant id"),
                        Some("use the Directory (tenant) ID, a GUID"),
                    );
                }
                issuer = Some(format!("https://sts.windows.net/{t}/"));
                // The audience Entra uses for every non-gallery app's tokens.
                audiences.push("8adf8e6e-67b2-4cf2-a259-e3dc5476c621".to_owned());
                url = Some(format!(
                    "https://login.microsoftonline.com/{t}/discovery/v2.0/keys"
                ));
                algs.push(Alg::RS256);
            }
            (Some("entra"), None) => {
                self.error(o, "preset = \"entra\" needs tenant = \"<tenant id>\"", None);
                return None;
            }
            (Some(other), _) => {
                self.error(
                    o,
                    format!("auth.jwt.preset \"{other}\" is not \"entra\""),
                    None,
                );
                return None;
            }
        }
        if let Some(i) = self.opt_string(&j.issuer, "auth.jwt.issuer") {
            issuer = Some(i);
        }
        let Some(issuer) = issuer.filter(|i| !i.is_empty()) else {
            self.error(
                o,
                "[[auth.jwt]] needs issuer = \"…\" (the tokens' exact iss)",
                Some("or preset = \"entra\" with tenant"),
            );
            return None;
        };
        if issuer == crate::auth::oauth::OWN_ISSUER {
            self.error(
                o,
                format!("auth.jwt.issuer \"{issuer}\" is the sidecar's own issuer"),
                Some("tokens of [auth.oauth] are accepted without [[auth.jwt]]"),
            );
        }
        if let Some(a) = &j.audience {
            let list = match a.get_ref() {
                StrOrList::One(s) => vec![s.clone()],
                StrOrList::Many(l) => l.clone(),
            };
            audiences.clear();
            for x in list {
                if let Some(v) = self.expand(&x, o, "auth.jwt.audience") {
                    audiences.push(v);
                }
            }
        }
        audiences.retain(|a| !a.is_empty());
        if audiences.is_empty() {
            self.error(o, format!("[[auth.jwt]] {issuer}: audience is missing"), Some("set audience = \"…\" (or a list): the aud your issuer puts in tokens for this app"));
        }
        if let Some(list) = &j.algorithms {
            algs.clear();
            for a in list {
                let ao = self.origin(a.span());
                let Some(name) = self.string(a, "auth.jwt.algorithms") else {
                    continue;
                };
                match Alg::parse(&name) {
                    Some(alg) => algs.push(alg),
                    None => self.error(
                        &ao,
                        format!("auth.jwt.algorithms: \"{name}\" is not accepted"),
                        Some("use RS256, RS384, RS512, PS256, ES256 or ES384 (never none or HS*: an external issuer's tokens must be verified with its public key)"),
                    ),
                }
            }
        }
        if algs.is_empty() {
            if j.algorithms.is_some() {
                self.error(o, "auth.jwt.algorithms is empty", None);
            } else {
                algs.push(Alg::RS256);
            }
        }
        let leeway = self.duration(&j.leeway, "auth.jwt.leeway", Duration::from_secs(60));
        if leeway > Duration::from_secs(600) {
            self.error(
                o,
                "auth.jwt.leeway is over 10 minutes",
                Some("clock skew is seconds; the default is 60s"),
            );
        }
        let refresh_min = self.duration(
            &j.jwks_refresh_min,
            "auth.jwt.jwks_refresh_min",
            Duration::from_secs(60),
        );
        if let Some(u) = self.opt_string(&j.jwks_url, "auth.jwt.jwks_url") {
            url = Some(u);
        }
        let file = self
            .opt_string(&j.jwks_file, "auth.jwt.jwks_file")
            .map(|f| self.resolve(PathBuf::from(f)));
        let ca = self
            .opt_string(&j.ca, "auth.jwt.ca")
            .map(|f| self.resolve(PathBuf::from(f)));
        let keys = match (url, file) {
            (Some(_), Some(_)) if j.jwks_url.is_some() => {
                self.error(
                    o,
                    "[[auth.jwt]] has both jwks_url and jwks_file",
                    Some("keep one"),
                );
                return None;
            }
            (_, Some(f)) => {
                if !f.exists() {
                    self.error(
                        o,
                        format!("auth.jwt.jwks_file {} does not exist", f.display()),
                        None,
                    );
                }
                KeySource::File(f)
            }
            (Some(u), None) => {
                let uri: http::Uri = match u.parse() {
                    Ok(x) => x,
                    Err(e) => {
                        self.error(
                            o,
                            format!("auth.jwt.jwks_url \"{u}\" is not a URL: {e}"),
                            None,
                        );
                        return None;
                    }
                };
                let https = match uri.scheme_str() {
                    Some("https") => true,
                    Some("http") => false,
                    _ => {
                        self.error(
                            o,
                            format!("auth.jwt.jwks_url \"{u}\" must be http:// or https://"),
                            None,
                        );
                        return None;
                    }
                };
                if uri.host().is_none() {
                    self.error(o, format!("auth.jwt.jwks_url \"{u}\" has no host"), None);
                }
                let ca = match ca {
                    Some(c) => {
                        if !c.exists() {
                            self.error(
                                o,
                                format!("auth.jwt.ca {} does not exist", c.display()),
                                None,
                            );
                        }
                        Some(c)
                    }
                    None if https => {
                        let found = SYSTEM_CA_BUNDLES
                            .iter()
                            .map(PathBuf::from)
                            .find(|p| p.exists());
                        if found.is_none() {
                            self.error(
                                o,
                                format!("auth.jwt.jwks_url \"{u}\" is https, but no CA bundle is configured and none of {} exists", SYSTEM_CA_BUNDLES.join(", ")),
                                Some("set ca = \"/path/to/ca-bundle.pem\" (the sidecar has no built-in root store)"),
                            );
                        }
                        found
                    }
                    None => None,
                };
                KeySource::Url { url: uri, ca }
            }
            (None, None) => {
                self.error(
                    o,
                    format!("[[auth.jwt]] {issuer}: no keys"),
                    Some("set jwks_url = \"https://…/keys\" or jwks_file = \"jwks.json\""),
                );
                return None;
            }
        };
        let write_scope = self
            .opt_string(&j.write_scope, "auth.jwt.write_scope")
            .filter(|s| !s.is_empty());
        let read_only = self.boolean(&j.read_only, o, "auth.jwt.read_only", false);
        Some(JwtIssuer {
            issuer,
            audiences,
            algorithms: algs,
            leeway,
            keys,
            refresh_min,
            write_scope,
            read_only,
        })
    }

    /// `[auth.oauth]`.
    fn oauth(&mut self, r: &RawOAuth, o: &Origin, base_path: &str) -> Option<OAuth> {
        let path = self
            .opt_string(&r.path, "auth.oauth.path")
            .unwrap_or_else(|| format!("{base_path}/oauth/token"));
        if !path.starts_with('/') || path.contains(['?', '#']) || path.len() < 2 {
            self.error(
                o,
                format!("auth.oauth.path \"{path}\" must be an absolute path"),
                Some("e.g. \"/scim/v2/oauth/token\""),
            );
        }
        let mut clients: Vec<OAuthClient> = Vec::new();
        for c in &r.clients {
            let co = self.origin(c.span());
            let c = c.get_ref();
            let (Some(id), Some(secret)) = (
                self.string(&c.client_id, "auth.oauth.clients.client_id"),
                self.string(&c.client_secret, "auth.oauth.clients.client_secret"),
            ) else {
                continue;
            };
            if id.is_empty() || secret.is_empty() {
                self.error(
                    &co,
                    "an OAuth client's client_id or client_secret is empty",
                    None,
                );
                continue;
            }
            if secret.len() < 16 {
                self.warn(
                    &co,
                    format!("client \"{id}\": client_secret is shorter than 16 characters"),
                    Some("use a long random value, e.g. `openssl rand -hex 32`"),
                );
            }
            if clients.iter().any(|x| x.client_id == id) {
                self.error(
                    &co,
                    format!("client_id \"{id}\" is configured twice"),
                    Some("to rotate a secret, issue a second client"),
                );
                continue;
            }
            let read_only = self.boolean(&c.read_only, &co, "auth.oauth.clients.read_only", false);
            clients.push(OAuthClient {
                client_id: id,
                secret: Secret(secret),
                read_only,
            });
        }
        if clients.is_empty() {
            self.error(o, "[auth.oauth] has no client", Some("add [[auth.oauth.clients]] with client_id and client_secret = \"${OAUTH_CLIENT_SECRET}\""));
        }
        let signing_key = match self.opt_string(&r.signing_key, "auth.oauth.signing_key") {
            Some(k) if k.is_empty() => None,
            Some(k) if k.len() < 32 => {
                self.error(
                    o,
                    "auth.oauth.signing_key is shorter than 32 bytes",
                    Some("use e.g. `openssl rand -hex 32`"),
                );
                None
            }
            Some(k) => Some(Secret(k)),
            None => None,
        };
        if signing_key.is_none() {
            self.warn(o, "auth.oauth.signing_key is not set: tokens are signed with a random key per process, so they do not survive a restart and are not shared between replicas", Some("set signing_key = \"${OAUTH_SIGNING_KEY}\" to a random value of 32+ bytes shared by all replicas"));
        }
        let token_lifetime = self.duration(
            &r.token_lifetime,
            "auth.oauth.token_lifetime",
            Duration::from_secs(3600),
        );
        if token_lifetime < Duration::from_secs(60)
            || token_lifetime > Duration::from_secs(24 * 3600)
        {
            self.error(o, "auth.oauth.token_lifetime must be from 1m to 24h", None);
        }
        let burst = self.number(
            &r.failed_attempts_burst,
            o,
            "auth.oauth.failed_attempts_burst",
            (1, 10_000),
            10,
        );
        let per_minute = self.number(
            &r.failed_attempts_per_minute,
            o,
            "auth.oauth.failed_attempts_per_minute",
            (0, 10_000),
            10,
        );
        Some(OAuth {
            path,
            clients,
            signing_key,
            token_lifetime,
            failed_attempts_burst: burst as u32,
            failed_attempts_per_minute: per_minute as u32,
            max_delay: self.duration(&r.max_delay, "auth.oauth.max_delay", Duration::from_secs(5)),
        })
    }

    fn log(&mut self, raw: &RawConfig) -> Log {
        let mut log = Log {
            format: LogFormat::Text,
            level: "info".into(),
        };
        if let Some(l) = &raw.log {
            let o = self.origin(l.span());
            let l = l.get_ref();
            match self.opt_string(&l.format, "log.format").as_deref() {
                None | Some("text") => {}
                Some("json") => log.format = LogFormat::Json,
                Some(other) => self.error(
                    &o,
                    format!("log.format \"{other}\" is not \"text\" or \"json\""),
                    None,
                ),
            }
            if let Some(level) = self.opt_string(&l.level, "log.level") {
                log.level = level;
            }
        }
        log
    }
}

/// Where Linux distributions keep the system CA bundle, tried in order for an https
/// `jwks_url` without `ca`.
const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `250ms`, `5s`, `2m`, `1h` (and a bare number of seconds).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// Whether `upstream` names the listener at `listen` (`host:port`) itself: the same port, and
/// the same host, or loopback where the listener takes every address (`0.0.0.0`, `::`), or
/// `localhost` for a loopback address. Decided from the text, without resolving names.
fn loops_back(listen: &str, upstream: &http::uri::Authority) -> bool {
    let Some((host, port)) = listen.rsplit_once(':') else {
        return false;
    };
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return false,
        Ok(p) => p,
    };
    if upstream.port_u16().unwrap_or(80) != port {
        return false;
    }
    let unbracket = |h: &str| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    let (ours, theirs) = (unbracket(host), unbracket(upstream.host()));
    let ip = |h: &str| h.parse::<std::net::IpAddr>().ok();
    let local =
        |h: &str| h == "localhost" || ip(h).is_some_and(|a| a.is_loopback() || a.is_unspecified());
    ours == theirs
        || (ip(&ours).is_some_and(|a| a.is_unspecified()) && local(&theirs))
        || (ours == "localhost" && ip(&theirs).is_some_and(|a| a.is_loopback()))
        || (theirs == "localhost" && ip(&ours).is_some_and(|a| a.is_loopback()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn an_upstream_that_is_the_listener_is_found() {
        let a = |s: &str| s.parse::<http::uri::Authority>().expect("authority");
        for (listen, up) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "localhost:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("127.0.0.1:8080", "localhost:8080"),
            ("localhost:8080", "127.0.0.1:8080"),
            ("LocalHost:80", "localhost"),
            ("app.internal:8080", "APP.internal:8080"),
        ] {
            assert!(loops_back(listen, &a(up)), "{listen} -> {up}");
        }
        for (listen, up) in [
            ("127.0.0.1:8080", "127.0.0.1:3000"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("10.0.0.5:8080", "127.0.0.1:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:80", "app:80"),
        ] {
            assert!(!loops_back(listen, &a(up)), "{listen} -> {up}");
        }
    }

    #[test]
    fn an_upstream_that_is_the_listener_is_refused() {
        let src = GOOD.to_owned() + "\n[upstream]\nurl = \"http://localhost:8080\"\n";
        let problems = load(&src).expect_err("a loop is refused");
        assert!(
            problems.iter().any(|p| p
                .message
                .contains("the sidecar's own listen.addr (127.0.0.1:8080)")
                && p.origin.line == src.lines().position(|l| l.starts_with("url =")).unwrap() + 1),
            "{problems:?}"
        );
    }

    /// `src` validated as if read from `/tmp/t.toml`, with `SCIM_TOKEN` set.
    pub(crate) fn load(src: &str) -> Result<Config, Vec<Problem>> {
        let env: HashMap<String, String> =
            [("SCIM_TOKEN".to_string(), "0123456789abcdef0123".to_string())].into();
        from_str(src, Arc::from("t.toml"), Path::new("/tmp"), &env)
    }

    /// A valid file: one SQLite store, one mapped resource.
    pub(crate) const GOOD: &str = r#"
[listen]
addr = "${LISTEN:-127.0.0.1:8080}"

[auth]
bearer_tokens = ["${SCIM_TOKEN}"]

[backend.app]
type = "sqlite"
path = "app.db"

[resource.User]
backend = "app"
table = "accounts"
on_delete = "soft"

[resource.User.map]
userName = { column = "login", case_exact = false }
"name.givenName" = "first_name"
'emails[type eq "work"].value' = "email"
active = { column = "status", values = { true = "A", false = "D" } }
"#;

    /// A good file validates, expanding variables and defaults and resolving paths.
    #[test]
    fn good_config() {
        let c = load(GOOD).expect("valid");
        assert_eq!(c.listen.addr, "127.0.0.1:8080");
        assert_eq!(
            c.auth.tokens,
            vec![StaticToken {
                secret: Secret("0123456789abcdef0123".into()),
                read_only: false
            }]
        );
        assert_eq!(c.scim.base_path, "/scim/v2");
        // The store's own settings (the table's key, the file's path) are the store's to
        // check: `backend::sql::sqlite`'s tests. Here only what every store shows.
        let r = &c.resources[0];
        assert_eq!(
            (r.endpoint.as_str(), r.store.describe(), r.schema.as_str()),
            (
                "/Users",
                "table 'accounts'".to_owned(),
                crate::scim::schema::USER_URN
            )
        );
        assert_eq!(r.attrs.len(), 4);
        assert_eq!(
            r.attrs[3].values,
            vec![
                (
                    serde_json::Value::Bool(true),
                    crate::backend::Value::Text("A".into())
                ),
                (
                    serde_json::Value::Bool(false),
                    crate::backend::Value::Text("D".into())
                )
            ]
        );
        assert_eq!(r.attrs[2].origin.line, 20);
        assert_eq!(
            (c.backends[0].name.as_str(), c.backends[0].store.kind()),
            ("app", "sqlite")
        );
        assert!(format!("{:?}", c.auth.tokens).contains("***"));
    }

    /// Every problem is reported at once, each with its line and a fix.
    #[test]
    fn all_problems_at_once() {
        let bad = GOOD
            .replace("${SCIM_TOKEN}", "${MISSING_TOKEN}")
            .replace("table = \"accounts\"", "table = \"acc;ounts\"")
            .replace("\"first_name\"", "\"first name\"")
            .replace("on_delete = \"soft\"", "on_delete = \"sometimes\"");
        let problems = load(&bad).expect_err("invalid");
        let text = crate::config::report(&problems);
        assert!(
            text.contains(
                "t.toml:6: error: auth.bearer_tokens: environment variable MISSING_TOKEN is not set"
            ),
            "{text}"
        );
        assert!(
            text.contains("t.toml:14: error: table \"acc;ounts\" is not a valid SQL identifier"),
            "{text}"
        );
        assert!(
            text.contains("t.toml:15: error: on_delete \"sometimes\""),
            "{text}"
        );
        assert!(
            text.contains("t.toml:19: error: column \"first name\""),
            "{text}"
        );
        assert!(problems.len() >= 4);
    }

    /// Structural mistakes (unknown keys) name the line.
    #[test]
    fn unknown_key() {
        let bad = GOOD.replace(
            "on_delete = \"soft\"",
            "on_delete = \"soft\"\ntabel = \"x\"",
        );
        let problems = load(&bad).expect_err("invalid");
        assert_eq!(problems[0].origin.line, 16, "{}", problems[0]);
        assert!(problems[0].message.contains("tabel"), "{}", problems[0]);
    }

    /// `[auth]`: token tables with read_only, the Entra preset, an OAuth client; plain
    /// strings keep working.
    #[test]
    fn auth_section() {
        let src = GOOD.replace(
            "bearer_tokens = [\"${SCIM_TOKEN}\"]",
            r#"bearer_tokens = ["${SCIM_TOKEN}", { token = "reader-token-0123456789", read_only = true }]

[[auth.jwt]]
preset = "entra"
tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ca = "/tmp"

[[auth.jwt]]
issuer = "https://okta.example/oauth2/default"
audience = ["api://scim", "scim"]
algorithms = ["RS256", "ES256"]
jwks_url = "http://127.0.0.1:1/keys"
leeway = "30s"
write_scope = "scim.write"

[auth.oauth]
signing_key = "0123456789abcdef0123456789abcdef"
token_lifetime = "2h"
clients = [{ client_id = "entra", client_secret = "${SCIM_TOKEN}", read_only = "false" }]"#,
        );
        let c = load(&src).expect("valid");
        assert_eq!(c.auth.tokens.len(), 2);
        assert!(!c.auth.tokens[0].read_only && c.auth.tokens[1].read_only);
        let e = &c.auth.jwt[0];
        assert_eq!(
            e.issuer,
            "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
        );
        assert_eq!(e.audiences, vec!["8adf8e6e-67b2-4cf2-a259-e3dc5476c621"]);
        assert_eq!(e.algorithms, vec![Alg::RS256]);
        assert_eq!(e.leeway, Duration::from_secs(60));
        assert!(matches!(&e.keys, KeySource::Url { url, ca: Some(_) }
            if *url == "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys"));
        let o = &c.auth.jwt[1];
        assert_eq!(o.audiences.len(), 2);
        assert_eq!(o.write_scope.as_deref(), Some("scim.write"));
        let oauth = c.auth.oauth.as_ref().expect("oauth");
        assert_eq!(oauth.path, "/scim/v2/oauth/token");
        assert_eq!(oauth.token_lifetime, Duration::from_secs(7200));
        assert_eq!(oauth.clients[0].client_id, "entra");
        assert_eq!(
            (
                oauth.failed_attempts_burst,
                oauth.failed_attempts_per_minute
            ),
            (10, 10)
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    /// `none` and HS256 are refused for external issuers; an issuer needs keys and an
    /// audience; an OAuth section needs clients; all reported at once.
    #[test]
    fn auth_mistakes() {
        let src = GOOD.replace(
            "bearer_tokens = [\"${SCIM_TOKEN}\"]",
            r#"bearer_tokens = [{ token = "${SCIM_TOKEN}", read_only = "maybe" }]

[[auth.jwt]]
issuer = "https://a.example/"
algorithms = ["none", "HS256"]

[auth.oauth]
signing_key = "short""#,
        );
        let text = crate::config::report(&load(&src).expect_err("invalid"));
        for want in [
            "read_only must be true or false",
            "\"none\" is not accepted",
            "\"HS256\" is not accepted",
            "audience is missing",
            "no keys",
            "has no client",
            "signing_key is shorter than 32 bytes",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
    }

    /// Durations.
    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("soon"), None);
    }
}
