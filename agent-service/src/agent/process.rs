//! Runs an [`AgentCli`] as a child process group led by its guard ([`crate::agent::guard`], so it
//! dies with the service): writes the prompt to its stdin, turns each stdout line into messages
//! as it arrives, keeps the tail of stderr for error reports, and stops the whole of it when told
//! to. While it runs, its group is recorded in the task's directory ([`crate::agent::leftover`]).

use std::{collections::VecDeque, path::Path, process::Stdio, time::Duration};

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::{
    codec::{FramedRead, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};

use super::{
    guard::{self as agent_guard, Guard},
    leftover as leftover_agent,
    outcome::AgentExit,
    AgentCli, AgentInvocation, AgentMessage, NotJson,
};
use crate::process_group::{kill_leftovers, spawn_group};

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

/// Whose agent it is, for its guard and the record of its process group.
pub struct Owner<'a> {
    pub task_id: &'a str,
    /// The task's directory, where the group is recorded while the agent runs.
    pub task_dir: &'a Path,
}

/// Runs the agent under `guard` until it exits or `stop` fires, calling `on_message` for every
/// message.
///
/// # Errors
/// The guard could not be started, or reading the agent's output failed. (An agent CLI that
/// cannot be started makes the guard exit with code 126 and say why on stderr.)
pub async fn run_agent(
    cli: &dyn AgentCli,
    invocation: &AgentInvocation,
    guard: &Guard,
    owner: Owner<'_>,
    stop: &CancellationToken,
    grace: Duration,
    on_message: impl FnMut(AgentMessage),
) -> std::io::Result<RunEnd> {
    let mut command = guard.command(&cli.command(invocation), owner.task_id);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_group(&mut command)?;
    let pgid = child.id();
    if let Some(pgid) = pgid {
        leftover_agent::record(owner.task_dir, pgid);
    }
    let end = follow(cli, invocation, child, stop, grace, on_message).await;
    kill_leftovers(pgid);
    leftover_agent::forget(owner.task_dir);
    end
}

/// Feeds the prompt to the running agent `child` and reads it to its end.
async fn follow(
    cli: &dyn AgentCli,
    invocation: &AgentInvocation,
    mut child: tokio::process::Child,
    stop: &CancellationToken,
    grace: Duration,
    mut on_message: impl FnMut(AgentMessage),
) -> std::io::Result<RunEnd> {
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
                agent_guard::stop(&mut child, grace).await?;
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
            agent_guard::stop(&mut child, grace).await?;
            return Ok(RunEnd::Stopped);
        }
    };
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
