//! Requests after the hello: one stream each, replies as frames, frame limits, and a
//! 64 MiB transfer in 1 MiB data frames.

use crate::common::*;
use bytes::Bytes;
use tds_protocol::frame::{self, ChunkHeader, Frame, MAX_CONTROL};
use tds_protocol::message::{Ack, CheckpointRequestMsg, ChunkRequestMsg};
use tds_protocol::{Message, Pid};
use tds_transport::{Connection, Responder};

async fn connected() -> (Node, Node, Connection, Connection) {
    let mut world = World::new();
    let server = world.member(2);
    let client = world.member(1);
    let (c, s) = pair(&client, &server).await;
    (client, server, c.unwrap(), s.unwrap())
}

#[tokio::test]
async fn a_request_gets_its_reply_on_its_own_stream() {
    let (_client, _server, c, s) = connected().await;
    let serve = tokio::spawn(async move {
        for _ in 0..2 {
            let (req, responder) = s.accept_request().await.unwrap();
            let Frame::Control(Message::CheckpointRequest(r)) = frame::decode(&req).unwrap() else {
                panic!("not a checkpoint request");
            };
            let state = r.since.map(|n| n.to_string());
            responder
                .reply(&Message::Ack(Ack { pid: None, state }))
                .await
                .unwrap();
        }
    });
    for since in [None, Some(7)] {
        let reply = within(c.request(&Message::CheckpointRequest(CheckpointRequestMsg { since })))
            .await
            .unwrap();
        let m = within(reply.message()).await.unwrap();
        assert_eq!(
            m,
            Message::Ack(Ack {
                pid: None,
                state: since.map(|n| n.to_string())
            })
        );
    }
    within(serve).await.unwrap();
}

#[tokio::test]
async fn an_oversize_frame_is_refused_before_its_payload_is_read() {
    let (_client, _server, c, s) = connected().await;
    let serve = tokio::spawn(async move {
        // The oversize request never reaches the application; the good one after it does.
        let (req, responder) = s.accept_request().await.unwrap();
        assert!(matches!(
            frame::decode(&req).unwrap(),
            Frame::Control(Message::Ack(_))
        ));
        responder.finish().await.unwrap();
    });
    let (mut send, mut recv) = c.quic().open_bi().await.unwrap();
    let len = (MAX_CONTROL + 1).to_be_bytes();
    send.write_all(&[0, len[0], len[1], len[2], len[3]])
        .await
        .unwrap();
    // A few payload bytes; the server must not wait for the other megabyte.
    let _ = send.write_all(&[0u8; 1000]).await;
    let reply = within(recv.read_to_end(1 << 16)).await.unwrap();
    match frame::decode(&reply).unwrap() {
        Frame::Control(Message::Error(r)) => assert_eq!(r.code, "protocol.frame_too_large"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A data frame is no request either.
    let (mut send, mut recv) = c.quic().open_bi().await.unwrap();
    let data = frame::encode_data(
        &ChunkHeader {
            transfer: Pid::from_bytes([0; 16]),
            index: 0,
            path: vec![],
        },
        b"x",
    )
    .unwrap();
    send.write_all(&data).await.unwrap();
    send.finish().unwrap();
    let reply = within(recv.read_to_end(1 << 16)).await.unwrap();
    assert!(matches!(
        frame::decode(&reply).unwrap(),
        Frame::Control(Message::Error(r)) if r.code == "protocol.invalid"
    ));
    let ok = within(c.request(&Message::Ack(Ack {
        pid: None,
        state: None,
    })))
    .await
    .unwrap();
    let mut ok = ok;
    assert!(within(ok.next()).await.unwrap().is_none());
    within(serve).await.unwrap();
}

#[tokio::test]
async fn a_responder_dropped_midway_resets_the_reply() {
    let (_client, _server, c, s) = connected().await;
    tokio::spawn(async move {
        let (_req, mut responder) = s.accept_request().await.unwrap();
        let header = ChunkHeader {
            transfer: Pid::from_bytes([1; 16]),
            index: 0,
            path: vec![],
        };
        responder
            .send_data(&header, Bytes::from_static(b"part"))
            .await
            .unwrap();
        drop(responder);
    });
    let mut reply = within(c.request(&Message::Ack(Ack {
        pid: None,
        state: None,
    })))
    .await
    .unwrap();
    let mut frames = 0;
    let end = within(async {
        loop {
            match reply.next().await {
                Ok(Some(_)) => frames += 1,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(end, Err(tds_transport::TransportError::StreamReset(_))),
        "{end:?}"
    );
    assert!(frames <= 1);
}

const MIB: usize = 1024 * 1024;

fn content(len: usize) -> Vec<u8> {
    // xorshift: fast, and no two chunks alike.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn serve_chunks(s: Connection, data: Bytes) {
    loop {
        let Ok((req, responder)) = s.accept_request().await else {
            return;
        };
        let data = data.clone();
        tokio::spawn(async move {
            let Frame::Control(Message::ChunkRequest(r)) = frame::decode(&req).unwrap() else {
                panic!("not a chunk request");
            };
            send_chunks(responder, r, data).await;
        });
    }
}

async fn send_chunks(mut responder: Responder, r: ChunkRequestMsg, data: Bytes) {
    let index = r.index;
    let start = index as usize * MIB;
    let header = ChunkHeader {
        transfer: r.consumer_pid,
        index,
        path: vec![], // proofs belong to the protocol layer
    };
    responder
        .send_data(&header, data.slice(start..start + MIB))
        .await
        .unwrap();
    responder.finish().await.unwrap();
}

#[tokio::test]
async fn a_64_mib_transfer_arrives_byte_for_byte() {
    let (_client, _server, c, s) = connected().await;
    let data = Bytes::from(content(64 * MIB));
    let expected = ring::digest::digest(&ring::digest::SHA256, &data);
    tokio::spawn(serve_chunks(s, data));

    let pid = Pid::from_bytes([7; 16]);
    let requests: Vec<Vec<u8>> = (0..64u64)
        .map(|index| {
            frame::encode_control(&Message::ChunkRequest(ChunkRequestMsg {
                provider_pid: Pid::from_bytes([8; 16]),
                consumer_pid: pid,
                index,
            }))
            .unwrap()
        })
        .collect();
    let mut received = vec![0u8; 64 * MIB];
    let mut seen = [false; 64];
    let transfer = c.transfer(requests, Some(4), |request, f| {
        let Frame::Data(h, chunk) = frame::decode(&f)? else {
            panic!("control frame in a chunk reply");
        };
        assert_eq!(h.transfer, pid);
        assert_eq!(h.index, request as u64, "chunk on its request's stream");
        let i = h.index as usize;
        assert!(!seen[i], "chunk {i} twice");
        seen[i] = true;
        received[i * MIB..(i + 1) * MIB].copy_from_slice(chunk);
        Ok(())
    });
    tokio::time::timeout(std::time::Duration::from_secs(30), transfer)
        .await
        .unwrap()
        .unwrap();
    assert!(seen.iter().all(|s| *s));
    let got = ring::digest::digest(&ring::digest::SHA256, &received);
    assert_eq!(got.as_ref(), expected.as_ref());
}

/// Regression (issue 13, slowloris): a request frame was read to its end before the next
/// stream was looked at, with no time limit, so a peer sending one frame a byte at a
/// time (or declaring a megabyte and sending ten bytes) held up every later request of
/// its connection for as long as it liked. Streams are now read side by side, each
/// within the request timeout.
#[tokio::test]
async fn a_slow_request_neither_holds_up_the_next_nor_waits_for_ever() {
    let mut world = World::new();
    let fast = |b: tds_transport::EndpointBuilder| {
        b.config(tds_transport::TransportConfig {
            request_timeout: std::time::Duration::from_millis(500),
            ..config()
        })
    };
    let server_cred = world.admit(&key(2));
    let server = node_with(
        world.trust(),
        key(2),
        server_cred,
        Some(world.crl.clone()),
        fast,
    );
    let client = world.member(1);
    let (c, s) = pair(&client, &server).await;
    let (c, s) = (c.unwrap(), s.unwrap());
    // A declares a whole control frame and sends ten bytes of it.
    let (mut slow_send, mut slow_recv) = c.quic().open_bi().await.unwrap();
    let len = MAX_CONTROL.to_be_bytes();
    slow_send
        .write_all(&[
            0, len[0], len[1], len[2], len[3], 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
        ])
        .await
        .unwrap();
    // B, opened after it, is a whole request: it comes out first.
    let ask = tokio::spawn({
        let c = c.clone();
        async move {
            let reply = c
                .request(&Message::CheckpointRequest(CheckpointRequestMsg {
                    since: Some(1),
                }))
                .await
                .unwrap();
            reply.message().await.unwrap()
        }
    });
    let (req, responder) = within(s.accept_request()).await.unwrap();
    assert!(matches!(
        frame::decode(&req).unwrap(),
        Frame::Control(Message::CheckpointRequest(CheckpointRequestMsg {
            since: Some(1)
        }))
    ));
    responder
        .reply(&Message::Ack(Ack {
            pid: None,
            state: None,
        }))
        .await
        .unwrap();
    assert!(matches!(within(ask).await.unwrap(), Message::Ack(_)));
    // A is refused once its time is up, and never handed to the application.
    let serve = tokio::spawn(async move { s.accept_request().await.map(|(r, _)| r) });
    let reply = within(slow_recv.read_to_end(1 << 16)).await.unwrap();
    match frame::decode(&reply).unwrap() {
        Frame::Control(Message::Error(r)) => assert_eq!(r.code, "transport.timeout", "{r:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!serve.is_finished());
    serve.abort();
}
