//! The `halb` binary: command line, wiring of data path and admin, signals.

mod cluster;
mod demo;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: per-thread free lists for every size, where glibc's malloc
/// takes slow paths for the data path's larger pieces (connection tasks,
/// request futures) and for aligned ones. Built without transparent huge
/// pages, which would cost several MiB of resident memory at start.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// halb: a high-availability load balancer for HTTP and TCP.
#[derive(Debug, Parser)]
#[command(name = "halb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node with the given config file. SIGHUP reloads it.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Reload the config file whenever it changes.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file: exit 0, or exit 1 listing every error.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// A self-contained demo on loopback: three demo backends, a balancer
    /// and the admin endpoint. Ctrl-C stops it.
    Demo {
        /// Address of the demo's balancer (a free port is used if taken).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Address of the demo's admin endpoint (a free port is used if taken).
        #[arg(long, default_value = "127.0.0.1:9900")]
        admin: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, watch } => run::run_file(&config, watch),
        Command::Check { config } => run::check_file(&config),
        Command::Demo { listen, admin } => demo::run(listen, admin),
    }
}
