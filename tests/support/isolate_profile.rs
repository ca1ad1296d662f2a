//! Where the Worker's time goes: samples its V8 isolate with the inspector's CPU profiler (the
//! Chrome DevTools protocol on the port wrangler dev opens) while a piece of work runs, and
//! sums each function's own samples. The bridge benchmark prints it on demand (`PROFILE=1`), to
//! tell where a first pass spends its time with the archive off and on.

use std::{collections::HashMap, future::Future};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::edge::Edge;

/// A function and its share of the samples taken.
pub struct Hot {
    pub function: String,
    pub samples: u64,
}

/// Runs `work` while the isolate of `edge` is sampled every 200 µs; its result and the `top`
/// functions by own samples (idle time included, as `(idle)`), with the number of samples.
pub async fn profile<T>(edge: &Edge, top: usize, work: impl Future<Output = T>) -> (T, Vec<Hot>, u64) {
    let targets: Value = reqwest::get(format!("http://127.0.0.1:{}/json", edge.inspector_port))
        .await
        .and_then(|reply| reply.error_for_status())
        .expect("the inspector lists its targets")
        .json()
        .await
        .unwrap();
    let url = targets[0]["webSocketDebuggerUrl"].as_str().expect("a target to debug");
    let mut inspector = Inspector { socket: tokio_tungstenite::connect_async(url).await.unwrap().0, next_id: 0 };
    inspector.call("Profiler.enable", json!({})).await;
    inspector.call("Profiler.setSamplingInterval", json!({"interval": 200})).await;
    inspector.call("Profiler.start", json!({})).await;
    let result = work.await;
    let profile = inspector.call("Profiler.stop", json!({})).await["profile"].take();
    let mut own: HashMap<String, u64> = HashMap::new();
    for node in profile["nodes"].as_array().into_iter().flatten() {
        let frame = &node["callFrame"];
        let script = frame["url"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("");
        let function = match frame["functionName"].as_str().unwrap_or("") {
            // The glue's calls into the runtime are anonymous; where they are tells which.
            "" => format!("{script}:{}", frame["lineNumber"]),
            name => name.to_string(),
        };
        *own.entry(function).or_default() += node["hitCount"].as_u64().unwrap_or(0);
    }
    let total = own.values().sum();
    let mut hot: Vec<Hot> = own.into_iter().map(|(function, samples)| Hot { function, samples }).collect();
    hot.sort_by_key(|hot| std::cmp::Reverse(hot.samples));
    hot.truncate(top);
    (result, hot, total)
}

/// A Chrome DevTools protocol session.
struct Inspector {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Inspector {
    /// Calls `method`; its result (events the inspector sends meanwhile are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let call = json!({"id": self.next_id, "method": method, "params": params});
        self.socket.send(Message::Text(call.to_string().into())).await.unwrap();
        loop {
            let Some(Ok(Message::Text(text))) = self.socket.next().await else { panic!("the inspector went away") };
            let mut reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == self.next_id {
                assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
                return reply["result"].take();
            }
        }
    }
}
