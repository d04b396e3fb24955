//! The `halb` binary: command line, wiring of data path and admin, signals.

mod canary;
mod chaos;
mod cluster;
mod demo;
mod drill;
mod fleet;
mod fleet_admin;
mod notify;
mod peers;
mod resolve;
mod run;
mod vrrp;

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
        /// The node's TOML config file (docs/config.md lists every key).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Reload the config file whenever it changes.
        #[arg(long)]
        watch: bool,
    },
    /// Validate a config file: exit 0, or exit 1 listing every error.
    Check {
        /// The node's TOML config file (docs/config.md lists every key).
        #[arg(long, short, value_name = "FILE")]
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
    /// The fleet's shared config in etcd.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Keep a backend registered in etcd (on a lease) while this process
    /// lives; SIGTERM/SIGINT remove it at once, a crash after --ttl.
    Register {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value = halb_config::DEFAULT_ETCD_PREFIX)]
        prefix: String,
        /// The pool to join.
        #[arg(long)]
        pool: String,
        /// The backend's ip:port.
        #[arg(long)]
        address: std::net::SocketAddr,
        /// The lease's time to live: how long the key outlives a crash.
        #[arg(long, default_value = "10s")]
        ttl: String,
        /// Renew only while GET on this URL answers 2xx.
        #[arg(long)]
        check: Option<String>,
        /// The backend's weight (0..=1000; default 1).
        #[arg(long)]
        weight: Option<u32>,
        /// A backup backend (used only when no primary is usable).
        #[arg(long)]
        backup: bool,
    },
    /// The fleet as etcd sees it.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Run a chaos / disaster-recovery drill under steady load and write its
    /// report. Exit 0: SLO met and every step done; 1: SLO missed or a step
    /// failed; 2: the drill could not run.
    Drill {
        /// The scenario file (drills/ has examples).
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        /// Where report.json and report.html go
        /// (default drill-reports/NAME-TIME).
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        /// Print what the drill would do and do nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate FILE as the shared config (listeners, pools, alerts) and
    /// store it at <prefix>/config; a bad file is refused with every error.
    Push {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value = halb_config::DEFAULT_ETCD_PREFIX)]
        prefix: String,
        /// Show the changes against what is stored; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Try the file on these nodes first (comma-separated names): it is
        /// stored for every node only if their answers stay healthy over
        /// --watch; otherwise they go back and the push exits 1.
        #[arg(long, value_name = "NODE[,NODE]", value_delimiter = ',')]
        canary: Vec<String>,
        /// How long the canaries are watched before promoting.
        #[arg(long, default_value = "30s", value_name = "DURATION")]
        watch: String,
        /// The largest share of 5xx answers on the canaries that still
        /// promotes (0 to 1).
        #[arg(long, default_value_t = 0.01, value_name = "SHARE")]
        max_error_rate: f64,
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Every node: the config revision it applied, and whether it runs
    /// what etcd holds now.
    Status {
        /// etcd client URLs, comma-separated.
        #[arg(long)]
        etcd: String,
        #[arg(long, default_value = halb_config::DEFAULT_ETCD_PREFIX)]
        prefix: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, watch } => run::run_file(&config, watch),
        Command::Check { config } => run::check_file(&config),
        Command::Demo { listen, admin } => demo::run(listen, admin),
        Command::Config {
            command:
                ConfigCommand::Push {
                    etcd,
                    prefix,
                    dry_run,
                    canary,
                    watch,
                    max_error_rate,
                    file,
                },
        } => fleet::push(fleet::Push {
            etcd: &etcd,
            prefix: &prefix,
            dry_run,
            file: &file,
            canary,
            watch: &watch,
            max_error_rate,
        }),
        Command::Register {
            etcd,
            prefix,
            pool,
            address,
            ttl,
            check,
            weight,
            backup,
        } => fleet::register(fleet::Register {
            etcd: &etcd,
            prefix: &prefix,
            pool: &pool,
            address,
            ttl: &ttl,
            check: check.as_deref(),
            weight,
            backup,
        }),
        Command::Cluster {
            command: ClusterCommand::Status { etcd, prefix, json },
        } => fleet::cluster_status(&etcd, &prefix, json),
        Command::Drill {
            scenario,
            report,
            dry_run,
        } => drill::drill(&scenario, report, dry_run),
    }
}
