//! The contract's guard: `buf breaking` against the released image (`proto/released/`), as
//! `make lint` runs it, must pass for the contract as it is, pass for additions, and fail for a
//! change that breaks generated clients. Without the failing case the check could be a no-op.

use std::process::Command;

use autopilot_tests::service::repo_root;

const PROTO: &str = "proto/autopilot/v1/autopilot.proto";
const RELEASED: &str = "proto/released/autopilot-v1.binpb";

/// Runs `buf breaking` on a copy of the module with `edit` applied to the proto; answers whether
/// it passed and what buf printed.
fn breaking_after(edit: impl FnOnce(String) -> String) -> (bool, String) {
    let root = repo_root();
    let buf = root.join("tools/node_modules/.bin/buf");
    assert!(buf.exists(), "{} is missing: run `make tools` (make test does)", buf.display());
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(root.join("buf.yaml"), copy.path().join("buf.yaml")).unwrap();
    let target = copy.path().join(PROTO);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let original = std::fs::read_to_string(root.join(PROTO)).unwrap();
    std::fs::write(&target, edit(original)).unwrap();
    let out = Command::new(&buf)
        .arg("breaking")
        .arg(copy.path())
        .arg("--against")
        .arg(root.join(RELEASED))
        .output()
        .expect("running buf");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn replace_once(text: String, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in {PROTO}");
    text.replacen(from, to, 1)
}

#[test]
fn the_contract_as_it_is_is_compatible_with_the_released_one() {
    let (ok, output) = breaking_after(|proto| proto);
    assert!(ok, "buf breaking fails on the current contract:\n{output}");
}

#[test]
fn renumbering_a_field_is_refused() {
    // Event.seq moves from 2 to an unused number: every generated client would read garbage.
    let (ok, output) = breaking_after(|p| replace_once(p, "  uint64 seq = 2;", "  uint64 seq = 9000;"));
    assert!(!ok, "renumbering Event.seq passed buf breaking:\n{output}");
    assert!(output.contains("seq"), "the failure names the field:\n{output}");
}

#[test]
fn removing_an_rpc_or_renaming_a_field_is_refused() {
    let (ok, output) =
        breaking_after(|p| replace_once(p, "  rpc Cancel(CancelRequest) returns (CancelResponse);\n", ""));
    assert!(!ok && output.contains("Cancel"), "removing Cancel passed:\n{output}");
    let (ok, output) = breaking_after(|p| replace_once(p, "  string prompt = 3;", "  string instructions = 3;"));
    assert!(!ok && output.contains("prompt"), "renaming StartRequest.prompt passed:\n{output}");
}

#[test]
fn additions_are_accepted() {
    let (ok, output) = breaking_after(|p| {
        let p = replace_once(
            p,
            "  rpc Cancel(CancelRequest) returns (CancelResponse);\n",
            "  rpc Cancel(CancelRequest) returns (CancelResponse);\n  rpc Ping(PingRequest) returns (PingResponse);\n",
        );
        let p =
            replace_once(p, "  AgentOptions options = 4;\n", "  AgentOptions options = 4;\n  string label = 9000;\n");
        p + "\nmessage PingRequest {}\nmessage PingResponse {}\n"
    });
    assert!(ok, "additions were refused:\n{output}");
}
