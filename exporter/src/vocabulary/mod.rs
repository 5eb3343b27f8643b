//! The ground floor: names every stage shares (connections, directions, header fields, flag
//! parsing, text helpers). It imports no stage; every stage may import it.

mod connection;
mod duration;
mod headers;
pub mod text;

pub use connection::{ConnectionId, Direction, Role};
pub use duration::parse_duration;
pub use headers::{HeaderField, MessageKind};
