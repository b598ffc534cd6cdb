//! `latency_proxy DELAY_MS LISTEN_PORT TARGET_PORT`: a TCP proxy on 127.0.0.1:LISTEN_PORT to
//! 127.0.0.1:TARGET_PORT that hands each chunk a client sends to the server DELAY_MS after it
//! arrived, in order, and the server's answers back at once. Every request, and so every round
//! trip, starts DELAY_MS late, which is what a network's round trip does to a synchronous client
//! (these kernels have no netem). `scripts/bench-peers.sh` puts it in front of SeaweedFS so that
//! every client meets the same latency.
//!
//! It prints `listening` once bound, and runs until killed. Each connection costs two tokio
//! tasks and no thread, so the proxy forwards thousands of requests a second on one core and is
//! not what bounds a client that keeps a hundred requests in flight (the Python proxy it
//! replaces handled about 2,200 a second).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What one read from a socket may take: as much as the kernel has, up to this.
const CHUNK: usize = 256 * 1024;
/// Chunks on their way to the server per connection (at most 64 MiB): a server slower than
/// its client stops the proxy reading, as TCP would stop the client.
const IN_FLIGHT: usize = 256;

fn usage() -> ! {
    eprintln!("usage: latency_proxy DELAY_MS LISTEN_PORT TARGET_PORT");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [delay, listen, target] = args.as_slice() else {
        usage()
    };
    let (Ok(delay), Ok(listen), Ok(target)) = (
        delay.parse::<u64>(),
        listen.parse::<u16>(),
        target.parse::<u16>(),
    ) else {
        usage()
    };
    let delay = Duration::from_millis(delay);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("latency_proxy: cannot start tokio: {e}");
            std::process::exit(1)
        });
    runtime.block_on(async move {
        let listener = match TcpListener::bind(("127.0.0.1", listen)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("latency_proxy: cannot listen on 127.0.0.1:{listen}: {e}");
                std::process::exit(1)
            }
        };
        println!("listening");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(straight(server_read, client_write));
                delayed(client_read, server_write, delay).await;
            });
        }
    });
}

/// Client to server: each chunk is written `delay` after it was read, in order. An empty chunk
/// is the client's end of stream, passed on as a half-close.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some((due, data)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if data.is_empty() || to.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await.unwrap_or(0);
        let due = Instant::now() + delay;
        if tx.send((due, buf[..n].to_vec())).await.is_err() || n == 0 {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// Server to client, at once, in reads of up to `CHUNK` as the other way (`tokio::io::copy`
/// would cut a body into writes of 8 KiB, costing the client more receives than the server's
/// own writes would).
async fn straight(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(n) if n > 0 => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    let _ = to.shutdown().await;
}
