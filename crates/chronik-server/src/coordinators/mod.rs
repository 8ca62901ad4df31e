//! Coordinators: services that follow partition leadership rather than own partitions.
//! Each subscribes to the partition manager's leadership changes; none is called from inside
//! the partition manager or the broker.

pub mod groups;
pub mod producer_ids;
pub mod transactions;

pub use groups::{GroupCoordinator, GroupSettings};
pub use producer_ids::ProducerIds;
pub use transactions::TransactionCoordinator;
