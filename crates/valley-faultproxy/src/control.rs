//! The control protocol: JSON lines over TCP, one command per line, one reply line each.
//!
//! Lines rather than HTTP so a shell test can drive it with `nc`; JSON so the fault fields
//! have the same names here, in [`Faults`] and on the command line.
//!
//! ```text
//! → {"cmd":"set","latency_ms":100,"jitter_ms":10,"bandwidth_bytes_per_sec":1000000,"stall_probability":0.02}
//! ← {"ok":true,"faults":{"latency_ms":100,...}}
//! → {"cmd":"get"}          ← {"ok":true,"faults":{...}}
//! → {"cmd":"partition"}    ← {"ok":true,"partitioned":true}
//! → {"cmd":"heal"}         ← {"ok":true,"partitioned":false}
//! → {"cmd":"cut_all"}      ← {"ok":true}
//! → {"cmd":"stats"}        ← {"ok":true,"stats":{"bytes_upstream":...,"cuts":...}}
//! → anything malformed     ← {"ok":false,"error":"..."}
//! ```
//!
//! `set` changes only the fields it names; the rest keep their values.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::faults::{FaultUpdate, Faults};
use crate::limits::{CONTROL_CONNECTIONS_MAX, CONTROL_LINE_BYTES_MAX};
use crate::proxy::Shared;

/// One control command, as it appears on the wire (tagged by `"cmd"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Change the fault fields given; the rest stay.
    Set(FaultUpdate),
    /// Report the faults in force.
    Get,
    /// Cut every connection and reset new ones until healed.
    Partition,
    /// End a partition.
    Heal,
    /// Cut every open connection.
    CutAll,
    /// Report the counters.
    Stats,
}

/// Runs one command line against the proxy and returns the reply line (no newline).
pub(crate) fn respond(shared: &Shared, line: &str) -> String {
    let reply = match serde_json::from_str::<Command>(line) {
        Err(e) => json!({ "ok": false, "error": format!("bad command: {e}") }),
        Ok(command) => {
            tracing::debug!(?command, "control command");
            match command {
                Command::Set(update) => match shared.update(&update) {
                    Ok(faults) => faults_reply(&faults),
                    Err(e) => json!({ "ok": false, "error": e.to_string() }),
                },
                Command::Get => faults_reply(&shared.faults()),
                Command::Partition => {
                    shared.partition();
                    json!({ "ok": true, "partitioned": true })
                }
                Command::Heal => {
                    shared.heal();
                    json!({ "ok": true, "partitioned": false })
                }
                Command::CutAll => {
                    shared.cut_all();
                    json!({ "ok": true })
                }
                Command::Stats => json!({ "ok": true, "stats": shared.stats() }),
            }
        }
    };
    reply.to_string()
}

fn faults_reply(faults: &Faults) -> serde_json::Value {
    json!({ "ok": true, "faults": faults })
}

/// Accepts control connections, at most [`CONTROL_CONNECTIONS_MAX`] at once.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    let slots = Arc::new(Semaphore::new(CONTROL_CONNECTIONS_MAX));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let shared = shared.clone();
                        sessions.spawn(async move {
                            if let Err(e) = session(stream, &shared).await {
                                tracing::debug!(%peer, error = %e, "control session ended");
                            }
                            drop(slot);
                        });
                    }
                    Err(_) => tracing::warn!(%peer, limit = CONTROL_CONNECTIONS_MAX, "too many control connections"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut read)
            .take(CONTROL_LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n == CONTROL_LINE_BYTES_MAX {
            let reply = json!({ "ok": false, "error": format!("line longer than {CONTROL_LINE_BYTES_MAX} bytes") });
            write.write_all(format!("{reply}\n").as_bytes()).await?;
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let mut reply = respond(shared, text);
        reply.push('\n');
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let set: Command = serde_json::from_str(
            r#"{"cmd":"set","latency_ms":100,"jitter_ms":10,"bandwidth_bytes_per_sec":1000000,"stall_probability":0.02,"corrupt_probability":0.0}"#,
        )
        .unwrap();
        let Command::Set(update) = set else { panic!("{set:?}") };
        assert_eq!(update.latency_ms, Some(100));
        assert_eq!(update.stall_probability, Some(0.02));
        assert_eq!(update.cut_probability, None);
        for (line, want) in [
            (r#"{"cmd":"get"}"#, Command::Get),
            (r#"{"cmd":"partition"}"#, Command::Partition),
            (r#"{"cmd":"heal"}"#, Command::Heal),
            (r#"{"cmd":"cut_all"}"#, Command::CutAll),
            (r#"{"cmd":"stats"}"#, Command::Stats),
        ] {
            assert_eq!(serde_json::from_str::<Command>(line).unwrap(), want);
        }
    }

    #[test]
    fn rejects_unknown_commands_and_fields() {
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"cmd":"set","latency":5}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"latency_ms":5}"#).is_err());
    }
}
