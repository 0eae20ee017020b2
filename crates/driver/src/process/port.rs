//! Picking replica ports: from the spec's range, or any free port.
//!
//! A port counts as free when a listener could bind it on 127.0.0.1 with
//! `SO_REUSEADDR` (as servers do, so connections of a previous incarnation
//! in TIME_WAIT do not block it) and no replica of this driver holds it.
//! Another program can still take it between the check and the replica's
//! bind; the replica then exits at start and the error shows its log.

use std::net::{Ipv4Addr, SocketAddr};

use super::{DeployRequest, DriverError, ErrorKind, Shared};

/// Tries of an OS-chosen port before giving up (each one collided with a
/// port the driver holds).
const ANY_PORT_TRIES: usize = 16;

impl Shared {
    /// A port for a replica of `req`: `keep` when it is still free (a
    /// restart keeps its endpoint), else a new one, which is reserved until
    /// [`release_port`](Shared::release_port).
    pub(super) fn reserve_port(
        &self,
        req: &DeployRequest,
        keep: Option<u16>,
    ) -> Result<u16, DriverError> {
        if let Some(p) = keep
            && bindable(p)
        {
            return Ok(p);
        }
        let mut state = self.lock();
        let port = match &self.spec.ports {
            Some(range) => range
                .iter()
                .find(|p| !state.ports.contains(p) && bindable(*p))
                .ok_or_else(|| {
                    self.error(
                        &req.service,
                        &req.version,
                        ErrorKind::Io,
                        format!("no free port left in {range}"),
                        "widen `driver.process.ports`, or tear down versions that are no longer needed",
                    )
                })?,
            None => (0..ANY_PORT_TRIES)
                .filter_map(|_| any_port())
                .find(|p| !state.ports.contains(p))
                .ok_or_else(|| {
                    self.error(
                        &req.service,
                        &req.version,
                        ErrorKind::Io,
                        "the system has no free loopback port to give",
                        "set `driver.process.ports` to a range that is free",
                    )
                })?,
        };
        state.ports.insert(port);
        Ok(port)
    }

    pub(super) fn release_port(&self, port: u16) {
        self.lock().ports.remove(&port);
    }
}

fn bindable(port: u16) -> bool {
    let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
        return false;
    };
    socket.set_reuseaddr(true).is_ok()
        && socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .is_ok()
}

fn any_port() -> Option<u16> {
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.set_reuseaddr(true).ok()?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .ok()?;
    socket.local_addr().ok().map(|a| a.port())
}
