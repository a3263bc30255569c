//! Below QUIC: datagrams that are no QUIC at all or are damaged QUIC, and handshakes
//! that are begun and never finished. The provider answers none of the garbage with
//! anything that matters, holds at most its limit of handshakes in progress (T12:
//! further ones are refused at once with QUIC's `CONNECTION_REFUSED`, never queued), frees
//! the slots at the hello timeout, and serves its members throughout or afterwards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tds_core::SigningKey;
use tds_transport::tls;
use tokio::net::UdpSocket;

use crate::common::*;

/// Deterministic junk.
fn junk(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_ignored() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let addr = s.addr()?;
    let agreement = s.negotiate().await?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let mut sent = 0usize;
    for i in 0..3000u64 {
        let len = [1usize, 7, 20, 40, 1200, 1350, 1500, 9000][(i % 8) as usize];
        let mut d = junk(len, i);
        match i % 5 {
            // A long header of QUIC v1 (an Initial) with a garbage rest.
            0 if len > 6 => {
                d[0] = 0xc0;
                d[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
            // A long header of a version nobody speaks (asks for version negotiation).
            1 if len > 6 => {
                d[0] = 0xc0;
                d[1..5].copy_from_slice(&0x0a0a_0a0au32.to_be_bytes());
            }
            // A short header (1-RTT) for a connection that does not exist.
            2 => d[0] = 0x40 | (d[0] & 0x3f),
            // Declared lengths past the datagram's end.
            3 if len > 8 => {
                d[0] = 0xc0;
                d[1..5].copy_from_slice(&1u32.to_be_bytes());
                d[5] = 20;
                d[6] = 0xff;
            }
            _ => {}
        }
        if sock.send_to(&d, addr).await.is_ok() {
            sent += 1;
        }
    }
    assert!(sent > 2500, "sent {sent}");
    // The provider never took any of it for a member: nobody new is connected.
    assert_eq!(s.provider.peer_count(), 1, "peers after the garbage");
    s.fetch(&agreement, 1).await?;
    s.still_serves().await
}

/// Forwards what clients send to `server` and drops every answer: handshakes through it
/// begin and never finish.
async fn black_hole(server: SocketAddr) -> Res<(SocketAddr, Arc<AtomicUsize>)> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = sock.local_addr()?;
    let forwarded = Arc::new(AtomicUsize::new(0));
    let count = forwarded.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if from != server && sock.send_to(&buf[..n], server).await.is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok((addr, forwarded))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_handshakes_are_bounded_and_expire() -> Res {
    let s = Scene::new(RESEARCH).await?;
    let addr = s.addr()?;
    let (hole, forwarded) = black_hole(addr).await?;
    // 200 handshakes begun through the black hole: more than the 128 slots.
    let tls = tls::client_config(Arc::new(SigningKey::from_seed(&[50; 32])), tls::ALPN)?;
    let quic = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    ));
    let attacker = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let mut pending = Vec::new();
    for _ in 0..200 {
        pending.push(attacker.connect_with(quic.clone(), hole, "tds")?);
    }
    // Wait until they reached the provider (each sends at least one Initial).
    within("the half-open handshakes", async {
        while forwarded.load(Ordering::Relaxed) < 200 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await?;
    // A member's connection is refused at once while the slots are full.
    let refused = within("a refused connection", async {
        loop {
            match s
                .consumer
                .negotiate(addr, &s.published.offer, None, "research".parse().unwrap())
                .await
            {
                Err(e) => return e,
                // The provider had not taken every half-open one yet.
                Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    })
    .await?;
    assert_eq!(
        tds_core::ErrorCode::code(&refused),
        "transport.busy",
        "{refused}"
    );
    // At the hello timeout the half-open ones are dropped, and members are served.
    let agreement = within("a negotiation after the flood", async {
        loop {
            if let Ok(a) = s
                .consumer
                .negotiate(addr, &s.published.offer, None, "research".parse().unwrap())
                .await
            {
                return a.id();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await?;
    s.fetch(&agreement, 1).await?;
    drop(pending);
    s.still_serves().await
}
