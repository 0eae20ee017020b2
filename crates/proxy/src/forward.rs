//! Forwarding one request: route it, admit it to a pool, send it to an
//! endpoint and stream the answer back, attributing every failure to the
//! side that caused it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use backout_routing::{RequestView, StickyKey, Target, cookie_value};
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;

use crate::body::{RequestBody, ResponseBody};
use crate::clock;
use crate::completion::Completion;
use crate::outcome::{Outcome, Rejection, UpstreamFailure};
use crate::pool::{Pool, Refusal};
use crate::registry::SharedIndex;
use crate::router::{prefix_match, request_host};
use crate::service::Service;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_BACKOUT_ERROR: HeaderName = HeaderName::from_static("x-backout-error");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What every request on one client connection shares, built once when
/// the connection is accepted: the services on its listener and the
/// client's address, already formatted for `X-Forwarded-For`.
#[derive(Debug)]
pub(crate) struct Peer {
    /// The listener's services, looked up per request: they may change.
    pub(crate) index: SharedIndex,
    pub(crate) addr: SocketAddr,
    /// `addr`'s IP as text. Formatting an address costs more than the rest
    /// of the header rewriting, so it is done once per connection.
    ip: HeaderValue,
    /// Set when the client connected over TLS.
    pub(crate) tls: Option<TlsConn>,
}

/// What a TLS connection was set up with.
#[derive(Debug)]
pub(crate) struct TlsConn {
    /// The files of the certificate the handshake served (by SNI, or the
    /// default).
    pub(crate) served: Option<backout_listen::TlsFiles>,
}

impl Peer {
    pub(crate) fn new(index: SharedIndex, addr: SocketAddr, tls: Option<TlsConn>) -> Self {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer {
            index,
            addr,
            ip,
            tls,
        }
    }
}

/// Entry point for every request on a data-plane listener.
pub(crate) async fn handle(
    peer: Arc<Peer>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    one_authority(&mut req);
    let host = request_host(&req);
    let Some(service) = peer.index.load().find(host, req.uri().path()).cloned() else {
        let msg = format!(
            "backout: no service matches host {:?} and path {:?}\n",
            host.unwrap_or(""),
            req.uri().path()
        );
        return Ok(local(StatusCode::NOT_FOUND, "no-service", msg));
    };
    if let Some(refused) = wrong_channel(&service, &req, &peer) {
        return Ok(refused);
    }
    Ok(forward(&service, req, &peer).await)
}

/// A request that must not be served on this connection. Plain HTTP for a
/// service with a certificate is redirected to HTTPS (308 keeps the
/// method and body), unless it comes from a trusted proxy, which has
/// terminated TLS itself. Over TLS, a request for a service whose
/// certificate is not the one this connection was set up with is answered
/// 421 (RFC 9110 §15.5.20): the client then opens a connection for that
/// name, which gets the right certificate, and one service's certificate
/// cannot carry requests for another (domain fronting).
fn wrong_channel<B>(
    service: &Service,
    req: &Request<B>,
    peer: &Peer,
) -> Option<Response<ResponseBody>> {
    let own = service.tls.as_ref()?;
    match &peer.tls {
        Some(conn) if conn.served.as_ref() == Some(own.files()) => None,
        Some(_) => Some(local(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            format!(
                "backout: this connection's certificate is not {}'s; connect again with the request's host name as the TLS server name\n",
                service.name
            ),
        )),
        None if trusts(&service.spec.trusted_proxies, peer.addr.ip()) => None,
        None => {
            let target = req
                .uri()
                .path_and_query()
                .map_or("/", http::uri::PathAndQuery::as_str);
            let location = request_host_value(req.uri(), req.headers())
                .and_then(|h| h.to_str().ok().map(|h| format!("https://{h}{target}")))
                .and_then(|l| HeaderValue::from_str(&l).ok());
            let body = format!("backout: {} is served over HTTPS only\n", service.name);
            // Never forwarded in the clear, even when no redirect can be
            // formed (no Host).
            Some(match location {
                Some(l) => {
                    let mut resp = local(StatusCode::PERMANENT_REDIRECT, "https-only", body);
                    resp.headers_mut().insert(header::LOCATION, l);
                    resp
                }
                None => local(StatusCode::BAD_REQUEST, "https-only", body),
            })
        }
    }
}

/// Makes the request's `Host` header its target's authority when the
/// target has one (absolute form, `GET http://b.example/`, or HTTP/2's
/// `:authority`), as RFC 9112 tells a proxy to: the service is chosen and
/// the request forwarded by the same name, so `Host: a.example` cannot
/// reach service b with a's name or the other way round.
fn one_authority<B>(req: &mut Request<B>) {
    let Some(authority) = req.uri().authority() else {
        return;
    };
    // Userinfo (`user@host`) is no part of a Host header.
    let host = authority.as_str().rsplit('@').next().unwrap_or_default();
    match HeaderValue::from_str(host) {
        Ok(v) => {
            req.headers_mut().insert(header::HOST, v);
        }
        Err(_) => {
            req.headers_mut().remove(header::HOST);
        }
    }
}

/// Whether a client at `ip` is one of the service's trusted proxies.
fn trusts(trusted: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`.
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Headers and cookies as the routing core sees them.
struct View<'a>(&'a HeaderMap);

impl RequestView for View<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.0.get(name)?.to_str().ok()
    }
    fn cookie(&self, name: &str) -> Option<&str> {
        cookie_in(self.0, name)
    }
}

/// A cookie's value; HTTP/2 clients may split cookies over several headers.
fn cookie_in<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| cookie_value(v, name))
}

async fn forward(
    service: &Service,
    mut req: Request<Incoming>,
    peer: &Peer,
) -> Response<ResponseBody> {
    let started = clock::instant();
    let now_ms = clock::mono_ms_at(started);

    // Route: one atomic load; the chosen pool is kept for this request's
    // whole life whatever switches happen meanwhile.
    let (pool, target, stable) = {
        let route = service.route_guard();
        let key: Option<&[u8]> = match &service.sticky {
            None => None,
            Some(StickyKey::Header(h)) => req.headers().get(h.as_str()).map(HeaderValue::as_bytes),
            Some(StickyKey::Cookie(c)) => cookie_in(req.headers(), c).map(str::as_bytes),
            Some(StickyKey::ClientAddr) => Some(peer.ip.as_bytes()),
        };
        let (Some(table), Some(stable)) = (&route.table, &route.stable) else {
            return local(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-release",
                format!(
                    "backout: service {} has no release deployed yet\n",
                    service.name
                ),
            );
        };
        let decision = table.decide(
            &View(req.headers()),
            key,
            fastrand::u16(0..backout_routing::BUCKETS),
        );
        let pool = route.pool(decision.target).unwrap_or(stable);
        (Arc::clone(pool), decision.target, Arc::clone(stable))
    };

    // A canary that cannot take traffic (no ready endpoint, breaker open)
    // hands its share to stable rather than failing users.
    let pool = if target == Target::Canary
        && !Arc::ptr_eq(&pool, &stable)
        && (!pool.has_available(now_ms) || pool.breaker_open(now_ms))
    {
        service.fallback.inc();
        stable
    } else {
        pool
    };

    pool.metrics.started();
    let admitted = match pool.admit(now_ms) {
        Ok(a) => a,
        Err(refusal) => return refuse(service, &pool, refusal, started),
    };

    // Build the upstream request.
    let upgrade = is_upgrade(&req);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let original_host = request_host_value(&parts.uri, &parts.headers);
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let trusted = trusts(&service.spec.trusted_proxies, peer.addr.ip());
    add_forwarded(
        &mut parts.headers,
        &peer.ip,
        original_host.as_ref(),
        trusted,
        peer.tls.is_some(),
    );
    let uri = match upstream_uri(service, &parts.uri) {
        Ok(u) => u,
        Err(e) => {
            admitted.abandon();
            pool.metrics
                .finished(&client_fault(started), clock::unix_ms());
            return local(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("backout: cannot forward this request target: {e}\n"),
            );
        }
    };
    parts.uri = uri;
    match pool.spec.protocol {
        backout_spec::Protocol::Http1 => {
            parts.version = Version::HTTP_11;
            if !parts.headers.contains_key(header::HOST) {
                // An HTTP/1.0 client may send no Host; HTTP/1.1 needs one,
                // and the endpoint's own is the one it would expect.
                let host = original_host
                    .or_else(|| HeaderValue::from_str(admitted.endpoint.uri_base.as_str()).ok());
                if let Some(h) = host {
                    parts.headers.insert(header::HOST, h);
                }
            }
        }
        backout_spec::Protocol::H2c => {
            // The authority travels as :authority; a Host header would
            // contradict it.
            parts.version = Version::HTTP_2;
            parts.headers.remove(header::HOST);
        }
    }
    let (body, broken) = RequestBody::new(body);
    let upstream_req = Request::from_parts(parts, body);

    let timeout = service.spec.timeouts.request.get();
    let result = tokio::time::timeout(timeout, pool.send(&admitted.endpoint, upstream_req)).await;
    let endpoint = Arc::clone(&admitted.endpoint);
    let (mut resp, lent) = match result {
        Ok(Ok(sent)) => sent,
        Ok(Err(e)) if broken.load(Ordering::Relaxed) => {
            // The client's body broke; whatever the upstream made of it is
            // not the version's fault.
            tracing::debug!(error = %e, "request body from client failed");
            admitted.abandon();
            pool.metrics
                .finished(&client_fault(started), clock::unix_ms());
            return local(
                StatusCode::BAD_REQUEST,
                "downstream",
                "backout: the request body was cut short\n".to_string(),
            );
        }
        Ok(Err(e)) => {
            let kind = e.failure();
            return upstream_failed(
                service,
                admitted,
                kind,
                started,
                &format!("{e}: {}", root_cause(&e)),
                &endpoint.label,
            );
        }
        Err(_) => {
            let msg = format!(
                "no response headers within {}",
                service.spec.timeouts.request
            );
            return upstream_failed(
                service,
                admitted,
                UpstreamFailure::Timeout,
                started,
                &msg,
                &endpoint.label,
            );
        }
    };

    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(down) = downstream_upgrade
    {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(down, up) {
                Ok((down, up)) => {
                    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
                        tracing::debug!(error = %e, "upgraded connection ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(
        &mut parts.headers,
        status == StatusCode::SWITCHING_PROTOCOLS,
    );
    tag_version(service, &pool.name, &mut parts.headers);
    let mut completion = Completion::new(admitted, started, status.as_u16(), lent);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The tunnel lives on outside the request; the request itself is
        // done, and its upstream connection now belongs to the tunnel.
        drop(completion.keep_connection());
        completion.succeeded();
        drop(body);
        return Response::from_parts(parts, ResponseBody::empty());
    }
    Response::from_parts(
        parts,
        ResponseBody::Upstream {
            inner: body,
            completion: Some(completion),
        },
    )
}

fn client_fault(started: std::time::Instant) -> Outcome {
    Outcome {
        status: Some(400),
        upstream_failure: None,
        downstream_failure: true,
        rejection: None,
        latency_us: Some(started.elapsed().as_micros() as u64),
    }
}

fn refuse(
    service: &Service,
    pool: &Pool,
    refusal: Refusal,
    started: std::time::Instant,
) -> Response<ResponseBody> {
    let (rejection, why) = match refusal {
        Refusal::Bulkhead => (
            Rejection::Bulkhead,
            format!(
                "bulkhead full: version {} already has {} requests in flight (max_concurrent {})",
                pool.name,
                pool.in_flight(),
                pool.spec.bulkhead.max_concurrent
            ),
        ),
        Refusal::Breaker => (
            Rejection::Breaker,
            format!(
                "circuit breaker open for version {}; retry later",
                pool.name
            ),
        ),
        Refusal::NoEndpoint => (
            Rejection::NoEndpoint,
            format!("no endpoint of version {} is ready", pool.name),
        ),
    };
    pool.metrics.finished(
        &Outcome {
            status: Some(503),
            upstream_failure: None,
            downstream_failure: false,
            rejection: Some(rejection),
            latency_us: Some(started.elapsed().as_micros() as u64),
        },
        clock::unix_ms(),
    );
    let mut resp = local(
        StatusCode::SERVICE_UNAVAILABLE,
        rejection.as_str(),
        format!("backout: service {}: {why}\n", service.name),
    );
    tag_version(service, &pool.name, resp.headers_mut());
    resp
}

fn upstream_failed(
    service: &Service,
    admitted: crate::pool::Admitted,
    kind: UpstreamFailure,
    started: std::time::Instant,
    detail: &str,
    endpoint: &str,
) -> Response<ResponseBody> {
    let pool = Arc::clone(&admitted.pool);
    admitted.finish(clock::mono_ms(), true);
    let status = match kind {
        UpstreamFailure::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    pool.metrics.finished(
        &Outcome {
            status: Some(status.as_u16()),
            upstream_failure: Some(kind),
            downstream_failure: false,
            rejection: None,
            latency_us: Some(started.elapsed().as_micros() as u64),
        },
        clock::unix_ms(),
    );
    let mut resp = local(
        status,
        &format!("upstream-{}", kind.as_str()),
        format!(
            "backout: upstream failure ({}) in service {}, version {}, endpoint {endpoint}: {detail}\n",
            kind.as_str(),
            service.name,
            pool.name
        ),
    );
    tag_version(service, &pool.name, resp.headers_mut());
    resp
}

/// Names the version that served the request, if the service asks for it.
fn tag_version(service: &Service, version: &str, headers: &mut HeaderMap) {
    if let Some(h) = &service.version_header
        && let Ok(v) = HeaderValue::from_str(version)
    {
        headers.insert(h.clone(), v);
    }
}

/// A response the proxy writes itself, with a header naming the reason so
/// clients and tests can tell it from the application's own.
pub(crate) fn local(status: StatusCode, reason: &str, body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        h.insert(X_BACKOUT_ERROR.clone(), v);
    }
    resp
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including any the
/// `Connection` header names. An upgrade keeps `Connection: upgrade` and
/// `Upgrade`, which must reach the other side.
///
/// One pass over the names that are present, rather than a hash lookup for
/// every name that might be: a request usually has a handful of headers and
/// none of these, and this runs twice per request.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let mut doomed: SmallVec<[HeaderName; 4]> = SmallVec::new();
    {
        // The names `Connection` lists, parsed once (nearly always a single
        // short token, so no allocation).
        let named: SmallVec<[&str; 4]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        for name in headers.keys() {
            let kept_for_upgrade =
                upgrade && (name == header::UPGRADE || name == header::CONNECTION);
            let hop =
                is_hop_by_hop(name) || named.iter().any(|t| name.as_str().eq_ignore_ascii_case(t));
            if hop && !kept_for_upgrade {
                doomed.push(name.clone());
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The hop-by-hop headers every proxy removes, whether or not `Connection`
/// names them.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
}

/// Sets `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
/// From a `trusted` proxy in front, its values stand and the client's
/// address is appended to `X-Forwarded-For`; from anyone else they are
/// replaced (and `Forwarded` dropped), so a client cannot pass for another
/// address, scheme or host. `client_ip` is the client's address as a header
/// value, formatted once per connection.
fn add_forwarded(
    headers: &mut HeaderMap,
    client_ip: &HeaderValue,
    host: Option<&HeaderValue>,
    trusted: bool,
    tls: bool,
) {
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    if !trusted {
        headers.insert(&X_FORWARDED_FOR, client_ip.clone());
        headers.insert(&X_FORWARDED_PROTO, proto);
        match host {
            Some(v) => {
                headers.insert(&X_FORWARDED_HOST, v.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
        headers.remove(&FORWARDED);
        return;
    }
    // One lookup per header: `entry` finds the slot it then fills.
    match headers.entry(&X_FORWARDED_FOR) {
        Entry::Vacant(slot) => {
            slot.insert(client_ip.clone());
        }
        Entry::Occupied(mut prior) => {
            let joined = match (prior.get().to_str(), client_ip.to_str()) {
                (Ok(p), Ok(ip)) if !p.trim().is_empty() => {
                    HeaderValue::from_str(&format!("{p}, {ip}")).ok()
                }
                _ => Some(client_ip.clone()),
            };
            if let Some(v) = joined {
                prior.insert(v);
            }
        }
    }
    // Keep a scheme set by a TLS terminator in front of us.
    headers.entry(&X_FORWARDED_PROTO).or_insert(proto);
    if let Some(v) = host {
        headers
            .entry(&X_FORWARDED_HOST)
            .or_insert_with(|| v.clone());
    }
}

/// The `Host` the client addressed, port included, as sent upstream: the
/// Host header (a cheap clone) or, for HTTP/2 clients, the authority.
fn request_host_value(uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    match uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => headers.get(header::HOST).cloned(),
    }
}

/// The request target sent upstream: the request's path and query, with
/// the service's prefix removed when it asks for that. HTTP/1.1 sends it in
/// origin form as it is; the pool adds the endpoint's authority for
/// HTTP/2. The common case copies no bytes.
fn upstream_uri(service: &Service, uri: &Uri) -> Result<Uri, http::Error> {
    let pq = match (&service.spec.path_prefix, service.spec.strip_prefix) {
        (Some(prefix), true) if prefix_match(prefix, uri.path()) => {
            let full = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let rest = &full[prefix.len()..];
            let stripped = if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            };
            http::uri::PathAndQuery::try_from(stripped)?
        }
        _ => uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    };
    Ok(Uri::from(pq))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn check_strip(input: &[(&str, &str)], upgrade: bool, expected: &[&str]) {
        let mut h = headers(input);
        strip_hop_by_hop(&mut h, upgrade);
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, expected, "{input:?}");
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        check_strip(
            &[
                ("connection", "keep-alive"),
                ("keep-alive", "timeout=5"),
                ("x-a", "1"),
            ],
            false,
            &["x-a"],
        );
        check_strip(
            &[
                ("connection", "x-secret, close"),
                ("x-secret", "s"),
                ("x-a", "1"),
            ],
            false,
            &["x-a"],
        );
        check_strip(
            &[
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("upgrade", "h2c"),
            ],
            false,
            &[],
        );
        check_strip(
            &[("proxy-authorization", "x"), ("proxy-connection", "y")],
            false,
            &[],
        );
        check_strip(
            &[
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "k"),
            ],
            true,
            &["connection", "sec-websocket-key", "upgrade"],
        );
    }

    #[test]
    fn forwarded_headers() {
        let client = HeaderValue::from_static("10.0.0.7");
        let host = HeaderValue::from_static("shop.example:8080");
        let mut h = headers(&[]);
        add_forwarded(&mut h, &client, Some(&host), false, false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example:8080");
        let claimed = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "admin.example"),
            ("forwarded", "for=1.2.3.4"),
        ];
        // From a trusted proxy in front: its values stand.
        let mut h = headers(&claimed);
        add_forwarded(&mut h, &client, Some(&host), true, false);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "admin.example");
        // From a client: replaced.
        let mut h = headers(&claimed);
        add_forwarded(&mut h, &client, Some(&host), false, false);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example:8080");
        assert!(h.get("forwarded").is_none());
    }

    #[test]
    fn trusted_proxies() {
        let nets: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(trusts(&nets, "10.1.2.3".parse().unwrap()));
        assert!(trusts(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(trusts(&nets, "::1".parse().unwrap()));
        assert!(!trusts(&nets, "11.0.0.1".parse().unwrap()));
        assert!(!trusts(&[], "10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn an_absolute_target_names_the_host() {
        let mut req = Request::builder()
            .uri("http://b.localhost:8080/x")
            .header("host", "a.localhost")
            .body(())
            .unwrap();
        one_authority(&mut req);
        assert_eq!(req.headers()["host"], "b.localhost:8080");
        assert_eq!(request_host(&req), Some("b.localhost"));
        let mut req = Request::builder()
            .uri("/x")
            .header("host", "a.localhost")
            .body(())
            .unwrap();
        one_authority(&mut req);
        assert_eq!(req.headers()["host"], "a.localhost");
    }
}
