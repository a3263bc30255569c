//! A loopback UDP relay that bends the path between two QUIC endpoints: it drops,
//! delays, reorders, duplicates and corrupts datagrams (decisions from a seeded
//! generator), and can cut the path (drop everything) for a while.
//!
//! One side (the dialling consumer) sends to [`Relay::addr`]; the relay forwards from a
//! socket of its own to the target (the provider), and sends the target's answers back
//! to whoever spoke last on the front socket. Peers authenticate each other by the raw
//! public keys in TLS, not by addresses, so the relay is invisible to them but for what
//! it does to the datagrams.
//!
//! Each direction is two threads of its own (a receiver applying the faults, a sender
//! releasing held datagrams on time): a sub-millisecond delay needs a timer finer than
//! tokio's (1 ms), and the connectors' runtime must not delay the relay, nor it them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the relay does to datagrams, in each direction. Shares are probabilities per
/// datagram, decided independently.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Dropped.
    pub drop: f64,
    /// Sent twice.
    pub duplicate: f64,
    /// One bit flipped in the datagram's second half (the protected payload or the AEAD
    /// tag): QUIC must discard it.
    pub corrupt: f64,
    /// Held back until the next datagram of its direction has gone (swapped with it).
    pub reorder: f64,
    /// Delayed by up to `max_delay` (uniform), without holding back later ones.
    pub delay: f64,
    /// Longest delay.
    pub max_delay: Duration,
}

/// What the relay did, both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent on (copies included).
    pub forwarded: u64,
    /// Dropped at random.
    pub dropped: u64,
    /// Dropped because the path was cut.
    pub dropped_cut: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Sent with a flipped bit.
    pub corrupted: u64,
    /// Delayed.
    pub delayed: u64,
    /// Sent after a datagram that arrived after them.
    pub reordered: u64,
    /// Cuts made.
    pub cuts: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    dropped_cut: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    delayed: AtomicU64,
    reordered: AtomicU64,
    cuts: AtomicU64,
}

struct Shared {
    faults: Faults,
    /// Faults apply only while on; cuts apply always.
    on: AtomicBool,
    /// Everything is dropped until then.
    cut_until: Mutex<Option<Instant>>,
    counters: Counters,
    stop: AtomicBool,
    /// Where answers go: the front socket's last sender.
    client: Mutex<Option<SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running relay; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    queues: Vec<Arc<Queue>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// A small seeded generator (SplitMix64): the same seed, the same decisions.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// A seed from `TDS_FAULT_SEED`, else from the clock.
pub fn seed() -> u64 {
    if let Some(s) = std::env::var("TDS_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Datagrams waiting for their time, by (release, order of arrival).
#[derive(Default)]
struct Queue {
    held: Mutex<QueueState>,
    cond: Condvar,
}

#[derive(Default)]
struct QueueState {
    /// Keyed by (release, insertion number); the value is (arrival number, bytes).
    by_release: BTreeMap<(Instant, u64), (u64, Vec<u8>)>,
    inserted: u64,
    /// A datagram held back until the next one has gone: (its arrival number, bytes).
    swap: Option<(u64, Vec<u8>)>,
    stop: bool,
}

impl QueueState {
    fn push(&mut self, release: Instant, arrival: u64, bytes: Vec<u8>) {
        self.inserted += 1;
        self.by_release
            .insert((release, self.inserted), (arrival, bytes));
    }
}

enum Way {
    /// Consumer to target.
    Up,
    /// Target to consumer.
    Down,
}

impl Relay {
    /// Starts a relay in front of `target`; it applies `faults` (decided from `seed`)
    /// once [`set_on`](Self::set_on) says so.
    pub fn start(target: SocketAddr, faults: Faults, seed: u64) -> std::io::Result<Relay> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        let back = UdpSocket::bind("127.0.0.1:0")?;
        back.connect(target)?;
        // Receivers look at the stop flag this often.
        front.set_read_timeout(Some(Duration::from_millis(50)))?;
        back.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = front.local_addr()?;
        let shared = Arc::new(Shared {
            faults,
            on: AtomicBool::new(false),
            cut_until: Mutex::new(None),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            client: Mutex::new(None),
        });
        let up = Arc::new(Queue::default());
        let down = Arc::new(Queue::default());
        let mut threads = Vec::new();
        for (way, from, to, q, rng) in [
            (
                Way::Up,
                front.try_clone()?,
                back.try_clone()?,
                up.clone(),
                Rng(seed),
            ),
            (
                Way::Down,
                back,
                front,
                down.clone(),
                Rng(seed ^ 0x5555_5555_5555_5555),
            ),
        ] {
            let (s, q2) = (shared.clone(), q.clone());
            let up_way = matches!(way, Way::Up);
            threads.push(
                std::thread::Builder::new()
                    .name("relay-recv".into())
                    .spawn(move || receive(&s, &from, &q2, up_way, rng))?,
            );
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("relay-send".into())
                    .spawn(move || send(&s, &to, &q, way))?,
            );
        }
        Ok(Relay {
            addr,
            shared,
            queues: vec![up, down],
            threads,
        })
    }

    /// Where the dialling side sends.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies the faults (on) or forwards untouched (off). Cuts apply either way.
    pub fn set_on(&self, on: bool) {
        self.shared.on.store(on, SeqCst);
    }

    /// A handle that cuts the path (for callbacks that must not own the relay).
    pub fn cutter(&self) -> Cutter {
        Cutter(self.shared.clone())
    }

    /// What it did so far.
    pub fn counts(&self) -> Counts {
        let c = &self.shared.counters;
        Counts {
            received: c.received.load(SeqCst),
            forwarded: c.forwarded.load(SeqCst),
            dropped: c.dropped.load(SeqCst),
            dropped_cut: c.dropped_cut.load(SeqCst),
            duplicated: c.duplicated.load(SeqCst),
            corrupted: c.corrupted.load(SeqCst),
            delayed: c.delayed.load(SeqCst),
            reordered: c.reordered.load(SeqCst),
            cuts: c.cuts.load(SeqCst),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        for q in &self.queues {
            lock(&q.held).stop = true;
            q.cond.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Cuts the path of a relay.
#[derive(Clone)]
pub struct Cutter(Arc<Shared>);

impl Cutter {
    /// Drops everything, both ways, for `how_long` from now.
    pub fn cut(&self, how_long: Duration) {
        *lock(&self.0.cut_until) = Some(Instant::now() + how_long);
        self.0.counters.cuts.fetch_add(1, SeqCst);
    }
}

/// Receives datagrams, decides their fate, queues the survivors.
fn receive(shared: &Shared, from: &UdpSocket, q: &Queue, up: bool, mut rng: Rng) {
    let c = &shared.counters;
    let f = shared.faults;
    let max_delay_us = u64::try_from(f.max_delay.as_micros()).unwrap_or(u64::MAX);
    let mut buf = vec![0u8; 65_536];
    let mut arrival = 0u64;
    while !shared.stop.load(SeqCst) {
        let Ok((n, src)) = from.recv_from(&mut buf) else {
            continue; // the read timeout: look at the stop flag
        };
        let Some(bytes) = buf.get(..n) else { continue };
        if up {
            *lock(&shared.client) = Some(src);
        }
        c.received.fetch_add(1, SeqCst);
        let now = Instant::now();
        let cut = {
            let mut g = lock(&shared.cut_until);
            match *g {
                Some(t) if t > now => true,
                Some(_) => {
                    *g = None;
                    false
                }
                None => false,
            }
        };
        if cut {
            c.dropped_cut.fetch_add(1, SeqCst);
            continue;
        }
        let on = shared.on.load(SeqCst);
        if on && rng.chance(f.drop) {
            c.dropped.fetch_add(1, SeqCst);
            continue;
        }
        let copies = if on && rng.chance(f.duplicate) {
            c.duplicated.fetch_add(1, SeqCst);
            2
        } else {
            1
        };
        let mut st = lock(&q.held);
        for _ in 0..copies {
            let mut b = bytes.to_vec();
            let len = b.len() as u64;
            if on && len > 1 && rng.chance(f.corrupt) {
                let at = len / 2 + rng.below(len - len / 2);
                if let Some(x) = b.get_mut(usize::try_from(at).unwrap_or(usize::MAX)) {
                    *x ^= 1 << rng.below(8);
                }
                c.corrupted.fetch_add(1, SeqCst);
            }
            let n = arrival;
            arrival += 1;
            if on && st.swap.is_none() && rng.chance(f.reorder) {
                st.swap = Some((n, b));
                continue;
            }
            let release = if on && rng.chance(f.delay) {
                c.delayed.fetch_add(1, SeqCst);
                now + Duration::from_micros(1 + rng.below(max_delay_us))
            } else {
                now
            };
            st.push(release, n, b);
            // The held-back one goes right after this one.
            if let Some((m, held)) = st.swap.take() {
                st.push(release, m, held);
            }
        }
        drop(st);
        q.cond.notify_one();
    }
}

/// Sends queued datagrams when their time comes.
fn send(shared: &Shared, to: &UdpSocket, q: &Queue, way: Way) {
    let c = &shared.counters;
    let mut top: Option<u64> = None;
    let mut st = lock(&q.held);
    loop {
        if st.stop {
            return;
        }
        let now = Instant::now();
        let Some(&(release, key)) = st.by_release.keys().next() else {
            // Nothing due: a held-back datagram with nothing behind it goes after the
            // longest delay.
            let wait = if st.swap.is_some() {
                shared.faults.max_delay.max(Duration::from_micros(100))
            } else {
                Duration::from_millis(50)
            };
            let (g, timeout) = q
                .cond
                .wait_timeout(st, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st = g;
            if timeout.timed_out() && st.by_release.is_empty() {
                if let Some((m, b)) = st.swap.take() {
                    st.push(Instant::now(), m, b);
                }
            }
            continue;
        };
        if release > now {
            let (g, _) = q
                .cond
                .wait_timeout(st, release - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            st = g;
            continue;
        }
        let Some((n, bytes)) = st.by_release.remove(&(release, key)) else {
            continue;
        };
        drop(st);
        let sent = match way {
            Way::Up => to.send(&bytes),
            Way::Down => match *lock(&shared.client) {
                Some(d) => to.send_to(&bytes, d),
                None => Ok(0),
            },
        };
        if sent.is_ok() {
            c.forwarded.fetch_add(1, SeqCst);
        }
        match top {
            Some(t) if n < t => {
                c.reordered.fetch_add(1, SeqCst);
            }
            _ => top = Some(n),
        }
        st = lock(&q.held);
    }
}
