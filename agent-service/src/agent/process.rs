//! Runs an [`AgentCli`] as a child process group: writes the prompt to its stdin, turns each
//! stdout line into messages as it arrives, keeps the tail of stderr for error reports, and stops
//! the whole group when told to.

use std::{collections::VecDeque, process::Stdio, time::Duration};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::{
    codec::{FramedRead, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};

use super::{outcome::AgentExit, AgentCli, AgentInvocation, AgentMessage, NotJson};
use crate::process_group::{kill_leftovers, spawn_group, terminate_group};

/// Longest stdout line read; longer lines are skipped (a tool result can be large, not unbounded).
const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// How much of stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;

/// How a run ended.
pub enum RunEnd {
    /// The process exited by itself.
    Exited(Box<AgentExit>),
    /// `stop` fired and the process group was terminated.
    Stopped,
}

/// Runs the agent until it exits or `stop` fires, calling `on_message` for every message.
///
/// # Errors
/// The CLI could not be started (e.g. not installed at the configured path).
pub async fn run_agent(
    cli: &dyn AgentCli,
    invocation: &AgentInvocation,
    stop: &CancellationToken,
    grace: Duration,
    mut on_message: impl FnMut(AgentMessage),
) -> std::io::Result<RunEnd> {
    let mut command = cli.command(invocation);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = spawn_group(&mut command)?;
    let pgid = child.id();

    let mut stdin = child.stdin.take().expect("stdin is piped");
    let prompt = invocation.prompt.clone();
    tokio::spawn(async move {
        // A CLI that exits early closes its stdin; the error then says nothing new.
        let _ = stdin.write_all(prompt.as_bytes()).await;
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_tail = tokio::spawn(read_tail(stderr));
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE_BYTES));

    let mut parser = cli.parser();
    let mut exit = AgentExit::default();
    loop {
        let line = tokio::select! {
            line = lines.next() => line,
            () = stop.cancelled() => {
                terminate_group(&mut child, grace).await?;
                return Ok(RunEnd::Stopped);
            }
        };
        match line {
            None => break,
            Some(Ok(line)) => match parser.parse_line(&line) {
                Ok(messages) => {
                    for message in messages {
                        if let AgentMessage::Finished(result) = &message {
                            exit.result = Some(result.clone());
                        }
                        on_message(message);
                    }
                }
                Err(NotJson) => {
                    tracing::warn!(agent = cli.name(), "agent wrote a line that is not JSON");
                    exit.first_non_json_line.get_or_insert_with(|| line.chars().take(200).collect());
                }
            },
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                tracing::warn!(agent = cli.name(), "skipped an agent output line over {MAX_LINE_BYTES} bytes");
            }
            Some(Err(LinesCodecError::Io(e))) => return Err(e),
        }
    }
    let status = tokio::select! {
        status = child.wait() => status?,
        () = stop.cancelled() => {
            terminate_group(&mut child, grace).await?;
            return Ok(RunEnd::Stopped);
        }
    };
    kill_leftovers(pgid);
    exit.status = status.to_string();
    exit.success = status.success();
    exit.stderr_tail = stderr_tail.await.unwrap_or_default();
    Ok(RunEnd::Exited(Box::new(exit)))
}

/// Reads `stream` to its end, keeping its last [`STDERR_TAIL_BYTES`] as text.
async fn read_tail(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_BYTES);
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend(&buf[..n]);
        while tail.len() > STDERR_TAIL_BYTES {
            tail.pop_front();
        }
    }
    String::from_utf8_lossy(tail.make_contiguous()).into_owned()
}
