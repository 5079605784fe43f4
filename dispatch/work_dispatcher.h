// dispatch/work_dispatcher.h: the priority work dispatcher.
//
// Reach for `WorkDispatcher`: any thread submits `WorkItem`s with a CPU
// priority (high, normal, low; FIFO within one); worker threads, or
// executors driving a `Worker` from their own loop, attach and take the
// highest-priority item when they are idle.  `Wait` blocks until the backlog
// is small enough; `Quit` retires workers, idle ones first.

#ifndef SPINDLE_DISPATCH_WORK_DISPATCHER_H_
#define SPINDLE_DISPATCH_WORK_DISPATCHER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sched/task_node.h"
#include "steal/injector.h"

namespace spindle::dispatch {

using Priority = sched::Priority;

class WorkDispatcher;
class Worker;

// Quit's record of the workers it waits for (internal).
struct QuitBatch {
  int remaining = 0;
};

// WorkItem: one unit of work, linked intrusively (submitting allocates
// nothing).
//
// Requires: the item stays alive and unmoved from Submit until its `run`
// function is called; it is submitted to one dispatcher at a time.
// Guarantees: `run(item, true)` is called exactly once on the worker that
// takes it; `run(item, false)` instead when the dispatcher is destroyed
// with the item still queued.  After `run` is called the dispatcher never
// touches the item again, so `run` may free it.
// Thread safety: the dispatcher owns the item between Submit and `run`.
//
// Example:
//   struct Job : dispatch::WorkItem {
//     Job() : WorkItem(&Job::Run) {}
//     static void Run(WorkItem* w, bool ran) noexcept { ... }
//   };
class WorkItem : public steal::InjectorNode {
 public:
  using RunFn = void (*)(WorkItem* item, bool ran) noexcept;
  explicit WorkItem(RunFn run) noexcept : run_(run) {}
  WorkItem(const WorkItem&) = delete;
  WorkItem& operator=(const WorkItem&) = delete;

  // Read by Submit(item): the item's CPU priority.
  Priority priority = Priority::kNormal;

  // The position in which the dispatcher handed this item out (0, 1, ...),
  // set just before `run` is called.  For diagnostics and tests.
  uint64_t dispatch_seq() const noexcept { return dispatch_seq_; }

 private:
  friend class WorkDispatcher;
  RunFn run_;
  WorkItem* local_next_ = nullptr;  // in the dispatcher's taken lists
  uint64_t enqueue_ns_ = 0;         // set when aging is on
  uint64_t dispatch_seq_ = 0;
};

struct DispatcherOptions {
  // An idle worker polls for this many rounds (one CPU pause each) before it
  // sleeps.  Valid range [0, 1000000].
  int spin_rounds = 256;
  // Aging: an item that has waited this long counts as one priority level
  // higher, twice as long two levels.  Zero: off.  Valid range: >= 0.
  absl::Duration aging = absl::ZeroDuration();
  // The clock aging reads (nanoseconds); null: CLOCK_MONOTONIC.  Tests
  // inject their own.
  uint64_t (*now_ns)() noexcept = nullptr;
};

struct WorkerOptions {
  // Called (on the submitting thread) instead of a futex wake when work
  // arrives for a worker parked with `ArmWake`; an executor passes its
  // reactor's Wake.  Must not block and must not call into the dispatcher.
  // Null: the worker sleeps in `Run` only.
  std::function<void()> on_wake;
};

// What Worker::TryRunOne did.
enum class TakeResult : uint8_t {
  kRan,      // took and ran one item
  kEmpty,    // nothing to take right now
  kRetired,  // Quit retired this worker: stop driving it
};

// Worker: one attachment of a thread or executor to a dispatcher.
//
// Requires: one thread at a time drives a worker (Run, TryRunOne, ArmWake);
// the worker is destroyed before its dispatcher and not while driven.
// Guarantees: a retired worker takes nothing more; destroying a worker
// detaches it (counting as retired for a Quit that chose it).
// Thread safety: see Requires; the dispatcher may wake it from any thread.
class Worker {
 public:
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Takes and runs items until Quit retires this worker, sleeping (after
  // the dispatcher's spin) while there is nothing to do.
  void Run() noexcept;

  // Takes and runs at most one item; never blocks.
  TakeResult TryRunOne() noexcept;

  // For a worker driven by an executor: announces that it is about to park,
  // so that the next submission calls WorkerOptions::on_wake (once).
  // Returns false, without arming, when work is already waiting or the
  // worker was retired; the caller then calls TryRunOne again.
  bool ArmWake() noexcept;

 private:
  friend class WorkDispatcher;
  Worker(WorkDispatcher* d, WorkerOptions options) noexcept;
  void Wake() noexcept;

  WorkDispatcher* const dispatcher_;
  WorkerOptions options_;
  // Guarded by dispatcher_->mu_.
  bool sleeping_ = false;  // on the dispatcher's sleeper list
  bool quit_requested_ = false;
  bool detached_ = false;
  QuitBatch* quit_batch_ = nullptr;  // the Quit waiting for this worker
  // Read lock-free by the worker between items.
  std::atomic<bool> quit_{false};
  std::atomic<bool> busy_{false};  // running an item
  std::atomic<uint32_t> wake_word_{0};
};

// WorkDispatcher: a priority queue of work items served to attached workers.
//
// Requires: every Worker is destroyed before the dispatcher.
// Guarantees: an item is run exactly once, by one worker; among items
// queued together the highest priority is handed out first, and items of
// one priority that one thread submitted are handed out in submission
// order (with aging on, an old item counts as more urgent).  Nothing polls
// on a timer: submitters wake a sleeping worker only when one sleeps.  On
// destruction items still queued are called with ran = false.
// Thread safety: every member is safe from any thread.
// Memory ordering: everything a thread did before Submit happens-before the
// item's `run`; everything `run` did happens-before a Wait that counts the
// item as executed returns true.
//
// Example:
//   auto d = dispatch::WorkDispatcher::Create({}).value();
//   auto w = d->Attach();
//   std::thread t([&] { w->Run(); });
//   d->Submit(&job);
//   d->Wait(0, 0, absl::Seconds(10));
//   (void)d->Quit(1, absl::Seconds(10));
//   t.join();
class WorkDispatcher {
 public:
  static absl::StatusOr<std::unique_ptr<WorkDispatcher>> Create(
      const DispatcherOptions& options);
  ~WorkDispatcher();
  WorkDispatcher(const WorkDispatcher&) = delete;
  WorkDispatcher& operator=(const WorkDispatcher&) = delete;

  // Queues one item at `item->priority`.  Wait-free apart from waking a
  // sleeping worker.
  void Submit(WorkItem* item) noexcept;
  // Queues a batch; each item at its own priority.  One wake at most per
  // item, one atomic exchange per priority present.
  void Submit(std::span<WorkItem* const> items) noexcept;
  // Convenience: wraps `fn` in an allocated item (freed after it runs or is
  // dropped).  Not for the hot path.
  void Submit(Priority priority, std::function<void()> fn);

  // Attaches a worker.  It takes work once driven (Run or TryRunOne).
  std::unique_ptr<Worker> Attach(WorkerOptions options = {});

  // Blocks until at most `max_undispatched` items wait to be taken and at
  // most `max_unexecuted` are queued or running, or until `timeout`.
  // Returns whether the condition holds.
  bool Wait(size_t max_undispatched, size_t max_unexecuted,
            absl::Duration timeout);

  // Retires `n` attached workers, idle ones first (sleeping, then between
  // items), then busy ones after their current item, and waits up to
  // `timeout` for them to stop.  InvalidArgument when `n` is outside
  // [0, active workers]; DeadlineExceeded naming how many are still
  // running when they did not stop in time (they still retire later).
  absl::Status Quit(int n, absl::Duration timeout);

  // Counters (exact when nothing runs concurrently).
  size_t undispatched() const noexcept;
  size_t unexecuted() const noexcept;
  int active_workers() const;
  // Threads blocked in Wait now.
  int waiting_threads() const noexcept;
  // How many times threads in Wait were signalled: only when the counters
  // may satisfy one of them, not per item.
  uint64_t waiter_wakeups() const noexcept;

 private:
  friend class Worker;
  explicit WorkDispatcher(const DispatcherOptions& options) noexcept;

  using Queue = steal::Injector<WorkItem>;
  struct List {
    WorkItem* head = nullptr;
    WorkItem* tail = nullptr;
  };

  void Push(WorkItem* const* items, size_t n, Priority p) noexcept;
  void WakeOne() noexcept;
  // Moves submitted items into the taken lists; true if any item remains
  // unreachable (a submitter is mid-push).
  bool DrainLocked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // For a take: only the injectors that can hold a better pick than the
  // lists already do (see the protocol).  True if any list holds an item.
  bool DrainForTakeLocked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drains levels `from` (less urgent) down to 0 (most urgent).
  bool DrainLevelsLocked(int from) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WorkItem* PickLocked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AnySubmitted() const noexcept;
  TakeResult RunOne(Worker* w) noexcept;
  bool Arm(Worker* w) noexcept;
  void Detach(Worker* w) noexcept;
  void UnsleepLocked(Worker* w) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DetachLocked(Worker* w) noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyWaiters() noexcept;
  // A thread in Wait (see the protocol); `signalled` is under wait_mu_.
  struct WaitRecord {
    size_t max_undispatched;
    size_t max_unexecuted;
    bool signalled;
  };
  bool Holds(const WaitRecord& r) const noexcept;
  void StoreWaitMaximaLocked() noexcept ABSL_EXCLUSIVE_LOCKS_REQUIRED(wait_mu_);
  uint64_t NowNs() const noexcept;

  const DispatcherOptions options_;
  const uint64_t aging_ns_;
  Queue queues_[sched::kNumPriorities];

  // std::mutex (pthread): ThreadSanitizer sees its ordering; the system
  // Abseil is not instrumented.
  mutable std::mutex mu_;
  List lists_[sched::kNumPriorities] ABSL_GUARDED_BY(mu_);
  std::vector<Worker*> workers_ ABSL_GUARDED_BY(mu_);
  std::vector<Worker*> sleepers_ ABSL_GUARDED_BY(mu_);
  int retiring_ ABSL_GUARDED_BY(mu_) = 0;  // chosen by Quit, not yet stopped
  std::condition_variable retired_cv_;
  uint64_t next_dispatch_seq_ ABSL_GUARDED_BY(mu_) = 0;

  alignas(64) std::atomic<uint64_t> submitted_{0};
  alignas(64) std::atomic<uint64_t> dispatched_{0};
  std::atomic<uint64_t> completed_{0};
  alignas(64) std::atomic<int> sleeping_{0};  // sleepers_.size()
  std::atomic<int> waiters_{0};
  // The loosest thresholds of the unsignalled threads in Wait (the maxima
  // over `wait_records_`): a notifier locks only when both hold.
  std::atomic<uint64_t> wait_max_undispatched_{0};
  std::atomic<uint64_t> wait_max_unexecuted_{0};
  std::atomic<uint64_t> waiter_wakeups_{0};
  std::mutex wait_mu_;
  std::condition_variable wait_cv_;
  std::vector<WaitRecord*> wait_records_ ABSL_GUARDED_BY(wait_mu_);
};

}  // namespace spindle::dispatch

#endif  // SPINDLE_DISPATCH_WORK_DISPATCHER_H_
