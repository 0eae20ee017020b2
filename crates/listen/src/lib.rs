//! What every control listener of backout shares: the control-plane API
//! (`backout up`), the proxy's admin API and the standalone flag server.
//! They live in different crates (`server`, `proxy`), and an attacker
//! tries all three the same way, so they defend themselves the same way.
//!
//! - [`serve`]: the accept loop, with [`Limits`] on time, connections and
//!   body size, and errors in the listener's [`ErrorStyle`].
//! - [`origin`]: the checks that keep web pages out (CSRF, DNS
//!   rebinding): `Host`, `Origin`, `Content-Type` on mutations.
//! - [`tls`]: HTTPS with a certificate reloaded when its files change.
//! - [`credentials`]: reading a token out of a request, fixed token sets,
//!   and counting and logging the attempts that fail.

pub mod credentials;
pub mod errors;
pub mod limits;
pub mod origin;
pub mod serve;
pub mod tls;

pub use errors::ErrorStyle;
pub use limits::Limits;
pub use origin::Hosts;
pub use serve::{Settings, serve};
pub use tls::{Tls, TlsFiles};

/// The client's address, in each request's extensions when the listener
/// knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// The client's address of a request, if the listener recorded it.
pub fn peer(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions.get::<Peer>().map(|p| p.0)
}
