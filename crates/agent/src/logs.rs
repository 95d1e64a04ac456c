//! Container logs as kubelet serves them: CRI log files (`<RFC3339Nano> <stream> <P|F> <text>`)
//! read with follow, tailLines, sinceSeconds/sinceTime, timestamps and limitBytes.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;

/// The options of `pods/log`, from the query string.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    /// Only the last this many lines.
    pub tail_lines: Option<u64>,
    /// Only entries at or after this time (from `sinceTime` or `sinceSeconds`).
    pub since: Option<jiff::Timestamp>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "True" | "1" | "t" | "T" | "TRUE")
}

impl LogOptions {
    /// Parse `pairs` (decoded query pairs); `now` anchors `sinceSeconds`. The error text is
    /// what the client sees.
    pub fn from_query(pairs: &[(String, String)], now: jiff::Timestamp) -> Result<Self, String> {
        let mut o = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (k, v) in pairs {
            match k.as_str() {
                "follow" => o.follow = truthy(v),
                "previous" => o.previous = truthy(v),
                "timestamps" => o.timestamps = truthy(v),
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid tailLines {v:?}"))?;
                    // Upstream treats a negative tail as "all lines".
                    o.tail_lines = u64::try_from(n).ok();
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| format!("invalid limitBytes {v:?}"))?;
                    if n < 1 {
                        return Err("limitBytes: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| format!("invalid sinceSeconds {v:?}"))?;
                    if n < 1 {
                        return Err("sinceSeconds: must be greater than 0".into());
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    since_time = Some(
                        v.parse::<jiff::Timestamp>()
                            .map_err(|e| format!("invalid sinceTime {v:?}: {e}"))?,
                    );
                }
                _ => {}
            }
        }
        if since_seconds.is_some() && since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        o.since = match (since_seconds, since_time) {
            (Some(s), _) => now.checked_sub(jiff::SignedDuration::from_secs(s)).ok(),
            (_, t) => t,
        };
        Ok(o)
    }
}

/// One parsed CRI log line.
#[derive(Debug, PartialEq)]
pub struct Entry<'a> {
    /// The time as written (RFC3339Nano).
    pub time: &'a [u8],
    pub stream: &'a [u8],
    /// A `P` (partial) line continues in the next entry: no newline is added.
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parse one line (without its newline) of a CRI log file.
pub fn parse_line(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or(b"");
    if time.is_empty() || !(stream == b"stdout" || stream == b"stderr") {
        return None;
    }
    // The tag may carry more flags after ':' in future CRI versions.
    let partial = tag.split(|b| *b == b':').next() == Some(b"P");
    Some(Entry {
        time,
        stream,
        partial,
        text,
    })
}

/// The offset where the last `n` lines of `data` start.
pub fn tail_offset(data: &[u8], n: u64) -> usize {
    if n == 0 {
        return data.len();
    }
    // A trailing newline ends the last line; it does not start an empty one.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    let mut seen = 0;
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Where the last `n` lines of `file` start, read backwards in chunks so a long log is not read
/// whole for a short tail.
pub async fn tail_start(file: &mut tokio::fs::File, n: u64) -> std::io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut pos = file.metadata().await?.len();
    let mut tail: Vec<u8> = Vec::new();
    while pos > 0 {
        let from = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (pos - from) as usize];
        file.seek(std::io::SeekFrom::Start(from)).await?;
        file.read_exact(&mut chunk).await?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = from;
        let offset = tail_offset(&tail, n);
        if offset > 0 {
            return Ok(pos + offset as u64);
        }
    }
    Ok(0)
}

/// Turns CRI lines into client output, applying since, timestamps and limitBytes.
pub struct Formatter {
    opts: LogOptions,
    written: u64,
}

impl Formatter {
    pub fn new(opts: LogOptions) -> Self {
        Formatter { opts, written: 0 }
    }

    /// Whether limitBytes has been reached.
    pub fn done(&self) -> bool {
        self.opts.limit_bytes.is_some_and(|l| self.written >= l)
    }

    /// Append the output of one line to `out`.
    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let Some(e) = parse_line(line) else {
            return;
        };
        if let Some(since) = self.opts.since {
            let at = std::str::from_utf8(e.time)
                .ok()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok());
            if at.is_some_and(|at| at < since) {
                return;
            }
        }
        let start = out.len();
        if self.opts.timestamps {
            out.extend_from_slice(e.time);
            out.push(b' ');
        }
        out.extend_from_slice(e.text);
        if !e.partial {
            out.push(b'\n');
        }
        let mut added = (out.len() - start) as u64;
        if let Some(limit) = self.opts.limit_bytes {
            let room = limit.saturating_sub(self.written);
            if added > room {
                out.truncate(start + room as usize);
                added = room;
            }
        }
        self.written += added;
    }
}

/// Whether the container is still running (so a follower should wait for more).
pub type Running = Box<dyn FnMut() -> futures::future::BoxFuture<'static, bool> + Send>;

/// Stream the log file at `path` into `tx` as `opts` says. With follow, it waits for new lines
/// while `running` says yes, and ends once the container stopped and the file is drained.
pub async fn stream(
    path: &Path,
    opts: LogOptions,
    mut running: Running,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let follow = opts.follow;
    let tail = opts.tail_lines;
    let mut fmt = Formatter::new(opts);
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    if let Some(n) = tail {
        match tail_start(&mut file, n).await {
            Ok(at) => {
                if let Err(e) = file.seek(std::io::SeekFrom::Start(at)).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Emit every complete line in `pending`.
        let mut out = Vec::new();
        let mut consumed = 0;
        while let Some(nl) = pending[consumed..].iter().position(|b| *b == b'\n') {
            fmt.line(&pending[consumed..consumed + nl], &mut out);
            consumed += nl + 1;
            if fmt.done() {
                break;
            }
        }
        pending.drain(..consumed);
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return;
        }
        if fmt.done() {
            return;
        }
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            continue;
        }
        if !follow {
            return;
        }
        // At the end of the file: wait for more while the container runs; once it stopped,
        // read what it wrote before exiting, then end.
        if !running().await {
            let mut rest = Vec::new();
            if file.read_to_end(&mut rest).await.is_ok() && !rest.is_empty() {
                pending.extend_from_slice(&rest);
                pending.push(b'\n');
                let mut out = Vec::new();
                for line in pending.split(|b| *b == b'\n') {
                    if fmt.done() {
                        break;
                    }
                    fmt.line(line, &mut out);
                }
                let _ = tx.send(Ok(Bytes::from(out))).await;
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = tx.closed() => return,
        }
        // A log file truncated under us starts over.
        if let (Ok(pos), Ok(meta)) = (file.stream_position().await, file.metadata().await)
            && meta.len() < pos
        {
            let _ = file.seek(std::io::SeekFrom::Start(0)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_cri_lines() {
        let e =
            parse_line(b"2024-01-02T03:04:05.123456789Z stdout F hello world").expect("test value");
        assert_eq!(e.time, b"2024-01-02T03:04:05.123456789Z");
        assert_eq!(e.stream, b"stdout");
        assert!(!e.partial);
        assert_eq!(e.text, b"hello world");
        let p = parse_line(b"2024-01-02T03:04:05Z stderr P part").expect("test value");
        assert!(p.partial);
        assert_eq!(p.stream, b"stderr");
        let empty = parse_line(b"2024-01-02T03:04:05Z stdout F").expect("test value");
        assert_eq!(empty.text, b"");
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"2024-01-02T03:04:05Z other F x").is_none());
    }

    #[test]
    fn tail_finds_the_last_lines() {
        let data = b"a\nb\nc\n";
        assert_eq!(&data[tail_offset(data, 1)..], b"c\n");
        assert_eq!(&data[tail_offset(data, 2)..], b"b\nc\n");
        assert_eq!(&data[tail_offset(data, 5)..], b"a\nb\nc\n");
        assert_eq!(&data[tail_offset(data, 0)..], b"");
        let open = b"a\nb\nc";
        assert_eq!(&open[tail_offset(open, 1)..], b"c");
    }

    #[test]
    fn options_from_the_query() {
        let now: jiff::Timestamp = "2024-01-01T00:01:00Z".parse().expect("test value");
        let o = LogOptions::from_query(
            &pairs(&[
                ("follow", "true"),
                ("tailLines", "5"),
                ("timestamps", "true"),
                ("sinceSeconds", "60"),
                ("limitBytes", "10"),
                ("previous", "false"),
            ]),
            now,
        )
        .expect("test value");
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(
            o.since,
            Some("2024-01-01T00:00:00Z".parse().expect("test value"))
        );
        let t = LogOptions::from_query(&pairs(&[("sinceTime", "2024-01-01T00:00:30Z")]), now)
            .expect("test value");
        assert_eq!(
            t.since,
            Some("2024-01-01T00:00:30Z".parse().expect("test value"))
        );
        assert_eq!(
            LogOptions::from_query(&pairs(&[("tailLines", "-1")]), now)
                .expect("test value")
                .tail_lines,
            None
        );
        assert!(LogOptions::from_query(&pairs(&[("limitBytes", "0")]), now).is_err());
        assert!(
            LogOptions::from_query(
                &pairs(&[("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:30Z")]),
                now
            )
            .is_err()
        );
    }

    #[test]
    fn formatter_applies_since_timestamps_and_limit() {
        let mut f = Formatter::new(LogOptions {
            timestamps: true,
            since: Some("2024-01-01T00:00:10Z".parse().expect("test value")),
            ..Default::default()
        });
        let mut out = Vec::new();
        f.line(b"2024-01-01T00:00:05Z stdout F old", &mut out);
        f.line(b"2024-01-01T00:00:10.5Z stdout F new", &mut out);
        assert_eq!(out, b"2024-01-01T00:00:10.5Z new\n");

        let mut f = Formatter::new(LogOptions {
            limit_bytes: Some(8),
            ..Default::default()
        });
        let mut out = Vec::new();
        f.line(b"2024-01-01T00:00:05Z stdout P abc", &mut out);
        f.line(b"2024-01-01T00:00:05Z stdout F def", &mut out);
        assert!(!f.done());
        f.line(b"2024-01-01T00:00:06Z stdout F ghijk", &mut out);
        assert_eq!(out, b"abcdef\ng");
        assert!(f.done());
    }

    #[tokio::test]
    async fn tail_start_reads_backwards_across_chunks() {
        let dir = tempfile::tempdir().expect("test value");
        let path = dir.path().join("big.log");
        let mut data = Vec::new();
        for i in 0..20_000 {
            data.extend_from_slice(format!("2024-01-01T00:00:01Z stdout F line {i}\n").as_bytes());
        }
        std::fs::write(&path, &data).expect("test value");
        let mut f = tokio::fs::File::open(&path).await.expect("test value");
        for n in [1u64, 3, 5000, 19_999, 20_000, 30_000] {
            let at = tail_start(&mut f, n).await.expect("test value") as usize;
            assert_eq!(at, tail_offset(&data, n), "n={n}");
        }
    }

    #[tokio::test]
    async fn streams_a_file_with_tail() {
        let dir = tempfile::tempdir().expect("test value");
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:01Z stdout F one\n2024-01-01T00:00:02Z stderr F two\n2024-01-01T00:00:03Z stdout F three\n",
        )
        .expect("test value");
        let (tx, mut rx) = mpsc::channel(8);
        let opts = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        stream(&path, opts, Box::new(|| Box::pin(async { false })), tx).await;
        let mut got = Vec::new();
        while let Some(Ok(b)) = rx.recv().await {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, b"two\nthree\n");
    }

    #[tokio::test]
    async fn follow_ends_when_the_container_stops() {
        let dir = tempfile::tempdir().expect("test value");
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-01-01T00:00:01Z stdout F one\n").expect("test value");
        let (tx, mut rx) = mpsc::channel(8);
        let opts = LogOptions {
            follow: true,
            ..Default::default()
        };
        let p = path.clone();
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let c = calls.clone();
        let task = tokio::spawn(async move {
            stream(
                &p,
                opts,
                Box::new(move || {
                    let n = c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Box::pin(async move { n < 3 })
                }),
                tx,
            )
            .await
        });
        let first = rx.recv().await.expect("test value").expect("test value");
        assert_eq!(&first[..], b"one\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("test value");
        f.write_all(b"2024-01-01T00:00:02Z stdout F two\n")
            .expect("test value");
        let mut rest = Vec::new();
        while let Some(Ok(b)) = rx.recv().await {
            rest.extend_from_slice(&b);
        }
        task.await.expect("test value");
        assert_eq!(rest, b"two\n");
    }
}
