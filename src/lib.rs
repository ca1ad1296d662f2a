//! The `autopilot.v1` contract, generated from `proto/autopilot/v1/autopilot.proto`.
//!
//! Every half of the system speaks it: the agent-service serves it over native gRPC and gRPC-web,
//! the edge worker bridges browser WebSocket frames (`ClientFrame`/`ServerFrame`) to it, and clients
//! in any language generate their own code from the same file.
//!
//! Layout:
//! - [`v1`]: the messages (prost), with proto3 JSON mapping (serde, via pbjson) on every one, and
//!   the tonic `autopilot_server` / `autopilot_client` modules behind the `server` / `client`
//!   features (the wasm edge worker builds neither).
//! - [`grpc_web_client`] (feature `grpc-web-client`): a gRPC-web client over HTTP/1.1.
//! - [`time`]: std time to and from the contract's Timestamp and Duration.
//! - [`task_list`]: the rules of ListTasks both halves apply (page sizes, titles).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC reflection.

/// Messages and services of package `autopilot.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/autopilot.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/autopilot.v1.serde.rs"));

    impl TaskState {
        /// Whether the state is final: a task in it will never change again.
        pub fn is_final(self) -> bool {
            matches!(self, TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::TimedOut)
        }
    }
}

/// A gRPC-web client of the contract over HTTP/1.1 (tonic-web's client layer over hyper), as the
/// edge worker and browsers reach the agent-service.
#[cfg(feature = "grpc-web-client")]
pub mod grpc_web_client {
    use hyper_util::{
        client::legacy::{connect::HttpConnector, Client},
        rt::TokioExecutor,
    };
    use tonic_web::{GrpcWebCall, GrpcWebClientLayer, GrpcWebClientService};

    use crate::v1::autopilot_client::AutopilotClient;

    /// The generated stubs over gRPC-web over an HTTP/1.1-only hyper client.
    pub type GrpcWebClient =
        AutopilotClient<GrpcWebClientService<Client<HttpConnector, GrpcWebCall<tonic::body::Body>>>>;

    /// A gRPC-web client of the service at `origin`, e.g. `http://127.0.0.1:8080`.
    ///
    /// # Panics
    /// If `origin` is not a valid URI.
    pub fn connect(origin: &str) -> GrpcWebClient {
        let http1 = Client::builder(TokioExecutor::new()).build_http();
        let service = tower::ServiceBuilder::new().layer(GrpcWebClientLayer::new()).service(http1);
        AutopilotClient::with_origin(service, origin.parse().expect("a valid origin URI"))
    }
}

/// Conversions between std time and the contract's well-known types.
pub mod time {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// `time` as a protobuf Timestamp (times before 1970 are clamped to the epoch).
    pub fn timestamp(time: SystemTime) -> pbjson_types::Timestamp {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        pbjson_types::Timestamp { seconds: since_epoch.as_secs() as i64, nanos: since_epoch.subsec_nanos() as i32 }
    }

    /// `duration` as a protobuf Duration.
    pub fn duration(duration: Duration) -> pbjson_types::Duration {
        pbjson_types::Duration { seconds: duration.as_secs() as i64, nanos: duration.subsec_nanos() as i32 }
    }
}

/// The file descriptor set of the contract (with its imports), for gRPC reflection services.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/autopilot_descriptor.bin"));

/// The fully qualified gRPC service name, as health checks and reflection know it.
pub const SERVICE_NAME: &str = "autopilot.v1.Autopilot";

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;

    #[test]
    fn client_frame_round_trips_through_binary_and_proto3_json() {
        let frame = ClientFrame {
            request_id: "r1".into(),
            request: Some(client_frame::Request::StreamEvents(StreamEventsRequest {
                task_id: "t-1".into(),
                from_seq: 42,
            })),
        };
        let decoded = ClientFrame::decode(frame.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, frame);

        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(json, r#"{"requestId":"r1","streamEvents":{"taskId":"t-1","fromSeq":"42"}}"#);
        assert_eq!(serde_json::from_str::<ClientFrame>(&json).unwrap(), frame);
    }

    #[test]
    fn enums_and_well_known_types_use_proto3_json_names() {
        let response = StartResponse { task_id: "t".into(), state: TaskState::Running as i32 };
        assert_eq!(serde_json::to_string(&response).unwrap(), r#"{"taskId":"t","state":"TASK_STATE_RUNNING"}"#);
        let options: AgentOptions = serde_json::from_str(r#"{"maxTurns":3,"timeout":"90s"}"#).unwrap();
        assert_eq!(options.max_turns, 3);
        assert_eq!(options.timeout.unwrap().seconds, 90);
    }

    #[test]
    fn final_states_are_exactly_the_four_endings() {
        let finals: Vec<_> = [
            TaskState::Unspecified,
            TaskState::Pending,
            TaskState::Cloning,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::TimedOut,
        ]
        .into_iter()
        .filter(|s| s.is_final())
        .collect();
        assert_eq!(finals, [TaskState::Succeeded, TaskState::Failed, TaskState::Cancelled, TaskState::TimedOut]);
    }
}

/// The rules of ListTasks that both halves apply — the agent-service over its own history, the
/// edge over its archive — so a page size and a title mean the same whichever answers.
pub mod task_list {
    /// The page size when a request names none (`page_size` 0).
    pub const DEFAULT_PAGE_SIZE: i32 = 20;
    /// The largest page a request may ask for.
    pub const MAX_PAGE_SIZE: i32 = 100;
    /// Longest title, in characters (Unicode scalar values).
    pub const MAX_TITLE_CHARS: usize = 200;

    /// The page size `requested` asks for (0: [`DEFAULT_PAGE_SIZE`]).
    ///
    /// # Errors
    /// Why the size is refused (the caller names the field `page_size`).
    pub fn page_size(requested: i32) -> Result<usize, String> {
        match requested {
            0 => Ok(DEFAULT_PAGE_SIZE as usize),
            size @ 1..=MAX_PAGE_SIZE => Ok(size as usize),
            size => Err(format!("must be between 1 and {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE}); got {size}")),
        }
    }

    /// A task's title: the first line of its prompt that is not blank, trimmed, control
    /// characters turned into spaces, cut to [`MAX_TITLE_CHARS`] characters. `masked_prompt` must
    /// already have its secrets masked: masking after the cut could miss a secret the cut
    /// shortened.
    pub fn title(masked_prompt: &str) -> String {
        let line = masked_prompt.trim().lines().next().unwrap_or_default().trim();
        let cut: String = line.chars().take(MAX_TITLE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
        cut.trim_end().to_string()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn page_sizes_default_and_refuse_out_of_range() {
            assert_eq!(page_size(0), Ok(20));
            assert_eq!(page_size(100), Ok(100));
            assert_eq!(page_size(101).unwrap_err(), "must be between 1 and 100 (0: 20); got 101");
            assert!(page_size(-1).is_err() && page_size(i32::MIN).is_err());
        }

        #[test]
        fn a_title_is_the_first_line_trimmed_cut_and_without_control_characters() {
            assert_eq!(title("\n  Fix the tests  \nand more"), "Fix the tests");
            assert_eq!(title(&"é".repeat(500)).chars().count(), MAX_TITLE_CHARS);
            assert_eq!(title("a\tb"), "a b");
            assert_eq!(title(""), "");
        }
    }
}

pub mod environment_rules;
