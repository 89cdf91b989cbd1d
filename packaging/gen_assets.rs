//! Writes what the packages install beside the binary, generated from the clap definitions so
//! they never drift from `--help`: man pages (`dcrship.1` and one per command, `dcrship-run.1`,
//! …) and shell completions for bash, zsh and fish.
//!
//! `cargo run --example gen-assets -- DIR` (packaging/build-deb runs it).

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/assets"));
    let man = dir.join("man");
    let completions = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = dcrship::cli::Cli::command();
    write_man(&cmd, "dcrship", &man)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("dcrship-{}", sub.get_name());
        // The synopsis says `dcrship run`, the page is `dcrship-run(1)`, as git's and cargo's.
        let sub = sub.clone().bin_name(format!("dcrship {}", sub.get_name()));
        write_man(&sub, &name, &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = dcrship::cli::Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "dcrship", &completions)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write_man(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name)
        .render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page)?;
    println!("{}", path.display());
    Ok(())
}
