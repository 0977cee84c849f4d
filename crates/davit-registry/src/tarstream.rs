//! Reads a tar archive as it streams in (the engine's image export), entry by entry, without
//! holding more than the entry being read.

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// One entry's header.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub path: String,
    pub size: u64,
    /// `b'0'` regular file, `b'5'` directory, ...
    pub kind: u8,
}

pub(crate) struct TarStream<S> {
    input: S,
    buf: BytesMut,
    /// Bytes of the current entry's data (and padding) not consumed yet.
    pending: u64,
    done: bool,
}

fn octal(field: &[u8]) -> u64 {
    // GNU base-256 for large sizes.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = (v << 8) | u64::from(b);
        }
        return v;
    }
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    u64::from_str_radix(s.trim(), 8).unwrap_or(0)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

impl<S, E> TarStream<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub(crate) fn new(input: S) -> Self {
        TarStream {
            input,
            buf: BytesMut::new(),
            pending: 0,
            done: false,
        }
    }

    /// Makes at least `n` bytes available; false at the end of input.
    async fn fill(&mut self, n: usize) -> Result<bool, E> {
        while self.buf.len() < n {
            match self.input.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Skips what is left of the current entry.
    async fn skip_pending(&mut self) -> Result<(), E> {
        while self.pending > 0 {
            if self.buf.is_empty() && !self.fill(1).await? {
                self.pending = 0;
                break;
            }
            let take = self.pending.min(self.buf.len() as u64) as usize;
            let _ = self.buf.split_to(take);
            self.pending -= take as u64;
        }
        Ok(())
    }

    /// The next entry, skipping the rest of the previous one. `None` at the end.
    pub(crate) async fn next_entry(&mut self) -> Result<Option<Entry>, E> {
        self.skip_pending().await?;
        let mut long_name: Option<String> = None;
        loop {
            if self.done || !self.fill(512).await? {
                self.done = true;
                return Ok(None);
            }
            let h = self.buf.split_to(512);
            if h.iter().all(|&b| b == 0) {
                self.done = true;
                return Ok(None);
            }
            let size = octal(&h[124..136]);
            let kind = h[156];
            let padded = size.div_ceil(512) * 512;
            match kind {
                // GNU long name, PAX extended header: their data names the next entry.
                b'L' | b'x' => {
                    let data = self.read_exact_raw(size as usize).await?;
                    self.pending = padded - size;
                    self.skip_pending().await?;
                    if kind == b'L' {
                        long_name = Some(cstr(&data));
                    } else {
                        long_name = pax_path(&data).or(long_name);
                    }
                    continue;
                }
                b'g' => {
                    self.pending = padded;
                    self.skip_pending().await?;
                    continue;
                }
                _ => {}
            }
            let path = long_name.take().unwrap_or_else(|| {
                let name = cstr(&h[0..100]);
                let prefix = if &h[257..262] == b"ustar" {
                    cstr(&h[345..500])
                } else {
                    String::new()
                };
                if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                }
            });
            self.pending = padded;
            return Ok(Some(Entry {
                path: path.trim_start_matches("./").to_string(),
                size,
                kind,
            }));
        }
    }

    async fn read_exact_raw(&mut self, n: usize) -> Result<Bytes, E> {
        if !self.fill(n).await? {
            let all = self.buf.split().freeze();
            return Ok(all);
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// The data of the current entry (call once, right after [`TarStream::next_entry`]), given to
    /// `sink` piece by piece as it arrives.
    pub(crate) async fn read_data(
        &mut self,
        size: u64,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), E> {
        let mut left = size;
        while left > 0 {
            if self.buf.is_empty() && !self.fill(1).await? {
                break;
            }
            let take = left.min(self.buf.len() as u64) as usize;
            let piece = self.buf.split_to(take);
            sink(&piece);
            left -= take as u64;
            self.pending -= take as u64;
        }
        Ok(())
    }
}

fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        // "LEN key=value"
        let rec = line.split_once(' ').map(|(_, r)| r)?;
        if let Some(p) = rec.strip_prefix("path=") {
            return Some(p.to_string());
        }
    }
    None
}
