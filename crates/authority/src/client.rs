//! [`AuthorityClient`]: a member's connection to the authority service, and [`apply`] for
//! participants that are not members yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tds_core::hash::Hash256;
use tds_core::{cose, PublicKey, Signer, Timestamp};
use tds_identity::RevocationList;
use tds_protocol::message::{CatalogItem, CatalogPageMsg};
use tds_provenance::note::{self, Note};
use tds_provenance::witness::witness_key;
use tds_provenance::ConsistencyProof;
use tds_transport::{
    AdmissionReply, JoinConnection, LocalIdentity, ServiceConnection, TransportConfig,
    TransportError,
};

use crate::catalog::check_item;
use crate::error::AuthorityError;
use crate::message::{
    CosignRequest, Proof, PublishRequest, Reply, Request, RevocationListRequest, SearchRequest,
    MAX_MESSAGE,
};

/// Timeouts of the client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The QUIC handshake and the hello together. Default 5 s.
    pub connect_timeout: Duration,
    /// One request and its reply. Default 30 s.
    pub request_timeout: Duration,
    /// The rest of the transport's settings (its `hello_timeout` is replaced by
    /// `connect_timeout`).
    pub transport: TransportConfig,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            transport: TransportConfig::default(),
        }
    }
}

fn transport_config(options: &ClientOptions) -> TransportConfig {
    TransportConfig {
        hello_timeout: options.connect_timeout,
        ..options.transport.clone()
    }
}

fn connect_error(e: TransportError) -> AuthorityError {
    match e {
        TransportError::Timeout(_) => AuthorityError::Timeout("connecting to the authority"),
        other => AuthorityError::from(other),
    }
}

/// A revocation list fetched from the authority, its signature checked.
#[derive(Clone, Debug)]
pub struct FetchedRevocationList {
    /// The signed list, to hand to a trust store or an endpoint
    /// (`Endpoint::apply_revocation_list`).
    pub bytes: Vec<u8>,
    /// The list.
    pub list: RevocationList,
}

/// What the authority answered an admission request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Application {
    /// Admitted: the signed credential.
    Admitted(Vec<u8>),
    /// Waiting for the operator; the request id.
    Pending(String),
}

/// Sends a signed admission request (`tds_protocol::join::AdmissionRequest::sign`) to the
/// authority at `addr` whose key is `authority_key`. Ask again (with a fresh request)
/// to learn the decision: `Pending` until the operator decides, then `Admitted`; a
/// rejection is [`AuthorityError::Refused`] with code `authority.rejected`.
pub async fn apply(
    addr: SocketAddr,
    applicant: Arc<dyn Signer>,
    authority_key: &PublicKey,
    signed_request: &[u8],
    options: &ClientOptions,
) -> Result<Application, AuthorityError> {
    let config = transport_config(options);
    let conn = JoinConnection::connect(addr, applicant, authority_key, &config)
        .await
        .map_err(connect_error)?;
    let reply = tokio::time::timeout(options.request_timeout, conn.request(signed_request))
        .await
        .map_err(|_| AuthorityError::Timeout("the admission request"))?;
    match reply {
        Ok(AdmissionReply::Admitted(c)) => Ok(Application::Admitted(c)),
        Ok(AdmissionReply::Pending(id)) => Ok(Application::Pending(id)),
        Ok(AdmissionReply::Refused(r)) => Err(AuthorityError::Refused(r)),
        Err(TransportError::Refused(r)) => Err(AuthorityError::Refused(r)),
        Err(e) => Err(AuthorityError::from(e)),
    }
}

/// A member's connection to the authority service (`tds-authority/1`).
#[derive(Debug)]
pub struct AuthorityClient {
    conn: ServiceConnection,
    authority_key: PublicKey,
    options: ClientOptions,
}

impl AuthorityClient {
    /// Connects to the authority at `addr` whose key is `authority_key` as `identity`
    /// (its key and membership credential), with [`ClientOptions::default`].
    pub async fn connect(
        addr: SocketAddr,
        identity: &LocalIdentity,
        authority_key: &PublicKey,
    ) -> Result<AuthorityClient, AuthorityError> {
        Self::connect_with(addr, identity, authority_key, ClientOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(
        addr: SocketAddr,
        identity: &LocalIdentity,
        authority_key: &PublicKey,
        options: ClientOptions,
    ) -> Result<AuthorityClient, AuthorityError> {
        let config = transport_config(&options);
        // The transport bounds the handshake and the hello by `hello_timeout`; the outer
        // bound also covers binding and anything else on the way.
        let conn = tokio::time::timeout(
            options
                .connect_timeout
                .saturating_add(Duration::from_millis(100)),
            ServiceConnection::connect(addr, identity, authority_key, &config),
        )
        .await
        .map_err(|_| AuthorityError::Timeout("connecting to the authority"))?
        .map_err(|e| match e {
            TransportError::Refused(r) => AuthorityError::Refused(r),
            other => connect_error(other),
        })?;
        Ok(AuthorityClient {
            conn,
            authority_key: *authority_key,
            options,
        })
    }

    /// The authority's key.
    pub fn authority_key(&self) -> &PublicKey {
        &self.authority_key
    }

    async fn call(&self, request: &Request) -> Result<Reply, AuthorityError> {
        let bytes = request.encode()?;
        let max = u32::try_from(MAX_MESSAGE).unwrap_or(u32::MAX);
        let reply =
            tokio::time::timeout(self.options.request_timeout, self.conn.request(&bytes, max))
                .await
                .map_err(|_| AuthorityError::Timeout("the request"))??;
        match Reply::decode(&reply).map_err(|e| AuthorityError::InvalidReply {
            what: "reply",
            reason: tds_core::code::full_message(&e),
        })? {
            Reply::Error(r) => Err(AuthorityError::Refused(r)),
            other => Ok(other),
        }
    }

    /// The authority's latest revocation list, its signature checked with the authority
    /// key and not stale now.
    pub async fn revocation_list(&self) -> Result<FetchedRevocationList, AuthorityError> {
        let reply = self
            .call(&Request::RevocationList(RevocationListRequest {}))
            .await?;
        let Reply::RevocationList(r) = reply else {
            return Err(AuthorityError::UnexpectedReply(reply.name()));
        };
        let invalid = |reason: String| AuthorityError::InvalidReply {
            what: "revocation list",
            reason,
        };
        let list = cose::open::<RevocationList>(&r.crl)
            .and_then(|u| u.verify(&self.authority_key))
            .map_err(|e| invalid(tds_core::code::full_message(&e)))?
            .into_value();
        if list.issuer_key() != &self.authority_key {
            return Err(invalid("issued under another key".into()));
        }
        if list.is_stale(Timestamp::now()) {
            return Err(invalid(format!(
                "stale (next update was {})",
                list.next_update().to_rfc3339()
            )));
        }
        Ok(FetchedRevocationList {
            bytes: r.crl.into_vec(),
            list,
        })
    }

    /// Publishes catalog entries (each a signed offer of ours and the manifest it
    /// offers); returns the offer ids. All or nothing: one bad entry refuses the call.
    pub async fn publish(&self, items: Vec<CatalogItem>) -> Result<Vec<Hash256>, AuthorityError> {
        let reply = self
            .call(&Request::Publish(PublishRequest { items }))
            .await?;
        match reply {
            Reply::Published(p) => Ok(p.offers),
            other => Err(AuthorityError::UnexpectedReply(other.name())),
        }
    }

    /// One page of the federated catalog. Every entry is checked (the offer signed by its
    /// provider, the manifest by the same key, the offer for that manifest) before it is
    /// returned; an entry that fails is an [`AuthorityError::InvalidReply`].
    pub async fn search(&self, query: &SearchRequest) -> Result<CatalogPageMsg, AuthorityError> {
        let reply = self.call(&Request::Search(query.clone())).await?;
        let Reply::Page(page) = reply else {
            return Err(AuthorityError::UnexpectedReply(reply.name()));
        };
        for (i, item) in page.items.iter().enumerate() {
            check_item(i, item, None, None).map_err(|e| AuthorityError::InvalidReply {
                what: "catalog entry",
                reason: tds_core::code::full_message(&e),
            })?;
        }
        Ok(page)
    }

    /// Asks the authority's witness to cosign our log's checkpoint (signed-note text),
    /// with a consistency proof from the last checkpoint it cosigned (none the first
    /// time). Returns the note with the cosignature, checked with the authority's witness
    /// key. A checkpoint inconsistent with what the witness cosigned before is refused
    /// with code `authority.split_view`.
    pub async fn cosign(
        &self,
        checkpoint: &str,
        proof: Option<&ConsistencyProof>,
    ) -> Result<String, AuthorityError> {
        let reply = self
            .call(&Request::Cosign(CosignRequest {
                checkpoint: checkpoint.to_owned(),
                proof: proof.map(Proof::from),
            }))
            .await?;
        let Reply::Cosigned(c) = reply else {
            return Err(AuthorityError::UnexpectedReply(reply.name()));
        };
        let invalid = |reason: String| AuthorityError::InvalidReply {
            what: "cosignature",
            reason,
        };
        let key = witness_key(&self.authority_key).map_err(|e| invalid(e.to_string()))?;
        let n = Note::parse(c.note.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        note::verify_cosignature(&n, &key).map_err(|e| invalid(e.to_string()))?;
        Ok(c.note)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.conn.close();
    }
}
