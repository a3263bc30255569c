//! Attacks below the messages, on a serving connector: frames that lie about their
//! length, bytes that are not frames, CBOR built to hurt a decoder, floods of requests
//! and of streams, a sender that never finishes. Each gets its reason code (or, where
//! the peer cannot be told, a closed stream) and the provider keeps serving.

use tds_protocol::frame::MAX_CONTROL;
use tds_protocol::message::{Ack, CheckpointRequestMsg};
use tds_protocol::Message;

use crate::common::*;

fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// A control frame around `payload` (not checked: the payload may be anything).
fn control(payload: &[u8]) -> Vec<u8> {
    let mut v = header(0, u32::try_from(payload.len()).unwrap_or(u32::MAX));
    v.extend_from_slice(payload);
    v
}

/// A CBOR text string.
fn text(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let n = s.len();
    if n < 24 {
        v.push(0x60 | n as u8);
    } else {
        v.push(0x78);
        v.push(n as u8);
    }
    v.extend_from_slice(s.as_bytes());
    v
}

/// `{name: body}`.
fn message(name: &str, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xa1];
    v.extend(text(name));
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_their_codes_and_the_connection_goes_on() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    // Longer than a control frame may be: refused on the header, the megabyte never read.
    let mut oversize = header(0, MAX_CONTROL + 1);
    oversize.extend_from_slice(&[0; 1000]);
    let mut data_as_request = header(1, 40);
    data_as_request.extend_from_slice(&[0; 40]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("oversize", oversize, "protocol.frame_too_large"),
        (
            "unknown type",
            vec![7, 0, 0, 0, 1, 0],
            "protocol.unknown_frame_type",
        ),
        (
            "data frame as a request",
            data_as_request,
            "protocol.invalid",
        ),
        (
            "garbage payload",
            control(&[0xff, 0xff, 0xff]),
            "protocol.malformed",
        ),
        ("half a header", vec![0, 0], "protocol.truncated"),
        ("empty payload", control(&[]), "protocol.malformed"),
        (
            "unknown message",
            control(&message("boom", &[0xa0])),
            "protocol.unknown_message",
        ),
        (
            "a reply as a request",
            control(&message("ack", &[0xa0])),
            "protocol.unexpected_message",
        ),
        (
            "a hello after the hello",
            tds_protocol::frame::encode_control(&Message::Hello(tds_protocol::message::Hello {
                versions: vec![1],
                credential: s.bank.credential.clone().into(),
                crl: None,
                agent: "again".into(),
            }))?,
            "protocol.unexpected_message",
        ),
        (
            "trailing bytes after the message",
            {
                let mut p = message("checkpoint_request", &[0xa0]);
                p.push(0);
                control(&p)
            },
            "protocol.malformed",
        ),
        (
            "an unknown field",
            control(&message("checkpoint_request", &{
                let mut b = vec![0xa1];
                b.extend(text("evil"));
                b.push(0x01);
                b
            })),
            "protocol.unknown_field",
        ),
    ];
    for (what, bytes, want) in cases {
        let reply = raw.ask_bytes(&bytes).await?;
        assert_eq!(code(&reply), want, "{what}: {reply:?}");
    }
    // The same connection still carries requests.
    let reply = raw
        .ask(&Message::CheckpointRequest(CheckpointRequestMsg {
            since: None,
        }))
        .await?;
    assert!(
        matches!(reply, Message::Checkpoint(_) | Message::Error(_)),
        "{reply:?}"
    );
    s.still_serves().await
}

/// Lengths that promise far more than arrives: a frame header, a data frame's chunk
/// header, CBOR byte strings, arrays and maps. Nothing is allocated for what does not
/// come, and each is refused with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_declared_lengths_with_tiny_bodies_are_refused() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    // A whole control frame's worth declared, ten bytes sent, the stream finished.
    let mut short = header(0, MAX_CONTROL);
    short.extend_from_slice(&[0xa1; 10]);
    assert_eq!(code(&raw.ask_bytes(&short).await?), "protocol.truncated");
    // CBOR inside a small frame declaring 4 GiB and 2^64-1 bytes, items and entries.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bstr of 4 GiB", {
            let mut b = vec![0xa1];
            b.extend(text("crl"));
            b.extend_from_slice(&[0x5a, 0xff, 0xff, 0xff, 0xff, 0x00]);
            message("revocation_notice", &b)
        }),
        ("bstr of 2^64-1", {
            let mut b = vec![0xa1];
            b.extend(text("crl"));
            b.extend_from_slice(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
            message("revocation_notice", &b)
        }),
        ("tstr of 4 GiB", {
            let mut b = vec![0xa1];
            b.extend(text("evil"));
            b.extend_from_slice(&[0x7a, 0xff, 0xff, 0xff, 0xff, 0x41]);
            message("checkpoint_request", &b)
        }),
        ("array of 2^64-1", {
            let mut b = vec![0xa1];
            b.extend(text("items"));
            b.extend_from_slice(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            message("catalog_page", &b)
        }),
        ("map of 2^64-1", {
            message(
                "checkpoint_request",
                &[0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            )
        }),
        (
            "outer map of 2^32 entries",
            vec![0xba, 0xff, 0xff, 0xff, 0xff, 0x60],
        ),
    ];
    for (what, payload) in cases {
        let reply = raw.ask_bytes(&control(&payload)).await?;
        let c = code(&reply);
        assert!(
            c == "protocol.malformed" || c == "protocol.truncated",
            "{what}: {reply:?}"
        );
    }
    s.still_serves().await
}

/// CBOR nested a hundred thousand levels deep fits in a control frame; the decoder
/// refuses it at its depth limit instead of recursing until the stack ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_cbor_is_refused_at_the_depth_limit() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    for (what, open) in [("arrays", 0x81u8), ("tags", 0xd8)] {
        let mut body = vec![0xa1];
        body.extend(text("state"));
        for _ in 0..100_000 {
            body.push(open);
            if open == 0xd8 {
                body.push(0x18);
            }
        }
        body.push(0x00);
        let reply = raw.ask_bytes(&control(&message("ack", &body))).await?;
        assert_eq!(code(&reply), "protocol.malformed", "{what}: {reply:?}");
    }
    // Deep maps, as a whole message.
    let mut deep = Vec::new();
    for _ in 0..50_000 {
        deep.push(0xa1);
        deep.extend(text("a"));
    }
    deep.push(0x00);
    let reply = raw.ask_bytes(&control(&deep)).await?;
    assert_eq!(code(&reply), "protocol.malformed", "{reply:?}");
    s.still_serves().await
}

/// A map with a key twice, at the top and inside a message: refused, never "last one
/// wins".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_map_keys_are_refused() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    let mut twice = vec![0xa2];
    twice.extend(text("ack"));
    twice.push(0xa0);
    twice.extend(text("ack"));
    twice.push(0xa0);
    let mut inner = vec![0xa2];
    inner.extend(text("since"));
    inner.push(0x01);
    inner.extend(text("since"));
    inner.push(0x02);
    let mut two_messages = vec![0xa2];
    two_messages.extend(text("checkpoint_request"));
    two_messages.push(0xa0);
    two_messages.extend(text("revocation_notice"));
    two_messages.extend_from_slice(&[0xa1]);
    two_messages.extend(text("crl"));
    two_messages.push(0x40);
    for (what, payload) in [
        ("the message name twice", twice),
        ("a field twice", message("checkpoint_request", &inner)),
        ("two messages in one", two_messages),
    ] {
        let reply = raw.ask_bytes(&control(&payload)).await?;
        assert_eq!(code(&reply), "protocol.malformed", "{what}: {reply:?}");
    }
    s.still_serves().await
}

/// Five thousand requests as fast as the stream limit lets them in: every one is
/// answered, and the provider serves an honest consumer throughout and afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_flood_is_answered_and_the_provider_keeps_serving() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = std::sync::Arc::new(s.raw(&s.bank).await?);
    let garbage = control(&[0xff, 0xff, 0xff]);
    let ack = tds_protocol::frame::encode_control(&Message::Ack(Ack {
        pid: None,
        state: None,
    }))?;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..32usize {
        let (raw, garbage, ack) = (raw.clone(), garbage.clone(), ack.clone());
        tasks.spawn(async move {
            let mut codes = std::collections::BTreeMap::<String, usize>::new();
            for i in 0..160usize {
                let bytes = if (t + i) % 2 == 0 { &garbage } else { &ack };
                let c = match raw.ask_bytes(bytes).await {
                    Ok(m) => code(&m),
                    Err(e) => format!("error: {e}"),
                };
                *codes.entry(c).or_default() += 1;
            }
            codes
        });
    }
    // Meanwhile an honest consumer negotiates.
    let agreement = s.negotiate().await?;
    let mut total = std::collections::BTreeMap::<String, usize>::new();
    while let Some(done) = tasks.join_next().await {
        for (c, n) in done? {
            *total.entry(c).or_default() += n;
        }
    }
    assert_eq!(
        total.into_iter().collect::<Vec<_>>(),
        vec![
            ("protocol.malformed".to_owned(), 2560),
            ("protocol.unexpected_message".to_owned(), 2560)
        ]
    );
    s.fetch(&agreement, 1).await?;
    s.still_serves().await
}

/// A peer opens streams and never finishes a request on them. QUIC lets it open no
/// more than the stream limit at once (64); each unfinished request is refused after the
/// request timeout, which gives its stream back; the provider serves others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_streams_opened_and_never_used_stay_within_the_limit() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    let quic = raw.conn.quic().clone();
    let mut held = Vec::new();
    let mut blocked = false;
    for _ in 0..2000 {
        // Opening is local while the peer's stream credit lasts; past it, it waits for
        // the peer to give streams back.
        match tokio::time::timeout(std::time::Duration::from_millis(300), quic.open_bi()).await {
            Ok(Ok((mut send, recv))) => {
                // One byte, so the provider sees the stream; never more.
                send.write_all(&[0]).await?;
                held.push((send, recv));
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "opened {} streams without waiting", held.len());
    // The limit is 64 streams at once. The hello's stream is freed once done, but quinn
    // announces new credit only after more than 1/8 of the window is freed, so 63 are
    // open right after the hello.
    assert!(
        (60..=64).contains(&held.len()),
        "{} streams open at once",
        held.len()
    );
    // An honest consumer (another connection) is served meanwhile.
    let agreement = s.negotiate().await?;
    // Every held stream is answered with a refusal once its request timed out.
    for (_, mut recv) in held.drain(..) {
        let reply = within("a timed-out stream", recv.read_to_end(1 << 16)).await??;
        match tds_protocol::frame::decode(&reply)? {
            tds_protocol::frame::Frame::Control(m) => {
                assert_eq!(code(&m), "transport.timeout", "{m:?}")
            }
            other => return Err(format!("{other:?}").into()),
        }
    }
    // And the streams came back: the connection carries requests again.
    let reply = raw
        .ask(&Message::CheckpointRequest(CheckpointRequestMsg {
            since: None,
        }))
        .await?;
    assert!(
        matches!(reply, Message::Checkpoint(_) | Message::Error(_)),
        "{reply:?}"
    );
    s.fetch(&agreement, 1).await?;
    s.still_serves().await
}

/// A slowloris: a request frame sent a byte at a time, slower than the request timeout
/// allows. It is refused with `transport.timeout` (not waited for for ever), the
/// connection's later requests are served, and so is everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sender_is_refused_at_the_request_timeout() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let raw = s.raw(&s.bank).await?;
    let request =
        tds_protocol::frame::encode_control(&Message::CheckpointRequest(CheckpointRequestMsg {
            since: None,
        }))?;
    let (mut send, mut recv) = raw.conn.quic().open_bi().await?;
    let drip = tokio::spawn(async move {
        // A byte every 500 ms: the whole frame would take longer than the 2 s allowed.
        for b in request {
            if send.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    let reply = within("the slow request's answer", recv.read_to_end(1 << 16)).await??;
    match tds_protocol::frame::decode(&reply)? {
        tds_protocol::frame::Frame::Control(m) => {
            assert_eq!(code(&m), "transport.timeout", "{m:?}")
        }
        other => return Err(format!("{other:?}").into()),
    }
    drip.abort();
    // The same connection goes on.
    let reply = raw
        .ask(&Message::CheckpointRequest(CheckpointRequestMsg {
            since: None,
        }))
        .await?;
    assert!(
        matches!(reply, Message::Checkpoint(_) | Message::Error(_)),
        "{reply:?}"
    );
    s.still_serves().await
}

/// A member that keeps sending what an honest peer never sends (here: replies sent as
/// requests) is refused every time, but one connection raises at most 16 `violation`
/// alerts; a new connection raises them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_alerted_at_most_sixteen_times_per_connection() -> Res {
    let mut s = Scene::new(RESEARCH).await?;
    let bogus = Message::Ack(Ack {
        pid: None,
        state: None,
    });
    // Counts violation alerts until `want` came (bounded by the test step), then for a
    // further moment in which none more may come.
    async fn count(events: &mut Events, want: usize) -> Res<usize> {
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let until = if n >= want {
                tokio::time::Instant::now() + std::time::Duration::from_millis(300)
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, events.0.recv()).await {
                Ok(Ok(tds_connector::ConnectorEvent::Alert(a)))
                    if a.kind == tds_connector::AlertKind::Violation =>
                {
                    n += 1
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Ok(n),
            }
        }
    }
    let raw = s.raw(&s.bank).await?;
    for _ in 0..40 {
        let reply = raw.ask(&bogus).await?;
        assert_eq!(code(&reply), "protocol.unexpected_message", "{reply:?}");
    }
    assert_eq!(count(&mut s.events, 16).await?, 16);
    let again = s.raw(&s.bank).await?;
    let reply = again.ask(&bogus).await?;
    assert_eq!(code(&reply), "protocol.unexpected_message");
    assert_eq!(count(&mut s.events, 1).await?, 1);
    s.still_serves().await
}
