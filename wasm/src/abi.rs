//! The host half of ABI v1 (`wasm/ABI.md`): batch records the host writes
//! and the bounds-checked readers of guest output. Guest output is
//! untrusted: every read here returns an error, never panics.

/// The ABI version this host speaks.
pub(crate) const ABI_VERSION: i32 = 1;
/// Length meaning "no key" / "no accumulator yet".
pub(crate) const ABSENT: u32 = u32::MAX;
/// Batch header: count, cursor.
pub(crate) const HEADER_LEN: usize = 8;
/// Cursor value the host writes; the guest overwrites it per element.
pub(crate) const NO_CURSOR: u32 = u32::MAX;

pub(crate) const OP_ADD_INPUTS: i32 = 0;
pub(crate) const OP_MERGE_ACCUMULATORS: i32 = 1;
pub(crate) const OP_EXTRACT_OUTPUT: i32 = 2;

/// Required exports.
pub(crate) const EXPORT_MEMORY: &str = "memory";
pub(crate) const EXPORT_ABI_VERSION: &str = "oxbeam_abi_version";
pub(crate) const EXPORT_ALLOC: &str = "oxbeam_alloc";
/// Optional exports.
pub(crate) const EXPORT_CONFIGURE: &str = "oxbeam_configure";
pub(crate) const EXPORT_LAST_ERROR: &str = "oxbeam_last_error";

/// A batch being written: header, then records. Reused across batches.
#[derive(Default)]
pub(crate) struct BatchWriter {
    buf: Vec<u8>,
    count: u32,
}

impl BatchWriter {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        self.count = 0;
    }

    #[inline]
    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Starts the next record.
    #[inline]
    pub(crate) fn record(&mut self) -> &mut Self {
        self.count += 1;
        self
    }

    #[inline]
    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    #[inline]
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    #[inline]
    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    #[inline]
    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        // Values are bounded by the bundle, far below 4 GiB; saturating keeps
        // the framing readable even if one were not.
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX - 1));
        self.buf.extend_from_slice(b);
        self
    }

    pub(crate) fn opt_bytes(&mut self, b: Option<&[u8]>) -> &mut Self {
        match b {
            Some(b) => self.bytes(b),
            None => self.u32(ABSENT),
        }
    }

    /// The finished batch: count and cursor patched in.
    pub(crate) fn finish(&mut self) -> &[u8] {
        self.buf[0..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf[4..8].copy_from_slice(&NO_CURSOR.to_le_bytes());
        &self.buf
    }
}

/// Reads guest output.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(short(what, n, self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(i64::from_le_bytes(a))
    }

    #[inline]
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)?;
        self.take(n as usize, what)
    }

    /// [`Reader::bytes`], and the 16 bytes from the value's start when the
    /// output has that many (for fixed-size copies of short values).
    #[inline]
    pub(crate) fn bytes_windowed(
        &mut self,
        what: &str,
    ) -> Result<(&'a [u8], Option<&'a [u8; 16]>), String> {
        let n = self.u32(what)?;
        let window = self.buf.first_chunk::<16>();
        Ok((self.take(n as usize, what)?, window))
    }

    #[inline]
    pub(crate) fn opt_bytes(&mut self, what: &str) -> Result<Option<&'a [u8]>, String> {
        let n = self.u32(what)?;
        if n == ABSENT {
            Ok(None)
        } else {
            self.take(n as usize, what).map(Some)
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

#[cold]
fn short(what: &str, n: usize, left: usize) -> String {
    format!("malformed output: {what} needs {n} bytes, only {left} left")
}

/// Splits a packed export result into output pointer and length.
pub(crate) fn unpack(r: i64) -> (u32, u32) {
    (r as u64 as u32, ((r as u64) >> 32) as u32)
}
