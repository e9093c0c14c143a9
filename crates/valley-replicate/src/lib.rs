//! Valley's hub network.
//!
//! [`core`] holds the delivery logic, free of I/O.

pub mod core;
