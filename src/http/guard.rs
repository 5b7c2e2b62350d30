//! The request guard, one middleware in front of every route (the dashboard, SSE and the
//! fallback included): client network (`allow_from`) → Host header (DNS rebinding) → token
//! (`Authorization: Bearer`, the session cookie, or a one-time `?token=` visit that is
//! redirected at once to the same URL without it). Every response gets
//! `Referrer-Policy: no-referrer`, so no URL of the API ever leaves in a Referer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tracing::debug;

use super::auth::token_matches;
use super::config::{parse_net, HttpConfig};
use super::error::ApiError;
use super::limits::Burst;
use crate::agent::Agent;
use crate::metrics::ReasonLabel;
use crate::secret::Secret;

/// The path that stays open without a token (with the status only).
pub const HEALTH_PATH: &str = "/api/v1/health";

/// What the request may see; handlers that show less to anonymous callers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    /// No token, on a path that is open without one: the answer carries no details.
    StatusOnly,
}

/// The guard's settings, built once from `[http]`.
pub struct Guard {
    agent: Arc<Agent>,
    token: Option<Secret>,
    cookie: String,
    allow_from: Vec<IpNet>,
    anonymous_from: Vec<IpNet>,
    hosts: HostCheck,
    refused_network: Burst,
    refused_host: Burst,
    refused_token: Burst,
}

impl Guard {
    pub fn new(agent: Arc<Agent>, http: &HttpConfig) -> Self {
        // Invalid entries were refused when the configuration loaded.
        let nets = |list: &[String]| list.iter().filter_map(|n| parse_net(n).ok()).collect::<Vec<_>>();
        Self {
            token: http.auth_token.clone(),
            cookie: cookie_name(http),
            allow_from: nets(&http.allow_from),
            anonymous_from: nets(&http.anonymous_from),
            hosts: HostCheck::new(&http.allowed_hosts, &crate::node::hostname()),
            refused_network: Burst::new("request from a network outside http.allow_from refused"),
            refused_host: Burst::new("request with a foreign Host header refused (DNS rebinding?)"),
            refused_token: Burst::new("request without a valid token refused"),
            agent,
        }
    }

    fn count(&self, reason: &'static str) {
        self.agent.metrics.http_rejected.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }
}

/// The middleware: see the module documentation for the order of the checks.
pub async fn check(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_canonical());
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let mut response = match admit(&guard, peer, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refused) => *refused,
    };
    let headers = response.headers_mut();
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The path only: a query may carry a token.
    debug!(%method, path, status = response.status().as_u16(), peer = ?peer, "HTTP request");
    response
}

/// A refusal: the response to send instead of running the route (boxed: a `Response` is large).
type Refused = Box<Response>;

fn admit(guard: &Guard, peer: Option<IpAddr>, request: &mut Request) -> Result<(), Refused> {
    if !guard.allow_from.is_empty() && !peer.is_some_and(|ip| guard.allow_from.iter().any(|n| n.contains(&ip))) {
        guard.count("allow_from");
        guard.refused_network.hit(|| format!("peer {peer:?}"));
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this client's address is not in http.allow_from",
        )));
    }
    if let Some(host) = host_of(request.headers(), request.uri()) {
        if !guard.hosts.allows(&host) {
            guard.count("host");
            guard.refused_host.hit(|| format!("Host {host:?}"));
            return Err(Box::new(error(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                &format!("Host {host:?} is not a name of this agent; add it to http.allowed_hosts"),
            )));
        }
    }
    let access = authenticate(guard, peer, request)?;
    request.extensions_mut().insert(access);
    Ok(())
}

fn authenticate(guard: &Guard, peer: Option<IpAddr>, request: &Request) -> Result<Access, Refused> {
    let Some(token) = &guard.token else { return Ok(Access::Full) };
    if peer.is_some_and(|ip| guard.anonymous_from.iter().any(|n| n.contains(&ip))) {
        return Ok(Access::Full);
    }
    let query_token = request.uri().query().and_then(token_in_query);
    if let Some(given) = &query_token {
        // A token in the URL is moved into a cookie at once; the URL without it is what stays
        // in the address bar and the history. A wrong one is refused like a wrong header.
        if token_matches(token, given.as_bytes()) {
            return Err(Box::new(redirect_with_cookie(guard, request, token)));
        }
    } else if let Some(given) = bearer(request.headers()) {
        if token_matches(token, given) {
            return Ok(Access::Full);
        }
    } else if let Some(given) = cookie(request.headers(), &guard.cookie) {
        if token_matches(token, given) {
            return Ok(Access::Full);
        }
    } else if request.uri().path() == HEALTH_PATH {
        return Ok(Access::StatusOnly);
    }
    guard.count("token");
    guard.refused_token.hit(|| format!("path {}", request.uri().path()));
    Err(Box::new(unauthorized(request.uri().path() == "/")))
}

/// `303 See Other` to the same URL without `token`, relative so it works behind a path-prefix
/// proxy (Home Assistant ingress), setting the session cookie.
fn redirect_with_cookie(guard: &Guard, request: &Request, token: &Secret) -> Response {
    let path = request.uri().path();
    let last = path.rsplit('/').next().unwrap_or("");
    let mut location = if last.is_empty() { "./".to_owned() } else { last.to_owned() };
    let rest = request.uri().query().map(strip_token).unwrap_or_default();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&rest);
    }
    let cookie = format!("{}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000", guard.cookie, token.expose());
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let (Ok(location), Ok(cookie)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
        headers.insert(header::LOCATION, location);
        headers.insert(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn unauthorized(page: bool) -> Response {
    let mut response = if page {
        (StatusCode::UNAUTHORIZED, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], LOGIN_PAGE).into_response()
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this agent needs its token: `Authorization: Bearer <token>` (see http.auth_token_file)",
        )
    };
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"diskwatch\""));
    response
}

const LOGIN_PAGE: &str = "<!doctype html><meta charset=utf-8><title>diskwatch: token needed</title>\
<p>This diskwatch agent needs its API token. Open this page once as <code>…/?token=&lt;token&gt;</code>: \
the token is kept in a cookie and removed from the address. The token is in the file named by \
<code>http.auth_token_file</code> (<code>diskwatch token generate</code> writes one).</p>";

fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError { status, code, message: message.to_owned() }.into_response()
}

/// The Host the client asked for: the Host header, or the authority of an absolute-form URI.
fn host_of(headers: &HeaderMap, uri: &axum::http::Uri) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
}

/// The session cookie's name. Cookies are per host, not per port: two agents on one host
/// keep theirs apart.
pub(super) fn cookie_name(http: &HttpConfig) -> String {
    format!("diskwatch_token_{}", http.listen.port())
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii())
}

/// The value of the cookie `name`.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(header::COOKIE).iter().flat_map(|v| v.as_bytes().split(|b| *b == b';')).find_map(|pair| {
        let pair = pair.trim_ascii();
        let (k, v) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
        (k == name.as_bytes()).then(|| &v[1..])
    })
}

/// The value of `token=` in a query string, percent-decoded.
fn token_in_query(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(percent_decode)
}

/// The query without its `token` pairs (kept raw, in order).
fn strip_token(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && *p != "token" && !p.starts_with("token="))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Which Host header names are this agent's. IP literals always pass: a page can only send
/// one as its own origin, so they cannot carry a rebinding attack; names must be loopback
/// names, this machine's hostname (also with `.local`, for mDNS) or in `allowed_hosts`.
pub struct HostCheck {
    any: bool,
    names: Vec<String>,
    suffixes: Vec<String>,
}

impl HostCheck {
    pub fn new(allowed: &[String], hostname: &str) -> Self {
        let mut names = vec!["localhost".to_owned()];
        let machine = hostname.to_ascii_lowercase();
        if !machine.is_empty() && machine != "localhost" {
            names.push(format!("{machine}.local"));
            names.push(machine);
        }
        let mut suffixes = vec![".localhost".to_owned()];
        let mut any = false;
        for entry in allowed {
            let entry = entry.trim().trim_end_matches('.').to_ascii_lowercase();
            match entry.as_str() {
                "*" => any = true,
                e if e.starts_with('.') => {
                    names.push(e[1..].to_owned());
                    suffixes.push(e.to_owned());
                }
                e => names.push(e.to_owned()),
            }
        }
        Self { any, names, suffixes }
    }

    pub fn allows(&self, host_header: &str) -> bool {
        if self.any {
            return true;
        }
        let host = host_header.trim();
        if let Some(v6) = host.strip_prefix('[') {
            return v6.split(']').next().is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        let name = match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return true;
        }
        self.names.contains(&name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let check = HostCheck::new(&["nas.example.com".into(), ".lan".into()], "nas");
        for ok in [
            "127.0.0.1:8377",
            "localhost",
            "LOCALHOST:1",
            "app.localhost",
            "[::1]:8377",
            "192.168.1.5",
            "nas",
            "nas.local:8377",
            "nas.example.com.",
            "box.lan",
            "lan",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8377", "localhost.evil.example", "nas.example.com.evil", "[evil]", ""]
        {
            assert!(!check.allows(bad), "{bad}");
        }
        assert!(HostCheck::new(&["*".into()], "nas").allows("anything.example"));
    }

    #[test]
    fn query_and_headers() {
        assert_eq!(token_in_query("a=1&token=ab%2Fc&b=2").as_deref(), Some("ab/c"));
        assert_eq!(token_in_query("mytoken=1"), None);
        assert_eq!(strip_token("types=disk.*&token=x&snapshot=true"), "types=disk.*&snapshot=true");
        assert_eq!(strip_token("token=x"), "");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        h.insert(header::COOKIE, HeaderValue::from_static("x=1; diskwatch_token_1=tok; y=2"));
        assert_eq!(bearer(&h), Some(&b"abc"[..]));
        assert_eq!(cookie(&h, "diskwatch_token_1"), Some(&b"tok"[..]));
        assert_eq!(cookie(&h, "diskwatch_token_2"), None);
    }
}
