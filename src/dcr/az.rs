//! The `az` CLI commands that make what the ARM template makes, as a bash script: the table,
//! the DCR (from a rule file the script writes), the role assignment, and the ids a sender
//! needs. Every value the script is given was checked to hold only characters of its kind
//! (names, resource ids, GUIDs, regions), so it can be written into the script as it is.

use std::fmt::Write as _;

use super::template::{
    rule, table_properties, Plan, Spec, LOCATION_PLACEHOLDER, MONITORING_METRICS_PUBLISHER,
    TABLES_API, WORKSPACE_PLACEHOLDER,
};

/// The script. Its variables (`RESOURCE_GROUP`, `WORKSPACE_ID`, `LOCATION`, `DCR_NAME`,
/// `PRINCIPAL_ID`) default to the values given to `dcr template`, and the environment wins.
pub fn script(spec: &Spec) -> String {
    let mut s = String::new();
    let dcr = &spec.dcr_name;
    let table = &spec.table;
    let _ = writeln!(s, "#!/usr/bin/env bash");
    let _ = writeln!(
        s,
        "# Made by `dcrship dcr template`: the custom table {table}, the data collection rule \
         {dcr}\n# (stream {}) and Monitoring Metrics Publisher on it for the identity that \
         sends, with the\n# az CLI. template.json does the same in one deployment:\n\
         #   az deployment group create --resource-group \"$RESOURCE_GROUP\" --template-file \
         template.json \\\n#     --parameters workspaceResourceId=\"$WORKSPACE_ID\" \
         principalId=\"$PRINCIPAL_ID\"\n# Set the variables below (here or in the \
         environment), then: bash deploy-az.sh",
        spec.stream
    );
    let _ = writeln!(s, "set -euo pipefail\n");
    let _ = writeln!(
        s,
        "# The resource group of the DCR (the workspace's, or another in its region)."
    );
    let _ = writeln!(s, "RESOURCE_GROUP=\"${{RESOURCE_GROUP:-}}\"");
    let _ = writeln!(
        s,
        "# /subscriptions/…/resourceGroups/…/providers/Microsoft.OperationalInsights/workspaces/NAME"
    );
    let _ = writeln!(
        s,
        "WORKSPACE_ID=\"${{WORKSPACE_ID:-{}}}\"",
        spec.workspace_resource_id.as_deref().unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "# The object (principal) id of the identity that sends, e.g. the VM's managed identity."
    );
    let _ = writeln!(
        s,
        "PRINCIPAL_ID=\"${{PRINCIPAL_ID:-{}}}\"",
        spec.principal_id.as_deref().unwrap_or_default()
    );
    let _ = writeln!(s, "DCR_NAME=\"${{DCR_NAME:-{dcr}}}\"\n");
    let _ = writeln!(
        s,
        "for v in RESOURCE_GROUP WORKSPACE_ID; do\n  if [ -z \"${{!v}}\" ]; then echo \"set $v \
         (see the top of $0)\" >&2; exit 2; fi\ndone"
    );
    let _ = writeln!(s, "WORKSPACE_RG=$(cut -d/ -f5 <<<\"$WORKSPACE_ID\")");
    let _ = writeln!(s, "WORKSPACE_NAME=${{WORKSPACE_ID##*/}}");
    match &spec.location {
        Some(l) => {
            let _ = writeln!(s, "LOCATION=\"${{LOCATION:-{l}}}\"\n");
        }
        None => {
            let _ = writeln!(
                s,
                "LOCATION=\"${{LOCATION:-$(az monitor log-analytics workspace show --ids \
                 \"$WORKSPACE_ID\" --query location -o tsv)}}\"\n"
            );
        }
    }

    let _ = writeln!(s, "# 1. The table ({} plan).", spec.plan.name());
    if spec.plan == Plan::Auxiliary {
        // `table create` has no Auxiliary plan: the Tables API takes it.
        let body = serde_json::json!({ "properties": table_properties(spec) });
        let _ = writeln!(
            s,
            "az rest --method put \\\n  --url \"https://management.azure.com${{WORKSPACE_ID}}/tables/{table}?api-version={TABLES_API}\" \\\n  --body '{body}'"
        );
    } else {
        let columns: Vec<String> = spec
            .columns
            .iter()
            .map(|(n, t)| format!("{n}={}", t.name()))
            .collect();
        let _ = writeln!(
            s,
            "az monitor log-analytics workspace table create \\\n  --resource-group \
             \"$WORKSPACE_RG\" --workspace-name \"$WORKSPACE_NAME\" \\\n  --name {table} \
             --plan {} \\\n  --columns {}",
            spec.plan.name(),
            columns.join(" ")
        );
    }

    let _ = writeln!(s, "\n# 2. The data collection rule.");
    let _ = writeln!(
        s,
        "az extension add --name monitor-control-service --upgrade --only-show-errors"
    );
    let _ = writeln!(s, "RULE_FILE=$(mktemp)\ntrap 'rm -f \"$RULE_FILE\"' EXIT");
    let mut placeholders = spec.clone();
    placeholders.workspace_resource_id = None;
    placeholders.location = None;
    let rule_text = serde_json::to_string_pretty(&rule(&placeholders)).unwrap_or_default();
    let _ = writeln!(
        s,
        "sed -e \"s|{WORKSPACE_PLACEHOLDER}|$WORKSPACE_ID|\" -e \"s|{LOCATION_PLACEHOLDER}|$LOCATION|\" \
         >\"$RULE_FILE\" <<'RULE'\n{rule_text}\nRULE"
    );
    let _ = writeln!(
        s,
        "az monitor data-collection rule create --resource-group \"$RESOURCE_GROUP\" \\\n  \
         --name \"$DCR_NAME\" --location \"$LOCATION\" --rule-file \"$RULE_FILE\""
    );
    let _ = writeln!(
        s,
        "DCR_ID=$(az monitor data-collection rule show --resource-group \"$RESOURCE_GROUP\" \
         --name \"$DCR_NAME\" --query id -o tsv)"
    );

    let _ = writeln!(
        s,
        "\n# 3. Monitoring Metrics Publisher on the DCR for the identity that sends (the role \
         takes up to 30\n#    minutes to apply; dcrship keeps retrying a 403 meanwhile)."
    );
    let _ = writeln!(
        s,
        "if [ -n \"$PRINCIPAL_ID\" ]; then\n  az role assignment create --assignee-object-id \
         \"$PRINCIPAL_ID\" \\\n    --assignee-principal-type {} \\\n    --role \
         {MONITORING_METRICS_PUBLISHER} --scope \"$DCR_ID\"\nelse\n  echo \"no PRINCIPAL_ID: \
         grant Monitoring Metrics Publisher on $DCR_ID to the identity that sends\" >&2\nfi",
        spec.principal_type.name()
    );

    let _ = writeln!(
        s,
        "\n# 4. What the sender needs: endpoint and dcr for agent.toml (or dcrship send \
         --endpoint --dcr),\n#    stream {}.",
        spec.stream
    );
    match &spec.dce_id {
        None => {
            let _ = writeln!(
                s,
                "az monitor data-collection rule show --ids \"$DCR_ID\" \\\n  --query \"{{dcr: \
                 immutableId, endpoint: endpoints.logsIngestion}}\" -o json"
            );
        }
        Some(dce) => {
            let _ = writeln!(
                s,
                "az monitor data-collection rule show --ids \"$DCR_ID\" --query \"{{dcr: \
                 immutableId}}\" -o json\naz monitor data-collection endpoint show --ids \
                 \"{dce}\" \\\n  --query \"{{endpoint: logsIngestion.endpoint}}\" -o json"
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcr::template::tests::spec;
    use crate::dcr::template::PrincipalType;

    #[test]
    fn the_script_makes_the_table_the_rule_and_the_role() {
        let s = script(&spec());
        for want in [
            "set -euo pipefail",
            "--name MyApp_CL --plan Analytics",
            "--columns TimeGenerated=datetime Level=string Status=int Bytes=long Latency=real \
             Cached=boolean SeenAt=datetime Tags=dynamic",
            "az monitor data-collection rule create",
            "\"Custom-MyApp_CL\"",
            "--role 3913510d-42f4-4e42-8a64-420c390055eb --scope \"$DCR_ID\"",
            "--assignee-principal-type ServicePrincipal",
            "endpoints.logsIngestion",
            "DCR_NAME=\"${DCR_NAME:-dcr-myapp}\"",
            "LOCATION=\"${LOCATION:-$(az monitor log-analytics workspace show",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
        // the rule file between the heredoc markers is the rule, with placeholders
        let body = s
            .split("<<'RULE'\n")
            .nth(1)
            .and_then(|r| r.split("\nRULE\n").next())
            .expect("heredoc");
        let v: serde_json::Value = serde_json::from_str(body).expect("rule JSON");
        assert_eq!(v["location"], LOCATION_PLACEHOLDER);
        assert_eq!(
            v["properties"]["destinations"]["logAnalytics"][0]["workspaceResourceId"],
            WORKSPACE_PLACEHOLDER
        );
    }

    #[test]
    fn auxiliary_tables_go_through_the_tables_api_and_given_values_are_defaults() {
        let mut sp = spec();
        sp.plan = Plan::Auxiliary;
        sp.workspace_resource_id = Some(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/ws"
                .into(),
        );
        sp.location = Some("westeurope".into());
        sp.principal_id = Some("00000000-0000-0000-0000-0000000000aa".into());
        sp.principal_type = PrincipalType::Group;
        sp.dce_id = Some("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Insights/dataCollectionEndpoints/dce".into());
        let s = script(&sp);
        assert!(s.contains("az rest --method put"), "{s}");
        assert!(s.contains("api-version=2025-07-01"));
        let body = s
            .split("--body '")
            .nth(1)
            .and_then(|b| b.split('\'').next())
            .expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("table body");
        assert_eq!(v["properties"]["plan"], "Auxiliary");
        assert!(s.contains("WORKSPACE_ID=\"${WORKSPACE_ID:-/subscriptions/s/resourceGroups/rg/"));
        assert!(s.contains("LOCATION=\"${LOCATION:-westeurope}\""));
        assert!(
            s.contains("PRINCIPAL_ID=\"${PRINCIPAL_ID:-00000000-0000-0000-0000-0000000000aa}\"")
        );
        assert!(s.contains("--assignee-principal-type Group"));
        assert!(s.contains("data-collection endpoint show"));
        assert!(!s.contains("table create"));
    }
}
