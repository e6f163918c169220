//! `gavat dashboard`'s own listener: the dashboard's pages alone (no `/v1` API), behind the
//! same `Host` allow-list as the API, on the current actix system until
//! [`DashboardServer::stop`].

use std::net::SocketAddr;

use actix_web::dev::{ServerHandle, Service, ServiceResponse};
use actix_web::{App, HttpServer, web};
use futures::FutureExt;

use crate::api::{AllowedHosts, ApiError, foreign_host_response};

use super::Dashboard;

/// The running listener.
#[derive(Debug)]
pub struct DashboardServer {
    local_addr: SocketAddr,
    handle: ServerHandle,
    dashboard: web::Data<Dashboard>,
    task: actix_rt::task::JoinHandle<std::io::Result<()>>,
}

impl DashboardServer {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Ends the open event streams, stops accepting connections and lets the requests in
    /// progress finish.
    pub async fn stop(self) {
        self.dashboard.close();
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Binds `listen` (port 0 picks a free port) and serves `dashboard`, answering only to
/// loopback names, the bound address and `allowed_hosts`.
pub async fn serve(
    listen: SocketAddr,
    dashboard: web::Data<Dashboard>,
    allowed_hosts: &[String],
) -> Result<DashboardServer, ApiError> {
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "The dashboard listens beyond loopback without TLS; put a TLS proxy in front of it.");
    }
    let hosts = AllowedHosts::new(listen, allowed_hosts);
    let mounted = dashboard.clone();
    let server = HttpServer::new(move || {
        let hosts = hosts.clone();
        App::new()
            .wrap_fn(move |req, service| {
                if let Some(response) = foreign_host_response(&hosts, req.request()) {
                    let (request, _) = req.into_parts();
                    return futures::future::ready(Ok(ServiceResponse::new(request, response))).boxed_local();
                }
                service.call(req).map(|answer| answer.map(ServiceResponse::map_into_boxed_body)).boxed_local()
            })
            .configure(super::configure(mounted.clone()))
            .default_service(web::to(super::routes::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(listen)
    .map_err(|source| ApiError::Bind { addr: listen, source })?;
    let local_addr = server.addrs().first().copied().ok_or(ApiError::Bind {
        addr: listen,
        source: std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address was bound"),
    })?;
    let server = server.run();
    let handle = server.handle();
    let task = actix_rt::spawn(server);
    Ok(DashboardServer { local_addr, handle, dashboard, task })
}
