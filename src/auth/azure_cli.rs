//! The signed-in Azure CLI user: `az account get-access-token`.
//!
//! Meant for a workstation (trying `dcrship send` before deploying), and the last resort of
//! `auto`. The CLI is run with `--resource <audience> --output json` (plus `--tenant` when one is
//! configured) and given 30 seconds. Its JSON carries `accessToken` and the expiry as
//! `expires_on` (epoch seconds, CLI 2.54 and later) or only `expiresOn`, a local time without an
//! offset (`2026-11-23 17:04:05.000000`), read in this machine's time zone. Standard output holds
//! the token, so none of it reaches a message; standard error's first line does (it says what
//! to do, typically "Please run 'az login'").

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{cloud, entra, AccessToken, AuthConfig, AuthError, BoxFuture, TokenSource};
use crate::secret::Secret;

const NAME: &str = "azure-cli";
/// How long `az` may take: it refreshes its own tokens over the network, which can be slow.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line of `az`'s standard error kept in a message.
const MAX_STDERR_LINE: usize = 300;

/// Tokens from the Azure CLI. Holds no secret.
#[derive(Debug)]
pub struct AzureCliSource {
    /// The program and the arguments that come before ours (tests run a script through `sh`).
    program: Vec<OsString>,
    resource: String,
    tenant: Option<String>,
    timeout: Duration,
}

impl AzureCliSource {
    /// Validates the configuration; runs nothing.
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let tenant = cfg
            .tenant_id
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if let Some(tenant) = &tenant {
            entra::check_tenant(tenant)?;
        }
        Ok(AzureCliSource {
            program: vec!["az".into()],
            resource: cloud::resource(&cfg.audience()),
            tenant,
            timeout: TIMEOUT,
        })
    }

    /// Runs `command` (a program and its leading arguments) instead of `az` from `PATH`.
    pub fn with_command<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let command: Vec<OsString> = command.into_iter().map(Into::into).collect();
        if !command.is_empty() {
            self.program = command;
        }
        self
    }

    /// Replaces the 30 s time limit (tests use a short one).
    #[cfg(test)]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]).args([
            "account",
            "get-access-token",
            "--resource",
            &self.resource,
            "--output",
            "json",
        ]);
        if let Some(tenant) = &self.tenant {
            command.args(["--tenant", tenant]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn request(&self) -> Result<AccessToken, AuthError> {
        let command = self.command();
        let program = PathBuf::from(&self.program[0]);
        let timeout = self.timeout;
        let ran = tokio::task::spawn_blocking(move || run(command, timeout))
            .await
            .map_err(|e| failed(format!("running the Azure CLI failed: {e}")))?;
        let output = match ran {
            Ok(output) => output,
            Err(Run::NotFound) => {
                return Err(AuthError::Unavailable {
                    source_name: NAME,
                    reason: format!("Azure CLI not installed ({} not found)", program.display()),
                })
            }
            Err(Run::TimedOut) => {
                return Err(failed(format!(
                    "az account get-access-token did not finish within {} s",
                    timeout.as_secs()
                )))
            }
            Err(Run::Io(e)) => return Err(failed(format!("cannot run the Azure CLI: {e}"))),
        };
        if !output.success {
            return Err(failed(format!(
                "az account get-access-token failed: {} (run az login{})",
                stderr_line(&output.stderr),
                match &self.tenant {
                    Some(t) => format!(" --tenant {t}"),
                    None => String::new(),
                }
            )));
        }
        parse(&output.stdout, &jiff::tz::TimeZone::system())
    }
}

impl TokenSource for AzureCliSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AccessToken, AuthError>> {
        Box::pin(self.request())
    }
}

fn failed(reason: String) -> AuthError {
    AuthError::Failed {
        source_name: NAME,
        reason,
    }
}

/// What a finished `az` left.
struct Output {
    success: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

enum Run {
    NotFound,
    TimedOut,
    Io(std::io::Error),
}

/// Runs `command` to completion or until `timeout`, then kills it. Blocking: call from
/// `spawn_blocking`. The pipes are drained on their own threads so a chatty child cannot stall.
fn run(mut command: Command, timeout: Duration) -> Result<Output, Run> {
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Run::NotFound,
        _ => Run::Io(e),
    })?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                // A read error leaves what was read; the exit status tells the rest.
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Run::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Run::Io(e));
            }
        }
    };
    Ok(Output {
        success: status.success(),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// The line of standard error that says what went wrong: the first `ERROR:` line, else the first
/// non-empty one.
fn stderr_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("ERROR"))
        .or_else(|| lines.next())
        .unwrap_or("no message on standard error");
    let mut line = line.to_string();
    if line.len() > MAX_STDERR_LINE {
        let mut cut = MAX_STDERR_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// The token in `az`'s JSON; `expiresOn` (no offset) is read in `tz`.
fn parse(stdout: &[u8], tz: &jiff::tz::TimeZone) -> Result<AccessToken, AuthError> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(stdout) else {
        return Err(failed(format!(
            "az account get-access-token printed something that is not a JSON object ({} bytes)",
            stdout.len()
        )));
    };
    let token = match fields.get("accessToken") {
        Some(Value::String(t)) if !t.trim().is_empty() => Secret::new(t.trim()),
        _ => return Err(failed("the Azure CLI's answer has no accessToken".into())),
    };
    let epoch = match fields.get("expires_on") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let expires_at = if let Some(epoch) = epoch {
        jiff::Timestamp::from_second(epoch)
            .map_err(|_| failed(format!("expires_on {epoch} is out of range")))?
    } else {
        let Some(Value::String(local)) = fields.get("expiresOn") else {
            return Err(failed(
                "the Azure CLI's answer has no expires_on or expiresOn".into(),
            ));
        };
        local
            .trim()
            .parse::<jiff::civil::DateTime>()
            .ok()
            .and_then(|dt| dt.to_zoned(tz.clone()).ok())
            .map(|zoned| zoned.timestamp())
            .ok_or_else(|| failed(format!("the Azure CLI's expiresOn {local:?} is not a time")))?
    };
    Ok(AccessToken { token, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A fake `az` (a shell script run by `sh`, so no freshly written file is executed) that
    /// records its arguments next to itself and then runs `body`.
    fn fake_az(dir: &Path, body: &str) -> Vec<OsString> {
        let script = dir.join("az");
        let args = dir.join("args");
        std::fs::write(
            &script,
            format!("printf '%s\\n' \"$@\" > '{}'\n{body}\n", args.display()),
        )
        .unwrap();
        vec!["/bin/sh".into(), script.into()]
    }

    fn recorded_args(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("args"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn runs_az_and_reads_the_epoch_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"accessToken":"tok-cli","expiresOn":"2030-01-01 00:00:00.000000","expires_on":1893456000,"subscription":"s","tenant":"t","tokenType":"Bearer"}"#;
        let src = AzureCliSource::new(&AuthConfig {
            tenant_id: Some("contoso.onmicrosoft.com".into()),
            cloud: crate::auth::Cloud::UsGov,
            ..Default::default()
        })
        .unwrap()
        .with_command(fake_az(
            dir.path(),
            &format!("echo 'WARNING: chatty' >&2\ncat <<'J'\n{json}\nJ"),
        ));
        let token = src.fetch().await.unwrap();
        assert_eq!(token.token.expose(), "tok-cli");
        assert_eq!(token.expires_at.as_second(), 1_893_456_000);
        assert_eq!(
            recorded_args(dir.path()),
            [
                "account",
                "get-access-token",
                "--resource",
                "https://monitor.azure.us",
                "--output",
                "json",
                "--tenant",
                "contoso.onmicrosoft.com"
            ]
        );
    }

    #[test]
    fn older_clis_give_local_time() {
        let json =
            br#"{"accessToken":"t","expiresOn":"2026-11-23 17:04:05.000000","tokenType":"Bearer"}"#;
        let tz = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        let token = parse(json, &tz).unwrap();
        assert_eq!(
            token.expires_at,
            "2026-11-23T15:04:05Z".parse::<jiff::Timestamp>().unwrap()
        );
        let bad = br#"{"accessToken":"t","expiresOn":"soon"}"#;
        let err = parse(bad, &tz).unwrap_err();
        assert!(err.to_string().contains("not a time"), "{err}");
        let no_token = br#"{"expires_on":1}"#;
        assert!(parse(no_token, &tz).is_err());
    }

    #[tokio::test]
    async fn not_logged_in_says_run_az_login() {
        let dir = tempfile::tempdir().unwrap();
        let src = AzureCliSource::new(&AuthConfig::default())
            .unwrap()
            .with_command(fake_az(
            dir.path(),
            "echo \"ERROR: Please run 'az login' to setup account.\" >&2\necho second >&2\nexit 1",
        ));
        let err = src.fetch().await.unwrap_err();
        assert!(matches!(err, AuthError::Failed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("ERROR: Please run 'az login' to setup account."),
            "{text}"
        );
        assert!(text.contains("run az login"), "{text}");
        assert!(!text.contains("second"), "{text}");
        assert!(!recorded_args(dir.path()).contains(&"--tenant".to_string()));
    }

    #[tokio::test]
    async fn a_missing_cli_is_unavailable() {
        let src = AzureCliSource::new(&AuthConfig::default())
            .unwrap()
            .with_command(["/nonexistent/bin/az"]);
        let err = src.fetch().await.unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains("Azure CLI not installed"), "{err}");
    }

    #[tokio::test]
    async fn a_hung_cli_is_killed_at_the_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let src = AzureCliSource::new(&AuthConfig::default())
            .unwrap()
            .with_command(fake_az(dir.path(), "exec sleep 30"))
            .with_timeout(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = src.fetch().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    #[tokio::test]
    async fn garbage_output_never_reaches_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let src = AzureCliSource::new(&AuthConfig::default())
            .unwrap()
            .with_command(fake_az(dir.path(), "echo 'secret-token-here not json'"));
        let err = src.fetch().await.unwrap_err();
        assert!(
            !format!("{err} {err:?}").contains("secret-token-here"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_tenant_is_a_config_error() {
        let err = AzureCliSource::new(&AuthConfig {
            tenant_id: Some("a b".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
        // Nor may it pass for an option of az's.
        let err = AzureCliSource::new(&AuthConfig {
            tenant_id: Some("--help".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
    }
}
