//! The two HTTP clients (one that honours proxies for the DCE and Entra, one that never uses a
//! proxy for the local identity endpoints) and the rule on plain `http://` URLs.

use std::net::IpAddr;
use std::sync::Once;
use std::time::Duration;

/// Building an HTTP client or checking a URL failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("{what} {url:?} uses plain http:// on a host that is not loopback; use https://")]
    PlainHttp { what: &'static str, url: String },
    #[error("could not build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The clients every component shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClients {
    /// DCE and Entra traffic: honours `HTTPS_PROXY` / `NO_PROXY`.
    pub remote: reqwest::Client,
    /// IMDS, Arc and App Service identity endpoints: never through a proxy.
    pub local: reqwest::Client,
}

/// reqwest's `rustls-no-provider` needs a process-wide rustls provider installed before the first
/// client is built. Asking rustls for a config builder installs the provider its crate features
/// name — *ring*, the only one this crate enables — without naming
/// `rustls::crypto::ring::default_provider`, which rustls 0.23.48 deprecates (it lacks
/// post-quantum key exchange; the provider that has it, aws-lc-rs, is a large C build).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::ClientConfig::builder();
        }
    });
}

impl HttpClients {
    pub fn new(request_timeout: Duration) -> Result<Self, HttpSetupError> {
        install_crypto_provider();
        let ua = concat!("dcrship/", env!("CARGO_PKG_VERSION"));
        let remote = reqwest::Client::builder()
            .user_agent(ua)
            .connect_timeout(Duration::from_secs(10))
            .timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Never follow a redirect with a bearer token: a redirecting endpoint is a config error.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let local = reqwest::Client::builder()
            .user_agent(ua)
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HttpClients { remote, local })
    }
}

/// True when the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Parses an ingestion endpoint or authority host and enforces https except on loopback.
pub fn parse_secure_url(what: &'static str, raw: &str) -> Result<reqwest::Url, HttpSetupError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| HttpSetupError::InvalidUrl {
        url: raw.to_string(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(HttpSetupError::PlainHttp {
            what,
            url: raw.to_string(),
        }),
        other => Err(HttpSetupError::InvalidUrl {
            url: raw.to_string(),
            reason: format!("scheme {other:?} is not http or https"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_everywhere_http_only_on_loopback() {
        let ok = [
            "https://my-dce-ab12.eastus-1.ingest.monitor.azure.com",
            "http://127.0.0.1:8080",
            "http://localhost:1234/x",
            "http://[::1]:99",
            "http://127.3.4.5",
        ];
        for u in ok {
            assert!(parse_secure_url("endpoint", u).is_ok(), "{u}");
        }
        let bad = [
            "http://example.com",
            "http://10.0.0.1",
            "http://169.254.169.254",
            "ftp://127.0.0.1",
            "not a url",
        ];
        for u in bad {
            assert!(parse_secure_url("endpoint", u).is_err(), "{u}");
        }
    }

    #[test]
    fn building_the_clients_installs_the_ring_provider() {
        HttpClients::new(Duration::from_secs(5)).expect("clients");
        let p = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        assert!(!p.cipher_suites.is_empty());
        assert!(!p.kx_groups.is_empty());
    }
}
