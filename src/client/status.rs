//! `cohort status`: ask every core of every member for the state of its groups.

use crate::proto::status::{CoreRows, decode_status, encode_status_request};
use crate::proto::topology::client_address;
use crate::wire::FrameEncoder;

use super::conn::exchange;
use super::session::{Client, ClientError, ClientOptions};

/// Rows from every core that answered, and (node, why) for each core that did not.
pub type ClusterStatus = (Vec<CoreRows>, Vec<(u64, String)>);

/// Rows from every core that answered, and for each core that did not, its node and a line
/// that says why, all within `attempt_timeout`: the topology is fetched first, then every
/// core is asked at once with what is left, so a silent node costs one timeout, not one per
/// core, and the whole call never takes longer than that.
pub async fn cluster_status(options: ClientOptions) -> Result<ClusterStatus, ClientError> {
    let deadline = crate::clock::deadline_in(options.attempt_timeout);
    let client = Client::connect(options).await?;
    let timeout = deadline.saturating_duration_since(crate::clock::now());
    let topology = client.topology().clone();
    let mut encoder = FrameEncoder::new();
    encode_status_request(&mut encoder).expect("an empty frame fits");
    let encoder = std::rc::Rc::new(encoder);
    let mut asked = Vec::new();
    for &(node, ref base) in &topology.members {
        for core in 0..topology.cores {
            let (base, encoder) = (base.clone(), encoder.clone());
            asked.push(glommio::spawn_local(async move {
                let Some(address) = client_address(&base, core) else {
                    return Err((node, format!("node {node}: bad address {base}")));
                };
                exchange(&address, &encoder, timeout, timeout, decode_status)
                    .await
                    .map_err(|e| (node, format!("node {node} core {core} ({address}): {e}")))
            }));
        }
    }
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for answer in asked {
        match answer.await {
            Ok(core_rows) => rows.push(core_rows),
            Err(why) => missing.push(why),
        }
    }
    Ok((rows, missing))
}
