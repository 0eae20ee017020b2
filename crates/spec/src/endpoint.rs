//! Upstream endpoint addresses.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How the proxy talks to a pool's endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive.
    #[default]
    Http1,
    /// HTTP/2 over cleartext TCP with prior knowledge.
    H2c,
}

/// An upstream base address: `http://host:port`, or `https://host:port`
/// for an endpoint reached over TLS (its certificate verified against the
/// service's `upstream_tls` roots). Only the scheme and authority matter:
/// the request path is appended as it came.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EndpointUrl {
    authority: http::uri::Authority,
    tls: bool,
}

impl EndpointUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint =
            "write it as `http://host:port` or `https://host:port`, e.g. `http://127.0.0.1:9001`";
        let uri: http::Uri = text
            .parse()
            .map_err(|e| format!("invalid endpoint URL {text:?}: {e}; {hint}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "endpoint {text:?} uses scheme `{other}`; only `http` and `https` are supported; {hint}"
                ));
            }
            None => return Err(format!("endpoint {text:?} has no scheme; {hint}")),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(format!("endpoint {text:?} has no host; {hint}"));
        };
        if authority.port_u16().is_none() {
            return Err(format!("endpoint {text:?} has no port; {hint}"));
        }
        if authority.as_str().contains('@') {
            return Err(format!(
                "endpoint {text:?} carries credentials, which are not supported; {hint}"
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "endpoint {text:?} has a path or query; the request's own path is used; {hint}"
            ));
        }
        Ok(EndpointUrl { authority, tls })
    }

    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// Reached over TLS (`https://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl Serialize for EndpointUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EndpointUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        EndpointUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        match (EndpointUrl::parse(input), expected) {
            (Ok(url), Ok(want)) => assert_eq!(url.to_string(), want),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn endpoints() {
        check("http://127.0.0.1:9001", Ok("http://127.0.0.1:9001"));
        check("http://127.0.0.1:9001/", Ok("http://127.0.0.1:9001"));
        check("http://localhost:80", Ok("http://localhost:80"));
        check("http://[::1]:8080", Ok("http://[::1]:8080"));
        check("https://a:1", Ok("https://a:1"));
        check("https://a", Err("no port"));
        check("ftp://a:1", Err("scheme `ftp`"));
        check("127.0.0.1:9001", Err("scheme"));
        check("http://a", Err("no port"));
        check("http://a:1/x", Err("path"));
        check("http://u:p@a:1", Err("credentials"));
        check("http://a b:1", Err("invalid endpoint URL"));
        check("", Err("invalid endpoint URL"));
    }
}
