//! uTP (BEP 29) beside TCP: the listener over `librqbit-utp`, whose streams then go through the
//! same connection code as TCP ones (same slots, limits, encryption and access rules).
//!
//! The socket is bound to the TCP listener's address and port number (over UDP), where
//! clients that learnt the seeder from a peer list try uTP first.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use librqbit_utp::{SocketOpts, UtpSocketUdp, UtpStream};
use tokio_util::sync::CancellationToken;

/// A bound uTP socket; dropping it releases the port (the library's tasks stop).
pub struct UtpListener {
    socket: Arc<UtpSocketUdp>,
    cancel: CancellationToken,
    local: SocketAddr,
}

impl std::fmt::Debug for UtpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpListener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl UtpListener {
    /// Binds `addr` (UDP) for up to `max_connections` simultaneous uTP connections (the
    /// seeder's own slots cap them too; this bounds the library's per-connection state).
    pub async fn bind(addr: SocketAddr, max_connections: usize) -> io::Result<Self> {
        let opts = SocketOpts {
            // Messages such as unchoke must not wait for more data to fill a packet.
            disable_nagle: true,
            // Each live connection keeps up to this much received data: a seeder receives
            // only requests, so a small buffer is plenty.
            vsock_rx_bufsize_bytes: NonZeroUsize::new(64 * 1024),
            max_live_vsocks: NonZeroUsize::new(max_connections.saturating_add(16)),
            ..SocketOpts::default()
        };
        let cancel = opts.cancellation_token.clone();
        let socket = UtpSocketUdp::new_udp_with_opts(addr, opts, Default::default())
            .await
            .map_err(|e| io::Error::other(format!("uTP socket on {addr}: {e}")))?;
        let local = socket.bind_addr();
        Ok(Self {
            socket,
            cancel,
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next incoming connection. `Err` only when the socket is gone for good.
    pub(crate) async fn accept(&self) -> io::Result<(UtpStream, SocketAddr)> {
        loop {
            match self.socket.accept().await {
                Ok(stream) => {
                    let peer = stream.remote_addr();
                    return Ok((stream, peer));
                }
                Err(librqbit_utp::Error::DispatcherDead) => {
                    return Err(io::Error::other("the uTP socket stopped"));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "uTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }
}

impl Drop for UtpListener {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
