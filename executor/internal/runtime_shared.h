// executor/internal/runtime_shared.h: the state a Runtime's workers share.
//
// Protocol (the step names are referred to in runtime.cc and
// worker_loop.cc).
//
// Tasks.  A stealable task is spawned unbound (no owner, no inbox, state
// without kStateBound) and waits in one of: the spawning worker's deque
// (owner pushes and pops, anyone steals), a worker's `preferred` injector,
// or the shared `injector`.  The worker that takes it binds it
// (LocalExecutor::BindAndAdopt: writes owner and inbox, then a release RMW
// sets kStateBound; an Abort that came first is seen in that RMW's old value
// and the task is cancelled instead of run).  From then on it is one of
// that executor's tasks like any other, except that a task at tier isolate
// may move at a yield to the worker that gathers them (executor/
// task_move.cc: its steps M1-M3, R1, and how aborts are forwarded).
// Pinned tasks are bound at spawn and travel through the executor's inbox.
//
// Who owns what.
//   Worker::deque      push/pop: the worker's thread; steal: any worker;
//                      after the threads are joined: the destructor.
//                      With 2+ workers every push is published at once
//                      (WorkDeque's private part stays empty): a poll that
//                      blocks never strands a queued task; past
//                      StealOptions::stealable_queue_capacity, the older
//                      half and the new task are spilled in one overflow
//                      batch (internal/overflow.h: O1-O3; linked on the
//                      shared injector once the worker's pool is spent).
//                      A single worker keeps its pushes
//                      private (no one else could take them; its Pop then
//                      takes no locked RMW), and past the knob or the ring
//                      binds and queues a spawn in its executor at once.
//   Worker::executor   the worker's thread while it runs (it builds nothing:
//                      the executor is built by Build and destroyed by the
//                      worker thread at the end of step S3).
//   injectors          any thread (the shared `injector`, `overflow`,
//                      each worker's `preferred`).
//   idle list          under idle_mu.
//
// Searching and sleeping (after Tokio's idle protocol; one packed word).
//   `idle_state` holds two counts: searching workers (low 32 bits) and
//   parked workers (high 32 bits, = the idle list's length).  Every change
//   of the parked count is made under idle_mu together with the list.
//   A worker is in one of three states: running (it has work), searching
//   (its own queues are empty; it looks at the shared injector and steals),
//   parked (on the idle list, asleep in its executor).
//   `Worker::searching` is the worker's own view (its thread only); a
//   worker woken by N3 (or F4) is counted as a searcher by its waker and
//   learns it in I4 (`woken_searching`, under idle_mu); one woken by B1
//   is not.
//
//   Searching.  With its own queues empty, every worker takes from its
//   preferred injector and the shared injector; then, with 2+ workers:
//     F1. if not searching: join the searchers only while fewer than half
//         the workers search (2 * searching < workers, a CAS: the bound is
//         strict); a refused worker skips F2 and goes to I1.
//     F2. a steal scan (StealPolicy).
//     F3. on finding work (there, or a runnable task of its own executor):
//         leave the searchers (seq_cst RMW); the last searcher to leave
//         runs N1-N3 if any queue still holds a task, so that parallelism
//         grows one worker at a time while there is work to take.
//     F4. a searcher whose steal scan took a batch (2+ tasks: its victim
//         had a backlog) and whose own deque still holds tasks another
//         worker may take wakes up to RuntimeBuilder::WakeFanout - 1
//         more parked workers as searchers (N3 without N2's "none
//         searches": one CAS each, refused once half the workers search,
//         so F1's bound holds).  Parallelism then doubles per wake-up
//         instead of growing by one (as oneTBB's workers wake each other
//         two at a time): on many cores a fork-join run's last worker
//         joined in only after every wake-up before it.  With 2 workers
//         it wakes nobody: the victim is awake.  Extra wakes never break
//         the argument below (it rests on wakes that must happen).
//   Parking.
//     I0. spins awake, off the idle list, still a searcher if it was one
//         (RuntimeBuilder::SpinBeforePark; at most that long per idle spell,
//         which a slice run or a park ends).  It goes back to work when its
//         inbox or an injector has something, or, every 8th step, when a
//         deque has a task (if it searches: N2 counted on it) or it may
//         search (if not: F1's bound has room).  N3 never wakes a spinner:
//         it is an awake worker, and the argument below holds for it as for
//         any awake worker, since it goes through I1-I2 before it parks.
//     I1. under idle_mu: joins the idle list; one seq_cst RMW adds one
//         parked worker and, if it was searching, removes one searcher.
//     I2. looks again: always at the shared injector and its own preferred
//         injector; at every deque and injector too if I1 removed the last
//         searcher.  If anything is there it leaves the idle list (if
//         still on it) and goes back to work.
//     I3. parks in its executor (the inbox's parked protocol: a Nudge
//         before or during the park ends it).
//     I4. after waking, under idle_mu: leaves the idle list if still on it
//         (not searching: it woke for its own tasks); if N3 or F4 took it
//         off, it is a searcher (its waker counted it); if B1 did, it is
//         awake and not searching.
//   Notifying, after a push of a stealable task (P1):
//     N0. a worker's push onto its own deque runs N1-N3 only if the deque
//         held StealOptions::locality_margin tasks (0 by default: it was
//         empty; thieves take nothing from a deque of margin tasks or
//         fewer), or the push overflowed: the push that made it worth
//         stealing from ran them, and the owner runs its own deque anyway.
//         Parallelism grows through F3 and I2 while the deque holds more.
//         "A deque has a task" (I0, I2, F3) means as much: past the margin
//         for another worker's deque, any task for a worker's own.
//     N1. one seq_cst RMW reads idle_state (fetch_add 0);
//     N2. if someone searches, or nobody is parked: done, nobody is woken;
//     N3. else under idle_mu, if still nobody searches: takes one worker
//         off the idle list, counts it as a searcher (one CAS: one parked
//         fewer, one searcher more; it fails if a worker started searching)
//         and Nudges it.  The monitor's stuck report wakes one even while
//         others search, so it may take the count one past the bound; it
//         also marks the stuck worker (Worker::stuck), whose queued tasks
//         the locality margin then no longer keeps from thieves.
//   BlockOn from a plain thread, after its spawn's N1-N3:
//     B1. with 2+ workers, takes up to WakeFanout - 1 more parked workers
//         off the idle list (under idle_mu; one seq_cst RMW each: one
//         parked worker fewer, the searchers unchanged, so F1's bound
//         holds) and Nudges them.  Awake and not searching, each looks at
//         the injectors, joins the searchers through F1 when the bound has
//         room and spins (I0) before it parks again: a fork-join root's
//         first spawns find it up, where otherwise the worker that took
//         the root would wake it only then (N0), one wake-up after its
//         own.  With a serial root it parks again after its spin.
//   No lost wake-up.  The RMWs on idle_state are totally ordered, and N1's
//   fence orders its load with them (a store-buffering pattern: either N1
//   sees a parker's I1, or that parker's I2 sees the push).  Take a
//   push P1 whose N1 found a searcher S: S has not yet left (F3) or parked
//   (I1).  If S parks as the last searcher, its I2 comes after N1 and sees
//   the task; if S leaves as the last searcher, its F3 check sees the task
//   and wakes a parked worker, or every worker is awake; if S was not the
//   last, the same holds for whoever is.  If N1 found nobody parked, every
//   worker parks after N1: each I2 sees an injected task, and a task in a
//   deque belongs to an awake worker that runs it itself, or is seen by a
//   last searcher's I2.  Otherwise N3 wakes a sleeper, which searches.

// The isolation thread (tiers on, 2+ workers).  One more Worker, not in
// `workers`: it runs only the tasks that reached tier isolate, at a low OS
// priority (nice 19), so that the kernel preempts it whenever a worker has
// work.  It never searches, steals, parks on the idle list or takes from
// the injectors; it sleeps in its executor until a task moves to it
// (task_move.cc, through its inbox).  A stealable spawn from it goes to the
// shared injector (P1 from outside).  It polls one task per slice, so every
// yield there goes through FinishPoll, which sends a task whose tier came
// back down below isolate to a worker (round robin).  It takes part in the
// shutdown like a worker (S2's barrier counts it).

// Shutdown, in order (Runtime::~Runtime):
//   S1. closing = true (seq_cst); wait until no spawn from outside a worker
//       is between its check of `closing` and its push (`inflight`, as in
//       the executor's inbox); from here such spawns cancel their task.
//   S2. Nudge every worker; each leaves its loop at the next iteration
//       (tasks are left where they are) and waits until all have left.
//   S3. Each worker destroys its executor on its own thread: its bound
//       tasks are cancelled, operations cancelled and reaped.  Stealable
//       tasks that these cancellations spawn are cancelled at once.
//   S4. Join the threads; cancel every unbound task left in the deques
//       and injectors (completion bits, joiner woken, frame freed).
//   The inboxes stay alive as long as any JoinHandle (through `inboxes`).

#ifndef SPINDLE_EXECUTOR_INTERNAL_RUNTIME_SHARED_H_
#define SPINDLE_EXECUTOR_INTERNAL_RUNTIME_SHARED_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/internal/inbox.h"
#include "executor/internal/overflow.h"
#include "executor/local_executor.h"
#include "executor/runtime.h"
#include "executor/task.h"
#include "steal/injector.h"
#include "steal/steal_policy.h"
#include "steal/work_deque.h"

namespace spindle::executor_internal {

struct RuntimeShared;

struct Worker {
  size_t index = 0;
  RuntimeShared* rt = nullptr;
  std::unique_ptr<LocalExecutor> executor;
  std::shared_ptr<Inbox> inbox;  // the executor's; outlives it
  // What JoinHandles of tasks spawned on this worker hold (it keeps the
  // RuntimeShared alive): counted without atomics by this worker's thread
  // while its executor runs, so that spawns and handle drops on different
  // workers do not share one reference count either.  Armed before the
  // threads start; retired by ~Runtime after S4 (it would otherwise keep
  // its own RuntimeShared alive).
  HandleAnchor handle_anchor;
  steal::WorkDeque<TaskHeader> deque;
  steal::Injector<TaskHeader> preferred;  // StealablePreferred(index)
  std::optional<steal::StealPolicy> policy;
  std::thread thread;
  int cpu = -1;  // ThreadAffinity, -1: none
  // The CPU this worker's thread was on when it last began an idle spin
  // (-1: never); read by the other workers' spins (relaxed: a hint).
  std::atomic<int> last_cpu{-1};
  uint64_t spin_ticks = 0;  // RuntimeBuilder::SpinBeforePark, TSC ticks
  bool isolation = false;  // the isolation thread (not in `workers`)
  bool idle_listed = false;      // guarded by RuntimeShared::idle_mu
  bool woken_searching = false;  // guarded by RuntimeShared::idle_mu (N3, F4)
  bool searching = false;        // the worker's thread only (F1-F3, I1-I4)
  bool overflow_first = false;   // the worker's thread only (PopInjected)
  bool backlog_published = false;  // `backlog`'s value, its thread only
  bool stole_batch = false;  // F4: its last steal scan took 2+ tasks
  uint32_t asked = 0;  // the worker asked (Q1): that worker's index + 1

  // Written by the worker thread, read by Stats() from any thread.
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> parks{0};
  std::atomic<uint64_t> wakes_skipped{0};  // spawns that woke nobody
  std::atomic<uint64_t> overflowed{0};     // spawns sent to the injector
  std::atomic<uint64_t> joins_inlined{0};  // run by their joiner (inline)
  std::atomic<uint64_t> work_requests{0};  // Q1: asked another for a task
  std::atomic<uint64_t> spin_yields{0};    // I0: its spin gave up its CPU

  OverflowPool overflow;  // the batches its deque spills (O1)

  // Reported stuck in one poll by the monitor (its thread sets it; this
  // worker clears it once the poll is over): its queues keep no tasks for
  // locality, so thieves and AnyWork ignore the locality margin for it.
  // Relaxed: a hint, never needed for correctness.  On a line of its own:
  // every steal probe reads it, and the counters above are written at
  // every spawn.
  alignas(64) std::atomic<bool> stuck{false};
  // Q1-Q3, on a line of their own (a searcher that asks writes it).
  // Q1: tasks wait in this worker's queues (published by its thread when
  // that changes; relaxed, a hint for the searchers that ask for work).
  alignas(64) std::atomic<bool> backlog{false};
  // Q1-Q3 (executor/task_move.cc): an idle worker's request for a task
  // woken here, its index + 1 (0: none).
  std::atomic<uint32_t> request{0};
  // Q1: the worker's thread publishes whether tasks wait in its queues
  // (a store only when that changes).
  void PublishBacklog(bool b) noexcept {
    if (b == backlog_published) return;
    backlog_published = b;
    backlog.store(b, std::memory_order_relaxed);
  }
  // A thief may take this worker's tasks within the locality margin
  // (steal::StealPolicy::MayStealFrom): it is held in one poll.
  bool KeepsNoLocality() const noexcept {
    return stuck.load(std::memory_order_relaxed);
  }

  // Worker thread: one relaxed add (no RMW).
  static void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct RuntimeShared {
  Runtime* runtime = nullptr;  // null once it is destroyed
  std::vector<std::unique_ptr<Worker>> workers;
  // The isolation thread's worker (tiers on, 2+ workers), else null; its
  // index is workers.size().
  std::unique_ptr<Worker> isolation;
  // Threads that take part in the shutdown barrier (S2).
  size_t thread_count() const noexcept {
    return workers.size() + (isolation != nullptr ? 1 : 0);
  }
  steal::Injector<TaskHeader> injector;  // from outside any worker
  // The batches full deques spilled (executor/internal/overflow.h).
  steal::Injector<OverflowBatch> overflow;

  // Searching and sleeping workers (F1-F3, I1-I4, N1-N3).
  static constexpr uint64_t kSearcher = 1;
  static constexpr uint64_t kParked = uint64_t{1} << 32;
  static constexpr uint64_t kSearcherMask = kParked - 1;
  std::atomic<uint64_t> idle_state{0};
  std::mutex idle_mu;
  std::vector<Worker*> idle_list;  // guarded by idle_mu
  std::atomic<uint64_t> max_searching{0};     // the most at once
  std::atomic<uint64_t> searches_refused{0};  // F1 said no

  // Shutdown (S1-S4).
  std::atomic<bool> closing{false};
  std::atomic<int64_t> inflight{0};
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  size_t stopped = 0;  // workers out of their loop; guarded by stop_mu

  // Spawn bookkeeping.
  std::atomic<uint64_t> round_robin{0};
  std::atomic<uint64_t> next_id{0};
  Inbox* queue_map = nullptr;  // worker 0's inbox: queue ids (immutable)

  // Counters (relaxed RMWs on the slow paths only).
  std::atomic<uint64_t> wakes_sent{0};
  std::atomic<uint64_t> wakes_skipped{0};
  std::atomic<uint64_t> injected{0};
  std::atomic<uint64_t> stuck_reports{0};
  std::atomic<uint64_t> fanout_wakes{0};  // F4's wakes
  std::atomic<uint64_t> block_on_wakes{0};  // B1's wakes

  // N1-N3: after a push, wake one parked worker as a searcher unless a
  // worker searches already or none is parked; false when none was woken.
  bool NotifyOne() noexcept;
  // N2-N3 on an idle_state the caller read: wakes one parked worker as a
  // searcher unless a worker searches or none is parked.
  bool WakeIfNoneSearches(uint64_t state) noexcept {
    if ((state & kSearcherMask) != 0 || state < kParked) return false;
    return WakeOne(WakeIf::kNoneSearches);
  }
  // N3: wakes one parked worker as a searcher; false when none is parked,
  // or when the condition fails (checked in the CAS that counts it): no
  // worker searches (N3), fewer than half search (F4), or always (the
  // monitor's stuck report wakes one even while others search).
  // kNotAsSearcher (B1): always, as an awake worker that does not search.
  enum class WakeIf { kNoneSearches, kWithinBound, kAlways, kNotAsSearcher };
  bool WakeOne(WakeIf when = WakeIf::kAlways) noexcept;
  // F4: `w` took a batch in its steal scan; wakes up to wake_fanout - 1
  // parked workers while its deque holds tasks to take.
  void FanOut(Worker& w) noexcept;
  // RuntimeBuilder::WakeFanout (immutable after Build).
  uint32_t wake_fanout = 2;
  // B1: after BlockOn's spawn, takes up to wake_fanout - 1 more parked
  // workers off the idle list, not as searchers, and wakes them.
  void WakeForBlockOn() noexcept;
  // F1: true if `w` searches (already, or it may start now).
  bool StartSearching(Worker& w) noexcept;
  // F3: `w` found work; no-op if it was not searching.
  void EndSearching(Worker& w) noexcept;
  // I0 for a worker that does not search: may one more worker search now
  // (F1's bound; a hint)?
  bool MaySearch() const noexcept;
  // I2, and F3's check: is there a task in any queue `self` may take (its
  // own, an injector, or another worker's past the locality margin)?
  bool AnyWork(const Worker& self) const noexcept;
  // I2 for a worker that was not the last searcher: the shared injectors
  // and its own preferred injector.
  bool AnyInjected(const Worker& self) const noexcept {
    return !injector.empty() || !overflow.empty() || !self.preferred.empty();
  }
  // O1: the deque of `self` spills items[0, k) (k >= 1, oldest first): one
  // batch of its pool on `overflow`, or, the pool spent, linked on the
  // shared injector.
  void Spill(Worker& self, TaskHeader* const* items, size_t k) noexcept {
    OverflowBatch* b = k > 1 && k <= kOverflowBatchCapacity
                           ? self.overflow.Get()
                           : nullptr;
    if (b == nullptr) {
      injector.PushBatch(items, k);
      return;
    }
    std::copy(items, items + k, b->items.begin());
    PushOverflow(b, k);
  }
  // O1 past StealOptions::stealable_queue_capacity: up to `max` of the
  // oldest tasks of self's deque (TakeOldest), then `t`, taken straight
  // into one batch; returns how many were spilled.
  size_t SpillOldest(Worker& self, size_t max, TaskHeader* t) noexcept {
    max = std::min(max, kOverflowBatchCapacity - 1);
    OverflowBatch* b = self.overflow.Get();
    if (b == nullptr) {  // the pool is spent: as Spill does then
      std::array<TaskHeader*, kOverflowBatchCapacity> moved;
      const size_t k = self.deque.TakeOldest(moved.data(), max);
      moved[k] = t;
      Spill(self, moved.data(), k + 1);
      return k + 1;
    }
    const size_t k = self.deque.TakeOldest(b->items.data(), max);
    b->items[k] = t;
    PushOverflow(b, k + 1);
    return k + 1;
  }
  // Publishes batch `b` of self's pool holding items[0, k).
  void PushOverflow(OverflowBatch* b, size_t k) noexcept {
    b->size = static_cast<uint32_t>(k);
    b->next = 0;
    overflow.Push(b);
  }
  // Cancels an unbound task (it never ran): completion bits, frame freed.
  static void CancelUnbound(TaskHeader* t) noexcept;
};

// The worker running on this thread (nullptr on other threads).
extern constinit thread_local Worker* tl_worker;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_RUNTIME_SHARED_H_
