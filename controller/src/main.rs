//! `controller`: switchyard's rollout controller. For now it validates a
//! model repository the way the gateway will load it; promote, rollback and
//! the rest follow.

// A command-line tool prints its results.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchyard_api::Manifest;

#[derive(Parser)]
#[command(
    name = "controller",
    version,
    about = "switchyard's rollout controller"
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every version's manifest and file hashes in a repository.
    Validate {
        /// The repository.
        #[arg(long, env = "SWITCHYARD_MODELS", default_value = "models")]
        models: PathBuf,
    },
}

#[derive(serde::Serialize)]
struct Finding {
    model: String,
    version: String,
    ok: bool,
    error: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { models } => validate(&models, cli.json),
    }
}

fn validate(root: &std::path::Path, json: bool) -> ExitCode {
    let mut findings = Vec::new();
    let models = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
        Err(e) => {
            eprintln!("controller: cannot read repository {}: {e}", root.display());
            return ExitCode::from(2);
        }
    };
    let mut models: Vec<PathBuf> = models.collect();
    models.sort();
    for model in models {
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&model)
            .map(|e| {
                e.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.join("model.toml").is_file())
                    .collect()
            })
            .unwrap_or_default();
        versions.sort();
        for dir in versions {
            let name = |p: &std::path::Path| {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            let result = Manifest::load(&dir).and_then(|m| m.verify_files(&dir));
            findings.push(Finding {
                model: name(&model),
                version: name(&dir),
                ok: result.is_ok(),
                error: result.err().map(|e| e.to_string()),
            });
        }
    }
    let failed = findings.iter().filter(|f| !f.ok).count();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        for f in &findings {
            match &f.error {
                None => println!("ok      {}/{}", f.model, f.version),
                Some(e) => println!("FAILED  {}/{}: {e}", f.model, f.version),
            }
        }
        println!("{} versions, {failed} failed", findings.len());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
