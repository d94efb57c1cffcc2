//! Decoding the columns of a batch (vectors of structs, and a byte vector they point into):
//! runs taken in order, bounds-checked, and nothing left over. The verifier checks each
//! vector as one range; what it cannot know (that the runs one column names in another lie
//! inside it and run forwards) is checked here, for the Raft batch and the client batches.

use bytes::Bytes;

use super::ContentError;

/// Where a decoder stands in a column of structs.
pub struct Column<'a, T: flatbuffers::Follow<'a>> {
    items: flatbuffers::Vector<'a, T>,
    next: usize,
    name: &'static str,
}

impl<'a, T: flatbuffers::Follow<'a> + 'a> Column<'a, T> {
    pub fn new(items: Option<flatbuffers::Vector<'a, T>>, name: &'static str) -> Self {
        Column {
            items: items.unwrap_or_default(),
            next: 0,
            name,
        }
    }

    /// The items from where the last run ended to `end`.
    pub fn take(
        &mut self,
        end: usize,
    ) -> Result<impl ExactSizeIterator<Item = T::Inner> + 'a, ContentError> {
        let start = self.next;
        self.next = advance(self.name, start, end, self.items.len())?;
        let items = self.items;
        Ok((start..end).map(move |at| items.get(at)))
    }

    pub fn finish(&self) -> Result<(), ContentError> {
        left_over(self.name, self.items.len() - self.next)
    }
}

/// `end`, if a run from `start` to it lies within a column of `len` items and runs forwards.
fn advance(
    column: &'static str,
    start: usize,
    end: usize,
    len: usize,
) -> Result<usize, ContentError> {
    if end < start || end > len {
        return Err(ContentError::RunOutOfBounds {
            column,
            start,
            end,
            len,
        });
    }
    Ok(end)
}

/// Refuses `items` of `column` that nothing took.
pub fn left_over(column: &'static str, items: usize) -> Result<(), ContentError> {
    match items {
        0 => Ok(()),
        items => Err(ContentError::LeftOver { column, items }),
    }
}

/// Where a decoder stands in a batch's bytes: each run is a slice of the frame (no copy).
pub struct Runs<'a> {
    frame: &'a Bytes,
    bytes: &'a [u8],
    next: usize,
    name: &'static str,
}

impl<'a> Runs<'a> {
    pub fn new(
        frame: &'a Bytes,
        bytes: Option<flatbuffers::Vector<'a, u8>>,
        name: &'static str,
    ) -> Self {
        Runs {
            frame,
            bytes: bytes.map_or(&[][..], |bytes| bytes.bytes()),
            next: 0,
            name,
        }
    }

    /// The bytes from where the last run ended to `end`.
    pub fn take(&mut self, end: u32) -> Result<Bytes, ContentError> {
        let (start, end) = (self.next, end as usize);
        self.next = advance(self.name, start, end, self.bytes.len())?;
        Ok(match end - start {
            0 => Bytes::new(),
            // The vector was verified inside `frame`: it lies within it.
            _ => self.frame.slice_ref(&self.bytes[start..end]),
        })
    }

    /// As [`Runs::take`], for bytes no one needs: checked, not sliced.
    pub fn skip_to(&mut self, end: u32) -> Result<(), ContentError> {
        self.next = advance(self.name, self.next, end as usize, self.bytes.len())?;
        Ok(())
    }

    pub fn finish(&self) -> Result<(), ContentError> {
        left_over(self.name, self.bytes.len() - self.next)
    }
}
