//! Which Azure cloud we talk to: it decides the token audience and the Entra authority host.

/// An Azure cloud (`--cloud`, `DCRSHIP_CLOUD`, `[auth] cloud`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    Public,
    /// Azure US Government.
    #[value(name = "usgov")]
    UsGov,
    /// Azure China (21Vianet).
    China,
}

impl Cloud {
    /// The ingestion API's token audience (the v1 `resource`).
    pub fn audience(self) -> &'static str {
        match self {
            Cloud::Public => "https://monitor.azure.com",
            Cloud::UsGov => "https://monitor.azure.us",
            Cloud::China => "https://monitor.azure.cn",
        }
    }

    /// The audience Entra expects in a federated token (the `aud` a CI platform's ID token must
    /// carry, and what a federated identity credential names).
    pub fn token_exchange_audience(self) -> &'static str {
        match self {
            Cloud::Public => "api://AzureADTokenExchange",
            Cloud::UsGov => "api://AzureADTokenExchangeUSGov",
            Cloud::China => "api://AzureADTokenExchangeChina",
        }
    }

    /// The Entra authority host, with its trailing slash (as `AZURE_AUTHORITY_HOST` is written).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com/",
            Cloud::UsGov => "https://login.microsoftonline.us/",
            Cloud::China => "https://login.chinacloudapi.cn/",
        }
    }
}

/// The Entra v2 scope for an audience.
///
/// The audience gets a trailing slash and then `/.default`, giving `https://monitor.azure.com//.default`:
/// the form the .NET, Java and Go SDKs send, so the token's `aud` is what the service expects.
/// A value that already ends in `/.default` is taken as a complete scope.
pub fn scope(audience: &str) -> String {
    let audience = audience.trim();
    if audience.ends_with("/.default") {
        return audience.to_string();
    }
    format!("{}//.default", audience.trim_end_matches('/'))
}

/// The managed-identity `resource` for an audience: the audience itself, never a v2 scope.
pub fn resource(audience: &str) -> String {
    let audience = audience.trim();
    match audience.strip_suffix("/.default") {
        // `https://monitor.azure.com//.default` names the resource `https://monitor.azure.com/`;
        // the service accepts the bare audience the SDKs send for managed identities.
        Some(rest) => rest.trim_end_matches('/').to_string(),
        None => audience.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn audiences_and_authorities() {
        let table = [
            (
                Cloud::Public,
                "https://monitor.azure.com",
                "https://login.microsoftonline.com/",
            ),
            (
                Cloud::UsGov,
                "https://monitor.azure.us",
                "https://login.microsoftonline.us/",
            ),
            (
                Cloud::China,
                "https://monitor.azure.cn",
                "https://login.chinacloudapi.cn/",
            ),
        ];
        for (cloud, audience, authority) in table {
            assert_eq!(cloud.audience(), audience);
            assert_eq!(cloud.authority_host(), authority);
        }
        assert_eq!(Cloud::default(), Cloud::Public);
    }

    #[test]
    fn scope_has_the_double_slash_and_resource_has_none() {
        assert_eq!(
            scope(Cloud::Public.audience()),
            "https://monitor.azure.com//.default"
        );
        assert_eq!(
            scope("https://monitor.azure.us/"),
            "https://monitor.azure.us//.default"
        );
        assert_eq!(
            scope("https://monitor.azure.com/.default"),
            "https://monitor.azure.com/.default"
        );
        assert_eq!(
            resource(Cloud::China.audience()),
            "https://monitor.azure.cn"
        );
        assert_eq!(
            resource("https://monitor.azure.com//.default"),
            "https://monitor.azure.com"
        );
    }

    #[test]
    fn cli_and_serde_spellings() {
        for (name, cloud) in [
            ("public", Cloud::Public),
            ("usgov", Cloud::UsGov),
            ("china", Cloud::China),
        ] {
            assert_eq!(Cloud::from_str(name, false), Ok(cloud));
            let parsed: Cloud = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parsed, cloud);
        }
        assert!(serde_json::from_str::<Cloud>("\"us-gov\"").is_err());
    }
}
