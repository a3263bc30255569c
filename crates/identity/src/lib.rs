#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod attributes;
mod authority;
mod credential;
mod crl;
mod error;
mod participant;
mod rollover;
pub mod store;
mod trust;

pub use attributes::{
    check_name, is_invisible_format, Jurisdiction, Role, Sector, MAX_NAME_CHARS, MAX_SECTORS,
    MAX_SECTOR_LEN,
};
pub use authority::{Admission, Authority, AuthorityState, Signed, STATE_VERSION};
pub use credential::{Credential, CREDENTIAL_VERSION, MAX_CREDENTIAL_LEN};
pub use crl::{RevocationList, CRL_VERSION};
pub use error::{FieldError, IdentityError, Invalid};
pub use participant::ParticipantId;
pub use rollover::{KeyRollover, ROLLOVER_VERSION};
pub use store::{AuthorityStore, AuthorityStoreError, DirAuthorityStore};
pub use trust::{DangerousTrustStore, TrustStore, VerifiedCredential, CONTENT_TYPES};

#[cfg(test)]
mod tests;
