//! How much the container is in use right now, as this instance counts it: requests and frames
//! being handled, subscriptions streaming, frames in flight per socket, when anything last
//! arrived, and when the heartbeat alarm is due. The idle policy ([`super::idle`]) decides from
//! it; the guards here keep the counts right however a request ends.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
};

use super::now_ms;
use crate::bridge::MAX_IN_FLIGHT_PER_SOCKET;

#[derive(Default)]
pub struct Activity {
    /// When a request or frame last arrived; the idle deadline counts from it.
    pub last_activity_ms: Cell<u64>,
    /// Requests and frames for the container being handled now (see [`ContainerUse`]).
    requests_in_use: Cell<u32>,
    /// Subscriptions streaming now (see [`StreamUse`]).
    streams: Cell<u32>,
    /// When the alarm this instance scheduled will run (so activity need not write one each
    /// time); `None` once it ran, or in a fresh instance.
    pub alarm_at_ms: Cell<Option<u64>>,
    /// Frames being handled per socket id, bounded by [`MAX_IN_FLIGHT_PER_SOCKET`].
    frames_in_flight: RefCell<HashMap<String, u32>>,
}

impl Activity {
    pub fn requests_in_use(&self) -> u32 {
        self.requests_in_use.get()
    }

    pub fn streams(&self) -> u32 {
        self.streams.get()
    }

    /// Whether nothing but the one request asking uses the container.
    pub fn only_this_request(&self) -> bool {
        self.streams.get() == 0 && self.requests_in_use.get() <= 1
    }
}

/// Counts a request or frame that uses the container while it is handled; the idle stop waits
/// for it.
pub struct ContainerUse(Rc<Activity>);

impl ContainerUse {
    pub fn begin(activity: &Rc<Activity>) -> ContainerUse {
        ContainerUse::begin_at(activity, now_ms())
    }

    /// [`ContainerUse::begin`] at `now_ms`.
    fn begin_at(activity: &Rc<Activity>, now_ms: u64) -> ContainerUse {
        activity.requests_in_use.set(activity.requests_in_use.get() + 1);
        activity.last_activity_ms.set(now_ms);
        ContainerUse(Rc::clone(activity))
    }
}

impl Drop for ContainerUse {
    fn drop(&mut self) {
        self.0.requests_in_use.set(self.0.requests_in_use.get().saturating_sub(1));
    }
}

/// Counts a subscription streaming events to a socket; while any does, the container is not idle.
pub struct StreamUse(Rc<Activity>);

impl StreamUse {
    pub fn begin(activity: &Rc<Activity>) -> StreamUse {
        activity.streams.set(activity.streams.get() + 1);
        StreamUse(Rc::clone(activity))
    }
}

impl Drop for StreamUse {
    fn drop(&mut self) {
        self.0.streams.set(self.0.streams.get().saturating_sub(1));
    }
}

/// Counts a frame in flight on one socket while it is handled.
pub struct SocketFrame {
    activity: Rc<Activity>,
    socket: String,
}

impl SocketFrame {
    /// `None` when the socket already has [`MAX_IN_FLIGHT_PER_SOCKET`] frames in flight.
    pub fn begin(activity: &Rc<Activity>, socket: String) -> Option<SocketFrame> {
        let mut in_flight = activity.frames_in_flight.borrow_mut();
        let count = in_flight.entry(socket.clone()).or_default();
        if *count >= MAX_IN_FLIGHT_PER_SOCKET {
            return None;
        }
        *count += 1;
        Some(SocketFrame { activity: Rc::clone(activity), socket })
    }
}

impl Drop for SocketFrame {
    fn drop(&mut self) {
        let mut in_flight = self.activity.frames_in_flight.borrow_mut();
        if let Some(count) = in_flight.get_mut(&self.socket) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.socket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_holds_at_most_its_frames_in_flight_and_gets_them_back() {
        let activity = Rc::new(Activity::default());
        let held: Vec<SocketFrame> =
            (0..MAX_IN_FLIGHT_PER_SOCKET).map(|_| SocketFrame::begin(&activity, "s".into()).unwrap()).collect();
        assert!(SocketFrame::begin(&activity, "s".into()).is_none(), "one more is refused");
        assert!(SocketFrame::begin(&activity, "other".into()).is_some(), "another socket has its own bound");
        drop(held);
        let again = SocketFrame::begin(&activity, "s".into());
        assert!(again.is_some(), "replies free the slots");
        assert_eq!(activity.frames_in_flight.borrow().get("s"), Some(&1));
        drop(again);
        assert!(activity.frames_in_flight.borrow().is_empty(), "an idle socket leaves no entry behind");
    }

    #[test]
    fn requests_and_streams_count_while_their_guards_live() {
        let activity = Rc::new(Activity::default());
        let request = ContainerUse::begin_at(&activity, 5);
        assert!(activity.only_this_request(), "the asking request alone");
        let stream = StreamUse::begin(&activity);
        let other = ContainerUse::begin_at(&activity, 9);
        assert_eq!((activity.requests_in_use(), activity.streams()), (2, 1));
        assert_eq!(activity.last_activity_ms.get(), 9, "each request is activity");
        assert!(!activity.only_this_request());
        drop((request, stream, other));
        assert_eq!((activity.requests_in_use(), activity.streams()), (0, 0));
    }
}
