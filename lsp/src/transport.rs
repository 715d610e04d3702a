//! stdio transport with a guard in front of tower-lsp-server's codec.
//!
//! The codec ends the input stream at the first undecodable message (tokio-util's FramedRead
//! stops after a decoder error), which would end the server on one bad frame. So frames are
//! checked here first: a body that is not JSON gets a Parse error (-32700), JSON that is not a
//! JSON-RPC message gets Invalid Request (-32600), and the server goes on. A bad header (a byte
//! that is not UTF-8, no or a bad Content-Length) gets a Parse error too, its body skipped when its
//! length is known; otherwise the next `Content-Length` resynchronises the stream. Each of these
//! is also logged (`window/logMessage` and stderr). Only well-formed messages reach the service.
//! Both the server's output and these errors are written whole, frame by frame, under one lock.
//!
//! A handler that panics answers its request with an Internal error (-32603) instead of ending
//! the server ([`CatchPanic`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;
use tower_lsp_server::jsonrpc::{self, Request, Response};
use tower_lsp_server::Server;
use tower_service::Service;

/// One framed message: its body, or why its header is bad (with the body when its length was
/// known, so that a request in it can still be answered by id).
enum Frame {
    Body(Vec<u8>),
    BadHeader(String, Option<Vec<u8>>),
}

/// Messages larger than this are refused rather than allocated.
const MAX_BODY: usize = 256 << 20;

async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Frame>> {
    let mut length: Option<Result<usize, String>> = None;
    let mut not_utf8 = false;
    let mut saw_header = false;
    loop {
        // Bytes, not a String: a byte that is not UTF-8 must not end the input.
        let mut bytes = Vec::new();
        if reader.read_until(b'\n', &mut bytes).await? == 0 {
            return Ok(None);
        }
        not_utf8 |= std::str::from_utf8(&bytes).is_err();
        let line = String::from_utf8_lossy(&bytes);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if saw_header {
                break;
            }
            continue; // Stray blank lines between frames.
        }
        saw_header = true;
        // The body of a frame without a length was not skipped: the next header follows it on
        // the same line.
        let header = line.to_ascii_lowercase().find("content-length:").map_or(line, |at| &line[at..]);
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse().map_err(|_| format!("bad Content-Length `{}`", value.trim())));
            }
        }
    }
    let length = match length {
        None => return Ok(Some(Frame::BadHeader("missing Content-Length header".into(), None))),
        Some(Err(e)) => return Ok(Some(Frame::BadHeader(e, None))),
        Some(Ok(n)) if n > MAX_BODY => {
            return Ok(Some(Frame::BadHeader(format!("message of {n} bytes is too large"), None)))
        }
        Some(Ok(n)) => n,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    if not_utf8 {
        return Ok(Some(Frame::BadHeader("the header is not UTF-8".into(), Some(body))));
    }
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

/// The id of the request in a body that will not be served, so that its sender is not left
/// waiting; null when there is none.
fn request_id(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.get("method").is_some() && matches!(v.get("id"), Some(Value::Number(_) | Value::String(_))) => {
            v["id"].clone()
        }
        _ => Value::Null,
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(out: &Mutex<W>, body: &[u8]) -> std::io::Result<()> {
    let mut out = out.lock().await;
    out.write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
    out.write_all(body).await?;
    out.flush().await
}

/// Refuse a message: an error response to the client, and a log line its user can see (the
/// response alone may carry no id to match) and on stderr.
async fn refuse<W: AsyncWrite + Unpin>(out: &Mutex<W>, code: i64, message: String, id: Value) -> std::io::Result<()> {
    eprintln!("compart lsp: message skipped: {message}");
    let log = json!({ "jsonrpc": "2.0", "method": "window/logMessage",
        "params": { "type": 1, "message": format!("message skipped: {message}") } });
    write_frame(out, log.to_string().as_bytes()).await?;
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
            Frame::BadHeader(why, body) => {
                let id = body.as_deref().map_or(Value::Null, request_id);
                refuse(&out, -32700, format!("Parse error: {why}"), id).await?
            }
            Frame::Body(body) => match serde_json::from_slice::<Value>(&body) {
                Err(e) => refuse(&out, -32700, format!("Parse error: {e}"), Value::Null).await?,
                Ok(value) => match check_message(&value) {
                    Err((why, id)) => refuse(&out, -32600, format!("Invalid request: {why}"), id).await?,
                    Ok(()) => {
                        to_server.write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes()).await?;
                        to_server.write_all(&body).await?;
                        to_server.flush().await?;
                        // Nothing is read after `exit` (the server stops reading too).
                        if value.get("method").and_then(Value::as_str) == Some("exit") {
                            return Ok(());
                        }
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

/// The service, answering a request whose handler panicked with an Internal error: tower-lsp-server
/// polls handlers inside its serve loop, so a panic there would end the process. The panic's
/// message still reaches stderr through the panic hook.
pub struct CatchPanic<S>(pub S);

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Option<Response>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Option<Response>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Option<Response>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let id = request.id().cloned();
        let method = request.method().to_string();
        let future = self.0.call(request);
        Box::pin(async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result,
                Err(_) => Ok(id.map(|id| {
                    let mut error = jsonrpc::Error::internal_error();
                    error.message = format!("internal error while handling {method}").into();
                    Response::from_error(id, error)
                })),
            }
        })
    }
}

/// Serve LSP on any byte streams (stdio in production, pipes in tests) until `exit` or the end of
/// the input.
pub async fn serve<I, O>(input: I, output: O)
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let (service, socket) = crate::service();
    let runs = service.inner().session.runs.clone();
    let out = Arc::new(Mutex::new(output));
    let (server_in, feed) = tokio::io::duplex(1 << 16);
    let (server_out, from_server) = tokio::io::duplex(1 << 16);
    // When the input ends, `feed` is dropped and the server sees the end of its input too.
    let guard_out = out.clone();
    let reader = tokio::spawn(async move {
        if let Err(e) = guard_input(input, feed, guard_out).await {
            eprintln!("compart lsp: input closed: {e}");
        }
        // `exit`, or the client died: stop every cluster a lens started. The server ends once
        // the commands that ran them have answered.
        runs.stop_all().await;
    });
    let writer = tokio::spawn(copy_output(from_server, out));
    Server::new(server_in, server_out, socket).serve(CatchPanic(service)).await;
    let _ = reader.await;
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
        let frame = read_frame(&mut reader).await.unwrap();
        assert!(matches!(frame, Some(Frame::BadHeader(m, None)) if m.contains("missing")));
        let frame = read_frame(&mut reader).await.unwrap();
        assert!(matches!(frame, Some(Frame::BadHeader(m, None)) if m.contains("zz")));
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_and_lost_bodies() {
        // A header byte that is not UTF-8: the frame is refused, its body read whole.
        let mut data = b"X-Junk: \xff\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        // A body without a length runs into the next header: reading resumes there.
        data.extend_from_slice(b"Content-Lenght: 8\r\n\r\n{\"a\": 1}Content-Length: 4\r\n\r\nnull");
        let mut reader = BufReader::new(&data[..]);
        let frame = read_frame(&mut reader).await.unwrap();
        assert!(matches!(frame, Some(Frame::BadHeader(m, Some(b))) if m.contains("UTF-8") && b == b"{}"));
        let frame = read_frame(&mut reader).await.unwrap();
        assert!(matches!(frame, Some(Frame::BadHeader(m, None)) if m.contains("missing")));
        assert!(matches!(read_frame(&mut reader).await.unwrap(), Some(Frame::Body(b)) if b == b"null"));
        assert!(read_frame(&mut reader).await.unwrap().is_none());
    }

    /// A service whose handler panics.
    struct Panics;

    impl Service<Request> for Panics {
        type Response = Option<Response>;
        type Error = ();
        type Future = BoxFuture<'static, Result<Option<Response>, ()>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request) -> Self::Future {
            Box::pin(async { panic!("a handler bug") })
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_an_internal_error() {
        let mut service = CatchPanic(Panics);
        let request = Request::build("textDocument/completion").id(4).finish();
        let response = service.call(request).await.unwrap().expect("a request gets a response");
        let response = serde_json::to_value(response).unwrap();
        assert_eq!((response["id"].clone(), response["error"]["code"].clone()), (json!(4), json!(-32603)));
        // A notification has nobody to answer.
        let notification = Request::build("textDocument/didChange").finish();
        assert!(service.call(notification).await.unwrap().is_none());
    }

    #[test]
    fn ids_of_refused_requests() {
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":7,"method":"x"}"#), json!(7));
        assert_eq!(request_id(br#"{"jsonrpc":"2.0","id":7,"result":null}"#), Value::Null);
        assert_eq!(request_id(b"{nope"), Value::Null);
    }
}
