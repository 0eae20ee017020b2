//! Forwarding one request: route it, admit it to a pool, send it to an
//! endpoint and stream the answer back, attributing every failure to the
//! side that caused it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use backout_routing::{RequestView, StickyKey, Target, cookie_value};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{RequestBody, ResponseBody};
use crate::clock;
use crate::completion::Completion;
use crate::outcome::{Outcome, Rejection, UpstreamFailure};
use crate::pool::{Pool, Refusal};
use crate::router::{ServiceIndex, prefix_match, request_host};
use crate::service::Service;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_BACKOUT_ERROR: HeaderName = HeaderName::from_static("x-backout-error");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Entry point for every request on a data-plane listener.
pub(crate) async fn handle(
    index: Arc<ServiceIndex>,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let host = request_host(&req);
    let Some(service) = index.find(host, req.uri().path()).cloned() else {
        let msg = format!(
            "backout: no service matches host {:?} and path {:?}\n",
            host.unwrap_or(""),
            req.uri().path()
        );
        return Ok(local(StatusCode::NOT_FOUND, "no-service", msg));
    };
    Ok(forward(&service, req, client).await)
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
    client: SocketAddr,
) -> Response<ResponseBody> {
    let started = clock::instant();
    let now_ms = clock::mono_ms();

    // Route: one atomic load; the chosen pool is kept for this request's
    // whole life whatever switches happen meanwhile.
    let (pool, target, stable) = {
        let route = service.route_guard();
        let ip;
        let key: Option<&[u8]> = match &service.sticky {
            None => None,
            Some(StickyKey::Header(h)) => req.headers().get(h.as_str()).map(HeaderValue::as_bytes),
            Some(StickyKey::Cookie(c)) => cookie_in(req.headers(), c).map(str::as_bytes),
            Some(StickyKey::ClientAddr) => {
                ip = client.ip().to_string();
                Some(ip.as_bytes())
            }
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
    add_forwarded(&mut parts.headers, client, original_host.as_ref());
    let uri = match upstream_uri(service, &parts.uri, &admitted.endpoint.uri_base) {
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
            if !parts.headers.contains_key(header::HOST)
                && let Some(h) = original_host
            {
                parts.headers.insert(header::HOST, h);
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
    let result = tokio::time::timeout(timeout, pool.client().request(upstream_req)).await;
    let endpoint = Arc::clone(&admitted.endpoint);
    let mut resp = match result {
        Ok(Ok(resp)) => resp,
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
            let kind = classify(&e);
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
    let completion = Completion::new(admitted, started, status.as_u16());
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // The tunnel lives on outside the request; the request itself is done.
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

/// Connect failures and timeouts by their I/O error kind; everything else
/// that broke the exchange is a reset.
fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut => return UpstreamFailure::Timeout,
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::AddrNotAvailable
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable => return UpstreamFailure::Connect,
                _ => {}
            }
        }
        source = err.source();
    }
    if e.is_connect() {
        UpstreamFailure::Connect
    } else {
        UpstreamFailure::Reset
    }
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
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| !(upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, host: Option<&HeaderValue>) {
    let ip = client.ip().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
        _ => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    // Keep a scheme set by a TLS terminator in front of us.
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if !headers.contains_key(&X_FORWARDED_HOST)
        && let Some(v) = host
    {
        headers.insert(X_FORWARDED_HOST.clone(), v.clone());
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

/// The upstream URI: the endpoint's authority and the request's path and
/// query, with the service's prefix removed when it asks for that. Built
/// from parts so the common case copies no bytes.
fn upstream_uri(
    service: &Service,
    uri: &Uri,
    endpoint: &http::uri::Authority,
) -> Result<Uri, http::Error> {
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
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(endpoint.clone());
    parts.path_and_query = Some(pq);
    Ok(Uri::from_parts(parts)?)
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
        let client: SocketAddr = "10.0.0.7:5555".parse().unwrap();
        let mut h = headers(&[]);
        add_forwarded(
            &mut h,
            client,
            Some(&HeaderValue::from_static("shop.example:8080")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example:8080");
        let mut h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(&mut h, client, None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
