//! The CLI's client side: `diskwatch snapshot` and `diskwatch events` talk to
//! a running agent over its HTTP API (a small hyper client, no TLS: the agent
//! listens on plain HTTP, normally on localhost).

mod events;
pub mod sse;
pub mod table;

use std::io::Write;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::Secret;
use crate::model::Snapshot;
pub use events::{follow, history, EventsOptions};

/// The API token the client sends (from `http.auth_token_file`), set once by `main`.
static TOKEN: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();

/// Sends `token` as `Authorization: Bearer` with every request of this process.
pub fn use_token(token: Secret) {
    let _ = TOKEN.set(token);
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad agent URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot reach the agent at {url}: {source} (is diskwatch running? see --url)")]
    Connect { url: String, source: hyper_util::client::legacy::Error },
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("reading the answer of {url}: {source}")]
    Body { url: String, source: hyper::Error },
    #[error("{url} sent JSON that does not parse: {source}")]
    Json { url: String, source: serde_json::Error },
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// The agent URL from `http.listen`: a wildcard address is reached over loopback.
pub fn default_url(listen: SocketAddr) -> String {
    let host = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    format!("http://{host}:{}", listen.port())
}

/// An HTTP client bound to one agent base URL.
pub struct AgentClient {
    base: String,
    http: Client<HttpConnector, Empty<Bytes>>,
}

impl AgentClient {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e: hyper::http::uri::InvalidUri| ClientError::Url {
            url: base.clone(),
            message: e.to_string(),
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ClientError::Url { url: base, message: "expected http://host:port".to_owned() });
        }
        Ok(Self { base, http: Client::builder(TokioExecutor::new()).build_http() })
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// Sends a GET with the given headers; non-2xx answers become [`ClientError::Status`].
    async fn get(&self, path: &str, headers: &[(&str, String)]) -> Result<Response<Incoming>, ClientError> {
        let url = self.url(path);
        let mut request = Request::get(&url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(token) = TOKEN.get() {
            request = request.header("authorization", format!("Bearer {}", token.expose()));
        }
        let request =
            request.body(Empty::new()).map_err(|e| ClientError::Url { url: url.clone(), message: e.to_string() })?;
        let response =
            self.http.request(request).await.map_err(|source| ClientError::Connect { url: url.clone(), source })?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(ClientError::Status { url, status, body: String::from_utf8_lossy(&body).trim().to_owned() });
        }
        Ok(response)
    }

    /// GET a JSON document.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let response = self.get(path, &[("accept", "application/json".to_owned())]).await?;
        let body =
            response.into_body().collect().await.map_err(|source| ClientError::Body { url: url.clone(), source })?;
        serde_json::from_slice(&body.to_bytes()).map_err(|source| ClientError::Json { url, source })
    }
}

/// `diskwatch snapshot`: the topology as tables, or as the API's JSON.
pub async fn snapshot(base: &str, json: bool, out: &mut impl Write) -> Result<(), ClientError> {
    let client = AgentClient::new(base)?;
    if json {
        let value: serde_json::Value = client.get_json("/api/v1/snapshot").await?;
        let text = serde_json::to_string_pretty(&value)
            .map_err(|source| ClientError::Json { url: client.url("/api/v1/snapshot"), source })?;
        writeln!(out, "{text}")?;
    } else {
        let snapshot: Snapshot = client.get_json("/api/v1/snapshot").await?;
        out.write_all(table::render(&snapshot).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_reaches_wildcards_over_loopback() {
        assert_eq!(default_url("0.0.0.0:8377".parse().unwrap()), "http://127.0.0.1:8377");
        assert_eq!(default_url("[::]:80".parse().unwrap()), "http://[::1]:80");
        assert_eq!(default_url("192.168.1.2:1".parse().unwrap()), "http://192.168.1.2:1");
    }

    #[test]
    fn only_http_urls() {
        assert!(AgentClient::new("http://127.0.0.1:8377/").is_ok());
        assert!(matches!(AgentClient::new("https://x:1"), Err(ClientError::Url { .. })));
        assert!(matches!(AgentClient::new("not a url"), Err(ClientError::Url { .. })));
    }
}
