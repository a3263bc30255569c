//! Two connectors of one data space in this process, on loopback, each with its state
//! in its own data directory (redb store, provenance log, chunk trees: durable, with
//! enforcement and logging on), and the asset the connector benchmarks move.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tds_connector::{Connector, DataSource, OfferTerms, Source};
use tds_core::time::{SystemClock, DAY_MS};
use tds_core::{Clock, Timestamp};
use tds_identity::Sector;
use tds_manifest::content::ChunkTree;
use tds_manifest::{
    ChunkSize, Classification, Commitment, Manifest, PersonalInfo, MANIFEST_VERSION,
};
use tds_protocol::message::CatalogFilter;

use crate::net::{setup, Member, NetBenchError, Space, TransferBench};

/// The provider's asset: `len` bytes of a repeated block, served from memory (no file:
/// the provider's side reads it as the raw baselines do, and the process stays small).
#[derive(Debug)]
pub(crate) struct Repeated {
    block: Bytes,
    len: u64,
}

impl Repeated {
    pub(crate) fn new(block: Bytes, len: u64) -> Repeated {
        Repeated { block, len }
    }
}

impl DataSource for Repeated {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        let period = self.block.len() as u64;
        if period == 0 {
            return if end == offset {
                Ok(())
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
            };
        }
        let mut at = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let within = usize::try_from(at % period).unwrap_or(0);
            let from = self.block.get(within..).unwrap_or_default();
            let n = from.len().min(rest.len());
            let (head, tail) = rest.split_at_mut(n);
            head.copy_from_slice(from.get(..n).unwrap_or_default());
            rest = tail;
            at += n as u64;
        }
        Ok(())
    }

    /// A slice of the block, without a copy, when the range lies within one period
    /// (every chunk does when chunks are the block's size): as the raw baselines hand
    /// the block to quinn.
    fn read_bytes(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let period = self.block.len() as u64;
        let end = offset
            .checked_add(len as u64)
            .filter(|e| *e <= self.len)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        if period > 0 {
            let within = offset % period;
            if within + (end - offset) <= period {
                let start = usize::try_from(within).unwrap_or(0);
                return Ok(self.block.slice(start..start + len));
            }
        }
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }
}

/// The repeated block of `bench`, the manifest (signed by `owner`) committing to
/// `bench.size` bytes of it cut in chunks of `bench.chunk` bytes, and its chunk tree. The commitment is
/// computed from the two distinct leaves (every full chunk is the block), not by reading
/// the bytes; the connector checks it against the source when it publishes.
pub(crate) fn repeated_asset(
    owner: &Member,
    bench: TransferBench,
) -> Result<(Bytes, Vec<u8>, ChunkTree), NetBenchError> {
    let now = SystemClock.now();
    let chunk_size = ChunkSize::new(bench.chunk as u64).map_err(setup("chunk size"))?;
    let block = Bytes::from(vec![0x5au8; bench.chunk]);
    let chunks = chunk_size.chunks_for(bench.size);
    let full = tds_core::merkle::leaf_hash(&block);
    let tail_len = bench.size - chunk_size.get() * chunks.saturating_sub(1);
    let tail = tds_core::merkle::leaf_hash(block.get(..tail_len as usize).unwrap_or_default());
    let tree =
        ChunkTree::from_leaves((0..chunks).map(|i| if i + 1 == chunks { tail } else { full }));
    let content =
        Commitment::new(bench.size, chunk_size, tree.root()).map_err(setup("commitment"))?;
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        title: "Bench asset".into(),
        description: String::new(),
        sector: Sector::POWER,
        media_type: "application/octet-stream".into(),
        schema: None,
        keywords: vec![],
        owner: tds_identity::ParticipantId::of(&owner.key.public_key()),
        owner_key: owner.key.public_key(),
        created: now,
        classification: Classification::General,
        personal: PersonalInfo::None,
        residency: None,
        content,
        lineage: vec![],
        supersedes: None,
        quality: None,
    };
    let signed = manifest.sign(&owner.key).map_err(setup("manifest"))?;
    Ok((block, signed, tree))
}

/// The policy every bench offer carries: any use for research.
pub(crate) const OPEN_POLICY: &str = "policy set;\n\npermit use\n  when purpose isA research;\n";

pub(crate) fn open_terms() -> Result<OfferTerms, NetBenchError> {
    let now = SystemClock.now();
    Ok(OfferTerms {
        policy: tds_policy::parse("bench", OPEN_POLICY).map_err(setup("policy"))?,
        price: None,
        not_before: Timestamp::from_millis(now.as_millis().saturating_sub(60_000)),
        not_after: now.saturating_add_millis(DAY_MS),
        licence: None,
    })
}

/// A provider (the space's server member) and a consumer (its client member), each a
/// [`Connector`] with its state under `dir` (`provider/`, `consumer/`).
pub(crate) struct Pair {
    pub(crate) provider: Connector,
    pub(crate) consumer: Connector,
    /// Where the provider listens.
    pub(crate) addr: SocketAddr,
}

impl Pair {
    pub(crate) async fn start(space: &Space, dir: &Path) -> Result<Pair, NetBenchError> {
        let trust = space
            .trust
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let start = |m: &Member, sub: &str| {
            let key: Arc<dyn tds_core::Signer> = m.key.clone();
            Connector::builder(key, m.credential.clone(), trust.clone())
                .revocation_list(space.crl.clone())
                .data_dir(dir.join(sub))
                .start()
        };
        let provider = start(&space.server, "provider").await?;
        let consumer = start(&space.client, "consumer").await?;
        let addr = provider.local_addr()?;
        Ok(Pair {
            provider,
            consumer,
            addr,
        })
    }

    /// Publishes `bench.size` bytes of the repeated block under one open offer, and
    /// returns the offer's signed bytes as the consumer finds them in the provider's
    /// catalog (which also opens the one connection the benches use).
    pub(crate) async fn publish_repeated(
        &self,
        space: &Space,
        bench: TransferBench,
    ) -> Result<Vec<u8>, NetBenchError> {
        let (block, manifest, _) = repeated_asset(&space.server, bench)?;
        let source = Source::Custom {
            name: "bench-repeated".into(),
            source: Arc::new(Repeated::new(block, bench.size)),
        };
        let published = self
            .provider
            .publish(&manifest, source, vec![open_terms()?])
            .await?;
        let found = self
            .consumer
            .catalog_all(self.addr, CatalogFilter::default())
            .await?;
        found
            .into_iter()
            .find(|e| e.manifest.id().to_string() == published.asset)
            .map(|e| e.offer_bytes)
            .ok_or_else(|| NetBenchError::Setup("the published offer is not in the catalog".into()))
    }

    pub(crate) async fn shutdown(&self) {
        self.consumer.shutdown().await;
        self.provider.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeated_source_wraps_around_its_block() -> std::io::Result<()> {
        let s = Repeated::new(Bytes::from_static(b"abc"), 8);
        let mut all = [0u8; 8];
        s.read_exact_at(&mut all, 0)?;
        assert_eq!(&all, b"abcabcab");
        let mut mid = [0u8; 4];
        s.read_exact_at(&mut mid, 2)?;
        assert_eq!(&mid, b"cabc");
        let mut past = [0u8; 2];
        assert!(s.read_exact_at(&mut past, 7).is_err());
        Ok(())
    }
}
