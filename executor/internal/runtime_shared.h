// executor/internal/runtime_shared.h: the state a Runtime's workers share.
//
// Protocol (the numbers are referred to in runtime.cc and worker_loop.cc).
//
// Tasks.  A stealable task is spawned unbound (no owner, no inbox, state
// without kStateBound) and waits in one of: the spawning worker's deque
// (owner pushes and pops, anyone steals), a worker's `preferred` injector,
// or the shared `injector`.  The worker that takes it binds it
// (LocalExecutor::BindAndAdopt: writes owner and inbox, then a release RMW
// sets kStateBound; an Abort that came first is seen in that RMW's old value
// and the task is cancelled instead of run).  From then on it is one of
// that executor's tasks like any other.  Pinned tasks are bound at spawn
// and travel through the executor's inbox.
//
// Who owns what.
//   Worker::deque      push/pop: the worker's thread; steal: any worker;
//                      after the threads are joined: the destructor.
//                      Every push is published at once (WorkDeque's
//                      private part stays empty): a poll that blocks never
//                      strands a queued task.
//   Worker::executor   the worker's thread while it runs (it builds nothing:
//                      the executor is built by Build and destroyed by the
//                      worker thread at the end of step S3).
//   injectors          any thread.
//   idle list          under idle_mu.
//
// Sleeping without losing a wake-up (Dekker on `idle_count`).
//   A worker with nothing to run:
//     I1. under idle_mu: joins the idle list, idle_count += 1 (seq_cst RMW);
//     I2. looks at every injector and deque once more; if anything is there
//         it leaves the idle list (if still on it) and goes back to work;
//     I3. parks in its executor (the inbox's parked protocol: a Nudge
//         before or during the park ends it);
//     I4. after waking, leaves the idle list if still on it.
//   A producer (any spawn of a stealable task):
//     P1. pushes the task (deque, or an injector);
//     P2. reads idle_count with a seq_cst RMW (fetch_add 0);
//     P3. if it is not zero: under idle_mu takes one worker off the idle
//         list (idle_count -= 1) and Nudges it.
//   The RMWs of I1 and P2 are ordered: if P2 comes first, I1 synchronises
//   with it and I2 sees the task; if I1 comes first, P2 sees the worker and
//   P3 wakes someone (every sleeper re-checks every queue, so whoever it
//   wakes finds the task or it was already taken).
//
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

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "executor/internal/inbox.h"
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
  steal::WorkDeque<TaskHeader> deque;
  steal::Injector<TaskHeader> preferred;  // StealablePreferred(index)
  std::optional<steal::StealPolicy> policy;
  std::thread thread;
  int cpu = -1;  // ThreadAffinity, -1: none
  bool idle_listed = false;  // guarded by RuntimeShared::idle_mu

  // Written by the worker thread, read by Stats() from any thread.
  std::atomic<uint64_t> started{0};
  std::atomic<uint64_t> parks{0};
  std::atomic<uint64_t> wakes_skipped{0};  // spawns that woke nobody

  // Worker thread: one relaxed add (no RMW).
  static void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

struct RuntimeShared {
  Runtime* runtime = nullptr;  // null once it is destroyed
  std::vector<std::unique_ptr<Worker>> workers;
  steal::Injector<TaskHeader> injector;  // from outside any worker

  // Sleeping workers (I1-I4, P2-P3).
  std::atomic<uint64_t> idle_count{0};
  std::mutex idle_mu;
  std::vector<Worker*> idle_list;  // guarded by idle_mu

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
  std::atomic<uint64_t> overflowed{0};
  std::atomic<uint64_t> stuck_reports{0};

  // P2-P3: after a push, wake one sleeping worker if there is one; false
  // when every worker was awake.
  bool NotifyOne() noexcept;
  // I2: is there a task in any queue a worker may take?
  bool AnyWork(const Worker& self) const noexcept;
  // Cancels an unbound task (it never ran): completion bits, frame freed.
  static void CancelUnbound(TaskHeader* t) noexcept;
};

// The worker running on this thread (nullptr on other threads).
extern constinit thread_local Worker* tl_worker;

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_RUNTIME_SHARED_H_
