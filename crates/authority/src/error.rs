//! Errors of the authority service and its client.

use tds_core::ErrorCode;
use tds_identity::store::AuthorityStoreError;
use tds_identity::{IdentityError, ParticipantId};
use tds_protocol::Refusal;
use tds_provenance::WitnessError;
use tds_transport::TransportError;

/// Why an authority operation failed, on either side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The service's own records could not be read or written.
    #[error("authority records ({what}): {reason}")]
    Store {
        /// What was being read or written.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// The authority home (key and state) could not be read or written.
    #[error("authority home")]
    Home(#[source] Box<AuthorityStoreError>),
    /// Issuing, revoking or signing failed.
    #[error("authority")]
    Identity(#[source] Box<IdentityError>),
    /// No admission request has this id.
    #[error("no admission request {0:?}")]
    UnknownRequest(String),
    /// More than one admission request starts with this id.
    #[error("admission request id {0:?} is ambiguous (give more characters)")]
    AmbiguousId(String),
    /// The admission request was approved or rejected already.
    #[error("admission request {id} was {status} already")]
    AlreadyDecided {
        /// Its id.
        id: String,
        /// `approved` or `rejected`.
        status: &'static str,
    },
    /// No credential issued through the service names this participant (or serial).
    #[error("no credential was issued to {0} through this service")]
    UnknownMember(String),
    /// A request could not be decoded or breaks a rule of the message format.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A list in a message is longer than allowed.
    #[error("{what}: {count} items, at most {max} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many were sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A text in a message is longer than allowed.
    #[error("{what}: {len} bytes, at most {max} allowed")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A catalog entry's offer or manifest does not open or verify.
    #[error("catalog entry {index}: {reason}")]
    InvalidEntry {
        /// The entry's position in the publish request.
        index: usize,
        /// Why (the underlying error's message, with its code).
        reason: String,
    },
    /// A catalog entry's offer names another provider than the member publishing it.
    #[error(
        "catalog entry {index}: the offer's provider is {provider}, not the publisher {publisher}"
    )]
    NotProvider {
        /// The entry's position.
        index: usize,
        /// The provider the offer names.
        provider: ParticipantId,
        /// The member that published it.
        publisher: ParticipantId,
    },
    /// A catalog entry's manifest is not owned (signed) by the offer's provider.
    #[error("catalog entry {index}: the manifest's owner is not the offer's provider")]
    NotOwner {
        /// The entry's position.
        index: usize,
    },
    /// A catalog entry's offer is for another asset than its manifest.
    #[error(
        "catalog entry {index}: the offer is for asset {offer_asset}, the manifest is {manifest}"
    )]
    AssetMismatch {
        /// The entry's position.
        index: usize,
        /// The asset the offer names.
        offer_asset: String,
        /// The manifest's asset id.
        manifest: String,
    },
    /// A catalog entry's offer has expired.
    #[error("catalog entry {index}: the offer expired")]
    OfferExpired {
        /// The entry's position.
        index: usize,
    },
    /// The federated catalog (or this provider's share of it) is full.
    #[error("the catalog is full ({what}: {max} entries)")]
    CatalogFull {
        /// Which limit.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A search cursor is not the 32-byte id of an offer.
    #[error("a search cursor is the 32-byte id of an offer")]
    BadCursor,
    /// The checkpoint is inconsistent with the last one the authority cosigned for the
    /// log (a split view: the log showed two histories), or rolled back.
    #[error("split view")]
    SplitView(#[source] Box<WitnessError>),
    /// The witness refused or failed otherwise (a proof needed, a bad note, ...).
    #[error("witness")]
    Witness(#[source] Box<WitnessError>),
    /// Too many admission requests wait for a decision.
    #[error("too many admission requests are pending ({max})")]
    QueueFull {
        /// The limit.
        max: usize,
    },
    /// The transport failed (connect, hello, stream).
    #[error("authority connection")]
    Transport(#[source] Box<TransportError>),
    /// A step took longer than allowed.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The authority refused the request; the refusal's code is this error's code when it
    /// is one of the `authority.*` codes (see [`AuthorityError::peer_refusal`]).
    #[error("refused by the authority: {}: {}", .0.code, .0.reason)]
    Refused(Refusal),
    /// The authority answered with a message that does not answer the request.
    #[error("the authority answered {0:?} to this request")]
    UnexpectedReply(&'static str),
    /// The authority's answer does not verify (a revocation list, a cosignature or a
    /// catalog entry).
    #[error("the authority's {what} does not verify: {reason}")]
    InvalidReply {
        /// What was answered.
        what: &'static str,
        /// Why it does not verify.
        reason: String,
    },
}

/// The service's code of a refusal as a static code: the `authority.*` codes a refusal
/// may carry from the service to the client keep their code in the client's error.
fn peer_code(refusal: &Refusal) -> &'static str {
    match refusal.code.as_str() {
        "authority.bad_request" => "authority.bad_request",
        "authority.too_many" => "authority.too_many",
        "authority.too_long" => "authority.too_long",
        "authority.invalid_entry" => "authority.invalid_entry",
        "authority.not_provider" => "authority.not_provider",
        "authority.not_owner" => "authority.not_owner",
        "authority.asset_mismatch" => "authority.asset_mismatch",
        "authority.offer_expired" => "authority.offer_expired",
        "authority.catalog_full" => "authority.catalog_full",
        "authority.bad_cursor" => "authority.bad_cursor",
        "authority.split_view" => "authority.split_view",
        "authority.rejected" => "authority.rejected",
        "authority.store" => "authority.store",
        "authority.queue_full" => "authority.queue_full",
        _ => "authority.refused",
    }
}

impl AuthorityError {
    /// The refusal the authority sent, if that is what this error is.
    pub fn peer_refusal(&self) -> Option<&Refusal> {
        match self {
            AuthorityError::Refused(r) => Some(r),
            AuthorityError::Transport(t) => t.peer_refusal(),
            _ => None,
        }
    }

    /// The reason code the authority gave, if it refused.
    pub fn peer_code(&self) -> Option<&str> {
        self.peer_refusal().map(|r| r.code.as_str())
    }

    pub(crate) fn store(what: &'static str, e: impl std::fmt::Display) -> AuthorityError {
        AuthorityError::Store {
            what,
            reason: e.to_string(),
        }
    }

    /// The refusal that tells a peer about this error.
    pub fn to_refusal(&self) -> Refusal {
        Refusal::new(self.code(), tds_core::code::full_message(self))
    }
}

impl ErrorCode for AuthorityError {
    fn code(&self) -> &'static str {
        match self {
            AuthorityError::Store { .. } => "authority.store",
            AuthorityError::Home(e) => e.code(),
            AuthorityError::Identity(e) => e.code(),
            AuthorityError::UnknownRequest(_) => "authority.unknown_request",
            AuthorityError::AmbiguousId(_) => "authority.ambiguous_id",
            AuthorityError::AlreadyDecided { .. } => "authority.already_decided",
            AuthorityError::UnknownMember(_) => "authority.unknown_member",
            AuthorityError::BadRequest(_) => "authority.bad_request",
            AuthorityError::TooMany { .. } => "authority.too_many",
            AuthorityError::TooLong { .. } => "authority.too_long",
            AuthorityError::InvalidEntry { .. } => "authority.invalid_entry",
            AuthorityError::NotProvider { .. } => "authority.not_provider",
            AuthorityError::NotOwner { .. } => "authority.not_owner",
            AuthorityError::AssetMismatch { .. } => "authority.asset_mismatch",
            AuthorityError::OfferExpired { .. } => "authority.offer_expired",
            AuthorityError::CatalogFull { .. } => "authority.catalog_full",
            AuthorityError::BadCursor => "authority.bad_cursor",
            AuthorityError::SplitView(_) => "authority.split_view",
            AuthorityError::Witness(e) => e.code(),
            AuthorityError::QueueFull { .. } => "authority.queue_full",
            AuthorityError::Transport(e) => e.code(),
            AuthorityError::Timeout(_) => "authority.timeout",
            AuthorityError::Refused(r) => peer_code(r),
            AuthorityError::UnexpectedReply(_) => "authority.unexpected_reply",
            AuthorityError::InvalidReply { .. } => "authority.invalid_reply",
        }
    }
}

impl From<TransportError> for AuthorityError {
    fn from(e: TransportError) -> Self {
        AuthorityError::Transport(Box::new(e))
    }
}

impl From<IdentityError> for AuthorityError {
    fn from(e: IdentityError) -> Self {
        AuthorityError::Identity(Box::new(e))
    }
}

impl From<AuthorityStoreError> for AuthorityError {
    fn from(e: AuthorityStoreError) -> Self {
        AuthorityError::Home(Box::new(e))
    }
}

impl From<redb::Error> for AuthorityError {
    fn from(e: redb::Error) -> Self {
        AuthorityError::store("redb", e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for AuthorityError {
            fn from(e: $t) -> Self {
                AuthorityError::from(redb::Error::from(e))
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
