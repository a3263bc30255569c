//! Connector tests: two or more connectors in one process on loopback.

mod catalog;
mod common;
mod denials;
mod flows;
mod malicious;
mod restart;
