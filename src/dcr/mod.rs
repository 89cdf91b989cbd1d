//! From a sample of logs to the Azure side that receives them (`dcrship dcr`).
//!
//! [`infer`] reads the rows `send` builds from a sample and gives each column its DCR type;
//! [`issues`] says what Azure would refuse or reserve (names), what did not agree (mixed
//! values, unreadable times) and how to fix it; [`report`] prints that. [`template`] makes
//! the custom table, the DCR and the role assignment as an ARM template and as the bodies the
//! `az` commands in [`az`] take; [`agent`] writes the `agent.toml` blocks that send to it.
//! [`names`] holds Azure's rules for table, stream, column and DCR names. [`create`] makes
//! the same resources through Resource Manager ([`arm`]) and waits until the stream accepts.

pub mod agent;
pub mod arm;
pub mod az;
pub mod create;
pub mod infer;
pub mod issues;
pub mod names;
pub mod report;
pub mod template;

/// What `dcr template` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Artifact {
    /// template.json: the ARM template (table, DCR, role assignment)
    Arm,
    /// dcr-rule.json: the DCR for `az monitor data-collection rule create --rule-file`
    Rule,
    /// deploy-az.sh: the same as the template, with az commands
    Az,
    /// agent.toml: [outputs.NAME] with its columns, and [inputs.NAME]
    Agent,
}

impl Artifact {
    pub const ALL: [Artifact; 4] = [Artifact::Arm, Artifact::Rule, Artifact::Az, Artifact::Agent];

    /// The file it is written to with `--out-dir`.
    pub fn file_name(self) -> &'static str {
        match self {
            Artifact::Arm => "template.json",
            Artifact::Rule => "dcr-rule.json",
            Artifact::Az => "deploy-az.sh",
            Artifact::Agent => "agent.toml",
        }
    }
}
