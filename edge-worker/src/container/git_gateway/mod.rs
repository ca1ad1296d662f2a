//! The git gateway, the user's object's side (a sibling of the model gateway): a task's git
//! reaches its GitHub repository through the edge with a credential of its own, never a GitHub
//! token. Pure so far: git's pkt-line framing ([`pkt_line`]) and what a task's push may do, with
//! the refusal git prints ([`push_policy`]).

pub mod pkt_line;
pub mod push_policy;
