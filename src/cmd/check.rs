//! `dcrship check`: validate a configuration file (every error with its line and key).

use crate::cli::CheckArgs;
use crate::config;

use super::CmdError;

/// Validates the file and returns a one-line description of what it configures.
pub fn run(args: &CheckArgs) -> Result<String, CmdError> {
    let cfg = config::load(&args.config).map_err(|e| CmdError::usage(e.to_string()))?;
    Ok(format!(
        "{}: configuration is valid ({} outputs: {}; {} inputs: {})",
        args.config.display(),
        cfg.outputs.len(),
        cfg.outputs.keys().cloned().collect::<Vec<_>>().join(", "),
        cfg.inputs.len(),
        cfg.inputs.keys().cloned().collect::<Vec<_>>().join(", "),
    ))
}
