//! Where a request may come from. A listener without credentials (the
//! proxy's admin API on loopback, a flag server without `--token`) trusts
//! whoever can reach it, and a web page the operator visits can reach it:
//!
//! - **CSRF.** A page can make the browser POST to `127.0.0.1:9900` with
//!   `text/plain` (a "simple" request, sent without asking). So mutations
//!   must say `Content-Type: application/json`, which a page can only send
//!   after a CORS preflight that these listeners never approve, and a
//!   request whose `Origin` is another site is refused.
//! - **DNS rebinding.** A page on `evil.example` whose name then resolves
//!   to `127.0.0.1` is same-origin with itself, so the browser sends and
//!   reads anything; only the `Host` header (`evil.example:9900`) gives it
//!   away. So a listener without credentials answers only the names it was
//!   told (its own address, `localhost`, and `--allow-host` names).

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Method, StatusCode, header};

/// Which `Host` names a listener answers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Hosts {
    /// Any: the listener checks credentials, which a rebinding page does
    /// not have.
    #[default]
    Any,
    /// Only these names (lower case, without port).
    Only(Vec<String>),
}

impl Hosts {
    /// The names a listener bound to `bound` answers to: its address,
    /// `localhost` when that is loopback, and `extra`.
    pub fn local(bound: SocketAddr, extra: &[String]) -> Hosts {
        let mut names: Vec<String> = extra.iter().map(|h| name_of(h)).collect();
        let ip = bound.ip();
        if !ip.is_unspecified() {
            names.push(ip.to_string());
        }
        if ip.is_loopback() || ip.is_unspecified() {
            names.extend(["localhost", "127.0.0.1", "::1"].map(String::from));
        }
        names.sort();
        names.dedup();
        Hosts::Only(names)
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// The name in a `Host` value or an origin's authority: lower case,
/// without port or IPv6 brackets.
fn name_of(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    if a.parse::<IpAddr>().is_ok() {
        return a;
    }
    a.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(a.clone(), |(name, _)| name.to_string())
}

/// A request refused before it reaches the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: String) -> Result<(), Refusal> {
    Err(Refusal { status, message })
}

/// Checks `Host`, `Origin` and, on a mutation, `Content-Type`.
pub fn check(method: &Method, headers: &HeaderMap, hosts: &Hosts) -> Result<(), Refusal> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !hosts.allows(&name_of(host)) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server does not answer to the host {host:?}; if that is its name, start it with `--allow-host {}`",
                name_of(host)
            ),
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        // Same-origin requests carry the listener's own authority; a page
        // elsewhere (or a sandboxed one, `null`) does not.
        let origin = origin.to_str().unwrap_or("null");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority.is_none_or(|a| !a.eq_ignore_ascii_case(host)) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "requests from the web page at {origin:?} are refused: this API is for tools, not for other sites"
                ),
            );
        }
    }
    let mutation = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if mutation {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !json {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "a {method} must send `Content-Type: application/json` (with curl: -H 'content-type: application/json'), also without a body"
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check_one(method: Method, headers: &[(&'static str, &str)], hosts: &Hosts) -> Option<u16> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        check(&method, &map, hosts).err().map(|r| r.status.as_u16())
    }

    #[test]
    fn names() {
        assert_eq!(name_of("LocalHost:9900"), "localhost");
        assert_eq!(name_of("[::1]:9900"), "::1");
        assert_eq!(name_of("::1"), "::1");
        assert_eq!(name_of("10.0.0.5"), "10.0.0.5");
        assert_eq!(name_of("admin.internal"), "admin.internal");
    }

    #[test]
    fn browsers_and_rebinding_are_refused() {
        let local = Hosts::local(
            "127.0.0.1:9900".parse().unwrap(),
            &["proxy.internal".into()],
        );
        let json = ("content-type", "application/json");
        let host = ("host", "127.0.0.1:9900");
        // Tools.
        assert_eq!(check_one(Method::GET, &[host], &local), None);
        assert_eq!(check_one(Method::POST, &[host, json], &local), None);
        assert_eq!(
            check_one(
                Method::PUT,
                &[
                    ("host", "localhost:9900"),
                    ("content-type", "application/json; charset=utf-8")
                ],
                &local
            ),
            None
        );
        assert_eq!(
            check_one(Method::GET, &[("host", "proxy.internal:9900")], &local),
            None
        );
        assert_eq!(check_one(Method::DELETE, &[host], &local), None);
        // A page elsewhere, as a browser sends it.
        assert_eq!(
            check_one(
                Method::POST,
                &[host, ("content-type", "text/plain")],
                &local
            ),
            Some(415)
        );
        assert_eq!(check_one(Method::POST, &[host], &local), Some(415));
        assert_eq!(
            check_one(
                Method::POST,
                &[host, json, ("origin", "http://evil.example")],
                &local
            ),
            Some(403)
        );
        assert_eq!(
            check_one(Method::GET, &[host, ("origin", "null")], &local),
            Some(403)
        );
        // Same-origin is fine.
        assert_eq!(
            check_one(
                Method::POST,
                &[host, json, ("origin", "http://127.0.0.1:9900")],
                &local
            ),
            None
        );
        // After DNS rebinding: same-origin with itself, but the Host gives it away.
        let rebound = [
            ("host", "evil.example:9900"),
            ("origin", "http://evil.example:9900"),
            json,
        ];
        assert_eq!(check_one(Method::POST, &rebound, &local), Some(421));
        // A listener with credentials answers any name.
        assert_eq!(check_one(Method::POST, &rebound, &Hosts::Any), None);
    }
}
