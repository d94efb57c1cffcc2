//! The client protocol on the wire: requests and responses as key-value commands and replies
//! (`client`), the cluster's layout that clients route by (`topology`), `cohort status` (`status`),
//! `cohort leader transfer` (`transfer`) and `cohort members` (`members`). It sits above `kv` and
//! `wire`, which know nothing of each other.

pub mod client;
pub mod in_flight;
pub mod members;
pub mod status;
pub mod topology;
pub mod transfer;
