//! Length-delimited frames: a 32-bit little-endian length, then that many bytes.
//! The length is checked against the configured maximum before anything is
//! allocated.

use bytes::{Bytes, BytesMut};
use quinn::{ReadError, ReadExactError, RecvStream, SendStream};

use crate::Error;

pub(crate) const HEADER_LEN: usize = 4;

pub(crate) async fn write_frame(
    stream: &mut SendStream,
    frame: Bytes,
    max: u64,
) -> Result<(), Error> {
    write_frame_parts(stream, Bytes::new(), frame, max).await
}

/// One frame made of `prefix` then `body`, written without copying `body`.
pub(crate) async fn write_frame_parts(
    stream: &mut SendStream,
    prefix: Bytes,
    body: Bytes,
    max: u64,
) -> Result<(), Error> {
    let length = (prefix.len() + body.len()) as u64;
    if length > max || length > u64::from(u32::MAX) {
        return Err(Error::FrameTooLargeToSend { length, max });
    }
    let header = Bytes::copy_from_slice(&(length as u32).to_le_bytes());
    let mut chunks = [header, prefix, body];
    stream
        .write_all_chunks(&mut chunks)
        .await
        .map_err(write_error)
}

/// What of a frame a stream did not take at once (see [`try_write_frame`]):
/// its header, then its body, from where the write stopped.
#[derive(Debug)]
pub(crate) struct Unsent {
    chunks: [Bytes; 2],
}

impl Unsent {
    /// Bytes still to write.
    pub(crate) fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    #[cfg(test)]
    pub(crate) fn from_chunks(chunks: [Bytes; 2]) -> Self {
        Self { chunks }
    }

    #[cfg(test)]
    pub(crate) fn chunks(&self) -> &[Bytes; 2] {
        &self.chunks
    }

    /// The same bytes in buffers of their own.
    pub(crate) fn detached(self) -> Self {
        Self {
            chunks: self.chunks.map(|c| Bytes::copy_from_slice(&c)),
        }
    }
}

/// Writes as much of one frame as the stream takes now, without waiting:
/// `None` when all of it went, else what is left, to be written with
/// [`write_unsent`] before anything else on this stream.
pub(crate) fn try_write_frame(
    stream: &mut SendStream,
    frame: Bytes,
    max: u64,
) -> Result<Option<Unsent>, Error> {
    let length = frame.len() as u64;
    if length > max || length > u64::from(u32::MAX) {
        return Err(Error::FrameTooLargeToSend { length, max });
    }
    let header = Bytes::copy_from_slice(&(length as u32).to_le_bytes());
    let mut chunks = [header, frame];
    // Polled once with a waker that does nothing: quinn keeps the latest
    // waker, so a write that later waits on `write_unsent` is woken then.
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    {
        let write = std::pin::pin!(stream.write_chunks(&mut chunks));
        if let std::task::Poll::Ready(Err(e)) = std::future::Future::poll(write, &mut cx) {
            return Err(write_error(e));
        }
    }
    let unsent = Unsent { chunks };
    Ok((unsent.len() > 0).then_some(unsent))
}

/// Writes the rest of a frame [`try_write_frame`] began.
pub(crate) async fn write_unsent(stream: &mut SendStream, mut unsent: Unsent) -> Result<(), Error> {
    let mut chunks: &mut [Bytes] = &mut unsent.chunks;
    while chunks.first().is_some_and(Bytes::is_empty) {
        chunks = &mut chunks[1..];
    }
    stream.write_all_chunks(chunks).await.map_err(write_error)
}

/// The next frame, or `None` at a clean end of stream (FIN between frames).
pub(crate) async fn read_frame(stream: &mut RecvStream, max: u64) -> Result<Option<Bytes>, Error> {
    let mut header = [0u8; HEADER_LEN];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => {
            return Err(Error::Protocol(format!(
                "stream ended {n} bytes into a frame header"
            )))
        }
        Err(ReadExactError::ReadError(e)) => return Err(read_error(e)),
    }
    let length = u64::from(u32::from_le_bytes(header));
    if length > max {
        return Err(Error::FrameTooLarge { length, max });
    }
    let length = length as usize;
    let mut body: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
    let mut have = 0usize;
    while have < length {
        // Chunks come straight from quinn's buffers; one chunk is the common case.
        let chunk = match stream.read_chunk(length - have, true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => {
                return Err(Error::Protocol(format!(
                    "stream ended {have} bytes into a {length}-byte frame"
                )))
            }
            Err(e) => return Err(read_error(e)),
        };
        have += chunk.len();
        match (&mut body, &first) {
            (None, None) => first = Some(chunk),
            (None, Some(f)) => {
                let mut b = BytesMut::with_capacity(length);
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                body = Some(b);
            }
            (Some(b), _) => b.extend_from_slice(&chunk),
        }
    }
    Ok(Some(match (body, first) {
        (Some(b), _) => b.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    }))
}

fn read_error(e: ReadError) -> Error {
    match e {
        ReadError::Reset(code) => Error::Reset(code.into_inner()),
        ReadError::ConnectionLost(c) => Error::Connection(c),
        other => Error::Protocol(other.to_string()),
    }
}

fn write_error(e: quinn::WriteError) -> Error {
    match e {
        quinn::WriteError::ConnectionLost(c) => Error::Connection(c),
        quinn::WriteError::Stopped(code) => Error::Reset(code.into_inner()),
        quinn::WriteError::ClosedStream => Error::Finished,
        other => Error::Protocol(other.to_string()),
    }
}
