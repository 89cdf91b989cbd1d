//! `dcr create`: the resources of [`super::template`], made through Resource Manager one by
//! one — the table, the DCR, the role assignment — and then the wait until the sender may
//! post: `POST []` to the new stream until it is accepted (the role takes minutes to apply).

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::arm::{Arm, ArmError};
use super::template::{
    rule, table_properties, Spec, DCR_API, MONITORING_METRICS_PUBLISHER, ROLE_ASSIGNMENTS_API,
    TABLES_API,
};
use crate::auth::TokenCache;
use crate::batch::Gzip;
use crate::ingest::{HttpTransport, Transport};

/// Where the resources go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub subscription: String,
    /// The DCR's resource group.
    pub resource_group: String,
}

impl Place {
    /// The workspace's subscription, and its resource group unless another is given.
    pub fn of_workspace(workspace_id: &str, resource_group: Option<&str>) -> Place {
        let parts: Vec<&str> = workspace_id.split('/').collect();
        Place {
            subscription: parts.get(2).copied().unwrap_or_default().to_string(),
            resource_group: resource_group
                .or(parts.get(4).copied())
                .unwrap_or_default()
                .to_string(),
        }
    }

    pub fn dcr_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Insights/dataCollectionRules/{name}",
            self.subscription, self.resource_group
        )
    }
}

/// What was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub dcr_id: String,
    pub immutable_id: String,
    pub endpoint: String,
}

/// The region ARM gives a workspace (`West Europe` and `westeurope` are the same).
fn region(location: &str) -> String {
    location.replace(' ', "").to_ascii_lowercase()
}

/// Makes the table, the DCR and (for `principal`) the role assignment. `spec` must name the
/// workspace; a missing location is the workspace's. `say` reports each step.
pub async fn create(
    arm: &Arm,
    spec: &mut Spec,
    place: &Place,
    principal: Option<&str>,
    say: &dyn Fn(&str),
) -> Result<Created, ArmError> {
    let workspace = spec.workspace_resource_id.clone().unwrap_or_default();
    if spec.location.is_none() {
        let ws = arm.get("the workspace", &workspace, TABLES_API).await?;
        spec.location = ws["location"].as_str().map(region);
    }
    let table_path = format!("{workspace}/tables/{}", spec.table);
    say(&format!(
        "creating table {} ({} plan)",
        spec.table,
        spec.plan.name()
    ));
    arm.put(
        &format!("table {}", spec.table),
        &table_path,
        TABLES_API,
        &json!({ "properties": table_properties(spec) }),
    )
    .await?;

    let dcr_id = place.dcr_id(&spec.dcr_name);
    say(&format!("creating data collection rule {}", spec.dcr_name));
    let what = format!("data collection rule {}", spec.dcr_name);
    let dcr = arm.put(&what, &dcr_id, DCR_API, &rule(spec)).await?;
    let immutable_id = text_at(&dcr, &["properties", "immutableId"])
        .ok_or_else(|| missing(&what, "properties.immutableId"))?;
    let endpoint = match &spec.dce_id {
        None => text_at(&dcr, &["properties", "endpoints", "logsIngestion"])
            .ok_or_else(|| missing(&what, "properties.endpoints.logsIngestion"))?,
        Some(dce) => {
            let d = arm
                .get("the data collection endpoint", dce, DCR_API)
                .await?;
            text_at(&d, &["properties", "logsIngestion", "endpoint"]).ok_or_else(|| {
                missing(
                    "the data collection endpoint",
                    "properties.logsIngestion.endpoint",
                )
            })?
        }
    };

    if let Some(principal) = principal {
        say(&format!(
            "granting Monitoring Metrics Publisher on {} to {principal}",
            spec.dcr_name
        ));
        let path = format!(
            "{dcr_id}/providers/Microsoft.Authorization/roleAssignments/{}",
            uuid::Uuid::new_v4()
        );
        let body = json!({"properties": {
            "roleDefinitionId": format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{MONITORING_METRICS_PUBLISHER}",
                place.subscription
            ),
            "principalId": principal,
            "principalType": spec.principal_type.name(),
        }});
        match arm
            .put("the role assignment", &path, ROLE_ASSIGNMENTS_API, &body)
            .await
        {
            Ok(_) => {}
            // Granted before (a run again): what was asked for is there.
            Err(e) if e.code() == Some("RoleAssignmentExists") => {
                say("the role was granted before");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Created {
        dcr_id,
        immutable_id,
        endpoint,
    })
}

fn text_at(v: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn missing(what: &str, field: &str) -> ArmError {
    ArmError::Failed {
        what: what.to_string(),
        message: format!("the answer has no {field}"),
    }
}

/// How the wait for the role ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// The stream accepted `[]`.
    Accepted {
        after: Duration,
    },
    /// Still 403/404 when the time was up: the last answer.
    NotYet {
        status: u16,
        body: String,
    },
    /// An answer that waiting does not change.
    Refused {
        status: u16,
        body: String,
    },
    Unreachable(String),
    NoToken(String),
}

/// POSTs `[]` to the stream until it is accepted; 403 and 404 (the role or the new DCR not yet
/// applied) are retried for `within`, 1 s doubling to 30 s apart, with a fresh token each time
/// (a new token is what makes the service look at the role again).
pub async fn wait_until_ready(
    transport: &HttpTransport,
    tokens: &TokenCache,
    within: Duration,
    say: &dyn Fn(&str),
) -> Ready {
    let started = Instant::now();
    let mut pause = Duration::from_secs(1);
    let body = Bytes::from(Gzip::new(3).compress(b"[]"));
    /// How long one `POST []` may take.
    const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
    loop {
        let token = match tokens.token().await {
            Ok(t) => t,
            Err(e) => return Ready::NoToken(e.to_string()),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let answer = match transport
            .post(token.expose(), body.clone(), &id, PROBE_TIMEOUT)
            .await
        {
            Ok(a) => a,
            Err(e) => return Ready::Unreachable(e.to_string()),
        };
        match answer.status {
            200..=299 => {
                return Ready::Accepted {
                    after: started.elapsed(),
                }
            }
            403 | 404 if started.elapsed() + pause <= within => {
                say(&format!(
                    "the stream answers {} (the role or the new DCR is not applied yet); \
                     asking again in {} s",
                    answer.status,
                    pause.as_secs()
                ));
                tokens.invalidate();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
            403 | 404 => {
                return Ready::NotYet {
                    status: answer.status,
                    body: answer.body,
                }
            }
            status => {
                return Ready::Refused {
                    status,
                    body: answer.body,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dcr_goes_next_to_the_workspace_unless_told() {
        let ws = "/subscriptions/s-1/resourceGroups/rg-ws/providers/Microsoft.OperationalInsights/workspaces/w";
        let p = Place::of_workspace(ws, None);
        assert_eq!(
            (p.subscription.as_str(), p.resource_group.as_str()),
            ("s-1", "rg-ws")
        );
        let p = Place::of_workspace(ws, Some("rg-dcr"));
        assert_eq!(p.resource_group, "rg-dcr");
        assert_eq!(
            p.dcr_id("dcr-a"),
            "/subscriptions/s-1/resourceGroups/rg-dcr/providers/Microsoft.Insights/dataCollectionRules/dcr-a"
        );
        assert_eq!(region("West Europe"), "westeurope");
        let v =
            json!({"properties": {"endpoints": {"logsIngestion": "https://x"}, "immutableId": ""}});
        assert_eq!(
            text_at(&v, &["properties", "endpoints", "logsIngestion"]).as_deref(),
            Some("https://x")
        );
        assert_eq!(text_at(&v, &["properties", "immutableId"]), None);
        assert_eq!(text_at(&v, &["nope", "x"]), None);
    }
}
