//! Which service a request on a shared listener belongs to: by Host header
//! and path prefix, most specific match first.

use std::sync::Arc;

use crate::service::Service;

#[derive(Debug, Default)]
pub struct ServiceIndex {
    services: Vec<Arc<Service>>,
}

impl ServiceIndex {
    pub fn new(services: Vec<Arc<Service>>) -> Self {
        ServiceIndex { services }
    }

    pub fn services(&self) -> &[Arc<Service>] {
        &self.services
    }

    /// The best match for `host` (without port) and `path`: an exact host
    /// beats a wildcard beats "any host"; then the longest path prefix.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Service>> {
        self.services
            .iter()
            .filter_map(|s| score(s, host, path).map(|sc| (sc, s)))
            .max_by_key(|(sc, _)| *sc)
            .map(|(_, s)| s)
    }
}

impl ServiceIndex {
    /// The certificate for a TLS client asking for `sni`: that of the
    /// service whose hosts match it best (exact, then wildcard, then a
    /// service for any host), by the same rules as [`ServiceIndex::find`]
    /// without the path, which the handshake does not know yet.
    pub(crate) fn certificate(
        &self,
        sni: Option<&str>,
    ) -> Option<Arc<backout_listen::tls::Reloading>> {
        self.services
            .iter()
            .filter(|s| s.tls.is_some())
            .filter_map(|s| host_rank(s, sni).map(|rank| (rank, s)))
            // The first of equals, so the choice does not depend on order
            // of evaluation (services are kept sorted by name).
            .fold(None::<(u8, &Arc<Service>)>, |best, (rank, s)| match best {
                Some((b, _)) if b >= rank => best,
                _ => Some((rank, s)),
            })
            .and_then(|(_, s)| s.tls.clone())
    }
}

/// How well a service's hosts match `host`: 2 exact, 1 wildcard, 0 for a
/// service without hosts; `None` when it does not match.
fn host_rank(service: &Service, host: Option<&str>) -> Option<u8> {
    if service.spec.hosts.is_empty() {
        return Some(0);
    }
    let host = host?;
    service
        .spec
        .hosts
        .iter()
        .filter_map(|h| host_match(h, host))
        .max()
}

fn score(service: &Service, host: Option<&str>, path: &str) -> Option<(u8, usize)> {
    let host_rank = host_rank(service, host)?;
    let prefix_len = match &service.spec.path_prefix {
        None => 0,
        Some(p) => {
            if !prefix_match(p, path) {
                return None;
            }
            p.len()
        }
    };
    Some((host_rank, prefix_len))
}

/// 2 for an exact match, 1 for a `*.example.com` wildcard match.
fn host_match(pattern: &str, host: &str) -> Option<u8> {
    if pattern.eq_ignore_ascii_case(host) {
        return Some(2);
    }
    let suffix = pattern.strip_prefix('*')?;
    let matches = host.len() > suffix.len()
        && host
            .get(host.len() - suffix.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix));
    matches.then_some(1)
}

/// `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
pub(crate) fn prefix_match(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// The host a request names, without port: the URI authority (HTTP/2 and
/// absolute-form requests) or the Host header.
pub(crate) fn request_host<B>(req: &http::Request<B>) -> Option<&str> {
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())?;
    // Strip the port, minding IPv6 literals such as `[::1]:8080`.
    let host = if let Some(rest) = raw.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_host(pattern: &str, host: &str, expected: Option<u8>) {
        assert_eq!(host_match(pattern, host), expected, "{pattern} vs {host}");
    }

    #[test]
    fn hosts() {
        check_host("shop.example.com", "shop.example.com", Some(2));
        check_host("shop.example.com", "SHOP.example.com", Some(2));
        check_host("*.example.com", "shop.example.com", Some(1));
        check_host("*.example.com", "example.com", None);
        check_host("*.example.com", ".example.com", None);
        check_host("shop.example.com", "other.example.com", None);
    }

    fn check_prefix(prefix: &str, path: &str, expected: bool) {
        assert_eq!(prefix_match(prefix, path), expected, "{prefix} vs {path}");
    }

    #[test]
    fn prefixes() {
        check_prefix("/api", "/api", true);
        check_prefix("/api", "/api/", true);
        check_prefix("/api", "/api/v1/x", true);
        check_prefix("/api", "/apix", false);
        check_prefix("/api", "/", false);
    }

    fn check_request_host(uri: &str, host_header: Option<&str>, expected: Option<&str>) {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host_header {
            b = b.header("host", h);
        }
        let req = b.body(()).unwrap();
        assert_eq!(request_host(&req), expected, "{uri} {host_header:?}");
    }

    #[test]
    fn request_hosts() {
        check_request_host("/x", Some("a.example:8080"), Some("a.example"));
        check_request_host("/x", Some("a.example"), Some("a.example"));
        check_request_host("/x", Some("[::1]:8080"), Some("::1"));
        check_request_host("http://b.example:1/x", Some("a.example"), Some("b.example"));
        check_request_host("/x", None, None);
    }
}
