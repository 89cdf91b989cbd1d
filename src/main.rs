//! The `dcrship` binary: parse arguments, run a command, print, exit with the contract's code.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use clap::Parser;

use dcrship::cli::{Cli, Command, SummaryFormat};
use dcrship::exit::ExitCode;
use dcrship::telemetry::LogFormat;
use dcrship::{cmd, console};

fn main() {
    dcrship::memory::limit_arenas();
    let cli = Cli::parse();
    dcrship::telemetry::init(cli.log_format, cli.log_level.as_deref());
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            console::err(&format!("dcrship: internal error: {e:#}"));
            ExitCode::Internal
        }
    };
    std::process::exit(code.code());
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // `--log-format json`: every line on stderr is JSON, the summary and its error too.
    let json_log = cli.log_format == LogFormat::Json;
    let error_line = |message: &str, code: i32| {
        if json_log {
            let mut fields = serde_json::Map::new();
            fields.insert("exit_code".into(), code.into());
            console::err(&console::json_line("ERROR", message, fields));
        } else {
            console::err(&format!("dcrship: error: {message}"));
        }
    };
    match cli.command {
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.spawn(dcrship::memory::trim_periodically());
            let code = runtime.block_on(cmd::run::run(args));
            runtime.shutdown_background();
            Ok(code)
        }
        Command::Dcr(args) => Ok(cmd::dcr::run(args)),
        Command::Check(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(cmd::check::run(&args)))
        }
        Command::Send(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.spawn(dcrship::memory::trim_periodically());
            let json = args.summary == SummaryFormat::Json;
            let result = runtime.block_on(cmd::send::run(args));
            // Do not wait for a stdin read that is still blocked: everything is answered.
            runtime.shutdown_background();
            Ok(match result {
                Ok(summary) => {
                    if json {
                        console::out(&serde_json::to_string(&summary)?);
                    } else if json_log {
                        console::err(&summary.log_line());
                    } else {
                        console::err(&format!("dcrship: {}", summary.text()));
                    }
                    if let Some(e) = &summary.error {
                        error_line(e, summary.exit_code);
                    }
                    ExitCode::from_code(summary.exit_code).unwrap_or(ExitCode::Internal)
                }
                Err(e) => {
                    if json {
                        let v = serde_json::json!({"exit_code": e.code.code(), "error": e.message});
                        console::out(&v.to_string());
                    }
                    error_line(&e.message, e.code.code());
                    e.code
                }
            })
        }
    }
}
