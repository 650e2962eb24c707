//! Who a request comes from: [`ClientIp`] (the peer, or the address a
//! trusted proxy forwarded) and [`ClientKey`] (what a rate limit counts by).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use http::header::{HeaderName, FORWARDED};
use http::{Extensions, HeaderMap, Method, Request, Uri};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

/// Longest client key used as it is; longer ones (and every header-derived
/// key, which may be a credential) are stored as their SHA-256.
pub const MAX_PLAIN_KEY: usize = 128;

/// The parts of a request the layers look at, borrowed.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers (hostile: anything the client sent).
    pub headers: &'a HeaderMap,
    /// The extensions (axum's `ConnectInfo`, tower-sessions' `Session`, …).
    pub extensions: &'a Extensions,
}

impl<'a> RequestView<'a> {
    /// A view of `req`.
    pub fn of<B>(req: &'a Request<B>) -> Self {
        RequestView { method: req.method(), uri: req.uri(), headers: req.headers(), extensions: req.extensions() }
    }

    /// The TCP peer, from axum's `ConnectInfo<SocketAddr>` (serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`).
    pub fn peer_ip(&self) -> Option<IpAddr> {
        self.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
    }
}

/// Resolves a request's client address.
///
/// Without trusted proxies it is the TCP peer. With them, and only when the
/// peer is one of them, it walks `X-Forwarded-For` (or the header given)
/// from the right — the entries the trusted proxies appended — and takes the
/// first address that is not a trusted proxy: what a client writes on the
/// left of the header is never believed. Unparseable entries stop the walk
/// at the last trusted hop.
#[derive(Clone)]
pub struct ClientIp {
    trusted: Arc<[IpNet]>,
    header: HeaderName,
}

impl fmt::Debug for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp").field("trusted", &self.trusted).field("header", &self.header).finish()
    }
}

impl Default for ClientIp {
    fn default() -> Self {
        ClientIp::peer()
    }
}

impl ClientIp {
    /// The TCP peer, forwarded headers ignored.
    pub fn peer() -> Self {
        ClientIp { trusted: Arc::from([]), header: HeaderName::from_static("x-forwarded-for") }
    }

    /// Behind proxies in `trusted`, which append to `X-Forwarded-For`.
    pub fn behind(trusted: impl IntoIterator<Item = IpNet>) -> Self {
        ClientIp { trusted: trusted.into_iter().collect(), header: HeaderName::from_static("x-forwarded-for") }
    }

    /// The header the trusted proxies append to (default `X-Forwarded-For`;
    /// the structured `Forwarded` header is not parsed).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, if the request carries its peer. IPv4-mapped
    /// IPv6 addresses (a dual-stack listener's view of IPv4 peers) count as
    /// their IPv4 address, for trust and in the result.
    pub fn resolve(&self, req: &RequestView<'_>) -> Option<IpAddr> {
        let Some(peer) = req.peer_ip() else {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "requests carry no peer address: serve with into_make_service_with_connect_info::<SocketAddr>()"
                )
            });
            return None;
        };
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) || self.header == FORWARDED {
            return Some(peer);
        }
        let mut client = peer;
        // Every occurrence of the header, in order, each a comma list.
        let hops: Vec<&str> = req
            .headers
            .get_all(&self.header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for hop in hops.iter().rev() {
            match parse_hop(hop) {
                Some(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        Some(client)
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`) or in brackets; canonical form.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok()))?;
    Some(ip.to_canonical())
}

/// The rate-limit key of an address: IPv4 as it is, IPv6 by its /64 (one
/// subscriber's usual allocation, which it can rotate through freely).
fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = ipnet::Ipv6Net::new(v6, 64).map(|n| n.trunc());
            net.map_or_else(|_| v6.to_string(), |n| n.to_string())
        }
    }
}

type KeyFn = dyn Fn(&RequestView<'_>) -> Option<String> + Send + Sync;

/// What a rate limit counts by. Requests for which it yields nothing share
/// one bucket (`-`), so leaving out a header never escapes the limit (and a
/// server that does not pass the peer address limits everyone together; a
/// warning is logged once).
#[derive(Clone)]
pub struct ClientKey(Arc<KeyFn>);

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientKey(..)")
    }
}

impl ClientKey {
    /// The client address per `ip`: IPv4 addresses one by one, IPv6 by
    /// their /64 network (a client rotating through its /64 stays one client).
    pub fn ip(ip: ClientIp) -> Self {
        ClientKey(Arc::new(move |req| ip.resolve(req).map(ip_key)))
    }

    /// The value of header `name` (an API key, a tenant id), stored as its
    /// SHA-256 so credentials never reach the keyspace.
    pub fn header(name: HeaderName) -> Self {
        ClientKey(Arc::new(move |req| req.headers.get(&name).map(|v| hashed(v.as_bytes()))))
    }

    /// Any function of the request; results longer than [`MAX_PLAIN_KEY`]
    /// bytes are stored as their SHA-256.
    pub fn custom(f: impl Fn(&RequestView<'_>) -> Option<String> + Send + Sync + 'static) -> Self {
        ClientKey(Arc::new(f))
    }

    /// The key for `req`: `-` when there is none.
    pub fn of(&self, req: &RequestView<'_>) -> String {
        match (self.0)(req) {
            Some(k) if k.len() > MAX_PLAIN_KEY => hashed(k.as_bytes()),
            Some(k) if !k.is_empty() => k,
            _ => "-".to_owned(),
        }
    }
}

pub(crate) fn hashed(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> Request<()> {
        let mut req = Request::new(());
        if let Ok(addr) = peer.parse::<SocketAddr>() {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        for f in forwarded {
            if let Ok(v) = f.parse() {
                req.headers_mut().append("x-forwarded-for", v);
            }
        }
        req
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| IpNet::from(IpAddr::from([0, 0, 0, 0])))
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let ip = ClientIp::behind([net("10.0.0.0/8")]);
        let direct = request("203.0.113.9:4000", &["1.2.3.4"]);
        assert_eq!(ip.resolve(&RequestView::of(&direct)), "203.0.113.9".parse().ok());
        let proxied = request("10.0.0.2:4000", &["1.2.3.4"]);
        assert_eq!(ip.resolve(&RequestView::of(&proxied)), "1.2.3.4".parse().ok());
        assert_eq!(ClientIp::peer().resolve(&RequestView::of(&proxied)), "10.0.0.2".parse().ok());
    }

    #[test]
    fn forwarded_entries_a_client_wrote_are_not_believed() {
        let ip = ClientIp::behind([net("10.0.0.0/8")]);
        // The client sent "6.6.6.6"; the edge proxy appended the real peer, then an inner proxy.
        let req = request("10.0.0.3:1", &["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(ip.resolve(&RequestView::of(&req)), "198.51.100.7".parse().ok());
        let garbage = request("10.0.0.3:1", &["6.6.6.6, not-an-ip"]);
        assert_eq!(ip.resolve(&RequestView::of(&garbage)), "10.0.0.3".parse().ok());
    }

    #[test]
    fn mapped_addresses_ports_and_brackets_are_understood() {
        let ip = ClientIp::behind([net("10.0.0.0/8")]);
        // A dual-stack listener sees the IPv4 proxy as ::ffff:10.0.0.2.
        let mapped = request("[::ffff:10.0.0.2]:4000", &["198.51.100.7:5678"]);
        assert_eq!(ip.resolve(&RequestView::of(&mapped)), "198.51.100.7".parse().ok());
        let v6 = request("10.0.0.2:1", &["[2001:db8::1]:443"]);
        assert_eq!(ip.resolve(&RequestView::of(&v6)), "2001:db8::1".parse().ok());
        let bracketed = request("10.0.0.2:1", &["[2001:db8::2]"]);
        assert_eq!(ip.resolve(&RequestView::of(&bracketed)), "2001:db8::2".parse().ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = ClientKey::ip(ClientIp::peer());
        let a = request("[2001:db8:1:2:aaaa::1]:1", &[]);
        let b = request("[2001:db8:1:2:bbbb::9]:1", &[]);
        let other = request("[2001:db8:1:3::1]:1", &[]);
        assert_eq!(key.of(&RequestView::of(&a)), "2001:db8:1:2::/64");
        assert_eq!(key.of(&RequestView::of(&a)), key.of(&RequestView::of(&b)));
        assert_ne!(key.of(&RequestView::of(&a)), key.of(&RequestView::of(&other)));
        assert_eq!(key.of(&RequestView::of(&request("192.0.2.1:1", &[]))), "192.0.2.1");
    }

    #[test]
    fn header_keys_are_hashed_and_missing_keys_share_one_bucket() {
        let key = ClientKey::header(HeaderName::from_static("x-api-key"));
        let mut req = Request::new(());
        assert_eq!(key.of(&RequestView::of(&req)), "-");
        if let Ok(v) = "secret-token".parse() {
            req.headers_mut().insert("x-api-key", v);
        }
        let k = key.of(&RequestView::of(&req));
        assert!(k.starts_with("sha256:") && !k.contains("secret"));
        let long = ClientKey::custom(|_| Some("x".repeat(5000)));
        assert_eq!(long.of(&RequestView::of(&req)).len(), 7 + 64);
    }
}
