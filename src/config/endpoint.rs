//! What an `endpoint` may be: the root URL of a DCE (or of a Direct DCR's `logsIngestion`), and
//! nothing after it. The full ingestion URL a user copies from the docs or a request log
//! (`…/dataCollectionRules/dcr-…/streams/Custom-…?api-version=…`) is recognised: the DCR and
//! the stream are taken from it, and the path dropped — else the path would be doubled and
//! every request answered 404. Pure, so the rules are a table test.

/// The endpoint split into its root and, when the URL named them, the DCR and stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EndpointParts {
    /// `scheme://host[:port]`, without a path.
    pub root: String,
    pub dcr: Option<String>,
    pub stream: Option<String>,
}

/// Splits `raw`; `Err` says what is wrong and how to write it.
pub(super) fn split(raw: &str) -> Result<EndpointParts, String> {
    let raw = raw.trim();
    if !raw.contains("://") {
        return Err(format!(
            "{raw:?} has no scheme; write https://{} (the logs ingestion URL of the data \
             collection endpoint)",
            raw.trim_start_matches('/')
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("invalid URL {raw:?}: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let root = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).collect())
        .unwrap_or_default();
    match segments.as_slice() {
        [] => Ok(EndpointParts {
            root,
            dcr: None,
            stream: None,
        }),
        [rules, dcr, streams, stream]
            if rules.eq_ignore_ascii_case("dataCollectionRules")
                && streams.eq_ignore_ascii_case("streams") =>
        {
            Ok(EndpointParts {
                root,
                dcr: Some(dcr.to_string()),
                stream: Some(stream.to_string()),
            })
        }
        _ => Err(format!(
            "{raw:?} has a path ({}); the endpoint is the root URL of the data collection \
             endpoint: drop the path and write {root}",
            url.path()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DCR: &str = "dcr-0123456789abcdef0123456789abcdef";

    #[test]
    fn endpoints_are_roots_and_full_ingestion_urls_are_taken_apart() {
        let root = "https://my-dce-ab12.eastus-1.ingest.monitor.azure.com";
        let ok = [
            (root.to_string(), None),
            (format!("{root}/"), None),
            ("http://127.0.0.1:8080".to_string(), None),
            (
                format!(
                    "{root}/dataCollectionRules/{DCR}/streams/Custom-App_CL?api-version=2023-01-01"
                ),
                Some((DCR, "Custom-App_CL")),
            ),
            (
                format!("{root}/datacollectionrules/{DCR}/streams/Custom-App_CL/"),
                Some((DCR, "Custom-App_CL")),
            ),
        ];
        for (raw, parts) in ok {
            let got = split(&raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            let want_root = if raw.starts_with("http://") {
                "http://127.0.0.1:8080"
            } else {
                root
            };
            assert_eq!(got.root, want_root, "{raw}");
            assert_eq!(
                got.dcr.as_deref().zip(got.stream.as_deref()),
                parts,
                "{raw}"
            );
        }
        let bad = [
            (
                "my-dce-ab12.eastus-1.ingest.monitor.azure.com",
                "write https://my-dce-ab12",
            ),
            (
                "https://my-dce.eastus-1.ingest.monitor.azure.com/dataCollectionRules/x",
                "drop the path and write https://my-dce.eastus-1.ingest.monitor.azure.com",
            ),
            ("https://x.example/api/logs", "has a path (/api/logs)"),
            ("https://", "invalid URL"),
        ];
        for (raw, says) in bad {
            let e = split(raw).expect_err(raw);
            assert!(e.contains(says), "{raw}: {e}");
        }
    }
}
