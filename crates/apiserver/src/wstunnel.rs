//! Port-forward tunnelled in WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31+): the
//! client speaks SPDY inside WebSocket binary messages; the agent (and containerd behind it)
//! speaks plain SPDY. As upstream's tunnelling handler does, the API server asks the agent for a
//! SPDY upgrade, accepts the client's WebSocket, and carries the SPDY bytes between the two:
//! message payloads upstream, upstream bytes as binary messages. SPDY itself is not parsed.

use std::sync::Arc;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

/// The subprotocol kubectl asks for.
pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Upstream's limit on one message; larger frames end the tunnel.
const MAX_FRAME: u64 = 32 << 20;

/// The `Sec-WebSocket-Accept` answer to `key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.trim().as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// A server-to-client frame (never masked).
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= 0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// One frame read from the client: its opcode and unmasked payload.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).await?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).await?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "WebSocket frame of {len} bytes"
        )));
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// Carry bytes between the client's WebSocket and the upstream SPDY connection until either
/// side ends.
pub async fn relay<C, U>(client: C, upstream: U)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    U: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut client_r, client_w) = tokio::io::split(client);
    let (mut up_r, mut up_w) = tokio::io::split(upstream);
    let client_w = Arc::new(Mutex::new(client_w));
    let down = {
        let client_w = client_w.clone();
        async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match up_r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut w = client_w.lock().await;
                if w.write_all(&frame(0x2, &buf[..n])).await.is_err() || w.flush().await.is_err() {
                    return;
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
            let Ok((opcode, payload)) = read_frame(&mut client_r).await else {
                break;
            };
            match opcode {
                // Continuation, text and binary all carry tunnel bytes.
                0x0..=0x2 => {
                    let sent = up_w.write_all(&payload).await.is_ok() && up_w.flush().await.is_ok();
                    if !sent {
                        break;
                    }
                }
                0x8 => {
                    let mut w = client_w.lock().await;
                    let _ = w
                        .write_all(&frame(0x8, &payload[..payload.len().min(2)]))
                        .await;
                    let _ = w.flush().await;
                    break;
                }
                0x9 => {
                    let mut w = client_w.lock().await;
                    if w.write_all(&frame(0xa, &payload)).await.is_err() {
                        break;
                    }
                    let _ = w.flush().await;
                }
                _ => {}
            }
        }
        let _ = up_w.shutdown().await;
    };
    // When the client goes, the upstream write side is shut; the upstream then ends its side.
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_have_the_right_length_encoding() {
        assert_eq!(frame(2, b"abc"), [0x82, 3, b'a', b'b', b'c']);
        let medium = frame(2, &[0u8; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 1, 44]);
        let big = frame(2, &vec![0u8; 70_000]);
        assert_eq!(&big[..2], &[0x82, 127]);
        assert_eq!(big.len(), 70_000 + 10);
    }

    #[tokio::test]
    async fn reads_masked_client_frames() {
        let mask = [1u8, 2, 3, 4];
        let data = b"hello";
        let mut raw = vec![0x82, 0x80 | data.len() as u8];
        raw.extend_from_slice(&mask);
        raw.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let (op, payload) = read_frame(&mut &raw[..]).await.expect("frame");
        assert_eq!(op, 2);
        assert_eq!(payload, data);
    }

    #[tokio::test]
    async fn relays_both_ways() {
        let (client, mut client_peer) = tokio::io::duplex(1 << 16);
        let (upstream, mut upstream_peer) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(relay(client, upstream));
        // A masked binary message from the client arrives upstream as bytes.
        let mask = [9u8, 8, 7, 6];
        let mut msg = vec![0x82, 0x80 | 4];
        msg.extend_from_slice(&mask);
        msg.extend(b"spdy".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        client_peer.write_all(&msg).await.expect("write");
        let mut got = [0u8; 4];
        upstream_peer.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"spdy");
        // Upstream bytes reach the client as a binary message.
        upstream_peer.write_all(b"reply").await.expect("write");
        let (op, payload) = read_frame(&mut client_peer).await.expect("frame");
        assert_eq!((op, payload.as_slice()), (2, &b"reply"[..]));
        // The upstream closing ends the tunnel with a close frame.
        drop(upstream_peer);
        let (op, _) = read_frame(&mut client_peer).await.expect("close");
        assert_eq!(op, 8);
        drop(client_peer);
        task.await.expect("relay");
    }
}
