//! A TCP proxy that drops connections: a source whose network cuts answers
//! short. Every `cut_every`-th connection (1st, then every n-th after it)
//! forwards at most `cut_after_bytes` of the server's answer and is then
//! closed with a reset, wherever that falls (in a header, in a body, between
//! two keep-alive answers). Everything else passes byte for byte. It speaks
//! no protocol of its own: the client and the server talk real HTTP through it.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// A running proxy; dropping it stops accepting (open connections end with
/// their peers).
pub struct CutProxy {
    /// `http://127.0.0.1:PORT`, to put where the server's base URL was.
    pub base: String,
    cuts: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Proxies to `upstream` (`host:port`).
    pub async fn start(upstream: &str, cut_every: usize, cut_after_bytes: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (cuts, connections) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let upstream = upstream.to_owned();
        let (c2, n2) = (cuts.clone(), connections.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let n = n2.fetch_add(1, Ordering::SeqCst);
                let cut = cut_every > 0 && n % cut_every == 0;
                let (upstream, cuts) = (upstream.clone(), c2.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    pipe(client, server, cut.then_some(cut_after_bytes), &cuts).await;
                });
            }
        });
        Self {
            base,
            cuts,
            connections,
            task,
        }
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways; with `cut`, the answer direction stops after that many
/// bytes and both sockets are reset.
async fn pipe(client: TcpStream, server: TcpStream, cut: Option<usize>, cuts: &AtomicUsize) {
    if cut.is_some() {
        // Closed with a reset, not a clean end: what a dropped link looks like.
        let _ = client.set_zero_linger();
    }
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let n = match cut {
            Some(limit) if sent + n >= limit => {
                let _ = cw.write_all(&buf[..limit - sent]).await;
                cuts.fetch_add(1, Ordering::SeqCst);
                up.abort();
                drop(cw);
                return;
            }
            _ => n,
        };
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n;
    }
    let _ = cw.shutdown().await;
    let _ = up.await;
}
