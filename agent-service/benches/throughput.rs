//! Prints the agent-service's figures, measured side by side in one run (not a pass/fail test):
//!
//! 1. StreamEvents events/s to one client over native gRPC and over gRPC-web (HTTP/1.1), from a
//!    recorded task of 1M small events, and the ratio (target: gRPC-web >= 0.8x native; native
//!    >= 1M events/s on loopback).
//! 2. Replay of the 1M-event log through a subscription: events/s and RSS growth (target < 50 MB).
//! 3. stream-json parsing MB/s on real Claude Code output (target >= 100 MB/s).
//! 4. Time from process start to `/ping` answering (target < 50 ms), median of 20 starts.
//!
//! Run with `make bench` (or `cargo bench -p agent-service --bench throughput`).
//! `EVENTS=N` changes the log size.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use agent_service::{
    agent::{stream_json::StreamJsonParser, OutputParser},
    config::Config,
    redact::Redactor,
    task::Task,
};
use autopilot_contract::v1::{
    autopilot_client::AutopilotClient, event::Payload, AgentText, StreamEventsRequest, Task as TaskSnapshot, TaskState,
};
use clap::Parser;
use futures::StreamExt;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let events: u64 = std::env::var("EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let work = tempfile::tempdir().unwrap();
    println!("agent-service benchmarks ({} cores)", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));

    // A recorded task of `events` small events, written through the live recording path.
    let task_id = "00000000-0000-4000-8000-000000000001";
    let dir = work.path().join("tasks").join(task_id);
    let started = Instant::now();
    {
        let _guard = runtime.enter();
        let snapshot = TaskSnapshot {
            task_id: task_id.into(),
            repository_url: "https://example.com/r.git".into(),
            ..Default::default()
        };
        let task = Task::create(dir.clone(), snapshot, Redactor::new(["sk-bench-key-000000"])).unwrap();
        task.move_to(TaskState::Pending, "");
        for i in 0..events.saturating_sub(3) {
            task.record(Payload::AgentText(AgentText { text: format!("event {i}") }));
        }
        task.finish(TaskState::Succeeded, "done".into(), String::new(), 1, Duration::from_secs(1));
    }
    let written = started.elapsed();
    let log_bytes = std::fs::metadata(dir.join("events.log")).unwrap().len();
    println!(
        "record:      {events} events appended in {:.2} s = {:.0} events/s ({:.1} MB log)",
        written.as_secs_f64(),
        events as f64 / written.as_secs_f64(),
        log_bytes as f64 / 1e6
    );

    runtime.block_on(async {
        // 2. Replay through a subscription, in this process, measuring RSS growth.
        let task = Task::recover(dir.clone(), Redactor::default()).unwrap();
        let before = rss_kib();
        let mut peak = before;
        let started = Instant::now();
        let mut subscription = task.log().subscribe(1);
        let mut count = 0u64;
        while let Some(batch) = subscription.next_batch(256).await.unwrap() {
            count += batch.len() as u64;
            if count % 65_536 < 256 {
                peak = peak.max(rss_kib());
            }
        }
        let elapsed = started.elapsed();
        peak = peak.max(rss_kib());
        assert_eq!(count, events);
        println!(
            "replay:      {count} events in {:.2} s = {:.0} events/s; RSS {} MB -> peak {} MB (growth {:.1} MB)",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            before / 1024,
            peak / 1024,
            (peak - before) as f64 / 1024.0
        );
        drop(task);

        // 1. StreamEvents over native gRPC and gRPC-web against the real server, in turn.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config::parse_from(["agent-service", "--work-dir", work.path().to_str().unwrap(), "--claude-path", "/bin/false"]);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(agent_service::run(listener, config, async move {
            let _ = stop_rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss_kib();
        let mut native = AutopilotClient::connect(format!("http://{addr}")).await.unwrap();
        let mut rates = Vec::new();
        for round in 0..2 {
            let started = Instant::now();
            let stream = native.stream_events(StreamEventsRequest { task_id: task_id.into(), from_seq: 1 }).await.unwrap().into_inner();
            let count = stream.fold(0u64, |n, item| async move { item.unwrap(); n + 1 }).await;
            let native_rate = count as f64 / started.elapsed().as_secs_f64();
            assert_eq!(count, events);

            let mut web = autopilot_contract::grpc_web_client::connect(&format!("http://{addr}"));
            let started = Instant::now();
            let stream = web.stream_events(StreamEventsRequest { task_id: task_id.into(), from_seq: 1 }).await.unwrap().into_inner();
            let count = stream.fold(0u64, |n, item| async move { item.unwrap(); n + 1 }).await;
            let web_rate = count as f64 / started.elapsed().as_secs_f64();
            assert_eq!(count, events);
            println!("stream #{round}:   native gRPC {native_rate:.0} events/s, gRPC-web {web_rate:.0} events/s, ratio web/native {:.2}", web_rate / native_rate);
            rates.push((native_rate, web_rate));
        }
        println!("stream RSS:  service+clients grew {:.1} MB while streaming {} events 4 times", (rss_kib().saturating_sub(before)) as f64 / 1024.0, events);
        let _ = stop_tx.send(());
        let _ = server.await;
    });

    // 3. stream-json parsing throughput on real CLI output.
    let sample = concat!(
        include_str!("../src/agent/testdata/list_files.jsonl"),
        include_str!("../src/agent/testdata/api_error.jsonl")
    );
    let mut input = String::new();
    while input.len() < 64 * 1024 * 1024 {
        input.push_str(sample);
        if !input.ends_with('\n') {
            input.push('\n');
        }
    }
    let lines: Vec<&str> = input.lines().collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let mut parser = StreamJsonParser::default();
        let started = Instant::now();
        let mut messages = 0usize;
        for line in &lines {
            messages += parser.parse_line(line).unwrap().len();
        }
        std::hint::black_box(messages);
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "parse:       stream-json {:.0} MB/s ({:.0} MB of real Claude Code output, best of 3)",
        input.len() as f64 / 1e6 / best,
        input.len() as f64 / 1e6
    );

    // 4. Process start to /ping answering.
    let binary = env!("CARGO_BIN_EXE_agent-service");
    let mut samples = Vec::new();
    for _ in 0..20 {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--work-dir",
                work.path().join("startup").to_str().unwrap(),
                "--claude-path",
                "/bin/false",
            ])
            .env_remove("ANTHROPIC_API_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while !ping(port) {
            std::thread::sleep(Duration::from_micros(200));
            assert!(started.elapsed() < Duration::from_secs(10), "the service did not answer /ping");
        }
        samples.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort();
    println!(
        "startup:     process start to first /ping 200: median {:.1} ms, max {:.1} ms (20 starts)",
        samples[10].as_secs_f64() * 1e3,
        samples[19].as_secs_f64() * 1e3
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.1 200")
}
