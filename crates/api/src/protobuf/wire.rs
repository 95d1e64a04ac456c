//! The protobuf wire format: varints and (field number, wire value) pairs over a byte slice.

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, packed repeated scalars, map entries.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// A cursor over an encoded message.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Start reading `data` from its first byte.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Whether every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// A base-128 varint of at most 10 bytes.
    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err("truncated varint".into());
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A little-endian 8-byte value.
    pub(crate) fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    fn fixed32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        let mut array = [0u8; 4];
        array.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(array))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| "truncated field".to_owned())?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// The next (field number, value), or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, String> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| "field number out of range".to_owned())?;
        if tag == 0 {
            return Err("field number 0".into());
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| "length out of range".to_owned())?;
                WireValue::Len(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            other => return Err(format!("unsupported wire type {other}")),
        };
        Ok(Some((tag, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_every_wire_type() {
        // 1: varint 150, 2: "hi", 3: fixed64 1, 4: fixed32 2
        let data = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let mut r = Reader::new(&data);
        assert_eq!(r.next_field(), Ok(Some((1, WireValue::Varint(150)))));
        assert_eq!(r.next_field(), Ok(Some((2, WireValue::Len(b"hi")))));
        assert_eq!(r.next_field(), Ok(Some((3, WireValue::Fixed64(1)))));
        assert_eq!(r.next_field(), Ok(Some((4, WireValue::Fixed32(2)))));
        assert_eq!(r.next_field(), Ok(None));
    }

    #[test]
    fn truncated_length_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[0x12, 0x05, b'a']);
        assert!(r.next_field().is_err());
        let mut r = Reader::new(&[0x08, 0x80]);
        assert!(r.next_field().is_err());
        let mut r = Reader::new(&[
            0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert!(r.next_field().is_err());
    }

    #[test]
    fn groups_are_rejected() {
        let mut r = Reader::new(&[0x0b]);
        assert_eq!(r.next_field(), Err("unsupported wire type 3".to_owned()));
    }
}
