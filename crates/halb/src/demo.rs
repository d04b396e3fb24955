//! `halb demo`: three demo backends that answer with their own name, a
//! balancer in front of them and the admin endpoint, all on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::run;

pub fn run(listen: SocketAddr, admin: SocketAddr) -> ExitCode {
    run::init_tracing(None);
    let result = run::runtime().and_then(|rt| {
        let result = rt.block_on(demo(listen, admin));
        rt.shutdown_background();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("halb demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<()> {
    let mut backends = Vec::new();
    for n in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        tokio::spawn(demo_backend(listener, format!("demo-backend-{n}")));
        backends.push(address);
    }
    let listen = free_or_any(listen);
    let admin = free_or_any(admin);
    let mut config = format!(
        "[admin]\nbind = \"{admin}\"\n\n[chaos]\nallow = true\n\n\
         [[listener]]\nname = \"demo\"\nbind = \"{listen}\"\nprotocol = \"http\"\npool = \"demo\"\n\n\
         [[pool]]\nname = \"demo\"\nalgorithm = \"round_robin\"\n"
    );
    for address in &backends {
        config.push_str(&format!("\n[[pool.backend]]\naddress = \"{address}\"\n"));
    }
    let hash = run::config_hash(&config);
    let config = halb_config::parse(&config).map_err(|e| anyhow::anyhow!("demo config: {e}"))?;

    let (started, mut ready) = watch::channel(run::Started::default());
    let loaded = run::Loaded { config, hash };
    let node = tokio::spawn(run::serve(loaded, run::Source::Inline, Some(started)));
    if ready.changed().await.is_err() {
        return node.await?;
    }
    let bound = ready.borrow().clone();
    let balancer = bound.listeners.first().copied().unwrap_or(listen);
    println!("halb demo is running on loopback:");
    println!("  balancer   http://{balancer}/   (round robin over 3 demo backends)");
    if let Some(admin) = bound.admin {
        println!("  dashboard  http://{admin}/");
        println!("  status     http://{admin}/api/v1/status");
    }
    for (n, address) in backends.iter().enumerate() {
        println!("  backend    http://{address}/   (demo-backend-{})", n + 1);
    }
    println!("Try: curl http://{balancer}/   — press Ctrl-C to stop.");
    println!("A drill against it: cargo run --release -- drill --scenario drills/demo.toml");
    node.await?
}

/// The requested address if it can be bound now, else the same IP on any port.
fn free_or_any(address: SocketAddr) -> SocketAddr {
    match std::net::TcpListener::bind(address) {
        Ok(_) => address,
        Err(_) => SocketAddr::new(address.ip(), 0),
    }
}

async fn demo_backend(listener: TcpListener, name: String) {
    let body = Bytes::from(format!("hello from {name}\n"));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
