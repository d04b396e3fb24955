//! `halb run` and `halb check`: load and validate a config, start the data
//! path and the admin endpoint, stop gracefully on SIGTERM/SIGINT.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use halb_config::Config;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long in-flight work may take to finish after SIGTERM/SIGINT.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Read and validate a config file, printing every error to stderr.
pub fn load(path: &Path) -> Option<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("halb: cannot read {}: {e}", path.display());
            return None;
        }
    };
    match halb_config::parse(&text) {
        Ok(config) => Some(config),
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("{}: {error}", path.display());
            }
            let n = errors.0.len();
            eprintln!(
                "halb: {} has {n} error{}; nothing started",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            None
        }
    }
}

pub fn check_file(path: &Path) -> ExitCode {
    match load(path) {
        Some(config) => {
            println!(
                "{}: OK ({} listener{}, {} pool{})",
                path.display(),
                config.listeners.len(),
                if config.listeners.len() == 1 { "" } else { "s" },
                config.pools.len(),
                if config.pools.len() == 1 { "" } else { "s" },
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

pub fn run_file(path: &Path) -> ExitCode {
    init_tracing();
    let Some(config) = load(path) else {
        return ExitCode::FAILURE;
    };
    let result = runtime().and_then(|rt| {
        let result = rt.block_on(serve(config, None));
        // Nothing left to wait for: do not block on idle runtime threads.
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The main runtime: signals and the admin endpoint. The data path runs on
/// its own worker threads.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("halb-main")
        .enable_all()
        .build()
        .context("cannot start the main runtime")
}

/// Run a node until SIGTERM/SIGINT, then drain. `started` is told the
/// bound addresses once everything listens.
pub async fn serve(config: Config, started: Option<watch::Sender<Started>>) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;

    let proxy = halb_proxy::Proxy::start(&config)?;
    let (stop_admin, admin_stopped) = watch::channel(false);
    let mut admin_address = None;
    if let Some(admin) = &config.admin {
        let listener = match tokio::net::TcpListener::bind(admin.bind).await {
            Ok(listener) => listener,
            Err(e) => {
                proxy.shutdown(Duration::ZERO);
                anyhow::bail!("admin: cannot bind {}: {e}", admin.bind);
            }
        };
        admin_address = listener.local_addr().ok();
        tracing::info!(address = ?admin_address, "admin listening");
        let endpoint = halb_admin::Admin::new(proxy.topology(), admin.token.clone());
        tokio::spawn(endpoint.serve(listener, admin_stopped));
    }
    if let Some(started) = started {
        let topology = proxy.topology();
        let listeners = topology.load().listeners.iter().map(|l| l.bound).collect();
        let _ = started.send(Started {
            listeners,
            admin: admin_address,
        });
    }

    let which = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    tracing::info!(signal = which, drain = ?DRAIN_TIMEOUT, "stopping: finishing in-flight work (signal again to exit now)");
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    let _ = stop_admin.send(true);
    tokio::task::spawn_blocking(move || proxy.shutdown(DRAIN_TIMEOUT)).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Where a started node listens.
#[derive(Debug, Clone, Default)]
pub struct Started {
    pub listeners: Vec<std::net::SocketAddr>,
    pub admin: Option<std::net::SocketAddr>,
}
