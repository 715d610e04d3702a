//! `compart node --health ADDR`: the probes a supervisor asks (Kubernetes' liveness and readiness
//! probes). `GET /healthz` is 200 while the process runs; `GET /readyz` is 200 once the node is
//! connected to every other node of the deployment, else 503. Anything else is 404. One request
//! per connection, a few hundred bytes read at most, within a second: the port cannot be used to
//! hold a node's memory.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST_BYTES: usize = 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves the probes on `listener` until the process ends; `ready` answers `/readyz`.
pub async fn serve(listener: TcpListener, ready: Arc<dyn Fn() -> bool + Send + Sync>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &*ready)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, ready: &(dyn Fn() -> bool + Send + Sync)) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && !buf.contains(&b'\n') && buf.len() < MAX_REQUEST_BYTES {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let (status, body) = respond(&buf, ready);
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(reply.as_bytes()).await?;
    stream.shutdown().await
}

/// The status line and body for a request whose first bytes are `request`.
fn respond(request: &[u8], ready: &dyn Fn() -> bool) -> (&'static str, &'static str) {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, path) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    if method != b"GET" && method != b"HEAD" {
        return ("405 Method Not Allowed", "GET only\n");
    }
    match path {
        b"/healthz" => ("200 OK", "ok\n"),
        b"/readyz" if ready() => ("200 OK", "ready\n"),
        b"/readyz" => ("503 Service Unavailable", "not connected to every node yet\n"),
        _ => ("404 Not Found", "/healthz or /readyz\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let yes = || true;
        let no = || false;
        assert_eq!(respond(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", &no).0, "200 OK");
        assert_eq!(respond(b"GET /readyz HTTP/1.1\r\n", &yes).0, "200 OK");
        assert_eq!(respond(b"GET /readyz HTTP/1.1\r\n", &no).0, "503 Service Unavailable");
        assert_eq!(respond(b"GET /other HTTP/1.1\r\n", &yes).0, "404 Not Found");
        assert_eq!(respond(b"POST /healthz HTTP/1.1\r\n", &yes).0, "405 Method Not Allowed");
        assert_eq!(respond(b"", &yes).0, "405 Method Not Allowed");
    }

    #[test]
    fn serves_over_tcp() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let f = flag.clone();
            tokio::spawn(serve(listener, Arc::new(move || f.load(std::sync::atomic::Ordering::Relaxed))));
            let get = |path: &'static str| async move {
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).await.unwrap();
                out
            };
            assert!(get("/healthz").await.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(get("/readyz").await.starts_with("HTTP/1.1 503 "));
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            let ready = get("/readyz").await;
            assert!(ready.starts_with("HTTP/1.1 200 OK\r\n") && ready.ends_with("\r\n\r\nready\n"), "{ready}");
        });
    }
}
