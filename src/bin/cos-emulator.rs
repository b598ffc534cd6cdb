//! `cos-emulator`: a local COS-compatible server for tests, the demo and benchmarks.
//!
//! Prints `listening on http://127.0.0.1:PORT` as its first line once it accepts connections;
//! stops cleanly on SIGTERM or SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use cosmount::cos::auth::Secret;
use cosmount::emulator::{Emulator, EmulatorConfig, faults::Faults};

/// A local server that speaks Tencent COS's XML API and verifies its signatures.
#[derive(Parser, Debug)]
#[command(name = "cos-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Directory holding the buckets' data; kept across restarts.
    #[arg(long)]
    data_dir: PathBuf,
    /// The SecretId clients must sign with.
    #[arg(long)]
    secret_id: String,
    /// The SecretKey clients must sign with.
    #[arg(long)]
    secret_key: String,
    /// When given, requests must carry this x-cos-security-token (temporary credentials).
    #[arg(long)]
    security_token: Option<String>,
    /// A bucket to serve, `name-appid` (in --region) or `name-appid@region`; repeat for
    /// several. The first is the default for requests whose Host is an IP address or
    /// localhost.
    #[arg(long = "bucket", required = true)]
    buckets: Vec<String>,
    /// Region of the buckets given without one (and of buckets PUT Bucket makes through a
    /// host that names no region).
    #[arg(long, default_value = "ap-guangzhou")]
    region: String,
    /// Fault injection rules, e.g. `put_part:503:0.2,get:reset:0.1,any:delay=200ms:0.05`
    /// (see docs/EMULATOR.md).
    #[arg(long)]
    faults: Option<String>,
    /// Explain signature mismatches in the error message.
    #[arg(long)]
    debug: bool,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    if let Some(spec) = &args.faults
        && let Err(e) = Faults::validate(spec)
    {
        eprintln!("cos-emulator: invalid --faults: {e}");
        std::process::exit(2);
    }
    let config = EmulatorConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        secret_id: args.secret_id,
        secret_key: Secret::new(args.secret_key),
        session_token: args.security_token.map(Secret::new),
        buckets: args.buckets,
        region: args.region,
        faults: args.faults,
        debug: args.debug,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cos-emulator: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        let emulator = match Emulator::start(config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cos-emulator: {e}");
                return 1;
            }
        };
        println!("listening on {}", emulator.endpoint());
        let _ = std::io::stdout().flush();
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cos-emulator: cannot handle SIGTERM: {e}");
                    return 1;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        emulator.stop();
        0
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
