//! A Raft batch's columns: appends, append responses, heartbeats and heartbeat responses
//! travel as vectors of structs, every other message as a table, in the order `order` names.
//!
//! Why columns: the verifier checks a vector of structs as one range, so the four kinds that
//! make nearly all Raft traffic cost the verifier O(1) per batch instead of two tables and
//! their fields per message, and the builder writes them without a vtable per message. What
//! the verifier cannot know, that an append's entry range and an entry's payload run lie
//! within their vectors and that `order` names every column item exactly once, this file
//! checks before it reads anything through them.

use bytes::Bytes;
use flatbuffers::WIPOffset;

use crate::raft::{
    AppendEntries, AppendRequest, AppendResponse, Entry, EntryKind, GroupId, Heartbeat,
    HeartbeatResponse, LogIndex, Message, MessageBody, NodeId, Term,
};

use super::columns::{Column, left_over};
use super::convert::{Builder, ContentError, Envelope, decode_table_message};
use super::fb;
use super::limits::RAFT_MESSAGES_PER_FRAME_MAX;
use super::sender_says::SenderSays;

/// An append of one entry with at least this much payload goes as a table: its payload is
/// then copied into the frame once instead of twice (into the batch's payload column, then
/// into the builder), which costs more than the table from about here on.
const APPEND_TABLE_PAYLOAD_BYTES_MIN: usize = 8 << 10;

/// The columns of the batch being encoded. Kept by the encoder and reused, so a warm
/// encoder does not allocate.
#[derive(Default)]
pub(super) struct Columns {
    order: Vec<fb::MessageColumn>,
    tables: Vec<WIPOffset<fb::RaftMessage<'static>>>,
    appends: Vec<fb::AppendRecord>,
    entries: Vec<fb::EntryHeader>,
    /// Every entry payload of the batch, back to back.
    data: Vec<u8>,
    append_responses: Vec<fb::AppendResponseRecord>,
    heartbeats: Vec<fb::HeartbeatRecord>,
    /// `acknowledged_term` of each of `heartbeats` (the record, frozen, has no room for it).
    heartbeat_terms: Vec<u64>,
    heartbeat_responses: Vec<fb::HeartbeatResponseRecord>,
}

impl Columns {
    pub(super) fn clear(&mut self) {
        self.order.clear();
        self.tables.clear();
        self.appends.clear();
        self.entries.clear();
        self.data.clear();
        self.append_responses.clear();
        self.heartbeats.clear();
        self.heartbeat_terms.clear();
        self.heartbeat_responses.clear();
    }

    /// Takes `envelope` into its column; `false` (and nothing taken) for a message that goes
    /// as a table, which the caller encodes and hands to [`Columns::push_table`].
    pub(super) fn push(&mut self, envelope: &Envelope) -> bool {
        let Message { from, to, term, .. } = envelope.message;
        let (from, to, term, group) = (from.0, to.0, term.0, envelope.group.0);
        let column = match &envelope.message.body {
            // One big payload: as a table it is copied into the frame once, not twice, and
            // the table's cost is small next to the copy.
            MessageBody::AppendRequest(append) if matches!(&append.entries[..], [entry] if entry.data.len() >= APPEND_TABLE_PAYLOAD_BYTES_MIN) =>
            {
                return false;
            }
            MessageBody::AppendRequest(append) => {
                for entry in &append.entries {
                    self.data.extend_from_slice(&entry.data);
                    // The caller refuses a batch whose payloads pass FRAME_BODY_BYTES_MAX
                    // (far below 4 GiB) before it gets here, so u32 cannot overflow.
                    self.entries.push(fb::EntryHeader::new(
                        entry.index.0,
                        entry.term.0,
                        self.data.len() as u32,
                        fb::EntryKind(entry.kind as u8),
                    ));
                }
                self.appends.push(fb::AppendRecord::new(
                    from,
                    to,
                    term,
                    append.prev_log_index.0,
                    append.prev_log_term.0,
                    append.commit.0,
                    group,
                    // At most RAFT_MESSAGES_PER_FRAME_MAX appends of at most as many bytes.
                    self.entries.len() as u32,
                ));
                fb::MessageColumn::Append
            }
            MessageBody::AppendResponse(response) => {
                self.append_responses.push(fb::AppendResponseRecord::new(
                    from,
                    to,
                    term,
                    response.index.0,
                    response.reject_hint.0,
                    response.hint_term.0,
                    group,
                    response.reject,
                ));
                fb::MessageColumn::AppendResponse
            }
            // The column has no room for what the follower acknowledged beyond the commit (nor
            // for a commit term apart from the acknowledged one, nor for `quiesce`).
            MessageBody::Heartbeat(heartbeat)
                if heartbeat.acknowledged <= heartbeat.commit
                    && heartbeat.commit_term == heartbeat.acknowledged_term
                    && !heartbeat.quiesce =>
            {
                self.heartbeats.push(fb::HeartbeatRecord::new(
                    from,
                    to,
                    term,
                    heartbeat.commit.0,
                    heartbeat.read_round,
                    group,
                ));
                self.heartbeat_terms.push(heartbeat.acknowledged_term.0);
                fb::MessageColumn::Heartbeat
            }
            // The column has no room for a follower short of the commit (a table carries it).
            MessageBody::HeartbeatResponse(response) if response.short_of_commit.is_none() => {
                self.heartbeat_responses
                    .push(fb::HeartbeatResponseRecord::new(
                        from,
                        to,
                        term,
                        response.read_round,
                        group,
                    ));
                fb::MessageColumn::HeartbeatResponse
            }
            _ => return false,
        };
        self.order.push(column);
        true
    }

    pub(super) fn push_table(&mut self, table: WIPOffset<fb::RaftMessage<'static>>) {
        self.tables.push(table);
        self.order.push(fb::MessageColumn::Table);
    }

    /// Writes the columns into `fbb` and returns the batch. A batch of tables alone leaves
    /// out `order`, which then means "`messages`, in order".
    pub(super) fn build(
        &self,
        fbb: &mut Builder,
        sender: SenderSays,
    ) -> WIPOffset<fb::RaftBatch<'static>> {
        let columnar = self.order.len() > self.tables.len();
        let args = fb::RaftBatchArgs {
            messages: (!self.tables.is_empty()).then(|| fbb.create_vector(&self.tables)),
            order: columnar.then(|| fbb.create_vector(&self.order)),
            appends: (!self.appends.is_empty()).then(|| fbb.create_vector(&self.appends)),
            append_entries: (!self.entries.is_empty()).then(|| fbb.create_vector(&self.entries)),
            append_data: (!self.data.is_empty()).then(|| fbb.create_vector(&self.data)),
            append_responses: (!self.append_responses.is_empty())
                .then(|| fbb.create_vector(&self.append_responses)),
            heartbeats: (!self.heartbeats.is_empty()).then(|| fbb.create_vector(&self.heartbeats)),
            heartbeat_responses: (!self.heartbeat_responses.is_empty())
                .then(|| fbb.create_vector(&self.heartbeat_responses)),
            sender_log_full: sender.log_full,
            heartbeat_acknowledged_terms: (!self.heartbeat_terms.is_empty())
                .then(|| fbb.create_vector(&self.heartbeat_terms)),
            sender_kv_full: sender.kv_full,
            sender_clients_relay: sender.clients_relay,
        };
        fb::RaftBatch::create(fbb, &args)
    }
}

/// Where the decoder stands in one column.
struct Cursor<'a, T: flatbuffers::Follow<'a>> {
    items: Option<flatbuffers::Vector<'a, T>>,
    next: usize,
    name: &'static str,
}

impl<'a, T: flatbuffers::Follow<'a> + 'a> Cursor<'a, T> {
    fn new(items: Option<flatbuffers::Vector<'a, T>>, name: &'static str) -> Self {
        Cursor {
            items,
            next: 0,
            name,
        }
    }

    fn len(&self) -> usize {
        self.items.map_or(0, |items| items.len())
    }

    /// The column's next item, for message `message_index` of the batch.
    fn take(&mut self, message_index: usize) -> Result<T::Inner, ContentError> {
        match self.items {
            Some(items) if self.next < items.len() => {
                self.next += 1;
                Ok(items.get(self.next - 1))
            }
            _ => Err(ContentError::ColumnExhausted {
                column: self.name,
                message_index,
            }),
        }
    }
}

/// Decodes a verified batch; entry payloads are slices of `frame`.
pub(super) fn decode_raft_batch(
    frame: &Bytes,
    batch: fb::RaftBatch<'_>,
) -> Result<Vec<Envelope>, ContentError> {
    let mut tables = Cursor::new(batch.messages(), "messages");
    let mut appends = Cursor::new(batch.appends(), "appends");
    let mut responses = Cursor::new(batch.append_responses(), "append_responses");
    let mut heartbeats = Cursor::new(batch.heartbeats(), "heartbeats");
    let mut heartbeat_responses = Cursor::new(batch.heartbeat_responses(), "heartbeat_responses");
    let order = batch.order();
    let messages = order.map_or(tables.len(), |order| order.len());
    if messages > RAFT_MESSAGES_PER_FRAME_MAX {
        return Err(ContentError::TooManyMessages {
            messages,
            messages_max: RAFT_MESSAGES_PER_FRAME_MAX,
        });
    }
    // With every `take` bounded by its column, equal totals mean every item is used once.
    let items = tables.len()
        + appends.len()
        + responses.len()
        + heartbeats.len()
        + heartbeat_responses.len();
    if items != messages {
        return Err(ContentError::ColumnsMismatch { messages, items });
    }
    let heartbeat_terms = batch.heartbeat_acknowledged_terms();
    if let Some(terms) = heartbeat_terms
        && terms.len() != heartbeats.len()
    {
        return Err(ContentError::ColumnLengthWrong {
            column: "heartbeat_acknowledged_terms",
            len: terms.len(),
            expected: heartbeats.len(),
        });
    }
    let mut entries = EntryColumn::new(frame, batch);
    let mut envelopes = Vec::with_capacity(messages);
    for index in 0..messages {
        let column = order.map_or(fb::MessageColumn::Table, |order| order.get(index));
        let envelope = match column {
            fb::MessageColumn::Table => decode_table_message(frame, tables.take(index)?, index)?,
            fb::MessageColumn::Append => {
                let record = appends.take(index)?;
                let append = AppendRequest {
                    prev_log_index: LogIndex(record.prev_log_index()),
                    prev_log_term: Term(record.prev_log_term()),
                    entries: entries.take(record.entries_end() as usize)?,
                    commit: LogIndex(record.commit()),
                };
                let body = MessageBody::AppendRequest(append);
                let (from, to, term) = (record.from(), record.to(), record.term());
                envelope(record.group(), from, to, term, body)
            }
            fb::MessageColumn::AppendResponse => {
                let record = responses.take(index)?;
                let body = MessageBody::AppendResponse(AppendResponse {
                    index: LogIndex(record.index()),
                    reject: record.reject(),
                    reject_hint: LogIndex(record.reject_hint()),
                    hint_term: Term(record.hint_term()),
                });
                let (from, to, term) = (record.from(), record.to(), record.term());
                envelope(record.group(), from, to, term, body)
            }
            fb::MessageColumn::Heartbeat => {
                let record = heartbeats.take(index)?;
                let at = heartbeats.next - 1;
                let term = Term(heartbeat_terms.map_or(0, |terms| terms.get(at)));
                let body = MessageBody::Heartbeat(Heartbeat {
                    commit: LogIndex(record.commit()),
                    read_round: record.read_round(),
                    acknowledged: LogIndex(record.commit()),
                    acknowledged_term: term,
                    commit_term: term,
                    quiesce: false,
                });
                let (from, to, term) = (record.from(), record.to(), record.term());
                envelope(record.group(), from, to, term, body)
            }
            fb::MessageColumn::HeartbeatResponse => {
                let record = heartbeat_responses.take(index)?;
                let body = MessageBody::HeartbeatResponse(HeartbeatResponse {
                    read_round: record.read_round(),
                    short_of_commit: None,
                });
                let (from, to, term) = (record.from(), record.to(), record.term());
                envelope(record.group(), from, to, term, body)
            }
            other => {
                return Err(ContentError::UnionUnknown {
                    union: "MessageColumn",
                    tag: other.0,
                });
            }
        };
        envelopes.push(envelope);
    }
    entries.finish()?;
    Ok(envelopes)
}

fn envelope(group: u32, from: u64, to: u64, term: u64, body: MessageBody) -> Envelope {
    Envelope {
        group: GroupId(group),
        message: Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            body,
        },
    }
}

/// The batch's entry headers and payload bytes, consumed append by append.
struct EntryColumn<'a> {
    frame: &'a Bytes,
    headers: Column<'a, fb::EntryHeader>,
    data: &'a [u8],
    data_at: usize,
}

impl<'a> EntryColumn<'a> {
    fn new(frame: &'a Bytes, batch: fb::RaftBatch<'a>) -> Self {
        EntryColumn {
            frame,
            headers: Column::new(batch.append_entries(), "append_entries"),
            data: batch.append_data().map_or(&[][..], |data| data.bytes()),
            data_at: 0,
        }
    }

    /// Refuses entries or payload bytes that no append took: every item is used once.
    fn finish(&self) -> Result<(), ContentError> {
        self.headers.finish()?;
        left_over("append_data", self.data.len() - self.data_at)
    }

    /// The entries from where the last append ended to header `end` (exclusive).
    fn take(&mut self, end: usize) -> Result<AppendEntries, ContentError> {
        let headers = self.headers.take(end)?;
        decode_entries(self.frame, headers, self.data, &mut self.data_at)
    }
}

/// Entries from their headers; each payload is the run of `data` from `*data_at` to the
/// entry's `data_end`, as a slice of `frame` (which `data` lies in: it was verified there).
pub(super) fn decode_entries<'a>(
    frame: &Bytes,
    mut headers: impl ExactSizeIterator<Item = &'a fb::EntryHeader>,
    data: &[u8],
    data_at: &mut usize,
) -> Result<AppendEntries, ContentError> {
    // One entry (most appends under load): built in place. Pushed into an empty SmallVec,
    // the entry was written field by field and then read back wide to be moved out, a
    // store-forwarding stall per append: the codec decoded 17.3 M appends of 64 bytes a
    // second that way, 22.9 M this way (`cargo bench --bench transport`, "codec alone").
    if headers.len() == 1
        && let Some(header) = headers.next()
    {
        return Ok(AppendEntries::from_buf([decode_entry(
            frame, header, data, data_at,
        )?]));
    }
    let mut entries = AppendEntries::with_capacity(headers.len());
    for header in headers {
        entries.push(decode_entry(frame, header, data, data_at)?);
    }
    Ok(entries)
}

/// One entry of [`decode_entries`].
fn decode_entry(
    frame: &Bytes,
    header: &fb::EntryHeader,
    data: &[u8],
    data_at: &mut usize,
) -> Result<Entry, ContentError> {
    let kind = EntryKind::from_u8(header.kind().0).ok_or(ContentError::EntryKindUnknown {
        tag: header.kind().0,
    })?;
    let (start, end) = (*data_at, header.data_end() as usize);
    if end < start || end > data.len() {
        return Err(ContentError::EntryDataOutOfBounds {
            start,
            end,
            data_bytes: data.len(),
        });
    }
    *data_at = end;
    Ok(Entry {
        term: Term(header.term()),
        index: LogIndex(header.index()),
        kind,
        data: if end == start {
            Bytes::new()
        } else {
            frame.slice_ref(&data[start..end])
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::convert::{AppendScratch, DecodedFrame, FrameEncoder, encode_message};
    use crate::wire::decode_frame;

    fn envelope(group: u32, body: MessageBody) -> Envelope {
        super::envelope(group, 1, 2, 7, body)
    }

    fn append(payloads: &[usize]) -> MessageBody {
        let entries = payloads
            .iter()
            .enumerate()
            .map(|(at, &bytes)| Entry {
                term: Term(7),
                index: LogIndex(10 + at as u64),
                kind: EntryKind::Normal,
                data: Bytes::from(vec![at as u8; bytes]),
            })
            .collect();
        MessageBody::AppendRequest(AppendRequest {
            prev_log_index: LogIndex(9),
            prev_log_term: Term(6),
            entries,
            commit: LogIndex(8),
        })
    }

    /// The four kinds that have a column, with non-default fields.
    fn column_kinds() -> Vec<Envelope> {
        vec![
            envelope(1, append(&[5, 0, 3])),
            envelope(
                2,
                MessageBody::AppendResponse(AppendResponse {
                    index: LogIndex(4),
                    reject: true,
                    reject_hint: LogIndex(3),
                    hint_term: Term(2),
                }),
            ),
            envelope(
                3,
                MessageBody::Heartbeat(Heartbeat {
                    commit: LogIndex(5),
                    read_round: 6,
                    acknowledged: LogIndex(5),
                    acknowledged_term: Term(2),
                    commit_term: Term(2),
                    quiesce: false,
                }),
            ),
            envelope(
                4,
                MessageBody::HeartbeatResponse(HeartbeatResponse {
                    read_round: 6,
                    short_of_commit: None,
                }),
            ),
        ]
    }

    fn decoded(frame: Vec<u8>) -> Vec<Envelope> {
        match decode_frame(&Bytes::from(frame)) {
            Ok(DecodedFrame::Raft { envelopes, .. }) => envelopes,
            other => panic!("a raft batch, not {other:?}"),
        }
    }

    /// Goal: the table form of every kind that has a column still encodes and decodes, so a
    /// sender may choose either. Method: a batch of tables alone, built by hand.
    #[test]
    fn column_kinds_round_trip_as_tables() {
        let sent = column_kinds();
        let mut encoder = FrameEncoder::new();
        encoder
            .encode_with(|fbb| {
                let mut columns = Columns::default();
                let (mut scratch, mut proposals) = (AppendScratch::default(), Vec::new());
                for envelope in &sent {
                    let table = encode_message(fbb, &mut scratch, &mut proposals, envelope);
                    columns.push_table(table);
                }
                let batch = columns.build(fbb, SenderSays::default());
                (fb::FrameBody::RaftBatch, batch.as_union_value())
            })
            .expect("encodes");
        assert_eq!(decoded(encoder.to_frame_vec()), sent);
    }

    /// Goal: small appends go in the columns, an append of one big entry as a table, and the
    /// batch keeps the order of both. Method: encode a mix and read the batch's vectors.
    #[test]
    fn one_big_entry_goes_as_a_table_in_order() {
        let big = APPEND_TABLE_PAYLOAD_BYTES_MIN;
        let mut sent = column_kinds();
        sent.insert(1, envelope(5, append(&[big])));
        sent.push(envelope(6, append(&[big, 1])));
        let mut encoder = FrameEncoder::new();
        encoder.encode_raft(sent.iter()).expect("encodes");
        let frame = encoder.to_frame_vec();
        let root = crate::wire::frame::open_frame(&frame).expect("opens");
        let batch = root.body_as_raft_batch().expect("a batch");
        let order: Vec<u8> = batch.order().expect("order").iter().map(|c| c.0).collect();
        assert_eq!(order, [1, 0, 2, 3, 4, 1]);
        assert_eq!(batch.messages().map(|m| m.len()), Some(1));
        assert_eq!(batch.appends().map(|a| a.len()), Some(2));
        assert_eq!(decoded(frame), sent);
    }
}
