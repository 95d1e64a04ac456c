//! WebSocket `v5.channel.k8s.io` exec/attach translated to SPDY `v4.channel.k8s.io` (upstream's
//! StreamTranslator, KEP 4006): the runtime's streaming server cannot close stdin over
//! WebSocket, so a client that sends stdin is served here, and the agent (and containerd) get
//! SPDY. Only what remote command needs of SPDY/3 is spoken: our SYN_STREAMs carry their header
//! block in zlib *stored* blocks without a preset dictionary (valid zlib that never needs the
//! SPDY dictionary), and the server's compressed header blocks are skipped unread.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::wstunnel::{frame, read_frame};

/// The subprotocol kubectl asks for.
pub const V5: &str = "v5.channel.k8s.io";

/// The streams a request asks for (its query flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// One SPDY/3 SYN_STREAM for `id` with a single `streamtype` header.
pub fn syn_stream(id: u32, stream_type: &str, first: bool) -> Vec<u8> {
    let mut headers = Vec::new();
    headers.extend_from_slice(&1u32.to_be_bytes());
    for s in ["streamtype", stream_type] {
        headers.extend_from_slice(&(s.len() as u32).to_be_bytes());
        headers.extend_from_slice(s.as_bytes());
    }
    // The header stream is one zlib stream per connection: its 2-byte header comes once, then
    // each frame's block is a non-final stored deflate block (byte-aligned, so frames split
    // cleanly).
    let mut block = Vec::new();
    if first {
        block.extend_from_slice(&[0x78, 0x01]);
    }
    block.push(0x00);
    block.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    block.extend_from_slice(&(!(headers.len() as u16)).to_le_bytes());
    block.extend_from_slice(&headers);
    // An empty stored block ends the frame's share of the stream, as zlib's SYNC_FLUSH does: Go's
    // inflater hands out a block's bytes only when the next block starts, so without it the
    // server would read past this frame and fail.
    block.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
    let mut f = vec![0x80, 0x03, 0x00, 0x01];
    let len = 10 + block.len() as u32;
    f.push(0); // flags
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(&0u32.to_be_bytes()); // associated stream
    f.extend_from_slice(&[0, 0]); // priority, slot
    f.extend_from_slice(&block);
    f
}

/// One SPDY DATA frame.
pub fn data_frame(id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(u8::from(fin));
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// A frame from the server: control (type, the whole frame) or data (stream, fin, payload).
#[derive(Debug, PartialEq)]
pub enum Frame {
    Control { kind: u16, frame: Vec<u8> },
    Data { id: u32, fin: bool, data: Vec<u8> },
}

pub async fn read_spdy<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    if head[0] & 0x80 != 0 {
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let mut frame = head.to_vec();
        frame.extend_from_slice(&body);
        Ok(Frame::Control { kind, frame })
    } else {
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        Ok(Frame::Data {
            id,
            fin: head[4] & 0x01 != 0,
            data: body,
        })
    }
}

/// Serve the client's WebSocket (`client`, already upgraded) over the SPDY connection
/// `upstream` (already upgraded) until the command ends.
pub async fn run<C, U>(client: C, upstream: U, streams: Streams)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    U: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut client_r, client_w) = tokio::io::split(client);
    let (mut up_r, up_w) = tokio::io::split(upstream);
    let client_w = Arc::new(Mutex::new(client_w));
    let up_w = Arc::new(Mutex::new(up_w));

    // Streams in upstream's order (error first); the channel each maps to.
    let mut wanted: Vec<(&str, u8)> = vec![("error", 3)];
    if streams.stdin {
        wanted.push(("stdin", 0));
    }
    if streams.stdout {
        wanted.push(("stdout", 1));
    }
    if streams.stderr && !streams.tty {
        wanted.push(("stderr", 2));
    }
    if streams.tty {
        wanted.push(("resize", 4));
    }
    let mut channel_of: HashMap<u32, u8> = HashMap::new();
    let mut id_of: HashMap<u8, u32> = HashMap::new();
    {
        let mut w = up_w.lock().await;
        for (i, (kind, ch)) in wanted.iter().enumerate() {
            let id = 1 + 2 * i as u32;
            channel_of.insert(id, *ch);
            id_of.insert(*ch, id);
            if w.write_all(&syn_stream(id, kind, i == 0)).await.is_err() {
                return;
            }
        }
        let _ = w.flush().await;
    }

    let down = {
        let client_w = client_w.clone();
        let up_w = up_w.clone();
        async move {
            loop {
                let next = match read_spdy(&mut up_r).await {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::debug!(error = %e, "exec translation: SPDY side ended");
                        break;
                    }
                };
                tracing::trace!(frame = ?next, "exec translation: from SPDY");
                match next {
                    Frame::Data { id, data, .. } => {
                        let Some(ch) = channel_of.get(&id) else {
                            continue;
                        };
                        if data.is_empty() {
                            continue;
                        }
                        let mut msg = Vec::with_capacity(1 + data.len());
                        msg.push(*ch);
                        msg.extend_from_slice(&data);
                        let mut w = client_w.lock().await;
                        if w.write_all(&frame(0x2, &msg)).await.is_err() || w.flush().await.is_err()
                        {
                            return;
                        }
                    }
                    // PING: answered with the same frame.
                    Frame::Control {
                        kind: 6,
                        frame: ping,
                    } => {
                        let mut w = up_w.lock().await;
                        let _ = w.write_all(&ping).await;
                        let _ = w.flush().await;
                    }
                    // GOAWAY: the server is done.
                    Frame::Control { kind: 7, .. } => break,
                    Frame::Control { .. } => {}
                }
            }
            let mut w = client_w.lock().await;
            let _ = w.write_all(&frame(0x8, &1000u16.to_be_bytes())).await;
            let _ = w.flush().await;
            let _ = w.shutdown().await;
        }
    };
    let up = async move {
        loop {
            let (opcode, payload) = match read_frame(&mut client_r).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(error = %e, "exec translation: WebSocket side ended");
                    break;
                }
            };
            tracing::trace!(
                opcode,
                len = payload.len(),
                "exec translation: from WebSocket"
            );
            match opcode {
                0x1 | 0x2 if !payload.is_empty() => {
                    let ch = payload[0];
                    let bytes = if ch == 255 {
                        // v5's close: [255, channel].
                        match payload.get(1).and_then(|c| id_of.get(c)) {
                            Some(id) => data_frame(*id, true, &[]),
                            None => continue,
                        }
                    } else {
                        match id_of.get(&ch) {
                            Some(id) if ch == 0 || ch == 4 => data_frame(*id, false, &payload[1..]),
                            _ => continue,
                        }
                    };
                    let mut w = up_w.lock().await;
                    let sent = w.write_all(&bytes).await.is_ok() && w.flush().await.is_ok();
                    if !sent {
                        break;
                    }
                }
                0x8 => break,
                0x9 => {
                    let mut w = client_w.lock().await;
                    let _ = w.write_all(&frame(0xa, &payload)).await;
                    let _ = w.flush().await;
                }
                _ => {}
            }
        }
        let _ = up_w.lock().await.shutdown().await;
    };
    // Whichever side ends first, the other is not waited for: the command's end (upstream
    // EOF) closes the client, and a client that goes away ends the exec.
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_stream_layout() {
        let f = syn_stream(1, "error", true);
        assert_eq!(&f[..4], &[0x80, 0x03, 0x00, 0x01]);
        let len = u32::from_be_bytes([0, f[5], f[6], f[7]]) as usize;
        assert_eq!(len, f.len() - 8);
        assert_eq!(&f[8..12], &1u32.to_be_bytes());
        // zlib header, then a stored block whose LEN and NLEN agree.
        assert_eq!(&f[18..21], &[0x78, 0x01, 0x00]);
        let n = u16::from_le_bytes([f[21], f[22]]);
        assert_eq!(!n, u16::from_le_bytes([f[23], f[24]]));
        assert_eq!(usize::from(n), f.len() - 25 - 5);
        assert_eq!(&f[f.len() - 5..], &[0, 0, 0, 0xff, 0xff]);
        assert_eq!(&f[25..29], &1u32.to_be_bytes());
        let later = syn_stream(3, "stdin", false);
        assert_eq!(later[18], 0x00);
        let want = b"\0\0\0\x0astreamtype\0\0\0\x05stdin";
        assert!(later.windows(want.len()).any(|w| w == want));
    }

    #[tokio::test]
    async fn data_frames_round_trip() {
        let f = data_frame(5, true, b"abc");
        assert_eq!(
            read_spdy(&mut &f[..]).await.expect("frame"),
            Frame::Data {
                id: 5,
                fin: true,
                data: b"abc".to_vec()
            }
        );
    }

    #[test]
    fn zlib_header_is_valid() {
        // (CMF * 256 + FLG) is a multiple of 31 and FDICT is not set.
        assert_eq!((0x78u32 * 256 + 0x01) % 31, 0);
        assert_eq!(0x01 & 0x20, 0);
    }
}
