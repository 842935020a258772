//! The HTTP edge: our own HTTP/1.1 server on async-io, router, handlers, error codes.

pub mod auth;
mod error;
mod message;
pub mod routes;
mod server;

pub use error::ErrorCode;
pub use message::{Abort, Body, Handler, Request, Response, percent_decode, percent_encode};
pub use server::{ServerLimits, ServerStats, ShutdownSignal, bind, serve, with_timeout};
