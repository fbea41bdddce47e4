//! notarium: a Notary-compatible content trust server.
//!
//! Layers, lowest first: `tuf` (Notary's TUF dialect, pure), `store`
//! (persistence), `signer` (server-held keys), `registry` (outbound registry
//! lookups), `repo` (operations on one
//! repository), `server` (HTTP), and `app`, which assembles them.

pub mod app;
pub mod auth;
pub mod client;
pub mod config;
pub mod fuzzing;
pub mod import;
pub mod policy;
pub mod probe;
pub mod registry;
pub mod repo;
pub mod server;
pub mod signer;
pub mod store;
pub mod striped;
pub mod tuf;
