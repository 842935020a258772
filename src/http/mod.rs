//! The HTTP edge: our own HTTP/1.1 server on async-io, router, handlers, error codes.

mod message;
pub use message::{Body, Handler, Request, Response, percent_decode, percent_encode};
