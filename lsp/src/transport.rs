//! stdio transport with a guard in front of tower-lsp-server's codec.
//!
//! The codec ends the input stream at the first undecodable message (tokio-util's FramedRead
//! stops after a decoder error), which would end the server on one bad frame. So frames are
//! checked here first: a body that is not JSON gets a Parse error (-32700), JSON that is not a
//! JSON-RPC message gets Invalid Request (-32600), and the server goes on. Only well-formed
//! messages reach the service. Both the server's output and these errors are written whole, frame
//! by frame, under one lock.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tower_lsp_server::Server;

/// One framed message: its body, or why the header could not be read.
enum Frame {
    Body(Vec<u8>),
    BadHeader(String),
}

/// Messages larger than this are refused rather than allocated.
const MAX_BODY: usize = 256 << 20;

async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Frame>> {
    let mut length: Option<Result<usize, String>> = None;
    let mut saw_header = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if saw_header {
                break;
            }
            continue; // Stray blank lines between frames.
        }
        saw_header = true;
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse().map_err(|_| format!("bad Content-Length `{}`", value.trim())));
            }
        }
    }
    let length = match length {
        None => return Ok(Some(Frame::BadHeader("missing Content-Length header".into()))),
        Some(Err(e)) => return Ok(Some(Frame::BadHeader(e))),
        Some(Ok(n)) if n > MAX_BODY => return Ok(Some(Frame::BadHeader(format!("message of {n} bytes is too large")))),
        Some(Ok(n)) => n,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(Frame::Body(body)))
}

/// Why a JSON value is not a JSON-RPC 2.0 message, if it is not.
fn check_message(value: &Value) -> Result<(), (&'static str, Value)> {
    let Some(obj) = value.as_object() else { return Err(("expected a JSON-RPC object", Value::Null)) };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let id_ok = matches!(obj.get("id"), None | Some(Value::Null | Value::Number(_) | Value::String(_)));
    let reply_id = if id_ok { id } else { Value::Null };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(("missing \"jsonrpc\": \"2.0\"", reply_id));
    }
    if !id_ok {
        return Err(("an id must be a number or a string", Value::Null));
    }
    match obj.get("method") {
        Some(Value::String(_)) => match obj.get("params") {
            None | Some(Value::Object(_) | Value::Array(_) | Value::Null) => Ok(()),
            Some(_) => Err(("params must be an object or an array", reply_id)),
        },
        Some(_) => Err(("method must be a string", reply_id)),
        None if obj.contains_key("id") && (obj.contains_key("result") || obj.contains_key("error")) => Ok(()),
        None => Err(("neither a request, a notification nor a response", reply_id)),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(out: &Mutex<W>, body: &[u8]) -> std::io::Result<()> {
    let mut out = out.lock().await;
    out.write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
    out.write_all(body).await?;
    out.flush().await
}

async fn write_error<W: AsyncWrite + Unpin>(
    out: &Mutex<W>,
    code: i64,
    message: String,
    id: Value,
) -> std::io::Result<()> {
    let body = json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message }, "id": id });
    write_frame(out, body.to_string().as_bytes()).await
}

/// Forward well-formed messages from `input` to the server; answer the others.
async fn guard_input<R, F, W>(input: R, mut to_server: F, out: Arc<Mutex<W>>) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    F: AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(input);
    while let Some(frame) = read_frame(&mut input).await? {
        match frame {
            Frame::BadHeader(why) => write_error(&out, -32700, format!("Parse error: {why}"), Value::Null).await?,
            Frame::Body(body) => match serde_json::from_slice::<Value>(&body) {
                Err(e) => write_error(&out, -32700, format!("Parse error: {e}"), Value::Null).await?,
                Ok(value) => match check_message(&value) {
                    Err((why, id)) => write_error(&out, -32600, format!("Invalid request: {why}"), id).await?,
                    Ok(()) => {
                        to_server.write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
                        to_server.write_all(&body).await?;
                        to_server.flush().await?;
                    }
                },
            },
        }
    }
    Ok(())
}

/// Copy the server's frames to `out`, one whole frame at a time.
async fn copy_output<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from_server: R,
    out: Arc<Mutex<W>>,
) -> std::io::Result<()> {
    let mut from_server = BufReader::new(from_server);
    while let Some(frame) = read_frame(&mut from_server).await? {
        if let Frame::Body(body) = frame {
            write_frame(&out, &body).await?;
        }
    }
    Ok(())
}

/// Serve LSP on any byte streams (stdio in production, pipes in tests) until `exit` or the end of
/// the input.
pub async fn serve<I, O>(input: I, output: O)
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let (service, socket) = crate::service();
    let out = Arc::new(Mutex::new(output));
    let (server_in, feed) = tokio::io::duplex(1 << 16);
    let (server_out, from_server) = tokio::io::duplex(1 << 16);
    // When the input ends, `feed` is dropped and the server sees the end of its input too.
    let reader = tokio::spawn(guard_input(input, feed, out.clone()));
    let writer = tokio::spawn(copy_output(from_server, out));
    Server::new(server_in, server_out, socket).serve(service).await;
    reader.abort();
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shapes() {
        assert!(check_message(&json!({ "jsonrpc": "2.0", "id": 1, "method": "x", "params": {} })).is_ok());
        assert!(check_message(&json!({ "jsonrpc": "2.0", "method": "x" })).is_ok());
        assert!(check_message(&json!({ "jsonrpc": "2.0", "id": "a", "result": null })).is_ok());
        assert_eq!(check_message(&json!({ "hello": 1 })).unwrap_err().1, Value::Null);
        assert_eq!(check_message(&json!({ "jsonrpc": "2.0", "id": 3, "method": 4 })).unwrap_err().1, json!(3));
        assert!(check_message(&json!({ "jsonrpc": "2.0", "id": [1], "method": "x" })).is_err());
        assert!(check_message(&json!({ "jsonrpc": "2.0", "id": 1, "method": "x", "params": 5 })).is_err());
        assert!(check_message(&json!([1, 2])).is_err());
    }

    #[tokio::test]
    async fn frames_and_bad_headers() {
        let data = b"Content-Length: 2\r\n\r\n{}\r\nX-Other: 1\r\n\r\nContent-Length: zz\r\n\r\n";
        let mut reader = BufReader::new(&data[..]);
        assert!(matches!(read_frame(&mut reader).await.unwrap(), Some(Frame::Body(b)) if b == b"{}"));
        assert!(matches!(read_frame(&mut reader).await.unwrap(), Some(Frame::BadHeader(m)) if m.contains("missing")));
        assert!(matches!(read_frame(&mut reader).await.unwrap(), Some(Frame::BadHeader(m)) if m.contains("zz")));
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }
}
