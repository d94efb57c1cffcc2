//! The Rust client of a cohort cluster (used by the `cohort` client commands, the demo and
//! the load generator). It runs on a glommio executor.

mod channel;
mod conn;
mod cut_off;
mod members;
mod results_fit;
mod session;
mod silence;
mod status;
mod transfer;
mod unanswered;

pub use channel::channels_closed;
pub use members::{
    MembershipError, change_membership, change_membership_while, membership_view, remove_from,
    render_membership,
};
pub use session::{
    Answer, Client, ClientError, ClientOptions, REQUEST_TIMEOUT_DEFAULT, fetch_topology,
};
pub use status::{ClusterStatus, cluster_status};
pub use transfer::transfer_leader;
