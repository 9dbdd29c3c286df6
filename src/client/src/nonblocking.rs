//! The same client for async code on tokio (feature `async`): HTTP/1.1 over tokio-rustls with
//! the caller's certificate, idle connections kept for reuse, the same typed calls and errors
//! as [`Client`](crate::Client), and the same rule on retries (a read is retried once when its
//! connection failed before an answer; a signature or a change is sent once).
//!
//! ```no_run
//! # async fn f() -> Result<(), signet_client::Error> {
//! use signet_client::{Client, Identity, InputType, SignRequest};
//! let identity = Identity::from_pem(
//!     &std::fs::read("app.crt.pem").unwrap(),
//!     &std::fs::read("app.key.pem").unwrap(),
//! )?;
//! let client = Client::builder("https://signet.example:8443")
//!     .root_pem(&std::fs::read("root.pem").unwrap())?
//!     .identity(identity)
//!     .build_async()?;
//! let signature = client
//!     .sign("app", &SignRequest::new(b"hello", InputType::Message))
//!     .await?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{header, Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::{
    path_segment, problem, signature, transport, Builder, Error, Key, KeySummary, Keys, Result,
    Settings, SignRequest, Signature, SignatureAnswer, UsableKey,
};

/// Idle connections kept at most (as the blocking client keeps).
const MAX_IDLE: usize = 64;

/// Handshakes in progress at once: many calls starting together wait for a few new connections
/// (or for one another's, once free) rather than open one each at the same moment, which the
/// server refuses beyond `server.max_handshakes_per_source` (8 by default).
const MAX_CONNECTING: usize = 4;

/// A connection to one Signet server for async code; it must be used inside a tokio runtime.
/// Cheap to clone; clones share the idle connections.
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    /// `host:port` as the URL gives them (the `Host` header).
    authority: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    idle: Mutex<Vec<Connection>>,
    connecting: tokio::sync::Semaphore,
}

/// An open connection: where requests go, and how it ended once it has. A request on a
/// connection that fails may only learn "canceled" (hyper hands the cause to the connection);
/// the cause — in TLS 1.3 the server's refusal of the client certificate arrives as an alert
/// after the client's side of the handshake is done, so on the first request — is read here.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    ended: tokio::sync::oneshot::Receiver<hyper::Error>,
}

/// How long a failed request waits for its connection's own error.
const CAUSE_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncClient")
            .field("url", &self.inner.settings.url)
            .finish()
    }
}

impl Builder {
    /// The client for async code ([`AsyncClient`]).
    pub fn build_async(self) -> Result<AsyncClient> {
        let (config, settings) = self.tls()?;
        let authority = settings
            .url
            .strip_prefix("https://")
            .unwrap_or_default()
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let (host, port) = split_authority(&authority)
            .ok_or_else(|| Error::Config(format!("no host in {}", settings.url)))?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| Error::Config(format!("{host:?} is not a server name: {e}")))?;
        Ok(AsyncClient {
            inner: Arc::new(Inner {
                settings,
                authority,
                host,
                port,
                server_name,
                tls: TlsConnector::from(Arc::new(config)),
                idle: Mutex::new(Vec::new()),
                connecting: tokio::sync::Semaphore::new(MAX_CONNECTING),
            }),
        })
    }
}

/// `host[:port]` or `[v6][:port]`, the port 443 when absent.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Why a call failed: before an answer on a connection (a read may try again), or otherwise.
enum Failure {
    Connection(Error),
    Final(Error),
}

impl AsyncClient {
    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.inner.settings.url
    }

    /// `GET path`, decoded; retried once if the connection failed.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let answer = match self.send(Method::GET, path, None).await {
            Err(Failure::Connection(_)) => self.send(Method::GET, path, None).await,
            other => other,
        };
        decode(path, answer)
    }

    /// `POST path` with a JSON body, decoded; sent once.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let answer = self.send(Method::POST, path, Some(body.to_string())).await;
        decode(path, answer)
    }

    /// Liveness (`GET /healthz`): the server is up and accepts this client.
    pub async fn health(&self) -> Result<()> {
        self.get::<Value>("/healthz").await.map(drop)
    }

    /// Every key (`keys:read`).
    pub async fn keys(&self) -> Result<Vec<KeySummary>> {
        Ok(self.get::<Keys<KeySummary>>("/v1/keys").await?.keys)
    }

    /// The keys this client may read, verify or sign with, with their versions' public keys.
    pub async fn usable_keys(&self) -> Result<Vec<UsableKey>> {
        Ok(self.get::<Keys<UsableKey>>("/v1/me/keys").await?.keys)
    }

    /// One key and its versions.
    pub async fn key(&self, name: &str) -> Result<Key> {
        self.get(&format!("/v1/keys/{}", path_segment(name)?)).await
    }

    /// Creates a key (`keys:create`).
    pub async fn create_key(&self, name: &str, spec: &str) -> Result<Key> {
        self.post("/v1/keys", &serde_json::json!({"name": name, "spec": spec}))
            .await
    }

    /// Signs with the key `name`.
    pub async fn sign(&self, name: &str, request: &SignRequest<'_>) -> Result<Signature> {
        let path = format!("/v1/keys/{}/sign", path_segment(name)?);
        let answer: SignatureAnswer = self.post(&path, &request.body()).await?;
        signature(path, answer)
    }

    /// One request and its whole answer (status, body), within the call timeout.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> std::result::Result<(u16, Bytes), Failure> {
        let settings = &self.inner.settings;
        match tokio::time::timeout(settings.timeout, self.exchange(method, path, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(Failure::Final(Error::Unreachable {
                url: settings.url.clone(),
                message: format!("no answer within {:?}", settings.timeout),
            })),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
    ) -> std::result::Result<(u16, Bytes), Failure> {
        let inner = &self.inner;
        let (Connection { mut sender, ended }, handshake) =
            self.connection().await.map_err(Failure::Connection)?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &inner.authority)
            .header(header::USER_AGENT, &inner.settings.user_agent);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| Failure::Final(Error::Config(format!("bad request {path:?}: {e}"))))?;
        let url = &inner.settings.url;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => return Err(Failure::Connection(cause(url, e, ended).await)),
        };
        // An answer: the server has finished its side of the handshake.
        drop(handshake);
        let status = response.status().as_u16();
        let bytes = match response.into_body().collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => return Err(Failure::Final(cause(url, e, ended).await)),
        };
        self.keep(Connection { sender, ended });
        Ok((status, bytes))
    }

    /// An idle connection that is still open, or a new one with its handshake slot. In TLS 1.3
    /// the client's side of the handshake ends before the server's (which still checks the
    /// client's certificate): the slot is held until the first answer, so that the server
    /// never sees more than [`MAX_CONNECTING`] of this client's handshakes at once.
    async fn connection(&self) -> Result<(Connection, Option<tokio::sync::SemaphorePermit<'_>>)> {
        if let Some(connection) = self.reuse().await {
            return Ok((connection, None));
        }
        let inner = &self.inner;
        let slot = inner
            .connecting
            .acquire()
            .await
            .map_err(|_| Error::Config("the client's connection slots are closed".into()))?;
        // Waiting for the slot, another call may have put its connection back.
        if let Some(connection) = self.reuse().await {
            return Ok((connection, None));
        }
        let url = &inner.settings.url;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((inner.host.as_str(), inner.port))
                .await
                .map_err(|e| transport(url, &e))?;
            // Signatures are small requests answered at once: no Nagle delay.
            let _ = tcp.set_nodelay(true);
            let tls = inner
                .tls
                .connect(inner.server_name.clone(), tcp)
                .await
                .map_err(|e| transport(url, &e))?;
            hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| transport(url, &e))
        };
        let (sender, connection) = tokio::time::timeout(inner.settings.connect_timeout, connect)
            .await
            .map_err(|_| Error::Unreachable {
                url: url.clone(),
                message: format!("not connected within {:?}", inner.settings.connect_timeout),
            })??;
        // The connection runs until the server or the last sender closes it; its error, if it
        // ends with one, is kept for the request that failed with it.
        let (failed, ended) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                let _ = failed.send(e);
            }
        });
        Ok((Connection { sender, ended }, Some(slot)))
    }

    /// An idle connection that is still open.
    async fn reuse(&self) -> Option<Connection> {
        loop {
            let idle = self.idle().pop();
            let mut connection = idle?;
            if !connection.sender.is_closed() && connection.sender.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// Keeps a connection for the next call, unless enough are kept.
    fn keep(&self, connection: Connection) {
        let mut idle = self.idle();
        if !connection.sender.is_closed() && idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic elsewhere cannot leave the list half-changed: take it as it is.
        self.inner
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The error of a request that failed with `error` on a connection: the connection's own
/// error when it ended with one (a TLS alert, a reset), else the request's.
async fn cause(
    url: &str,
    error: hyper::Error,
    ended: tokio::sync::oneshot::Receiver<hyper::Error>,
) -> Error {
    match tokio::time::timeout(CAUSE_WAIT, ended).await {
        Ok(Ok(connection)) => transport(url, &connection),
        _ => transport(url, &error),
    }
}

/// The answer decoded as `T`, or the problem it is.
fn decode<T: DeserializeOwned>(
    path: &str,
    answer: std::result::Result<(u16, Bytes), Failure>,
) -> Result<T> {
    let (status, body) = match answer {
        Ok(a) => a,
        Err(Failure::Connection(e) | Failure::Final(e)) => return Err(e),
    };
    if status >= 400 {
        return Err(problem(status, &String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| Error::Decode {
        path: path.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::split_authority;

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("localhost:8443"),
            Some(("localhost".into(), 8443))
        );
        assert_eq!(
            split_authority("signet.example"),
            Some(("signet.example".into(), 443))
        );
        assert_eq!(split_authority("[::1]:9443"), Some(("::1".into(), 9443)));
        assert_eq!(split_authority(":8443"), None);
        assert_eq!(split_authority("host:port"), None);
    }
}
