//! The admin HTTP server of `plexus run`: `/metrics`, `/healthz`, `/readyz`, `/api/status`,
//! `/api/catalog` and the topology page at `/`, on a thread of its own (a single-threaded tokio runtime),
//! so a busy dispatcher never keeps a scrape or a probe waiting, nor the other way round.

use super::board::Board;
use super::{page, prometheus, status};
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// A running admin server; stops when dropped.
pub struct AdminServer {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Why the admin server could not start.
#[derive(Debug, thiserror::Error)]
#[error("admin server: cannot listen on {address}: {source}{hint}")]
pub struct AdminError {
    address: String,
    source: std::io::Error,
    hint: &'static str,
}

impl AdminServer {
    /// Listens on `address` (port 0: any free port, see [`AdminServer::address`]) and serves
    /// `board` until dropped. The port is taken before this returns, so a taken port is an
    /// error here, not later.
    pub fn start(address: &str, board: Board) -> Result<AdminServer, AdminError> {
        let error = |source: std::io::Error| AdminError {
            address: address.to_owned(),
            hint: if source.kind() == std::io::ErrorKind::AddrInUse {
                " (another process has it: set [admin] listen to another address, port 0 for any free port, or \"off\")"
            } else {
                ""
            },
            source,
        };
        let listener = std::net::TcpListener::bind(address).map_err(error)?;
        listener.set_nonblocking(true).map_err(error)?;
        let bound = listener.local_addr().map_err(error)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(error)?;
        let thread = std::thread::Builder::new()
            .name("admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            tracing::error!(%error, "admin server cannot serve");
                            return;
                        }
                    };
                    let served = axum::serve(listener, router(board))
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(error) = served {
                        tracing::error!(%error, "admin server stopped");
                    }
                });
            })
            .map_err(error)?;
        Ok(AdminServer {
            address: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port chosen, when 0 was asked).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn router(board: Board) -> Router {
    let metrics = board.clone();
    let ready = board.clone();
    let state = board.clone();
    let catalog = board.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
                    prometheus::render(&metrics),
                )
            }),
        )
        .route("/", get(|| async { page_response() }))
        .route(
            "/api/catalog",
            get(move || async move {
                let body = serde_json::to_string_pretty(&catalog.view().catalog)
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                match ready.not_ready() {
                    None => (StatusCode::OK, "ready\n".to_owned()),
                    Some(reason) => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {reason}\n"),
                    ),
                }
            }),
        )
        .route(
            "/api/status",
            get(move || async move {
                let body = serde_json::to_string_pretty(&status::of(&state))
                    .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
                ([(header::CONTENT_TYPE, "application/json")], body)
            }),
        )
}

/// The topology page: self-contained, and allowed to fetch nothing but this server.
fn page_response() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        page::HTML,
    )
        .into_response()
}
