//! One module per subcommand.

pub mod analysis;
pub mod check;
pub mod client;
pub mod demo;
pub mod demo_app;
pub mod flags;
pub mod listen;
pub mod proxy;
pub mod simulate;
pub mod up;
pub mod version;
