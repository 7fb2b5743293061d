//! `ModelInfer` on the wire, below what a gRPC client library lets one
//! send: the gateway's direct path reads the length-prefixed message
//! itself, so its framing errors, its limits and its read deadline are
//! checked here with raw HTTP/2 calls (tritonclient's tests cover the
//! well-formed calls and the bad tensors).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use switchyard_api::grpc::model_infer_request::InferInputTensor;
use switchyard_api::grpc::{ModelInferRequest, ModelInferResponse};

/// What came back from one call.
struct Answer {
    headers: HeaderMap,
    message: Bytes,
    trailers: HeaderMap,
}

/// A `ModelInfer` call to `addr` with this body.
fn model_infer<B>(addr: SocketAddr, body: B) -> http::Request<B> {
    http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ModelInfer"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap()
}

impl Answer {
    /// Reads a whole answer: headers, message bytes, trailers.
    async fn read(response: http::Response<hyper::body::Incoming>) -> Answer {
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.unwrap();
        Answer {
            headers: parts.headers,
            trailers: collected.trailers().cloned().unwrap_or_default(),
            message: collected.to_bytes(),
        }
    }
    /// The status, from the trailers or from a trailers-only answer.
    fn code(&self) -> i32 {
        self.field("grpc-status")
            .expect("no grpc-status")
            .parse()
            .unwrap()
    }

    /// `grpc-message`, percent-decoded.
    fn message_text(&self) -> String {
        let raw = self.field("grpc-message").unwrap_or_default();
        let mut out = Vec::new();
        let mut bytes = raw.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex: String = bytes.by_ref().take(2).map(char::from).collect();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
            } else {
                out.push(b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn field(&self, name: &str) -> Option<String> {
        self.trailers
            .get(name)
            .or_else(|| self.headers.get(name))
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn call_with<B>(addr: SocketAddr, extra: &[(&str, &str)], body: B) -> Answer
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = model_infer(addr, body);
    for (k, v) in extra {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "gRPC answers HTTP 200");
    Answer::read(response).await
}

async fn call(addr: SocketAddr, extra: &[(&str, &str)], body: Bytes) -> Answer {
    call_with(addr, extra, Full::new(body)).await
}

fn frame(flag: u8, declared: u32, message: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(flag);
    b.put_u32(declared);
    b.put_slice(message);
    b.freeze()
}

/// A `ModelInferRequest` for boosted with the first `rows` golden rows.
fn infer_message(rows: usize) -> Vec<u8> {
    infer_rows(0, rows)
}

/// A `ModelInferRequest` for boosted with golden rows `first..first + rows`.
fn infer_rows(first: usize, rows: usize) -> Vec<u8> {
    let g = common::golden("boosted", 3);
    let raw: Vec<u8> = g.input[first * 20..(first + rows) * 20]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "boosted".into(),
        id: "wire-1".into(),
        inputs: vec![InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, 20],
            ..Default::default()
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_infer_framing_limits_and_deadline_on_the_wire() {
    let (gw, _dir, _models) = common::start(&["--max-body-bytes=4096"]).await;
    let addr = gw.addrs.grpc;
    let message = infer_message(3);

    // A well-formed call: the golden labels, the version and slot that
    // answered, the id echoed, status OK in the trailers.
    let ok = call(addr, &[], frame(0, message.len() as u32, &message)).await;
    assert_eq!(ok.code(), 0, "{}", ok.message_text());
    assert_eq!(ok.headers["content-type"], "application/grpc");
    assert_eq!(ok.headers["x-model-version"], "3");
    assert_eq!(ok.headers["x-slot"], "blue");
    assert_eq!(ok.message[0], 0, "answers go out uncompressed");
    let declared = u32::from_be_bytes(ok.message[1..5].try_into().unwrap()) as usize;
    assert_eq!(declared, ok.message.len() - 5);
    let answer = ModelInferResponse::decode(&ok.message[5..]).unwrap();
    assert_eq!(answer.model_name, "boosted");
    assert_eq!(answer.model_version, "3");
    assert_eq!(answer.id, "wire-1");
    let labels = labels_of(&ok);
    assert_eq!(labels, common::golden("boosted", 3).labels[..3]);

    // Two messages in a unary call.
    let mut two = BytesMut::from(&frame(0, message.len() as u32, &message)[..]);
    two.extend_from_slice(&frame(0, message.len() as u32, &message));
    let a = call(addr, &[], two.freeze()).await;
    assert_eq!(a.code(), 13, "INTERNAL");
    assert!(
        a.message_text().contains("one message per ModelInfer call"),
        "{}",
        a.message_text()
    );

    // A prefix that promises more than arrives.
    let a = call(addr, &[], frame(0, 900, &message[..10])).await;
    assert_eq!(a.code(), 13);
    assert!(
        a.message_text()
            .contains("declares 900 bytes but 10 follow")
    );

    // Less than a prefix.
    let a = call(addr, &[], Bytes::from_static(&[0, 0])).await;
    assert_eq!(a.code(), 13);
    assert!(a.message_text().contains("less than a message prefix"));

    // Flagged compressed without a grpc-encoding.
    let a = call(addr, &[], frame(1, message.len() as u32, &message)).await;
    assert_eq!(a.code(), 13);
    assert!(a.message_text().contains("grpc-encoding"));

    // Not protobuf.
    let junk = [0xff_u8; 16];
    let a = call(addr, &[], frame(0, junk.len() as u32, &junk)).await;
    assert_eq!(a.code(), 13);
    assert!(
        a.message_text().contains("malformed protobuf"),
        "{}",
        a.message_text()
    );

    // Over the message limit, by its prefix and by its bytes.
    let a = call(addr, &[], frame(0, 1 << 30, &message)).await;
    assert_eq!(a.code(), 8, "RESOURCE_EXHAUSTED");
    assert!(a.message_text().contains("4096"), "{}", a.message_text());
    let big = vec![0_u8; 8192];
    let a = call(addr, &[], frame(0, big.len() as u32, &big)).await;
    assert_eq!(a.code(), 8);
    assert!(a.message_text().contains("--max-body-bytes"));

    // A client that sends half a message and goes quiet is answered
    // DEADLINE_EXCEEDED at its own deadline, not held forever.
    let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
    tx.unbounded_send(Ok(Frame::data(frame(0, 500, &message[..20]))))
        .unwrap();
    let begun = Instant::now();
    let a = call_with(addr, &[("grpc-timeout", "300m")], StreamBody::new(rx)).await;
    assert_eq!(a.code(), 4, "DEADLINE_EXCEEDED: {}", a.message_text());
    assert!(begun.elapsed() < Duration::from_secs(5));
    drop(tx);

    // A malformed deadline is refused before anything runs.
    let a = call(
        addr,
        &[("grpc-timeout", "soon")],
        frame(0, message.len() as u32, &message),
    )
    .await;
    assert_eq!(a.code(), 3, "INVALID_ARGUMENT");
    assert!(a.message_text().contains("grpc-timeout"));

    // None of it disturbed serving, and every good call was counted once
    // under the gRPC protocol.
    let ok = call(addr, &[], frame(0, message.len() as u32, &message)).await;
    assert_eq!(ok.code(), 0);
    let metrics = common::scrape(&gw).await;
    let served: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("switchyard_requests_total{")
                && l.contains("protocol=\"grpc\"")
                && l.contains("code=\"200\"")
        })
        .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(served, 2, "{metrics}");
    gw.shutdown().await;
}

/// The raw bytes of output `name` in a successful answer.
fn raw_output(a: &Answer, name: &str) -> Vec<u8> {
    assert_eq!(a.code(), 0, "{}", a.message_text());
    let mut answer = ModelInferResponse::decode(&a.message[5..]).unwrap();
    let at = answer
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name}"));
    answer.raw_output_contents.swap_remove(at)
}

/// The labels of a successful answer.
fn labels_of(a: &Answer) -> Vec<i64> {
    raw_output(a, "label")
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The probabilities of a successful answer.
fn probabilities_of(a: &Answer) -> Vec<f32> {
    raw_output(a, "probabilities")
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Many calls in flight on one connection, more than the connection runs
/// in its own task: each gets its own answer, none is lost or crossed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_multiplexes_many_calls_and_answers_each_its_own() {
    let (gw, _dir, _models) = common::start(&[]).await;
    let addr = gw.addrs.grpc;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let golden = common::golden("boosted", 3);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..160 {
        let mut sender = sender.clone();
        let row = i % golden.rows;
        let message = infer_rows(row, 1);
        calls.spawn(async move {
            let request = model_infer(addr, Full::new(frame(0, message.len() as u32, &message)));
            sender.ready().await.unwrap();
            let response = sender.send_request(request).await.unwrap();
            let answer = Answer::read(response).await;
            (row, labels_of(&answer), probabilities_of(&answer))
        });
    }
    let mut answered = 0;
    while let Some(done) = calls.join_next().await {
        let (row, labels, probabilities) = done.unwrap();
        // Labels are 0 or 1; the probabilities tell every row apart.
        assert_eq!(labels, [golden.labels[row]], "row {row}");
        for (got, want) in probabilities.iter().zip(&golden.probabilities[row * 2..]) {
            assert!((got - want).abs() <= 1e-5, "row {row}: {got} vs {want}");
        }
        answered += 1;
    }
    assert_eq!(answered, 160);
    gw.shutdown().await;
}

/// Shutdown with calls in flight on a connection: the gateway stops
/// well within its drain timeout (5 s in these tests) (the connection's own task finishes the
/// calls it holds), and every call it answered was answered right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_calls_a_connection_holds() {
    let (gw, _dir, _models) = common::start(&[]).await;
    let addr = gw.addrs.grpc;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let message = infer_message(4);
    let want = common::golden("boosted", 3).labels[..4].to_vec();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let mut sender = sender.clone();
        let body = frame(0, message.len() as u32, &message);
        let want = want.clone();
        let answered = answered.clone();
        clients.spawn(async move {
            loop {
                let request = model_infer(addr, Full::new(body.clone()));
                // After the gateway's GOAWAY the client refuses new calls
                // (safe to retry elsewhere): this client is done.
                if sender.ready().await.is_err() {
                    return;
                }
                let Ok(response) = sender.send_request(request).await else {
                    return;
                };
                let (parts, body) = response.into_parts();
                let Ok(collected) = body.collect().await else {
                    return;
                };
                let answer = Answer {
                    headers: parts.headers,
                    trailers: collected.trailers().cloned().unwrap_or_default(),
                    message: collected.to_bytes(),
                };
                assert_eq!(labels_of(&answer), want);
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    while answered.load(std::sync::atomic::Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let begun = Instant::now();
    assert!(gw.shutdown().await, "the drain timed out");
    assert!(
        begun.elapsed() < Duration::from_secs(3),
        "{:?}",
        begun.elapsed()
    );
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
}

/// A peer that opens an HTTP/2 connection and then answers nothing (a
/// vanished client) is pinged once the connection is silent and closed
/// when the ping goes unanswered; a live client that idles for several
/// intervals answers the pings (its HTTP/2 library does) and keeps its
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_closes_a_silent_peer_and_keeps_a_live_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (gw, _dir, _models) = common::start(&["--grpc-keepalive=200ms"]).await;
    let addr = gw.addrs.grpc;

    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The client preface and an empty SETTINGS frame; then nothing, not
    // even the acknowledgements HTTP/2 asks for.
    silent
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let begun = Instant::now();
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the silent connection is still open after 10 s"
    );
    let waited = begun.elapsed();
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );
    // Walk the frames the gateway sent: one of them is a PING (type 6).
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= received.len() {
        let len = u32::from_be_bytes([0, received[at], received[at + 1], received[at + 2]]);
        frames.push(received[at + 3]);
        at += 9 + len as usize;
    }
    assert!(frames.contains(&6), "no PING among frames {frames:?}");

    // A live client idle for five intervals still has its connection.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let message = infer_message(1);
    for _ in 0..2 {
        let request = model_infer(addr, Full::new(frame(0, message.len() as u32, &message)));
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        let answer = Answer::read(response).await;
        assert_eq!(labels_of(&answer), common::golden("boosted", 3).labels[..1]);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(!connection.is_finished(), "the live connection was closed");
    gw.shutdown().await;
}
