//! The scripted conversations the fake model API plays, named in a prompt by a `SCENARIO:<name>`
//! token, and the shell commands their tool calls run.

/// A scripted conversation the fake plays.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Answer with text at once.
    Answer,
    /// Run `ls -1` with the Bash tool, then answer with what it printed.
    ListFiles,
    /// Write AGENT_NOTES.md with the Bash tool, then answer.
    WriteFile,
    /// `WriteFile`, whose Bash call also prints the agent's model key
    /// (`gateway key: $ANTHROPIC_API_KEY`), so the key is in the agent's session transcript; the
    /// same answer.
    WriteFileShowingKey,
    /// Run `count` Bash calls (`echo step N`), then answer.
    ManyTools(u32),
    /// Like `ManyTools`, but each call takes half a second (`sleep 0.5; echo step N`), so a
    /// test can act while the task is still running.
    SlowTools(u32),
    /// Say which user the agent's tools run as and run `autopilot-hello` (a system package an
    /// environment's setup installs in the container tests), then answer with what they printed.
    WhoAndHello,
    /// Print the agent's environment with the Bash tool (`env`), then answer: secrets must be
    /// masked in what the service records.
    PrintEnv,
    /// Answer with markdown that carries raw HTML and a script link, which a page must not run.
    HtmlInjection,
    /// Refuse the request with an API error (HTTP 400, invalid_request_error).
    ApiError,
    /// Start streaming an answer and never finish it (for cancel and timeout tests).
    Hang,
    /// Edit main.rs (1 line becomes 3) and create NOTES.md (3 lines) with the Bash tool, then
    /// answer: a diff of exactly two files, +3 -1 and +3 -0.
    EditAndCreate,
    /// With the Bash tool, commit a rename (README.md -> README.txt) and a new COMMITTED.md as the
    /// agent's own commit, then leave uncommitted: a deleted main.rs, a new UNCOMMITTED.md, and a
    /// .gitignore that hides the new build/out.o. Then answer.
    CommitAndEdit,
    /// Write the agent's ANTHROPIC_* environment (the API key included) into ENV.txt, then answer.
    WriteEnv,
    /// Change a file, then tamper with git: redirect file:// URLs elsewhere (`insteadOf`, in the
    /// clone's config and the global one) and install pre-commit and pre-push hooks that leave a
    /// `hook-ran` file beside the clone. Then answer.
    TamperGit,
    /// Write BIG.txt (the numbers 1 to 60000, one a line: a patch over the diff event's cap)
    /// and SMALL.txt (one line) with the Bash tool, then answer.
    BigChange,
    /// Print AGENT_NOTES.md (what `WriteFile` wrote) and append a line to it with the Bash tool,
    /// then answer with what it printed: a follow-up that sees its parent's work and adds to it.
    ReadAndExtend,
}

/// The message the `ApiError` scenario refuses with.
pub const API_ERROR_MESSAGE: &str = "fake model API: this request was refused on purpose";

impl Scenario {
    /// The scenario named by the first `SCENARIO:<name>` token in `text`, or `Answer`.
    pub fn find_in(text: &str) -> Scenario {
        let Some(start) = text.find("SCENARIO:") else {
            return Scenario::Answer;
        };
        let name: String = text[start + "SCENARIO:".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == ':')
            .collect();
        match name.as_str() {
            "list-files" => Scenario::ListFiles,
            "write-file" => Scenario::WriteFile,
            "write-file-showing-key" => Scenario::WriteFileShowingKey,
            "api-error" => Scenario::ApiError,
            "print-env" => Scenario::PrintEnv,
            "who-and-hello" => Scenario::WhoAndHello,
            "html-injection" => Scenario::HtmlInjection,
            "hang" => Scenario::Hang,
            "edit-and-create" => Scenario::EditAndCreate,
            "commit-and-edit" => Scenario::CommitAndEdit,
            "write-env" => Scenario::WriteEnv,
            "tamper-git" => Scenario::TamperGit,
            "big-change" => Scenario::BigChange,
            "read-and-extend" => Scenario::ReadAndExtend,
            other => {
                let count = |prefix: &str| other.strip_prefix(prefix).and_then(|n| n.parse().ok());
                match (count("many-tools:"), count("slow-tools:")) {
                    (Some(n), _) => Scenario::ManyTools(n),
                    (_, Some(n)) => Scenario::SlowTools(n),
                    _ => Scenario::Answer,
                }
            }
        }
    }
}

/// The `write-file` scenario's shell command.
pub const WRITE_FILE_COMMAND: &str = "printf 'hello from the agent\\n' > AGENT_NOTES.md && cat AGENT_NOTES.md";

/// The `edit-and-create` scenario's shell command.
pub const EDIT_AND_CREATE_COMMAND: &str =
    "printf 'fn main() {\\n    println!(\"hello\");\\n}\\n' > main.rs && printf 'one\\ntwo\\nthree\\n' > NOTES.md";

/// The `commit-and-edit` scenario's shell command.
pub const COMMIT_AND_EDIT_COMMAND: &str = "git mv README.md README.txt && printf 'x\\n' > COMMITTED.md \
    && git add COMMITTED.md && git -c user.name=Agent -c user.email=agent@example.invalid commit -qm 'agent commit' \
    && printf 'build/\\n' > .gitignore && mkdir -p build && printf 'junk\\n' > build/out.o \
    && rm main.rs && printf 'y\\n' > UNCOMMITTED.md";

/// The `tamper-git` scenario's shell command; it prints the redirect it configured.
pub const TAMPER_GIT_COMMAND: &str = "printf 'changed\\n' > CHANGED.md \
    && git config url.file:///nowhere/.insteadOf file:/// \
    && git config --global url.file:///nowhere/.insteadOf file:/// \
    && printf '#!/bin/sh\\ntouch ../hook-ran\\n' > .git/hooks/pre-push && chmod +x .git/hooks/pre-push \
    && cp .git/hooks/pre-push .git/hooks/pre-commit \
    && git config --get url.file:///nowhere/.insteadOf";

/// The `read-and-extend` scenario's shell command.
pub const READ_AND_EXTEND_COMMAND: &str = "cat AGENT_NOTES.md && printf 'more from the follow-up\\n' >> AGENT_NOTES.md";
