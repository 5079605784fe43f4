// executor/task_move.cc: a Runtime worker hands a started task to another
// worker (today: a task at tier isolate, or one whose slow poll kept other
// tasks of its worker waiting, gathered on the isolation thread so that the
// workers keep their latency, and a task whose tier came back down, sent
// from the isolation thread back to a worker; MoveAtYield decides).
//
// Protocol (the moving worker M, the receiving worker R; the Runtime's
// own protocol is at the top of executor/internal/runtime_shared.h).
//   What may move: a stealable coroutine task (`movable`: bound by the
//   worker that first ran it; pinned tasks and fibers never move), right
//   after a poll that ended in a yield, on M's thread.  A yielded task has no
//   operation in flight, no join or sync registration and is in no queue,
//   so M's own state refers to it only through the live-task list.
//   M1. fetch_or(kStateNotified): if the bit was set, a wake is on its way
//       to M (its message holds the node this move needs): the task stays.
//       Otherwise no wake is sent from now on until R's first poll of it
//       clears the bit (TakeWake, a release RMW that follows R's acquire
//       of the hand-off: a later waker reads the new owner).
//   M2. M takes it off its live-task list and tier gauges, sets run_state
//       = kMoving, then stores inbox and owner (release).
//   M3. M pushes its wake node (WakeNodeOf) onto R's inbox (`wakes`).
//   R1. R drains it (acquire) and adopts it (AdoptMoved): live-task list,
//       tier gauge of its tier (its tier state travels with it), queued as
//       a woken task in the lane of its tier; cancelled instead if an
//       abort came (kStateCancelRequested) or R is stopping.
//   Aborts.  RequestAbort reads owner after its fetch_or of
//   kStateCancelRequested and sends the task's abort_node to that inbox.
//   An executor that drains an abort for a task whose owner is not itself
//   forwards the message to the task's current inbox; one that finds the
//   task still on its way (kMoving) leaves it to R1, which sees the bit.
//   Shutdown.  Moves happen only inside the run loops, which all end (S2)
//   before any executor is destroyed (S3): a task on its way is in R's
//   inbox, and R's destructor adopts and cancels it.  A forwarded abort
//   that finds an inbox closed is dropped; that executor cancels its tasks.
//
// Work requests (Q0-Q3): a started task woken on a busy worker V moves to
// an idle worker that asked for work, so that an operation's completion
// (or a join's, a Waker's, a sync primitive's grant) makes a stealable task
// runnable again on V and also takeable by others.
//   Q0. V's thread, in WakeSole of a movable task (its operation or its
//       join completed: like a yielded task it holds no operation and no
//       registration, and no other waker refers to it), in WakeByWaker of
//       one (its Waker's one wake; a sync primitive has unlisted it), or
//       draining such a wake from its inbox (Q2), while other tasks
//       wait in V's queues, and no worker asked: if workers are parked
//       and none searches, wakes one as a searcher (N3), as a spawn would
//       (relaxed: a hint; V runs the task itself anyway).
//   Q1. A searcher whose steal scan found nothing asks an awake worker V
//       whose `backlog` says tasks wait in its queues (V publishes it at
//       the top of its loop when it changes) and that is not stuck: a CAS
//       of V's `request` from 0 to its index + 1, one request at a time
//       (`asked`).  Then it goes on with the idle protocol, spinning and
//       parking as usual: a task given to it comes through its inbox,
//       whose doorbell wakes it.
//   Q2. V's thread, in the same WakeSole when a worker asked: exchanges
//       `request` to 0 and moves the task to the asker (M1-M3; if M1
//       fails, a wake in flight, the task stays and the request goes back
//       unless another came meanwhile, as in Q4: TakeRequest, MoveToAsker).  A task
//       that would run next on V stays.  Likewise for a wake that another
//       thread sent through V's inbox (`wakes`: WakeSole's remote form, a
//       join completed on another worker): its waker's fetch_or of
//       kStateNotified was M1 (no other wake is sent until R's first
//       poll clears the bit), and the message's node, popped, is free for
//       M3.  Likewise for `waker_wakes` (a Waker woken on another thread):
//       its WakeByWaker's fetch_or was M1, and the wake node is free (the
//       message is the waker node).  A sync primitive's grant to a listed
//       task of V's, made on V's thread, requeues it in place
//       (RequeueListedLocal) unless OfferWanted (a request, or Q0 would
//       wake a worker): then it gets a Waker like a task of another
//       thread, and the move happens in WakeByWaker after the primitive's
//       unlock, not under its lock.
//   Q3. An asker whose queues hold tasks again (at the top of its loop:
//       what FindWork or its inbox brought) withdraws its request: a CAS
//       back to 0 if it is still its own.  One answered meanwhile brings
//       it one task more.
//   Q4. V's thread, right after a poll of a movable task that yielded
//       (a yield at its budget, YieldNow, YieldMaybe) while other tasks
//       wait in V's queues and a worker asked: exchanges `request` to 0
//       and moves the task to the asker (M1-M3; a yielded task holds no
//       operation and no registration).  A task whose yields keep it
//       runnable (a consumer whose channel never runs empty, a loop of
//       YieldMaybe) is never woken, so Q2 never offers it: without Q4 the
//       tasks queued behind it on V waited for it while the others idled.
//       Checked at every yield judged on its own (FinishPoll) and at the
//       end of a slice that ended in a yield, not at every yield inside a
//       slice: the slice's end comes within its 25 us target.  Only a
//       task at tier monitor whose poll was no violation: a task the
//       tiers judge slow stays for them (or goes to the isolation thread).
//       And only once until the task is next offered at a wake (Q0-Q2
//       clear `moved_at_yield`): a task that never waits would otherwise
//       bounce between two workers, each asking while the other has it
//       (a CPU-bound task beside sleepers on 2 workers: `hog_mt`'s p99 went
//       from ~0.8x to ~20x its run without hogs, both workers kept awake
//       beside the isolation thread on 2 cores).  The tasks woken behind
//       it are offered as usual (Q2), so the asker also gets those.  M1
//       failing (a wake in flight) leaves the task on V and puts the
//       request back if no other came meanwhile: nothing waits for the
//       answer (the asker parks as usual), so a request lost this way
//       costs only time.
//   A stuck V answers nothing (its requester parks; the monitor's report
//   wakes a worker for V's stealable tasks).  Aborts find a task moved so
//   as they find any moved task (above); one with a result still to
//   deliver (an operation that completed) runs once to deliver it, as on
//   its first worker.

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/inbox.h"
#include "executor/internal/runtime_shared.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"
#include "reactor/reactor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::Inbox;
using executor_internal::RunState;
using executor_internal::RuntimeShared;
using executor_internal::TaskHeader;
using executor_internal::Worker;

bool LocalExecutor::MoveAtYield(TaskHeader* t, bool violated) noexcept {
  // A Runtime gathers on its isolation thread the tasks at tier isolate (a
  // task gets there only where tiers are on), and a task whose poll the
  // tiers just judged a violation while other tasks of its worker waited:
  // climbing the tiers takes many such polls and the promotion hysteresis
  // (Balanced(): 14 violations, 200 ms at least), each poll keeping the
  // worker's other tasks waiting (on 2 workers, ~200 ms of a hog's 3 ms
  // polls came before it reached isolate).  On the isolation thread, a
  // task below tier isolate goes back to a worker at a yield; one moved
  // for latency only once it has gone a demotion hysteresis without a
  // violation.
  // `moved_for_latency` is written before the move: it travels with the
  // task (M2 publishes it).
  const bool isolate = t->ctx.tier() == budget::Tier::kIsolate;
  if (!isolation_thread_) {
    if (!isolate) {
      // Only where there is an isolation thread to move to (OthersWait may
      // reap the reactor).  Else a task at tier monitor goes to a worker
      // that asked (Q4); one above it stays, for the tiers to tame here
      // (moved, a hog would land on the idle worker's next tasks).
      if (!violated) {
        return t->ctx.tier() == budget::Tier::kMonitor && MayOffer(t) &&
               OfferYielded(t);
      }
      const Worker* w = executor_internal::tl_worker;
      if (w == nullptr || w->executor.get() != this ||
          w->rt->isolation == nullptr || !OthersWait()) {
        return false;
      }
    }
    t->moved_for_latency = !isolate;
    if (MoveIsolated(t)) return true;
    t->moved_for_latency = false;
    return false;
  }
  if (isolate) return false;
  const bool latency = t->moved_for_latency;
  if (latency &&
      (tiers_ == nullptr ||
       timing::TscClock::Now() - t->ctx.tier_state().last_violation_tick <
           tiers_->policy().demotion_hysteresis_ticks)) {
    return false;
  }
  t->moved_for_latency = false;
  if (MoveFromIsolation(t)) return true;
  t->moved_for_latency = latency;
  return false;
}

bool LocalExecutor::OthersWait() noexcept {
  if (!queue_set_->Empty() || handoff_ != nullptr) return true;
  // An event due (the loop's own test): reaped now, as YieldMaybe does, so
  // that the tasks it wakes are queued; a ready event may be a doorbell
  // that wakes nobody.
  if (!IoDue(timing::TscClock::Now())) return false;
  stats_.driver_yields++;
  io_->Poll(0);
  return !queue_set_->Empty() || handoff_ != nullptr;
}

bool LocalExecutor::MoveIsolated(TaskHeader* t) noexcept {
  Worker* w = executor_internal::tl_worker;
  if (w == nullptr || w->executor.get() != this) return false;
  RuntimeShared& rt = *w->rt;
  // The isolation thread gathers the isolated tasks (tiers on, 2+ workers).
  if (rt.isolation == nullptr || w->isolation) return false;
  return MoveTo(t, rt.isolation->executor.get());
}

bool LocalExecutor::MoveFromIsolation(TaskHeader* t) noexcept {
  Worker* w = executor_internal::tl_worker;
  if (w == nullptr || w->executor.get() != this || !w->isolation) {
    return false;
  }
  RuntimeShared& rt = *w->rt;
  const size_t i = static_cast<size_t>(
      rt.round_robin.fetch_add(1, std::memory_order_relaxed) %
      rt.workers.size());
  return MoveTo(t, rt.workers[i]->executor.get());
}

bool LocalExecutor::MoveTo(TaskHeader* t, LocalExecutor* to,
                           bool notified) noexcept {
  // M1 (done by the waker when `notified`).  acq_rel: ordered with the
  // wakers' fetch_or (a waker that set the bit first is seen here; one that
  // comes later backs off).
  if (!notified &&
      (t->state.fetch_or(executor_internal::kStateNotified,
                         std::memory_order_acq_rel) &
       executor_internal::kStateNotified)) {
    return false;
  }
  // M2.
  UnlinkLive(t);
  stats_.moved_out++;
  if (tiers_ != nullptr) tiers_->OnComplete(t->ctx);
  Inbox& in = *to->inbox_;
  t->run_state = RunState::kMoving;
  t->inbox = &in;
  t->owner = to;  // release: publishes the writes above
  // M3.  R's inbox closes only in its destructor (S3), after every run loop
  // has ended (S2): it is open while this worker runs its loop.
  const bool sent = in.Submit(in.wakes, WakeNodeOf(t));
  ABSL_RAW_CHECK(sent, "a Runtime worker's inbox closed while another "
                       "worker ran (shutdown steps S2/S3 out of order)");
  return true;
}

bool LocalExecutor::OfferWoken(TaskHeader* t, bool notified) noexcept {
  t->moved_at_yield = false;  // it waited: Q4 may move it again
  Worker& w = *worker_;
  RuntimeShared& rt = *w.rt;
  w.PublishBacklog(true);  // Q1's hint, before the loop's next turn
  // Q2.
  if (const uint32_t asker = TakeRequest(); asker != 0) {
    if (MoveToAsker(t, asker, notified)) return true;
  }
  // Q0: a relaxed load, not NotifyOne's fence: a hint (V runs the task
  // itself if nobody comes).
  (void)rt.WakeIfNoneSearches(rt.idle_state.load(std::memory_order_relaxed));
  return false;
}

bool LocalExecutor::OfferYielded(TaskHeader* t) noexcept {
  // Q4, once until the task is next offered at a wake.
  if (t->moved_at_yield) return false;
  const uint32_t asker = TakeRequest();
  if (asker == 0) return false;
  t->moved_at_yield = true;  // travels with it (M2 publishes it)
  if (MoveToAsker(t, asker, /*notified=*/false)) return true;
  t->moved_at_yield = false;
  return false;
}

uint32_t LocalExecutor::TakeRequest() noexcept {
  // Relaxed: the request is a hint (a request seen late is answered at a
  // later wake or yield; the asker parks meanwhile, as usual).  The load
  // first: most wakes and yields find none, and write nothing then.
  std::atomic<uint32_t>& request = *work_request_;
  if (request.load(std::memory_order_relaxed) == 0) return 0;
  return request.exchange(0, std::memory_order_relaxed);  // 0: withdrawn (Q3)
}

bool LocalExecutor::MoveToAsker(TaskHeader* t, uint32_t asker,
                                bool notified) noexcept {
  if (MoveTo(t, worker_->rt->workers[asker - 1]->executor.get(), notified)) {
    return true;
  }
  // M1 failed (a wake in flight): the task stays; the request goes back
  // unless another came meanwhile.
  uint32_t none = 0;
  work_request_->compare_exchange_strong(none, asker,
                                         std::memory_order_relaxed);
  return false;
}

bool LocalExecutor::OfferWanted() const noexcept {
  // Relaxed loads: hints, as in OfferWoken (a request seen late is answered
  // at a later wake; a searcher that appears meanwhile asks itself).
  if (work_request_->load(std::memory_order_relaxed) != 0) return true;
  const uint64_t s =
      worker_->rt->idle_state.load(std::memory_order_relaxed);
  return (s & RuntimeShared::kSearcherMask) == 0 &&
         s >= RuntimeShared::kParked;
}

void LocalExecutor::AdoptMoved(TaskHeader* t) noexcept {
  // R1.
  stats_.moved_in++;
  LinkLive(t);
  if (tiers_ != nullptr) tiers_->OnMoveIn(t->ctx);
  // An abort: cancelled here, unless an operation's result waits to be
  // delivered (Q2): then it runs once, as ProcessAbort lets a queued task.
  if (shutting_down_ || stopping_ ||
      ((t->state.load(std::memory_order_acquire) &
        executor_internal::kStateCancelRequested) &&
       !HasUndeliveredResult(t))) {
    CancelTask(t);
    return;
  }
  // Its first poll here clears kStateNotified (M1), as for any wake.
  t->woken = true;
  ScheduleLocal(t);
}

}  // namespace spindle
