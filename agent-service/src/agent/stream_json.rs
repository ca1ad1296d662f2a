//! Claude Code's `--output-format stream-json --verbose` output, one JSON object per line, read
//! into [`AgentMessage`]s.
//!
//! The format grows between CLI versions, so the reading is lenient: only the fields used here
//! are declared, unknown fields and message types are skipped, and a known type with an
//! unexpected shape is skipped too. Only a line that is not JSON at all is an error. Tool inputs
//! and results are borrowed as raw JSON so they are copied once, not re-parsed into trees.

use std::collections::HashSet;

use autopilot_contract::v1::Usage;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{AgentMessage, AgentResult, NotJson, OutputParser};

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    claude_code_version: Option<String>,
    #[serde(default, borrow)]
    message: Option<Message<'a>>,
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    num_turns: Option<u32>,
    #[serde(default)]
    duration_ms: Option<u64>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<UsageJson>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
    #[serde(default)]
    is_error: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct UsageJson {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl UsageJson {
    fn add(&mut self, other: UsageJson) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
    }

    fn to_usage(self, cost_usd: f64) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cost_usd,
        }
    }
}

/// The stream-json parser for one run. It keeps the running usage total: the CLI repeats an
/// assistant message's usage on every content block of that message, so usage is counted once per
/// message id.
#[derive(Default)]
pub struct StreamJsonParser {
    counted_messages: HashSet<String>,
    total: UsageJson,
}

impl OutputParser for StreamJsonParser {
    fn parse_line(&mut self, line: &str) -> Result<Vec<AgentMessage>, NotJson> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(Vec::new());
        }
        match serde_json::from_str::<Line>(line) {
            Ok(parsed) => Ok(self.messages_of(parsed)),
            Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok() => Ok(Vec::new()),
            Err(_) => Err(NotJson),
        }
    }
}

impl StreamJsonParser {
    fn messages_of(&mut self, line: Line<'_>) -> Vec<AgentMessage> {
        match line.kind {
            "system" if line.subtype.as_deref() == Some("init") => vec![AgentMessage::Started {
                session_id: line.session_id.unwrap_or_default(),
                model: line.model.unwrap_or_default(),
                version: line.claude_code_version.unwrap_or_default(),
            }],
            "assistant" => {
                let Some(message) = line.message else {
                    return Vec::new();
                };
                let mut out: Vec<AgentMessage> = blocks(message.content)
                    .into_iter()
                    .filter_map(|block| match block.kind.as_str() {
                        "text" => block.text.filter(|t| !t.is_empty()).map(AgentMessage::Text),
                        "tool_use" => Some(AgentMessage::ToolStarted {
                            tool_id: block.id.unwrap_or_default(),
                            name: block.name.unwrap_or_default(),
                            input_json: block.input.map(|raw| raw.get().to_string()).unwrap_or_else(|| "{}".into()),
                        }),
                        _ => None,
                    })
                    .collect();
                if let (Some(id), Some(usage)) = (message.id, message.usage) {
                    if self.counted_messages.insert(id) {
                        self.total.add(usage);
                        out.push(AgentMessage::Usage(self.total.to_usage(0.0)));
                    }
                }
                out
            }
            "user" => {
                let Some(message) = line.message else {
                    return Vec::new();
                };
                blocks(message.content)
                    .into_iter()
                    .filter(|block| block.kind == "tool_result")
                    .map(|block| AgentMessage::ToolFinished {
                        tool_id: block.tool_use_id.unwrap_or_default(),
                        output: tool_output_text(block.content),
                        is_error: block.is_error.unwrap_or(false),
                    })
                    .collect()
            }
            "result" => {
                let cost = line.total_cost_usd.unwrap_or(0.0);
                let usage = line.usage.unwrap_or(self.total).to_usage(cost);
                vec![
                    AgentMessage::Usage(usage),
                    AgentMessage::Finished(AgentResult {
                        is_error: line.is_error.unwrap_or(false),
                        subtype: line.subtype.unwrap_or_default(),
                        result: line.result.unwrap_or_default(),
                        num_turns: line.num_turns.unwrap_or(0),
                        duration_ms: line.duration_ms.unwrap_or(0),
                        usage,
                        session_id: line.session_id.unwrap_or_default(),
                    }),
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// A message's content: a list of blocks, or a bare string (taken as one text block).
fn blocks(content: Option<&RawValue>) -> Vec<Block<'_>> {
    let Some(raw) = content else {
        return Vec::new();
    };
    if let Ok(list) = serde_json::from_str::<Vec<Block>>(raw.get()) {
        return list;
    }
    match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => vec![Block {
            kind: "text".into(),
            text: Some(text),
            id: None,
            name: None,
            input: None,
            tool_use_id: None,
            content: None,
            is_error: None,
        }],
        Err(_) => Vec::new(),
    }
}

/// A tool result's content as text: a string, or the text parts of a list of blocks.
fn tool_output_text(content: Option<&RawValue>) -> String {
    let Some(raw) = content else {
        return String::new();
    };
    if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
        return text;
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(default)]
        text: Option<String>,
    }
    match serde_json::from_str::<Vec<Part>>(raw.get()) {
        Ok(parts) => parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("\n"),
        Err(_) => raw.get().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<AgentMessage> {
        let mut parser = StreamJsonParser::default();
        text.lines().flat_map(|line| parser.parse_line(line).unwrap()).collect()
    }

    #[test]
    fn a_real_tool_run_becomes_ordered_messages() {
        let messages = parse_all(include_str!("testdata/list_files.jsonl"));
        let kinds: Vec<&str> = messages
            .iter()
            .map(|m| match m {
                AgentMessage::Started { .. } => "started",
                AgentMessage::Text(_) => "text",
                AgentMessage::ToolStarted { .. } => "tool_started",
                AgentMessage::ToolFinished { .. } => "tool_finished",
                AgentMessage::Usage(_) => "usage",
                AgentMessage::Finished(_) => "finished",
            })
            .collect();
        assert_eq!(kinds, ["started", "tool_started", "usage", "tool_finished", "text", "usage", "usage", "finished"]);
        let AgentMessage::ToolStarted { name, input_json, .. } = &messages[1] else { panic!() };
        assert_eq!(name, "Bash");
        assert_eq!(serde_json::from_str::<serde_json::Value>(input_json).unwrap()["command"], "ls -1");
        let AgentMessage::ToolFinished { output, is_error, .. } = &messages[3] else { panic!() };
        assert_eq!((output.as_str(), *is_error), ("README.md\nmain.rs", false));
        let AgentMessage::Finished(result) = messages.last().unwrap() else { panic!() };
        assert!(!result.is_error);
        assert_eq!(result.num_turns, 2);
        assert_eq!(result.usage.input_tokens, 240);
        assert!((result.usage.cost_usd - 0.00216).abs() < 1e-9);
        assert!(result.result.contains("README.md"));
    }

    #[test]
    fn an_api_error_is_a_successful_subtype_with_is_error() {
        let messages = parse_all(include_str!("testdata/api_error.jsonl"));
        let AgentMessage::Finished(result) = messages.last().unwrap() else { panic!() };
        assert!(result.is_error);
        assert_eq!(result.subtype, "success");
        assert!(result.result.contains("refused on purpose"));
    }

    #[test]
    fn unknown_types_fields_and_shapes_are_skipped_not_fatal() {
        let mut parser = StreamJsonParser::default();
        assert_eq!(parser.parse_line(r#"{"type":"stream_event","event":{}}"#), Ok(vec![]));
        assert_eq!(parser.parse_line(r#"{"type":"assistant","message":{"content":42}}"#), Ok(vec![]));
        assert_eq!(parser.parse_line(r#"{"type":"assistant","message":"odd"}"#), Ok(vec![]));
        assert_eq!(parser.parse_line(r#"[1,2]"#), Ok(vec![]));
        assert_eq!(parser.parse_line(""), Ok(vec![]));
        assert_eq!(
            parser.parse_line(r#"{"type":"assistant","new_field":1,"message":{"content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"hi","extra":true}]}}"#),
            Ok(vec![AgentMessage::Text("hi".into())])
        );
        assert_eq!(parser.parse_line("Segmentation fault"), Err(NotJson));
        assert_eq!(parser.parse_line("{\"type\":"), Err(NotJson));
    }

    #[test]
    fn usage_is_counted_once_per_message() {
        let mut parser = StreamJsonParser::default();
        let line = r#"{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"a"}],"usage":{"input_tokens":10,"output_tokens":2}}}"#;
        parser.parse_line(line).unwrap();
        let again = parser.parse_line(line).unwrap();
        assert_eq!(again, vec![AgentMessage::Text("a".into())]);
        let other = parser
            .parse_line(r#"{"type":"assistant","message":{"id":"m2","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}"#)
            .unwrap();
        let AgentMessage::Usage(usage) = &other[0] else { panic!() };
        assert_eq!((usage.input_tokens, usage.output_tokens), (15, 3));
    }

    #[test]
    fn tool_results_as_block_lists_become_text() {
        let mut parser = StreamJsonParser::default();
        let messages = parser
            .parse_line(r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t","is_error":true,"content":[{"type":"text","text":"boom"}]}]}}"#)
            .unwrap();
        assert_eq!(
            messages,
            vec![AgentMessage::ToolFinished { tool_id: "t".into(), output: "boom".into(), is_error: true }]
        );
    }
}
