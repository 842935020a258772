//! Integration tests: the real `xg2g` binary against the simulated receiver, over real
//! sockets, checked with the real validators. One test binary (one link), a module per area.

mod common;

mod cli;
mod crash;
mod edge;
mod faults;
mod files;
mod hdhr;
mod protection;
mod streams;
mod transcode;
