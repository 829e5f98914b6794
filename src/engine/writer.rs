//! The writer thread: drains the workers' record queues, encodes, and writes to the sink.
//!
//! It is the only thread that touches files or sockets, so a slow sink never stalls capture:
//! workers see a full queue instead (and wait offline, or drop and count live).

use super::spsc::Consumer;
use crate::output::record::ConnRecord;
use crate::output::{encoder_for, Format};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the conn log goes.
#[derive(Clone, Debug)]
pub enum Destination {
    /// `DIR/conn.log`.
    Dir(PathBuf),
    /// Standard output.
    Stdout,
}

/// What the writer reports when it ends.
#[derive(Clone, Copy, Default, Debug)]
pub struct WriterReport {
    pub records: u64,
    pub bytes: u64,
}

/// Errors of the writer, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot create log directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path} failed: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Opens the sink. Done before any worker starts so that a bad output path fails early.
pub fn open(dest: &Destination) -> Result<(Box<dyn Write + Send>, PathBuf), WriterError> {
    match dest {
        Destination::Stdout => Ok((
            Box::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )),
            PathBuf::from("<stdout>"),
        )),
        Destination::Dir(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| WriterError::CreateDir {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join("conn.log");
            let f = std::fs::File::create(&path).map_err(|source| WriterError::Create {
                path: path.clone(),
                source,
            })?;
            Ok((
                Box::new(std::io::BufWriter::with_capacity(1 << 16, f)),
                path,
            ))
        }
    }
}

/// Runs the writer until every queue is closed and drained.
pub fn run_writer(
    queues: Vec<Consumer<ConnRecord>>,
    format: Format,
    mut sink: Box<dyn Write + Send>,
    path: PathBuf,
) -> Result<WriterReport, WriterError> {
    let mut enc = encoder_for(format);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut report = WriterReport::default();
    let werr = |source| WriterError::Write {
        path: path.clone(),
        source,
    };
    enc.header("conn", wall_ns(), &mut buf);
    let mut idle = 0u32;
    loop {
        let mut got = false;
        for q in &queues {
            for _ in 0..512 {
                let Some(rec) = q.pop() else { break };
                enc.conn(&rec, &mut buf);
                report.records += 1;
                got = true;
            }
        }
        if buf.len() >= 1 << 15 {
            write_all(&mut sink, &buf).map_err(werr)?;
            report.bytes += buf.len() as u64;
            buf.clear();
        }
        if got {
            idle = 0;
            continue;
        }
        if queues.iter().all(Consumer::is_finished) {
            break;
        }
        idle += 1;
        if idle < 64 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    enc.footer(wall_ns(), &mut buf);
    write_all(&mut sink, &buf).map_err(werr)?;
    report.bytes += buf.len() as u64;
    flush(&mut sink).map_err(werr)?;
    Ok(report)
}

/// A closed pipe (`nameflow read ... -o - | head`) is the reader's choice, not an error.
fn write_all(sink: &mut Box<dyn Write + Send>, buf: &[u8]) -> std::io::Result<()> {
    match sink.write_all(buf) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn flush(sink: &mut Box<dyn Write + Send>) -> std::io::Result<()> {
    match sink.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}
