//! One upstream stream per running task, fanned out to every socket that follows it. The
//! object's own follow of a task (which feeds the archive) is the only StreamEvents call to the
//! service for that task; each subscription reads the archive from its `from_seq`, then what the
//! follow holds but has not written yet, then each new event as the follow receives it. The
//! subscriber registers before it reads, so nothing falls between the archive and the live
//! events; a seq it already sent is skipped, so nothing comes twice. (Before, 200 followers
//! meant 200 upstream streams, and their latency grew with their number.)

use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use autopilot_contract::v1::{event::Payload, Event};
use futures::{
    channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender},
    StreamExt,
};

use crate::{
    archive::Archive,
    bridge::SharedEvent,
    grpc_web::{Code, GrpcStatus},
};

/// What a follow tells its subscribers: the events it received together (shared, so that each
/// is encoded once for them all, and handed over in one message, so that a burst costs each
/// subscriber one wake-up), or why its stream broke.
pub type News = Result<Rc<[Rc<SharedEvent>]>, GrpcStatus>;

/// One task's follow, as its subscribers and the loss path see it.
#[derive(Default)]
pub struct Follow {
    /// Events received but not written to the archive yet.
    pub pending: RefCell<Vec<Rc<SharedEvent>>>,
    /// The subscribers' channels; one that is closed is dropped at the next event.
    subscribers: RefCell<Vec<UnboundedSender<News>>>,
}

impl Follow {
    /// Events received together: kept for the archive and passed to every subscriber.
    pub fn receive(&self, events: Vec<Event>) {
        let shared: Rc<[Rc<SharedEvent>]> = events.into_iter().map(SharedEvent::new).collect();
        self.subscribers.borrow_mut().retain(|subscriber| subscriber.unbounded_send(Ok(Rc::clone(&shared))).is_ok());
        self.pending.borrow_mut().extend(shared.iter().cloned());
    }

    /// The events received and not written yet, handed over (to be written).
    pub fn take_pending(&self) -> Vec<Rc<SharedEvent>> {
        std::mem::take(&mut *self.pending.borrow_mut())
    }

    /// The stream broke: every subscriber hears why (the page resubscribes from its last seq).
    pub fn broke(&self, status: GrpcStatus) {
        for subscriber in self.subscribers.borrow_mut().drain(..) {
            let _ = subscriber.unbounded_send(Err(status.clone()));
        }
    }

    /// A subscription from `from_seq`: the archive's events and the pending ones now, then the
    /// live ones.
    pub fn subscribe(&self, archive: &Archive, task_id: &str, from_seq: u64) -> worker::Result<Subscriber> {
        let (sender, receiver) = unbounded();
        self.subscribers.borrow_mut().push(sender);
        let mut backlog: VecDeque<Rc<SharedEvent>> =
            archive.events(task_id, from_seq, usize::MAX >> 1)?.into_iter().map(SharedEvent::new).collect();
        backlog.extend(self.pending.borrow().iter().filter(|shared| shared.event.seq >= from_seq).cloned());
        Ok(Subscriber { backlog, live: receiver, next_seq: from_seq.max(1), ended: false })
    }
}

/// One subscription's events, each once and in order.
pub struct Subscriber {
    backlog: VecDeque<Rc<SharedEvent>>,
    live: UnboundedReceiver<News>,
    next_seq: u64,
    ended: bool,
}

impl Subscriber {
    /// The next event; `None` once the task's final event was given; `Some(Err)` when the
    /// stream broke.
    pub async fn next(&mut self) -> Option<Result<Rc<SharedEvent>, GrpcStatus>> {
        if self.ended {
            return None;
        }
        loop {
            let news = match self.backlog.pop_front() {
                Some(event) => Ok(event),
                None => match self.live.next().await {
                    Some(Ok(batch)) => {
                        self.backlog.extend(batch.iter().cloned());
                        continue;
                    }
                    Some(Err(status)) => Err(status),
                    None => Err(GrpcStatus::new(Code::Unavailable, "the task's stream ended early; resubscribe")),
                },
            };
            match news {
                // Already given (the backlog and the live channel may overlap at the seam).
                Ok(shared) if shared.event.seq < self.next_seq => continue,
                Ok(shared) => {
                    self.next_seq = shared.event.seq + 1;
                    self.ended = matches!(shared.event.payload, Some(Payload::TaskFinished(_)));
                    return Some(Ok(shared));
                }
                Err(status) => {
                    self.ended = true;
                    return Some(Err(status));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopilot_contract::v1::{AgentText, TaskFinished};

    fn event(seq: u64) -> Event {
        Event {
            task_id: "t".into(),
            seq,
            payload: Some(Payload::AgentText(AgentText::default())),
            ..Default::default()
        }
    }

    fn end(seq: u64) -> Event {
        Event { seq, payload: Some(Payload::TaskFinished(TaskFinished::default())), ..event(seq) }
    }

    fn subscription(backlog: Vec<Event>, from_seq: u64) -> (UnboundedSender<News>, Subscriber) {
        let (sender, live) = unbounded();
        let backlog = backlog.into_iter().map(SharedEvent::new).collect();
        (sender, Subscriber { backlog, live, next_seq: from_seq, ended: false })
    }

    fn seqs(subscriber: &mut Subscriber) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(Ok(shared)) = futures::executor::block_on(subscriber.next()) {
            seqs.push(shared.event.seq);
        }
        seqs
    }

    #[test]
    fn the_seam_between_backlog_and_live_events_has_no_gap_and_no_duplicate() {
        // The follow received 4 and 5 after the subscriber registered, while they were also
        // still in its pending backlog.
        let (live, mut subscriber) = subscription(vec![event(2), event(3), event(4), event(5)], 2);
        live.unbounded_send(Ok(vec![event(4), event(5)].into_iter().map(SharedEvent::new).collect())).unwrap();
        live.unbounded_send(Ok(vec![event(6), end(7)].into_iter().map(SharedEvent::new).collect())).unwrap();
        assert_eq!(seqs(&mut subscriber), vec![2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn a_subscription_ends_after_the_tasks_final_event() {
        let (live, mut subscriber) = subscription(vec![end(3)], 1);
        live.unbounded_send(Ok(vec![SharedEvent::new(event(9))].into())).unwrap();
        assert_eq!(seqs(&mut subscriber), vec![3]);
        assert!(futures::executor::block_on(subscriber.next()).is_none());
    }

    #[test]
    fn a_broken_or_abandoned_follow_is_news_the_subscriber_can_resubscribe_from() {
        let (live, mut subscriber) = subscription(vec![], 1);
        live.unbounded_send(Ok(vec![SharedEvent::new(event(1))].into())).unwrap();
        live.unbounded_send(Err(GrpcStatus::new(Code::Unavailable, "broken"))).unwrap();
        assert_eq!(futures::executor::block_on(subscriber.next()).unwrap().unwrap().event.seq, 1);
        assert_eq!(futures::executor::block_on(subscriber.next()).unwrap().unwrap_err().code, Code::Unavailable as i32);
        assert!(futures::executor::block_on(subscriber.next()).is_none());

        let (live, mut abandoned) = subscription(vec![], 1);
        drop(live);
        let news = futures::executor::block_on(abandoned.next()).unwrap();
        assert_eq!(news.unwrap_err().code, Code::Unavailable as i32, "a follow gone without an end");
    }

    #[test]
    fn every_subscriber_gets_every_event_and_a_gone_one_is_dropped() {
        let follow = Follow::default();
        let (first, mut first_rx) = unbounded();
        let (gone, gone_rx) = unbounded();
        follow.subscribers.borrow_mut().extend([first, gone]);
        drop(gone_rx);
        follow.receive(vec![event(1), event(2)]);
        assert_eq!(follow.subscribers.borrow().len(), 1);
        let batch = futures::executor::block_on(first_rx.next()).unwrap().unwrap();
        assert_eq!(batch.iter().map(|shared| shared.event.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(follow.pending.borrow().len(), 2, "kept for the archive too");
    }
}
