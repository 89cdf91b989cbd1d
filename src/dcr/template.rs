//! The Azure resources for a stream of rows: the custom table
//! (`Microsoft.OperationalInsights/workspaces/tables`), the data collection rule
//! (`Microsoft.Insights/dataCollectionRules`: the stream declaration, a data flow with
//! `transformKql` into `Custom-<Table>_CL`, the workspace as destination; `kind: Direct` or a
//! DCE), and the *Monitoring Metrics Publisher* role on the DCR for the identity that sends —
//! as one ARM template, and as the bodies the `az` commands take.
//!
//! API versions: tables `2025-07-01` (the first stable one with the Auxiliary plan), DCRs
//! `2023-03-11` (kind Direct, `endpoints`), role assignments `2022-04-01`.

use serde_json::{json, Map, Value};

use crate::transform::columns::ColumnType;

pub const TABLES_API: &str = "2025-07-01";
pub const DCR_API: &str = "2023-03-11";
pub const ROLE_ASSIGNMENTS_API: &str = "2022-04-01";
/// The built-in role *Monitoring Metrics Publisher* (its data actions include
/// `Microsoft.Insights/Telemetry/Write`, which the Logs Ingestion API checks).
pub const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";
/// The DCR's name for its one destination.
const DESTINATION: &str = "workspace";
/// What a generated value needs replaced with when the flags did not give it.
pub const WORKSPACE_PLACEHOLDER: &str = "__WORKSPACE_RESOURCE_ID__";
pub const LOCATION_PLACEHOLDER: &str = "__LOCATION__";

/// A table plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Plan {
    /// queries, alerts and dashboards (the default)
    #[default]
    Analytics,
    /// cheaper ingestion, 30 days of simpler queries
    Basic,
    /// cheapest; requests of at most 30 minutes of TimeGenerated (max_time_span = "30m")
    Auxiliary,
}

impl Plan {
    pub fn name(self) -> &'static str {
        match self {
            Plan::Analytics => "Analytics",
            Plan::Basic => "Basic",
            Plan::Auxiliary => "Auxiliary",
        }
    }
}

/// The kind of principal the role is assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PrincipalType {
    /// a managed identity or an app registration's service principal
    #[default]
    ServicePrincipal,
    User,
    Group,
}

impl PrincipalType {
    pub fn name(self) -> &'static str {
        match self {
            PrincipalType::ServicePrincipal => "ServicePrincipal",
            PrincipalType::User => "User",
            PrincipalType::Group => "Group",
        }
    }
}

/// Everything the resources are made from.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// `MyApp_CL`.
    pub table: String,
    /// The stream the DCR declares, `Custom-MyApp_CL` by default.
    pub stream: String,
    /// `TimeGenerated` first.
    pub columns: Vec<(String, ColumnType)>,
    pub plan: Plan,
    pub dcr_name: String,
    pub workspace_resource_id: Option<String>,
    pub location: Option<String>,
    /// A DCE's resource id: the DCR is used through it (Private Link), not `kind: Direct`.
    pub dce_id: Option<String>,
    pub principal_id: Option<String>,
    pub principal_type: PrincipalType,
    pub transform_kql: String,
}

impl Spec {
    /// The table's own stream (`Custom-<Table>_CL`): the data flow's output.
    pub fn output_stream(&self) -> String {
        super::names::stream_for_table(&self.table)
    }
}

/// A column type as the Tables API spells it (`dateTime`).
fn table_type(t: ColumnType) -> &'static str {
    match t {
        ColumnType::Datetime => "dateTime",
        other => other.name(),
    }
}

fn columns(spec: &Spec, name_of: fn(ColumnType) -> &'static str) -> Value {
    Value::Array(
        spec.columns
            .iter()
            .map(|(n, t)| json!({"name": n, "type": name_of(*t)}))
            .collect(),
    )
}

/// The table's `properties` (the body of its PUT, less the wrapper).
pub fn table_properties(spec: &Spec) -> Value {
    json!({
        "plan": spec.plan.name(),
        "schema": {
            "name": spec.table,
            "columns": columns(spec, table_type),
        }
    })
}

/// The DCR's `properties`, given how the workspace (and the DCE) are written: literal ids, or
/// ARM expressions.
fn dcr_properties(spec: &Spec, workspace: &str, dce: Option<&str>) -> Value {
    let mut p = Map::new();
    p.insert(
        "description".into(),
        json!(format!(
            "Rows of {} sent to the Logs Ingestion API (made by dcrship dcr template)",
            spec.table
        )),
    );
    if let Some(dce) = dce {
        p.insert("dataCollectionEndpointId".into(), json!(dce));
    }
    p.insert(
        "streamDeclarations".into(),
        json!({ spec.stream.clone(): { "columns": columns(spec, ColumnType::name) } }),
    );
    p.insert(
        "destinations".into(),
        json!({"logAnalytics": [{"workspaceResourceId": workspace, "name": DESTINATION}]}),
    );
    p.insert(
        "dataFlows".into(),
        json!([{
            "streams": [spec.stream],
            "destinations": [DESTINATION],
            "transformKql": spec.transform_kql,
            "outputStream": spec.output_stream(),
        }]),
    );
    Value::Object(p)
}

/// The DCR as `az monitor data-collection rule create --rule-file` takes it (and as the REST
/// PUT body): literal values; the workspace and location not given are placeholders.
pub fn rule(spec: &Spec) -> Value {
    let workspace = spec
        .workspace_resource_id
        .as_deref()
        .unwrap_or(WORKSPACE_PLACEHOLDER);
    let mut r = Map::new();
    r.insert(
        "location".into(),
        json!(spec.location.as_deref().unwrap_or(LOCATION_PLACEHOLDER)),
    );
    if spec.dce_id.is_none() {
        r.insert("kind".into(), json!("Direct"));
    }
    r.insert(
        "properties".into(),
        dcr_properties(spec, workspace, spec.dce_id.as_deref()),
    );
    Value::Object(r)
}

/// The ARM template: the table, the DCR and (when a principal id is given at deployment) the
/// role assignment, with the ids a sender needs as outputs.
pub fn arm(spec: &Spec) -> Value {
    let mut params = Map::new();
    let mut workspace = json!({
        "type": "string",
        "metadata": {"description": "Resource id of the Log Analytics workspace, in this \
            deployment's resource group: /subscriptions/…/resourceGroups/…/providers/\
            Microsoft.OperationalInsights/workspaces/NAME"}
    });
    if let Some(id) = &spec.workspace_resource_id {
        workspace["defaultValue"] = json!(id);
    }
    params.insert("workspaceResourceId".into(), workspace);
    params.insert(
        "location".into(),
        json!({
            "type": "string",
            "defaultValue": spec.location.clone().unwrap_or_else(|| "[resourceGroup().location]".into()),
            "metadata": {"description": "Region of the DCR: the workspace's region"}
        }),
    );
    params.insert(
        "dataCollectionRuleName".into(),
        json!({"type": "string", "defaultValue": spec.dcr_name}),
    );
    params.insert(
        "principalId".into(),
        json!({
            "type": "string",
            "defaultValue": spec.principal_id.clone().unwrap_or_default(),
            "metadata": {"description": "Object (principal) id of the identity that sends, \
                e.g. the VM's managed identity; empty: no role assignment"}
        }),
    );
    if let Some(dce) = &spec.dce_id {
        params.insert(
            "dataCollectionEndpointId".into(),
            json!({"type": "string", "defaultValue": dce,
                   "metadata": {"description": "Resource id of the data collection endpoint"}}),
        );
    }
    let dcr_id = "resourceId('Microsoft.Insights/dataCollectionRules', parameters('dataCollectionRuleName'))";
    let table_id = "resourceId('Microsoft.OperationalInsights/workspaces/tables', variables('workspaceName'), variables('tableName'))";
    let mut dcr = Map::new();
    dcr.insert(
        "type".into(),
        json!("Microsoft.Insights/dataCollectionRules"),
    );
    dcr.insert("apiVersion".into(), json!(DCR_API));
    dcr.insert(
        "name".into(),
        json!("[parameters('dataCollectionRuleName')]"),
    );
    dcr.insert("location".into(), json!("[parameters('location')]"));
    if spec.dce_id.is_none() {
        dcr.insert("kind".into(), json!("Direct"));
    }
    dcr.insert("dependsOn".into(), json!([format!("[{table_id}]")]));
    dcr.insert(
        "properties".into(),
        dcr_properties(
            spec,
            "[parameters('workspaceResourceId')]",
            spec.dce_id
                .as_ref()
                .map(|_| "[parameters('dataCollectionEndpointId')]"),
        ),
    );
    let endpoint = if spec.dce_id.is_some() {
        format!("[reference(parameters('dataCollectionEndpointId'), '{DCR_API}').logsIngestion.endpoint]")
    } else {
        format!("[reference({dcr_id}, '{DCR_API}').endpoints.logsIngestion]")
    };
    json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {"description": format!(
            "Custom table {}, its DCR (stream {}) and Monitoring Metrics Publisher on the DCR for \
             the sender; made by dcrship dcr template", spec.table, spec.stream)},
        "parameters": params,
        "variables": {
            "tableName": spec.table,
            "workspaceName": "[last(split(parameters('workspaceResourceId'), '/'))]",
            "monitoringMetricsPublisher": MONITORING_METRICS_PUBLISHER,
        },
        "resources": [
            {
                "type": "Microsoft.OperationalInsights/workspaces/tables",
                "apiVersion": TABLES_API,
                "name": "[format('{0}/{1}', variables('workspaceName'), variables('tableName'))]",
                "properties": table_properties(spec),
            },
            Value::Object(dcr),
            {
                "condition": "[not(empty(parameters('principalId')))]",
                "type": "Microsoft.Authorization/roleAssignments",
                "apiVersion": ROLE_ASSIGNMENTS_API,
                "name": format!("[guid({dcr_id}, parameters('principalId'), variables('monitoringMetricsPublisher'))]"),
                "scope": "[format('Microsoft.Insights/dataCollectionRules/{0}', parameters('dataCollectionRuleName'))]",
                "dependsOn": [format!("[{dcr_id}]")],
                "properties": {
                    "roleDefinitionId": "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', variables('monitoringMetricsPublisher'))]",
                    "principalId": "[parameters('principalId')]",
                    "principalType": spec.principal_type.name(),
                },
            },
        ],
        "outputs": {
            "dataCollectionRuleId": {"type": "string", "value": format!("[{dcr_id}]")},
            "immutableId": {"type": "string", "value": format!("[reference({dcr_id}, '{DCR_API}').immutableId]")},
            "logsIngestionEndpoint": {"type": "string", "value": endpoint},
            "stream": {"type": "string", "value": spec.stream},
        },
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::transform::schema::stream_columns;
    use std::collections::BTreeMap;

    pub(crate) fn spec() -> Spec {
        Spec {
            table: "MyApp_CL".into(),
            stream: "Custom-MyApp_CL".into(),
            columns: vec![
                ("TimeGenerated".into(), ColumnType::Datetime),
                ("Level".into(), ColumnType::String),
                ("Status".into(), ColumnType::Int),
                ("Bytes".into(), ColumnType::Long),
                ("Latency".into(), ColumnType::Real),
                ("Cached".into(), ColumnType::Boolean),
                ("SeenAt".into(), ColumnType::Datetime),
                ("Tags".into(), ColumnType::Dynamic),
            ],
            plan: Plan::Analytics,
            dcr_name: "dcr-myapp".into(),
            workspace_resource_id: None,
            location: None,
            dce_id: None,
            principal_id: None,
            principal_type: PrincipalType::ServicePrincipal,
            transform_kql: "source".into(),
        }
    }

    fn declared(spec: &Spec) -> BTreeMap<String, ColumnType> {
        spec.columns.iter().cloned().collect()
    }

    #[test]
    fn the_schema_reader_reads_back_the_stream_of_both_forms() {
        let s = spec();
        for doc in [arm(&s), rule(&s)] {
            let got = stream_columns(&doc.to_string(), &s.stream).expect("columns");
            assert_eq!(got, declared(&s), "{doc}");
        }
    }

    #[test]
    fn direct_or_through_a_dce() {
        let mut s = spec();
        let t = arm(&s);
        let dcr = &t["resources"][1];
        assert_eq!(dcr["kind"], "Direct");
        assert!(dcr["properties"].get("dataCollectionEndpointId").is_none());
        assert!(t["outputs"]["logsIngestionEndpoint"]["value"]
            .as_str()
            .is_some_and(|v| v.contains("endpoints.logsIngestion")));
        assert_eq!(rule(&s)["kind"], "Direct");
        s.dce_id = Some("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionEndpoints/dce".into());
        let t = arm(&s);
        let dcr = &t["resources"][1];
        assert!(dcr.get("kind").is_none());
        assert_eq!(
            dcr["properties"]["dataCollectionEndpointId"],
            "[parameters('dataCollectionEndpointId')]"
        );
        assert!(t["outputs"]["logsIngestionEndpoint"]["value"]
            .as_str()
            .is_some_and(|v| v.contains("logsIngestion.endpoint")));
        let r = rule(&s);
        assert!(r.get("kind").is_none());
        assert_eq!(
            r["properties"]["dataCollectionEndpointId"],
            json!(s.dce_id.as_deref())
        );
    }

    #[test]
    fn the_data_flow_goes_into_the_tables_stream() {
        let mut s = spec();
        s.stream = "Custom-Mine".into();
        s.transform_kql = "source | where Level != 'debug'".into();
        let flow = &rule(&s)["properties"]["dataFlows"][0];
        assert_eq!(flow["streams"], json!(["Custom-Mine"]));
        assert_eq!(flow["outputStream"], "Custom-MyApp_CL");
        assert_eq!(flow["transformKql"], "source | where Level != 'debug'");
        assert_eq!(flow["destinations"], json!([DESTINATION]));
        assert_eq!(
            rule(&s)["properties"]["destinations"]["logAnalytics"][0]["name"],
            DESTINATION
        );
    }

    #[test]
    fn types_are_spelled_as_each_api_wants() {
        let s = spec();
        let table = table_properties(&s);
        let t_types: Vec<&str> = table["schema"]["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            t_types,
            ["dateTime", "string", "int", "long", "real", "boolean", "dateTime", "dynamic"]
        );
        let r = rule(&s);
        let s_types: Vec<&str> = r["properties"]["streamDeclarations"]["Custom-MyApp_CL"]
            ["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(
            s_types,
            ["datetime", "string", "int", "long", "real", "boolean", "datetime", "dynamic"]
        );
        assert_eq!(table["plan"], "Analytics");
    }

    #[test]
    fn given_values_are_used_and_missing_ones_are_placeholders() {
        let mut s = spec();
        let r = rule(&s);
        assert_eq!(r["location"], LOCATION_PLACEHOLDER);
        assert_eq!(
            r["properties"]["destinations"]["logAnalytics"][0]["workspaceResourceId"],
            WORKSPACE_PLACEHOLDER
        );
        let t = arm(&s);
        assert!(t["parameters"]["workspaceResourceId"]
            .get("defaultValue")
            .is_none());
        assert_eq!(
            t["parameters"]["location"]["defaultValue"],
            "[resourceGroup().location]"
        );
        s.workspace_resource_id = Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/ws".into());
        s.location = Some("westeurope".into());
        s.principal_id = Some("00000000-0000-0000-0000-0000000000aa".into());
        s.principal_type = PrincipalType::User;
        let t = arm(&s);
        assert_eq!(
            t["parameters"]["workspaceResourceId"]["defaultValue"],
            json!(s.workspace_resource_id)
        );
        assert_eq!(t["parameters"]["location"]["defaultValue"], "westeurope");
        assert_eq!(
            t["parameters"]["principalId"]["defaultValue"],
            json!(s.principal_id)
        );
        let role = &t["resources"][2];
        assert_eq!(role["properties"]["principalType"], "User");
        assert!(role["properties"]["roleDefinitionId"]
            .as_str()
            .is_some_and(|r| r.contains("monitoringMetricsPublisher")));
        assert_eq!(
            t["variables"]["monitoringMetricsPublisher"],
            MONITORING_METRICS_PUBLISHER
        );
        assert_eq!(rule(&s)["location"], "westeurope");
    }
}
