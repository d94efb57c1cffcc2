//! `cohort status`: ask every core of every member for the state of its groups.

use crate::proto::status::{CoreRows, decode_status, encode_status_request};
use crate::proto::topology::client_address;
use crate::wire::FrameEncoder;

use super::conn::exchange;
use super::session::{Client, ClientError, ClientOptions};

/// Rows from every core that answered, and one line per core that did not.
pub async fn cluster_status(
    options: ClientOptions,
) -> Result<(Vec<CoreRows>, Vec<String>), ClientError> {
    let timeout = options.attempt_timeout;
    let client = Client::connect(options).await?;
    let topology = client.topology().clone();
    let mut encoder = FrameEncoder::new();
    encode_status_request(&mut encoder).expect("an empty frame fits");
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for (node, base) in &topology.members {
        for core in 0..topology.cores {
            let Some(address) = client_address(base, core) else {
                missing.push(format!("node {node}: bad address {base}"));
                continue;
            };
            match exchange(&address, &encoder, timeout, timeout, decode_status).await {
                Ok(core_rows) => rows.push(core_rows),
                Err(error) => missing.push(format!("node {node} core {core} ({address}): {error}")),
            }
        }
    }
    Ok((rows, missing))
}
