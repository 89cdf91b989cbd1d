//! What Azure's answers and our own settings say is wrong, in words a person can act on. Pure
//! functions of text: the sender, `check --live` and the settings checks at load all use them.
//!
//! - A 403's message carries the service's access verdict: `PipelineAccessResult: AccessGranted:
//!   False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: …, Message: Required
//!   authorization action was not found for tenantId … objectId … on resourceId …` (the SDKs'
//!   TROUBLESHOOTING.md, e.g. Azure/azure-sdk-for-net#37173). [`forbidden`] reads it, so "the
//!   role is missing" is told from "the DCR is not bound to this DCE".
//! - The endpoint's host says its cloud (`*.ingest.monitor.azure.com`, `.azure.us`, `.azure.cn`);
//!   a token for another cloud's audience gets 401 `InvalidAudience` there. [`cloud_mismatch`]
//!   and [`audience_mismatch`] say which of the two settings is the wrong one.

use crate::auth::Cloud;

/// The fields of a 403 `OperationFailed` message that say why access was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forbidden {
    /// `IsRbacPresent`: a role with the ingest data action is assigned to the caller.
    pub rbac_present: Option<bool>,
    /// `IsDcrDceBindingValid`: the DCR may be used through this DCE (empty when not checked).
    pub binding_valid: Option<bool>,
    /// `objectId …` of the "Required authorization action was not found" part: the principal
    /// the service saw.
    pub object_id: Option<String>,
    /// `DcrArmId`: the DCR's resource id, the scope a role is granted on.
    pub dcr_arm_id: Option<String>,
}

/// What a 403 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenCause {
    /// The principal has no role with the ingest data action on the DCR.
    RoleMissing,
    /// The DCR is not associated with the DCE the request went to.
    NotBoundToEndpoint,
    /// The message does not say.
    Unknown,
}

impl Forbidden {
    pub fn cause(&self) -> ForbiddenCause {
        match (self.binding_valid, self.rbac_present) {
            (Some(false), _) => ForbiddenCause::NotBoundToEndpoint,
            (_, Some(false)) => ForbiddenCause::RoleMissing,
            _ => ForbiddenCause::Unknown,
        }
    }
}

/// Reads the access verdict out of a 403 message (or the whole body). Fields that are missing
/// or empty stay `None`.
pub fn forbidden(text: &str) -> Forbidden {
    Forbidden {
        rbac_present: field(text, "IsRbacPresent:").and_then(parse_bool),
        binding_valid: field(text, "IsDcrDceBindingValid:").and_then(parse_bool),
        object_id: field(text, "objectId").filter(|v| is_id(v)),
        dcr_arm_id: field(text, "DcrArmId:").filter(|v| v.starts_with('/')),
    }
}

/// The word after `key` (up to a space or comma), if any.
fn field(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    let value: String = text[at..]
        .trim_start_matches([' ', '\t'])
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',' && *c != '"')
        .collect();
    let value = value.trim_end_matches('.').to_string();
    (!value.is_empty()).then_some(value)
}

fn parse_bool(v: String) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// A GUID-like id (the redacted `<REDACTED>` of samples is not one).
fn is_id(v: &str) -> bool {
    v.len() >= 8 && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// What to do about a 403, naming the principal and the DCR. `principal` is the token's `oid`
/// when the message does not name one.
pub fn forbidden_fix(f: &Forbidden, dcr: &str, endpoint_host: &str, principal: &str) -> String {
    let principal = f.object_id.as_deref().unwrap_or(principal);
    let scope = f
        .dcr_arm_id
        .clone()
        .unwrap_or_else(|| format!("<resource id of DCR {dcr}>"));
    match f.cause() {
        ForbiddenCause::NotBoundToEndpoint => format!(
            "DCR {dcr} is not associated with the endpoint {endpoint_host} (IsDcrDceBindingValid: False): \
             send to the DCE set in the DCR's dataCollectionEndpointId (or, for a DCR of kind Direct, \
             to its own logsIngestion endpoint), or set the DCR's dataCollectionEndpointId to this DCE"
        ),
        ForbiddenCause::RoleMissing => format!(
            "principal {principal} has no role on DCR {dcr} that may ingest (IsRbacPresent: False): \
             az role assignment create --role \"Monitoring Metrics Publisher\" --assignee-object-id \
             {principal} --assignee-principal-type ServicePrincipal --scope {scope} \
             (a new grant takes up to 30 minutes to apply)"
        ),
        ForbiddenCause::Unknown => format!(
            "grant the \"Monitoring Metrics Publisher\" role on DCR {dcr} to principal {principal} \
             (grants take up to an hour to apply)"
        ),
    }
}

/// What to do about a 400 that is about the request as a whole (see
/// [`super::classify::REQUEST_LEVEL_CODES`]), naming the stream, the DCR and the endpoint.
pub fn request_fix(code: &str, dcr: &str, stream: &str, endpoint_host: &str) -> String {
    match code.to_ascii_lowercase().as_str() {
        "invalidstream" => format!(
            "stream {stream} is not declared in DCR {dcr}. Check: (1) the stream name, spelling \
             and case: a key of the DCR's streamDeclarations (Custom-MyTable_CL), not the table \
             name; (2) that one of the DCR's dataFlows takes the stream to a destination; (3) that \
             {dcr} is the DCR you edited (its immutable id); (4) a DCR changed in the last few \
             minutes may not have reached the endpoint yet"
        ),
        "invaliddcrimmutableid" => format!(
            "the endpoint {endpoint_host} does not serve DCR {dcr}: check the DCR immutable id \
             (dcr-…, on the DCR's Overview page) and that the DCE and the DCR are in the same region"
        ),
        "invalidapiversion" => format!(
            "{endpoint_host} is not a logs-ingestion endpoint (a metrics-ingestion one?): use the \
             DCE's logsIngestion endpoint (…ingest.monitor.azure.com) or the DCR's own \
             logsIngestion endpoint"
        ),
        _ => format!(
            "the service refuses the request as a whole: check the endpoint ({endpoint_host}), the \
             DCR immutable id ({dcr}) and the stream name ({stream})"
        ),
    }
}

/// What to do about a 404: the service does not know the DCR (a wrong stream is a 400
/// `InvalidStream`, not a 404).
pub fn not_found_fix(dcr: &str, endpoint_host: &str) -> String {
    format!(
        "the endpoint {endpoint_host} does not know DCR {dcr}: check the DCR immutable id (dcr-…, \
         on the DCR's Overview page, not its name) and that the endpoint is the DCE (or the DCR's \
         own logsIngestion endpoint) in the DCR's region; a new DCR can take a few minutes to appear"
    )
}

/// The cloud an ingestion endpoint belongs to, by its host: `….monitor.azure.com` (public),
/// `.azure.us` (US Government), `.azure.cn` (China). `None` for other hosts (a proxy, loopback).
pub fn endpoint_cloud(host: &str) -> Option<Cloud> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    [
        (".monitor.azure.com", Cloud::Public),
        (".monitor.azure.us", Cloud::UsGov),
        (".monitor.azure.cn", Cloud::China),
    ]
    .into_iter()
    .find(|(suffix, _)| host.ends_with(suffix))
    .map(|(_, cloud)| cloud)
}

/// The cloud whose Azure Monitor audience this is (`https://monitor.azure.com`, with or without
/// a trailing slash or `/.default`). `None` for anything else.
pub fn audience_cloud(audience: &str) -> Option<Cloud> {
    let a = audience
        .trim()
        .trim_end_matches("/.default")
        .trim_end_matches('/')
        .to_ascii_lowercase();
    [Cloud::Public, Cloud::UsGov, Cloud::China]
        .into_iter()
        .find(|c| c.audience() == a)
}

fn cloud_name(c: Cloud) -> &'static str {
    match c {
        Cloud::Public => "public",
        Cloud::UsGov => "usgov",
        Cloud::China => "china",
    }
}

/// The configured cloud (or `audience`, when set) against the endpoint's: `Some(what is wrong
/// and how to fix it)` when the endpoint is plainly in another cloud. Used at load, so a token
/// that cannot work is never fetched.
pub fn cloud_mismatch(endpoint_host: &str, cloud: Cloud, audience: Option<&str>) -> Option<String> {
    let wanted = endpoint_cloud(endpoint_host)?;
    match audience {
        Some(a) => {
            let given = audience_cloud(a)?;
            (given != wanted).then(|| {
                format!(
                    "audience {a} is {}'s, but the endpoint {endpoint_host} is in the {} cloud: set \
                     audience = \"{}\" (or remove it and set cloud = \"{}\")",
                    cloud_name(given),
                    cloud_name(wanted),
                    wanted.audience(),
                    cloud_name(wanted)
                )
            })
        }
        None => (cloud != wanted).then(|| {
            format!(
                "the cloud is {} but the endpoint {endpoint_host} is in the {} cloud, so the token \
                 would be for {} and the endpoint would refuse it (401 InvalidAudience): set \
                 --cloud {} (or [auth] cloud = \"{}\", DCRSHIP_CLOUD), or fix the endpoint",
                cloud_name(cloud),
                cloud_name(wanted),
                cloud.audience(),
                cloud_name(wanted),
                cloud_name(wanted)
            )
        }),
    }
}

/// How sure [`audience_mismatch`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudienceVerdict {
    /// The token is another cloud's Azure Monitor token: the endpoint will refuse it.
    Wrong(String),
    /// The token's audience is not an Azure Monitor one we know; it will likely be refused.
    Doubtful(String),
}

/// A token's `aud` claim against the endpoint's cloud: for tokens given as they are (`static`),
/// whose audience no setting of ours decides. `None` when it fits or cannot be told.
pub fn audience_mismatch(endpoint_host: &str, aud: Option<&str>) -> Option<AudienceVerdict> {
    let aud = aud?.trim();
    let wanted = endpoint_cloud(endpoint_host)?;
    let fix = format!(
        "get a token for {} (az account get-access-token --resource {})",
        wanted.audience(),
        wanted.audience()
    );
    match audience_cloud(aud) {
        Some(c) if c == wanted => None,
        Some(c) => Some(AudienceVerdict::Wrong(format!(
            "the token's audience is {aud} ({} cloud) but the endpoint {endpoint_host} is in the {} \
             cloud: {fix}",
            cloud_name(c),
            cloud_name(wanted)
        ))),
        // An app id (a GUID) may stand for Azure Monitor; only a URL says plainly it is not.
        None if aud.starts_with("https://") || aud.starts_with("http://") => {
            Some(AudienceVerdict::Doubtful(format!(
                "the token's audience is {aud}, not Azure Monitor's {}: {fix}",
                wanted.audience()
            )))
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 403 every SDK's TROUBLESHOOTING.md shows, with ids filled in.
    const NO_ROLE: &str = "The authentication token provided does not have access to ingest data for the data collection rule with immutable Id 'dcr-0123' PipelineAccessResult: AccessGranted: False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: /subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app, Message: Required authorization action was not found for tenantId 72f988bf-86f1-41af-91ab-2d7cd011db47 objectId 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0 on resourceId /subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app ConfigurationId: c..";

    #[test]
    fn the_403_message_says_role_missing_or_not_bound() {
        let unbound = NO_ROLE
            .replace("IsRbacPresent: False", "IsRbacPresent: True")
            .replace("IsDcrDceBindingValid: ,", "IsDcrDceBindingValid: False,");
        let redacted = "PipelineAccessResult: AccessGranted: False, IsRbacPresent: False, IsDcrDceBindingValid: , DcrArmId: <REDACTED>, Message: Required authorization action was not found for tenantId <REDACTED> objectId <REDACTED> on resourceId <REDACTED>";
        let cases = [
            (
                NO_ROLE.to_string(),
                Forbidden {
                    rbac_present: Some(false),
                    binding_valid: None,
                    object_id: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
                    dcr_arm_id: Some(
                        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app"
                            .into(),
                    ),
                },
                ForbiddenCause::RoleMissing,
            ),
            (
                unbound,
                Forbidden {
                    rbac_present: Some(true),
                    binding_valid: Some(false),
                    object_id: Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0".into()),
                    dcr_arm_id: Some(
                        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionRules/app"
                            .into(),
                    ),
                },
                ForbiddenCause::NotBoundToEndpoint,
            ),
            (
                redacted.to_string(),
                Forbidden {
                    rbac_present: Some(false),
                    ..Forbidden::default()
                },
                ForbiddenCause::RoleMissing,
            ),
            (
                "Forbidden".to_string(),
                Forbidden::default(),
                ForbiddenCause::Unknown,
            ),
            (String::new(), Forbidden::default(), ForbiddenCause::Unknown),
        ];
        for (text, want, cause) in cases {
            let got = forbidden(&text);
            assert_eq!(got, want, "{text}");
            assert_eq!(got.cause(), cause, "{text}");
        }
    }

    #[test]
    fn the_403_fix_names_the_principal_scope_or_endpoint() {
        let f = forbidden(NO_ROLE);
        let fix = forbidden_fix(
            &f,
            "dcr-0123",
            "dce.eastus-1.ingest.monitor.azure.com",
            "tok-oid",
        );
        assert!(
            fix.contains("--assignee-object-id 0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
            "{fix}"
        );
        assert!(fix.contains("--scope /subscriptions/s/"), "{fix}");
        let unbound = Forbidden {
            binding_valid: Some(false),
            ..Forbidden::default()
        };
        let fix = forbidden_fix(
            &unbound,
            "dcr-0123",
            "dce.eastus-1.ingest.monitor.azure.com",
            "tok-oid",
        );
        assert!(
            fix.contains("not associated with the endpoint dce.eastus-1"),
            "{fix}"
        );
        assert!(fix.contains("dataCollectionEndpointId"), "{fix}");
        let fix = forbidden_fix(&Forbidden::default(), "dcr-0123", "h", "tok-oid");
        assert!(
            fix.contains("principal tok-oid") && fix.contains("Monitoring Metrics Publisher"),
            "{fix}"
        );
    }

    #[test]
    fn each_request_level_code_gets_its_fix() {
        let cases = [
            (
                "InvalidStream",
                "stream Custom-A_CL is not declared in DCR dcr-1",
            ),
            ("invalidstream", "streamDeclarations"),
            ("InvalidDcrImmutableId", "same region"),
            ("InvalidApiVersion", "not a logs-ingestion endpoint"),
            ("Whatever", "the stream name (Custom-A_CL)"),
        ];
        for (code, words) in cases {
            let fix = request_fix(code, "dcr-1", "Custom-A_CL", "dce.example");
            assert!(fix.contains(words), "{code}: {fix}");
        }
        assert!(not_found_fix("dcr-1", "dce.example").contains("does not know DCR dcr-1"));
    }

    #[test]
    fn endpoint_hosts_and_audiences_name_their_cloud() {
        let hosts = [
            (
                "my-dce-ab12.eastus-1.ingest.monitor.azure.com",
                Some(Cloud::Public),
            ),
            (
                "MY-DCE.EASTUS-1.INGEST.MONITOR.AZURE.COM.",
                Some(Cloud::Public),
            ),
            (
                "dcr-0123.usgovvirginia-1.ingest.monitor.azure.us",
                Some(Cloud::UsGov),
            ),
            (
                "dce.chinaeast2-1.ingest.monitor.azure.cn",
                Some(Cloud::China),
            ),
            ("127.0.0.1", None),
            ("proxy.example.com", None),
            ("monitor.azure.us.example.com", None),
        ];
        for (host, want) in hosts {
            assert_eq!(endpoint_cloud(host), want, "{host}");
        }
        let audiences = [
            ("https://monitor.azure.com", Some(Cloud::Public)),
            ("https://monitor.azure.com/", Some(Cloud::Public)),
            ("https://monitor.azure.com//.default", Some(Cloud::Public)),
            ("https://monitor.azure.us", Some(Cloud::UsGov)),
            ("https://monitor.azure.cn/", Some(Cloud::China)),
            ("https://management.azure.com", None),
            ("", None),
        ];
        for (aud, want) in audiences {
            assert_eq!(audience_cloud(aud), want, "{aud}");
        }
    }

    #[test]
    fn a_cloud_that_does_not_fit_the_endpoint_is_named() {
        let gov = "dce.usgovvirginia-1.ingest.monitor.azure.us";
        let public = "dce.eastus-1.ingest.monitor.azure.com";
        let cases: [(&str, Cloud, Option<&str>, Option<&str>); 8] = [
            (public, Cloud::Public, None, None),
            (gov, Cloud::UsGov, None, None),
            (gov, Cloud::Public, None, Some("set --cloud usgov")),
            (public, Cloud::China, None, Some("set --cloud public")),
            ("127.0.0.1", Cloud::China, None, None),
            // an explicit audience decides, whatever the cloud
            (gov, Cloud::Public, Some("https://monitor.azure.us"), None),
            (
                gov,
                Cloud::UsGov,
                Some("https://monitor.azure.com/"),
                Some("set audience = \"https://monitor.azure.us\""),
            ),
            // an audience we cannot place is left alone
            (gov, Cloud::Public, Some("api://my-proxy"), None),
        ];
        for (host, cloud, aud, want) in cases {
            let got = cloud_mismatch(host, cloud, aud);
            match want {
                None => assert_eq!(got, None, "{host} {cloud:?} {aud:?}"),
                Some(w) => assert!(
                    got.as_deref()
                        .is_some_and(|g| g.contains(w) && g.contains(host)),
                    "{host} {cloud:?} {aud:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn a_static_tokens_audience_is_held_against_the_endpoint() {
        let gov = "dce.usgovvirginia-1.ingest.monitor.azure.us";
        let public = "dce.eastus-1.ingest.monitor.azure.com";
        assert_eq!(
            audience_mismatch(public, Some("https://monitor.azure.com")),
            None
        );
        assert_eq!(
            audience_mismatch(gov, Some("https://monitor.azure.us/")),
            None
        );
        assert_eq!(
            audience_mismatch("127.0.0.1", Some("https://management.azure.com")),
            None
        );
        assert_eq!(audience_mismatch(public, None), None);
        assert_eq!(
            audience_mismatch(public, Some("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")),
            None
        );
        assert!(matches!(
            audience_mismatch(gov, Some("https://monitor.azure.com")),
            Some(AudienceVerdict::Wrong(m)) if m.contains("--resource https://monitor.azure.us")
        ));
        assert!(matches!(
            audience_mismatch(public, Some("https://management.azure.com/")),
            Some(AudienceVerdict::Doubtful(m)) if m.contains("https://management.azure.com/")
        ));
    }
}
