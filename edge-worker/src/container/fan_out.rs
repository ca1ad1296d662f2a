//! One upstream stream per running task, fanned out to every socket that follows it. The
//! object's own follow of a task (which feeds the archive) is the only StreamEvents call to the
//! service for that task; each subscription reads the archive from its `from_seq`, then what the
//! follow holds but has not written yet, then each new event as the follow receives it. The
//! subscriber registers before it reads, so nothing falls between the archive and the live
//! events; a seq it already sent is skipped, so nothing comes twice. (Before, 200 followers
//! meant 200 upstream streams, and their latency grew with their number.)
//!
//! Once a subscription has caught up, the follow sends it each new event itself, through the
//! subscription's [`Sink`] (its socket), as it receives it: no task wakes per subscriber and
//! event, which is what 200 followers of a busy task would cost. The subscription's task then
//! only waits to hear how it ended.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
};

use autopilot_contract::v1::event::Payload;
use futures::{
    channel::mpsc::{unbounded, TryRecvError, UnboundedReceiver, UnboundedSender},
    StreamExt,
};

use crate::{
    archive::Archive,
    bridge::SharedEvent,
    grpc_web::{Code, GrpcStatus},
};

/// What a follow tells a subscription's task.
pub enum News {
    /// Events received together while the subscription was catching up (shared, so that each
    /// is encoded once for them all, and handed over in one message, so that a burst costs one
    /// wake-up).
    Events(Rc<[Rc<SharedEvent>]>),
    /// The follow sent the task's final event through the sink, or found the sink gone: the
    /// subscription is over.
    Done,
    /// The stream broke (the page resubscribes from its last seq).
    Broke(GrpcStatus),
}

/// Where a caught-up subscription's events go straight from the follow.
pub trait Sink {
    /// Sends `event`; false when the receiver is gone.
    fn send(&self, event: &SharedEvent) -> bool;
}

/// A subscription as its follow holds it.
struct Subscribed {
    id: u64,
    news: UnboundedSender<News>,
    /// Set once the subscription caught up, with the next seq it needs: from then on the follow
    /// sends to it directly.
    sink: Option<(Box<dyn Sink>, u64)>,
}

/// One task's follow, as its subscribers and the loss path see it.
#[derive(Default)]
pub struct Follow {
    /// Events received but not written to the archive yet.
    pub pending: RefCell<Vec<Rc<SharedEvent>>>,
    /// Their encodings' size.
    pending_bytes: Cell<usize>,
    /// The subscriptions; one whose task is gone is dropped at the next event.
    subscribers: RefCell<Vec<Subscribed>>,
    next_id: Cell<u64>,
}

impl Follow {
    /// Events received together: kept for the archive, sent to the caught-up subscriptions and
    /// passed to the others' tasks.
    pub fn receive(&self, events: Vec<Rc<SharedEvent>>) {
        let shared: Rc<[Rc<SharedEvent>]> = events.into();
        self.subscribers.borrow_mut().retain_mut(|subscribed| match &mut subscribed.sink {
            None => subscribed.news.unbounded_send(News::Events(Rc::clone(&shared))).is_ok(),
            Some((sink, next_seq)) => {
                // Its task was aborted (unsubscribed, the socket closed): nothing more goes out.
                if subscribed.news.is_closed() {
                    return false;
                }
                for event in shared.iter() {
                    if event.event.seq < *next_seq {
                        continue;
                    }
                    let last = matches!(event.event.payload, Some(Payload::TaskFinished(_)));
                    if !sink.send(event) || last {
                        let _ = subscribed.news.unbounded_send(News::Done);
                        return false;
                    }
                    *next_seq = event.event.seq + 1;
                }
                true
            }
        });
        let bytes: usize = shared.iter().map(|shared| shared.encoded().len()).sum();
        self.pending_bytes.set(self.pending_bytes.get() + bytes);
        self.pending.borrow_mut().extend(shared.iter().cloned());
    }

    /// The size of the events received and not written yet.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.get()
    }

    /// The events received and not written yet, handed over (to be written).
    pub fn take_pending(&self) -> Vec<Rc<SharedEvent>> {
        self.pending_bytes.set(0);
        std::mem::take(&mut *self.pending.borrow_mut())
    }

    /// The stream broke: every subscription hears why.
    pub fn broke(&self, status: GrpcStatus) {
        for subscribed in self.subscribers.borrow_mut().drain(..) {
            let _ = subscribed.news.unbounded_send(News::Broke(status.clone()));
        }
    }

    /// A subscription from `from_seq`: the archive's events and the pending ones now, then the
    /// live ones, through `sink` once it has caught up.
    pub fn subscribe(
        self: &Rc<Self>,
        archive: &Archive,
        task_id: &str,
        from_seq: u64,
        sink: Box<dyn Sink>,
    ) -> worker::Result<Subscriber> {
        let backlog: VecDeque<Rc<SharedEvent>> =
            archive.events(task_id, from_seq, usize::MAX >> 1)?.into_iter().map(SharedEvent::new).collect();
        Ok(self.subscribe_with(backlog, from_seq, sink))
    }

    fn subscribe_with(
        self: &Rc<Self>,
        mut backlog: VecDeque<Rc<SharedEvent>>,
        from_seq: u64,
        sink: Box<dyn Sink>,
    ) -> Subscriber {
        let (news, receiver) = unbounded();
        let id = self.next_id.replace(self.next_id.get() + 1);
        self.subscribers.borrow_mut().push(Subscribed { id, news, sink: None });
        backlog.extend(self.pending.borrow().iter().filter(|shared| shared.event.seq >= from_seq).cloned());
        Subscriber {
            follow: Rc::clone(self),
            id,
            sink: Some(sink),
            backlog,
            news: receiver,
            next_seq: from_seq.max(1),
            ended: false,
        }
    }

    /// Subscription `id` caught up at `next_seq`: from now on the follow sends to `sink`.
    fn go_live(&self, id: u64, sink: Box<dyn Sink>, next_seq: u64) {
        if let Some(subscribed) = self.subscribers.borrow_mut().iter_mut().find(|s| s.id == id) {
            subscribed.sink = Some((sink, next_seq));
        }
    }
}

/// One subscription's events, each once and in order: those it must catch up on are given by
/// [`Subscriber::next`]; the live ones go through its sink, and `next` then waits for the end.
pub struct Subscriber {
    follow: Rc<Follow>,
    id: u64,
    /// Until it is handed to the follow.
    sink: Option<Box<dyn Sink>>,
    backlog: VecDeque<Rc<SharedEvent>>,
    news: UnboundedReceiver<News>,
    next_seq: u64,
    ended: bool,
}

impl Subscriber {
    /// The next event to catch up on; `None` once the task's final event was given (here or
    /// through the sink); `Some(Err)` when the stream broke.
    pub async fn next(&mut self) -> Option<Result<Rc<SharedEvent>, GrpcStatus>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(shared) = self.backlog.pop_front() {
                // Already given (the backlog and the live news may overlap at the seam).
                if shared.event.seq < self.next_seq {
                    continue;
                }
                self.next_seq = shared.event.seq + 1;
                self.ended = matches!(shared.event.payload, Some(Payload::TaskFinished(_)));
                return Some(Ok(shared));
            }
            let news = match self.news.try_recv() {
                Ok(news) => Some(news),
                Err(TryRecvError::Closed) => None,
                // Caught up: the follow takes over the sending, and this waits for the end.
                Err(TryRecvError::Empty) => {
                    if let Some(sink) = self.sink.take() {
                        self.follow.go_live(self.id, sink, self.next_seq);
                    }
                    self.news.next().await
                }
            };
            match news {
                Some(News::Events(batch)) => self.backlog.extend(batch.iter().cloned()),
                Some(News::Done) => {
                    self.ended = true;
                    return None;
                }
                Some(News::Broke(status)) => {
                    self.ended = true;
                    return Some(Err(status));
                }
                None => {
                    self.ended = true;
                    return Some(Err(GrpcStatus::new(Code::Unavailable, "the task's stream ended early; resubscribe")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{AgentText, Event, TaskFinished};
    use futures::FutureExt;

    fn event(seq: u64) -> Rc<SharedEvent> {
        SharedEvent::new(Event {
            task_id: "t".into(),
            seq,
            payload: Some(Payload::AgentText(AgentText::default())),
            ..Default::default()
        })
    }

    fn end(seq: u64) -> Rc<SharedEvent> {
        SharedEvent::new(Event {
            seq,
            payload: Some(Payload::TaskFinished(TaskFinished::default())),
            ..Default::default()
        })
    }

    /// A socket that records what it was sent, or is gone.
    struct Recording {
        sent: Rc<RefCell<Vec<u64>>>,
        open: bool,
    }

    impl Sink for Recording {
        fn send(&self, event: &SharedEvent) -> bool {
            self.open && {
                self.sent.borrow_mut().push(event.event.seq);
                true
            }
        }
    }

    fn subscribe(
        follow: &Rc<Follow>,
        archived: Vec<Rc<SharedEvent>>,
        from_seq: u64,
        open: bool,
    ) -> (Subscriber, Rc<RefCell<Vec<u64>>>) {
        let sent = Rc::default();
        let sink = Box::new(Recording { sent: Rc::clone(&sent), open });
        (follow.subscribe_with(archived.into(), from_seq, sink), sent)
    }

    /// What the subscription's task is given until it would wait.
    fn caught_up(subscriber: &mut Subscriber) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(Some(Ok(shared))) = subscriber.next().now_or_never() {
            seqs.push(shared.event.seq);
        }
        seqs
    }

    #[test]
    fn the_seam_between_backlog_and_live_events_has_no_gap_and_no_duplicate() {
        let follow = Rc::new(Follow::default());
        follow.receive(vec![event(5)]);
        // Archived 2..=4 and 5 held by the follow; 5 and 6 arrive again before the task runs.
        let (mut subscriber, sent) = subscribe(&follow, vec![event(2), event(3), event(4), event(5)], 2, true);
        follow.receive(vec![event(5), event(6)]);
        assert_eq!(caught_up(&mut subscriber), [2, 3, 4, 5, 6]);
        // Caught up: the follow sends the rest itself, each once.
        follow.receive(vec![event(6), event(7)]);
        follow.receive(vec![event(8), end(9)]);
        assert_eq!(*sent.borrow(), [7, 8, 9]);
        assert!(subscriber.next().now_or_never().unwrap().is_none(), "over after the final event");
        assert!(follow.subscribers.borrow().is_empty());
        let pending: Vec<u64> = follow.pending.borrow().iter().map(|shared| shared.event.seq).collect();
        assert_eq!(pending, [5, 5, 6, 6, 7, 8, 9], "all it received is kept for the archive (which skips seqs it has)");
        let bytes: usize = follow.pending.borrow().iter().map(|shared| shared.encoded().len()).sum();
        assert_eq!(follow.pending_bytes(), bytes);
        follow.take_pending();
        assert_eq!(follow.pending_bytes(), 0);
    }

    #[test]
    fn a_final_event_in_the_backlog_ends_the_subscription_there() {
        let follow = Rc::new(Follow::default());
        let (mut subscriber, sent) = subscribe(&follow, vec![event(2), end(3)], 1, true);
        assert_eq!(caught_up(&mut subscriber), [2, 3]);
        assert!(subscriber.next().now_or_never().unwrap().is_none());
        assert!(sent.borrow().is_empty());
    }

    #[test]
    fn a_gone_socket_or_an_aborted_subscription_is_dropped_and_sent_nothing_more() {
        let follow = Rc::new(Follow::default());
        let (mut gone, _) = subscribe(&follow, vec![], 1, false);
        let (mut aborted, aborted_sent) = subscribe(&follow, vec![], 1, true);
        let (mut staying, staying_sent) = subscribe(&follow, vec![], 1, true);
        for subscriber in [&mut gone, &mut aborted, &mut staying] {
            assert!(caught_up(subscriber).is_empty());
        }
        follow.receive(vec![event(1)]);
        assert!(gone.next().now_or_never().unwrap().is_none(), "told it is over");
        drop(aborted);
        follow.receive(vec![event(2)]);
        assert_eq!(*aborted_sent.borrow(), [1]);
        assert_eq!(*staying_sent.borrow(), [1, 2]);
        assert_eq!(follow.subscribers.borrow().len(), 1);
    }

    #[test]
    fn a_broken_or_abandoned_follow_is_news_the_subscriber_can_resubscribe_from() {
        let follow = Rc::new(Follow::default());
        let (mut live, _) = subscribe(&follow, vec![], 1, true);
        let (mut catching_up, _) = subscribe(&follow, vec![event(1)], 1, true);
        assert!(caught_up(&mut live).is_empty());
        follow.broke(GrpcStatus::new(Code::Unavailable, "broken"));
        for subscriber in [&mut live, &mut catching_up] {
            let mut told = Vec::new();
            while let Some(news) = subscriber.next().now_or_never().flatten() {
                told.push(news.map(|shared| shared.event.seq).map_err(|status| status.code));
            }
            assert_eq!(told.last(), Some(&Err(Code::Unavailable as i32)));
        }

        let follow = Rc::new(Follow::default());
        let (mut abandoned, _) = subscribe(&follow, vec![], 1, true);
        follow.subscribers.borrow_mut().clear();
        let news = abandoned.next().now_or_never().unwrap().unwrap();
        assert_eq!(news.unwrap_err().code, Code::Unavailable as i32, "a follow gone without an end");
    }
}
