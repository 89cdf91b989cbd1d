//! From a sample of logs to the Azure side that receives them (`dcrship dcr`).
//!
//! [`infer`] reads the rows `send` builds from a sample and gives each column its DCR type;
//! [`issues`] says what Azure would refuse or reserve (names), what did not agree (mixed
//! values, unreadable times) and how to fix it; [`report`] prints that. [`template`] makes
//! the custom table, the DCR and the role assignment as an ARM template and as the bodies the
//! `az` commands in [`az`] take; [`agent`] writes the `agent.toml` blocks that send to it.
//! [`names`] holds Azure's rules for table, stream, column and DCR names.

pub mod agent;
pub mod az;
pub mod infer;
pub mod issues;
pub mod names;
pub mod report;
pub mod template;
