//! `--audit-log PATH`: follow kube-apiserver's JSON-lines audit log from
//! its end, like `tail -F`, on a thread of its own (file reads block).
//!
//! Rotation: kube-apiserver (lumberjack) renames the full file and opens a
//! new one at the same path; logrotate may instead copy and truncate. Both
//! are seen by polling: a different inode at the path means the old file
//! is read to its end, then the new one from its start; a file shorter
//! than the position read means it was truncated, and is read from the
//! start. A line is processed only when its newline has been written.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{info, warn};

use super::MAX_LINE;
use super::sink::Sink;

const POLL: Duration = Duration::from_millis(100);

/// A file being followed.
struct Open {
    file: File,
    ino: (u64, u64),
    pos: u64,
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn open(path: &Path, from_end: bool) -> std::io::Result<Open> {
    let mut file = File::open(path)?;
    let meta = file.metadata()?;
    let pos = if from_end {
        file.seek(SeekFrom::End(0))?
    } else {
        0
    };
    Ok(Open {
        file,
        ino: identity(&meta),
        pos,
    })
}

/// Start following; the thread runs until `stop` is set.
pub fn spawn(
    path: PathBuf,
    sink: Arc<Sink>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("audit-log".into())
        .spawn(move || follow(&path, &sink, &stop))
}

pub fn follow(path: &Path, sink: &Sink, stop: &AtomicBool) {
    let mut current = match open(path, true) {
        Ok(o) => {
            info!(path = %path.display(), "following the audit log from its end");
            Some(o)
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "audit log not readable yet; waiting for it");
            None
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut complained = false;
    while !stop.load(Ordering::Relaxed) {
        let Some(o) = current.as_mut() else {
            // Appeared since: everything in it is new.
            match open(path, false) {
                Ok(o) => {
                    info!(path = %path.display(), "audit log appeared; following it");
                    current = Some(o);
                }
                Err(_) => std::thread::sleep(POLL),
            }
            continue;
        };
        let n = read_available(o, &mut buf, &mut pending, sink);
        if n > 0 {
            continue;
        }
        // Nothing new: was it rotated or truncated?
        match std::fs::metadata(path) {
            Ok(m) if identity(&m) != o.ino => {
                // Renamed away: its tail is read above until EOF; then the new file.
                match open(path, false) {
                    Ok(new) => {
                        info!(path = %path.display(), "audit log rotated; following the new file");
                        pending.clear();
                        *o = new;
                    }
                    Err(e) => {
                        warn!(error = %e, "audit log rotated but the new file is not readable")
                    }
                }
            }
            Ok(m) if m.len() < o.pos => {
                info!(path = %path.display(), "audit log truncated; reading from its start");
                let _ = o.file.seek(SeekFrom::Start(0));
                o.pos = 0;
                pending.clear();
            }
            Ok(_) => complained = false,
            Err(e) => {
                if !complained {
                    warn!(path = %path.display(), error = %e, "audit log gone; waiting for a new one");
                    complained = true;
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Read what is there, hand complete lines to the sink; the bytes read.
fn read_available(o: &mut Open, buf: &mut [u8], pending: &mut Vec<u8>, sink: &Sink) -> usize {
    let n = match o.file.read(buf) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "reading the audit log");
            return 0;
        }
    };
    o.pos += n as u64;
    let mut chunk = &buf[..n];
    while let Some(i) = memchr::memchr(b'\n', chunk) {
        if pending.is_empty() {
            sink.line("log", &chunk[..i]);
        } else {
            pending.extend_from_slice(&chunk[..i]);
            sink.line("log", pending);
            pending.clear();
        }
        chunk = &chunk[i + 1..];
    }
    if pending.len() + chunk.len() > MAX_LINE {
        // A line longer than any audit event: refuse it, resync at the next newline.
        sink.metrics()
            .audit(&sink.metrics().audit_rejected, "log", "too_large");
        // The rest of the line, when its newline comes, fails to parse
        // after this lone brace and is counted as malformed too.
        pending.clear();
        pending.push(b'{');
    } else {
        pending.extend_from_slice(chunk);
    }
    n
}
