//! One module per subcommand.

pub mod analysis;
pub mod simulate;
pub mod version;
