//! `davit-ssh`: see the crate description and docs/ARCHITECTURE.md.

mod error;

pub use error::Error;

#[cfg(test)]
mod tests;
