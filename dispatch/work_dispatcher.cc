// dispatch/work_dispatcher.cc
//
// Protocol.
//   Submission: one `steal::Injector` per priority.  A submitter first adds
//   to `submitted_` (seq_cst), then pushes (wait-free), then reads
//   `sleeping_` (seq_cst) and, if a worker sleeps, wakes one.  A batch pushes
//   its high items first, then normal, then low.
//   Taking: a worker takes `mu_`, drains the injectors into the FIFO
//   `lists_` (low first, then normal, then high: a drainer that sees a low
//   item pushed by one thread also sees every high item that thread pushed
//   before it; when a list already holds items, only the injectors more
//   urgent than the most urgent such list are drained, since its head is
//   older than anything left at its own level and below, and aging is
//   off), picks the head of the most urgent non-empty list, counts it
//   in `dispatched_`, releases `mu_` and runs it.  One item per take: a
//   worker never holds a batch that another idle worker could start first.
//   Sleeping (Dekker on `submitted_` / `sleeping_`): under `mu_` the worker
//   sees nothing to take, clears its `wake_word_`, joins `sleepers_`, adds
//   to `sleeping_` (seq_cst), then re-reads `submitted_` (seq_cst).  If an
//   item was submitted but not yet drainable it leaves the list and retries;
//   otherwise it releases `mu_` and futex-waits on `wake_word_`.  A submitter
//   whose read of `sleeping_` missed the worker's add made its own add to
//   `submitted_` earlier in the seq_cst order than the worker's re-read, so
//   the worker sees it.  A waker pops a sleeper under `mu_` and wakes it
//   while still holding `mu_`, so the worker cannot be destroyed
//   (`Detach` takes `mu_`) between the pop and the wake.
//   Field ownership: `lists_`, `sleepers_`, `workers_`, each Worker's
//   `sleeping_` / `quit_requested_` / `detached_` / `quit_batch_`: `mu_`.
//   `quit_` and `busy_` are written under `mu_` or by the worker, and read
//   lock-free as hints.
//   Waiters (Dekker on the counters / `waiters_` and `wait_max_*`): Wait,
//   under `wait_mu_`, lists a record of its thresholds and stores
//   `wait_max_*`, the maxima over the unsignalled records (seq_cst), then
//   adds to `waiters_` (seq_cst) and checks the counters.  Whoever changes a
//   counter reads `waiters_` after the change and, if non-zero, the maxima
//   and the counters; only if both counters are within the maxima does it
//   lock `wait_mu_`, mark each unsignalled record whose condition holds as
//   signalled (out of the maxima), store the maxima and notify.  A waiter
//   that holds is within the maxima, so it is never missed; one whose store
//   the notifier did not see checks the counters itself after the change.
//   A signalled waiter whose condition no longer holds when it wakes (new
//   submissions) re-arms: unsignalled, maxima stored, counters checked
//   again before it sleeps.  (Signalling per item made a thread in Wait wake
//   for every item a worker took.)
//   Quit: under `mu_`, pick sleepers, then workers not running an item, then
//   busy ones; set their `quit_`, take sleepers off the list and wake them;
//   wait on `retired_cv_` until each picked worker has retired (seen `quit_`
//   in RunOne) or been destroyed.
//   Shutdown: 1. the owner retires or destroys every worker; 2. the
//   destructor (no submitter may still run) drains the injectors and calls
//   each queued item with ran = false.
#include "dispatch/work_dispatcher.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_format.h"
#include "timing/clock.h"

namespace spindle::dispatch {
namespace {

inline void CpuRelax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

constexpr size_t kDrainBatch = 64;

// A steady-clock deadline; a timeout past a year counts as a year, which
// keeps the conversion from overflowing.
std::chrono::steady_clock::time_point DeadlineAfter(absl::Duration timeout) {
  timeout = std::clamp(timeout, absl::ZeroDuration(), absl::Hours(24 * 365));
  return std::chrono::steady_clock::now() +
         absl::ToChronoNanoseconds(timeout);
}

struct FunctionItem final : WorkItem {
  explicit FunctionItem(std::function<void()> f)
      : WorkItem(&FunctionItem::Run), fn(std::move(f)) {}
  static void Run(WorkItem* w, bool ran) noexcept {
    auto* self = static_cast<FunctionItem*>(w);
    if (ran) self->fn();
    delete self;
  }
  std::function<void()> fn;
};

}  // namespace


// ---- Worker -------------------------------------------------------------------

Worker::Worker(WorkDispatcher* d, WorkerOptions options) noexcept
    : dispatcher_(d), options_(std::move(options)) {}

Worker::~Worker() { dispatcher_->Detach(this); }

void Worker::Run() noexcept {
  const int spin = dispatcher_->options_.spin_rounds;
  for (;;) {
    const TakeResult r = dispatcher_->RunOne(this);
    if (r == TakeResult::kRan) continue;
    if (r == TakeResult::kRetired) return;
    bool work = false;
    for (int i = 0; i < spin; ++i) {
      // Relaxed: hints only; RunOne takes mu_ before acting on them.
      if (quit_.load(std::memory_order_relaxed) ||
          dispatcher_->submitted_.load(std::memory_order_relaxed) !=
              dispatcher_->dispatched_.load(std::memory_order_relaxed)) {
        work = true;
        break;
      }
      CpuRelax();
    }
    if (work || !dispatcher_->Arm(this)) continue;
    // Acquire: pairs with the release store in Wake.
    while (wake_word_.load(std::memory_order_acquire) == 0) {
      wake_word_.wait(0, std::memory_order_acquire);
    }
  }
}

TakeResult Worker::TryRunOne() noexcept { return dispatcher_->RunOne(this); }

bool Worker::ArmWake() noexcept { return dispatcher_->Arm(this); }

void Worker::Wake() noexcept {
  if (options_.on_wake) {
    options_.on_wake();
    return;
  }
  // Release: pairs with the acquire loads in Run.
  wake_word_.store(1, std::memory_order_release);
  wake_word_.notify_one();
}

// ---- WorkDispatcher -------------------------------------------------------------

absl::StatusOr<std::unique_ptr<WorkDispatcher>> WorkDispatcher::Create(
    const DispatcherOptions& options) {
  if (options.spin_rounds < 0 || options.spin_rounds > 1'000'000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DispatcherOptions::spin_rounds is %d; valid range [0, 1000000]",
        options.spin_rounds));
  }
  if (options.aging < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DispatcherOptions::aging is %s; valid range: >= 0 (0 disables aging)",
        absl::FormatDuration(options.aging)));
  }
  return std::unique_ptr<WorkDispatcher>(new WorkDispatcher(options));
}

WorkDispatcher::WorkDispatcher(const DispatcherOptions& options) noexcept
    : options_(options),
      aging_ns_(static_cast<uint64_t>(absl::ToInt64Nanoseconds(options.aging))) {}

WorkDispatcher::~WorkDispatcher() {
  std::unique_lock<std::mutex> l(mu_);
  ABSL_RAW_CHECK(workers_.empty(),
                 "WorkDispatcher destroyed with workers still attached");
  DrainLocked();
  for (List& list : lists_) {
    while (WorkItem* item = list.head) {
      list.head = item->local_next_;
      item->run_(item, false);
    }
    list.tail = nullptr;
  }
}

uint64_t WorkDispatcher::NowNs() const noexcept {
  return options_.now_ns != nullptr ? options_.now_ns()
                                    : timing::MonotonicClock::Now();
}

void WorkDispatcher::Submit(WorkItem* item) noexcept { Push(&item, 1, item->priority); }

void WorkDispatcher::Submit(std::span<WorkItem* const> items) noexcept {
  // High first (see the protocol), in chunks that keep each chunk's order.
  for (int p = 0; p < sched::kNumPriorities; ++p) {
    WorkItem* chunk[kDrainBatch];
    size_t n = 0;
    for (WorkItem* item : items) {
      if (static_cast<int>(item->priority) != p) continue;
      chunk[n++] = item;
      if (n == kDrainBatch) {
        Push(chunk, n, static_cast<Priority>(p));
        n = 0;
      }
    }
    if (n > 0) Push(chunk, n, static_cast<Priority>(p));
  }
}

void WorkDispatcher::Submit(Priority priority, std::function<void()> fn) {
  auto* item = new FunctionItem(std::move(fn));
  item->priority = priority;
  Submit(item);
}

void WorkDispatcher::Push(WorkItem* const* items, size_t n,
                          Priority p) noexcept {
  if (aging_ns_ != 0) {
    const uint64_t now = NowNs();
    for (size_t i = 0; i < n; ++i) items[i]->enqueue_ns_ = now;
  }
  // seq_cst: the submitter side of the sleep protocol (before the push, so
  // that dispatched_ never passes submitted_).
  submitted_.fetch_add(n, std::memory_order_seq_cst);
  queues_[static_cast<int>(p)].PushBatch(items, n);
  NotifyWaiters();
  // seq_cst: pairs with the fetch_add in Arm.
  int sleeping = sleeping_.load(std::memory_order_seq_cst);
  for (size_t i = 0; i < n && sleeping > 0; ++i, --sleeping) WakeOne();
}

void WorkDispatcher::WakeOne() noexcept {
  std::unique_lock<std::mutex> l(mu_);
  if (sleepers_.empty()) return;
  Worker* w = sleepers_.back();
  sleepers_.pop_back();
  w->sleeping_ = false;
  sleeping_.fetch_sub(1, std::memory_order_seq_cst);
  w->Wake();  // under mu_: see the protocol
}

bool WorkDispatcher::DrainLocked() noexcept {
  return DrainLevelsLocked(sched::kNumPriorities - 1);
}

bool WorkDispatcher::DrainForTakeLocked() noexcept {
  if (aging_ns_ != 0) return DrainLocked();  // an old low item may be best
  // The most urgent non-empty list.  Its items are older than those still
  // in its level's injector (FIFO), and the pass that drained them also
  // drained every more urgent item pushed before them (less urgent levels
  // first): only the more urgent injectors can hold a better pick.
  int best = 0;
  while (best < sched::kNumPriorities && lists_[best].head == nullptr) ++best;
  if (best == sched::kNumPriorities) return DrainLocked();
  DrainLevelsLocked(best - 1);
  return true;
}

bool WorkDispatcher::DrainLevelsLocked(int from) noexcept {
  for (int p = from; p >= 0; --p) {
    WorkItem* batch[kDrainBatch];
    size_t n;
    while ((n = queues_[p].PopBatch(batch, kDrainBatch)) > 0) {
      List& list = lists_[p];
      for (size_t i = 0; i < n; ++i) {
        batch[i]->local_next_ = nullptr;
        if (list.tail != nullptr) {
          list.tail->local_next_ = batch[i];
        } else {
          list.head = batch[i];
        }
        list.tail = batch[i];
      }
    }
  }
  for (const List& list : lists_) {
    if (list.head != nullptr) return true;
  }
  return false;
}

WorkItem* WorkDispatcher::PickLocked() noexcept {
  int best = -1;
  if (aging_ns_ == 0) {
    for (int p = 0; p < sched::kNumPriorities; ++p) {
      if (lists_[p].head != nullptr) {
        best = p;
        break;
      }
    }
  } else {
    const uint64_t now = NowNs();
    uint64_t best_eff = 0, best_enq = 0;
    for (int p = 0; p < sched::kNumPriorities; ++p) {
      const WorkItem* h = lists_[p].head;
      if (h == nullptr) continue;
      const uint64_t waited = now > h->enqueue_ns_ ? now - h->enqueue_ns_ : 0;
      const uint64_t levels = waited / aging_ns_;
      const uint64_t eff =
          levels >= static_cast<uint64_t>(p) ? 0 : static_cast<uint64_t>(p) - levels;
      if (best < 0 || eff < best_eff ||
          (eff == best_eff && h->enqueue_ns_ < best_enq)) {
        best = p;
        best_eff = eff;
        best_enq = h->enqueue_ns_;
      }
    }
  }
  if (best < 0) return nullptr;
  List& list = lists_[best];
  WorkItem* item = list.head;
  list.head = item->local_next_;
  if (list.head == nullptr) list.tail = nullptr;
  return item;
}

TakeResult WorkDispatcher::RunOne(Worker* w) noexcept {
  WorkItem* item = nullptr;
  {
    std::unique_lock<std::mutex> l(mu_);
    UnsleepLocked(w);  // armed, then driven again before any wake
    // Relaxed: quit_ is written under mu_, which we hold.
    if (w->quit_.load(std::memory_order_relaxed)) {
      DetachLocked(w);
      return TakeResult::kRetired;
    }
    if (!DrainForTakeLocked()) return TakeResult::kEmpty;
    item = PickLocked();
    item->dispatch_seq_ = next_dispatch_seq_++;
    // Relaxed: a hint for Quit, which reads it under mu_.
    w->busy_.store(true, std::memory_order_relaxed);
    // seq_cst: read by Wait (acquire side) and the spin hint.
    dispatched_.fetch_add(1, std::memory_order_seq_cst);
  }
  NotifyWaiters();
  item->run_(item, true);
  w->busy_.store(false, std::memory_order_relaxed);  // as above
  // seq_cst: release for Wait's acquire load (see Memory ordering).
  completed_.fetch_add(1, std::memory_order_seq_cst);
  NotifyWaiters();
  return TakeResult::kRan;
}

bool WorkDispatcher::Arm(Worker* w) noexcept {
  std::unique_lock<std::mutex> l(mu_);
  // Relaxed: quit_ is written under mu_.
  if (w->quit_.load(std::memory_order_relaxed) || w->detached_) return false;
  if (w->sleeping_) return true;
  if (DrainLocked()) return false;
  w->wake_word_.store(0, std::memory_order_relaxed);  // read after mu_ below
  sleepers_.push_back(w);
  w->sleeping_ = true;
  // seq_cst: pairs with the load in Push (see the protocol).
  sleeping_.fetch_add(1, std::memory_order_seq_cst);
  if (submitted_.load(std::memory_order_seq_cst) !=
      dispatched_.load(std::memory_order_relaxed)) {  // dispatched_: mu_ held
    UnsleepLocked(w);
    return false;
  }
  return true;
}

std::unique_ptr<Worker> WorkDispatcher::Attach(WorkerOptions options) {
  std::unique_ptr<Worker> w(new Worker(this, std::move(options)));
  std::unique_lock<std::mutex> l(mu_);
  workers_.push_back(w.get());
  return w;
}

void WorkDispatcher::Detach(Worker* w) noexcept {
  std::unique_lock<std::mutex> l(mu_);
  UnsleepLocked(w);
  DetachLocked(w);
}

void WorkDispatcher::UnsleepLocked(Worker* w) noexcept {
  if (!w->sleeping_) return;
  sleepers_.erase(std::find(sleepers_.begin(), sleepers_.end(), w));
  w->sleeping_ = false;
  sleeping_.fetch_sub(1, std::memory_order_seq_cst);  // see Arm
}

void WorkDispatcher::DetachLocked(Worker* w) noexcept {
  if (w->detached_) return;
  w->detached_ = true;
  workers_.erase(std::find(workers_.begin(), workers_.end(), w));
  if (w->quit_batch_ != nullptr) {
    --w->quit_batch_->remaining;
    w->quit_batch_ = nullptr;
    retired_cv_.notify_all();
  }
}

absl::Status WorkDispatcher::Quit(int n, absl::Duration timeout) {
  const auto deadline = DeadlineAfter(timeout);
  QuitBatch batch;
  std::unique_lock<std::mutex> l(mu_);
  std::vector<Worker*> candidates;
  for (Worker* w : workers_) {
    if (!w->quit_requested_) candidates.push_back(w);
  }
  const int active = static_cast<int>(candidates.size());
  if (n < 0 || n > active) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "WorkDispatcher::Quit: n is %d; valid range [0, %d] (workers not "
        "already retiring)",
        n, active));
  }
  // Idle first: sleeping (0), between items (1), running an item (2).
  auto rank = [](const Worker* w) {
    if (w->sleeping_) return 0;
    // Relaxed: a hint; a worker that just started an item is still retired
    // after it.
    return w->busy_.load(std::memory_order_relaxed) ? 2 : 1;
  };
  std::stable_sort(candidates.begin(), candidates.end(),
                   [&](const Worker* a, const Worker* b) {
                     return rank(a) < rank(b);
                   });
  for (int i = 0; i < n; ++i) {
    Worker* w = candidates[static_cast<size_t>(i)];
    w->quit_requested_ = true;
    w->quit_batch_ = &batch;
    ++batch.remaining;
    // Relaxed: read under mu_ by RunOne; lock-free reads are hints.
    w->quit_.store(true, std::memory_order_relaxed);
    if (w->sleeping_) {
      UnsleepLocked(w);
      w->Wake();
    }
  }
  while (batch.remaining > 0) {
    if (retired_cv_.wait_until(l, deadline) ==
            std::cv_status::timeout &&
        batch.remaining > 0) {
      for (Worker* w : workers_) {
        if (w->quit_batch_ == &batch) w->quit_batch_ = nullptr;
      }
      return absl::DeadlineExceededError(absl::StrFormat(
          "WorkDispatcher::Quit: %d of %d workers still running after %s",
          batch.remaining, n, absl::FormatDuration(timeout)));
    }
  }
  return absl::OkStatus();
}

void WorkDispatcher::NotifyWaiters() noexcept {
  // seq_cst: pairs with the fetch_add in Wait (see the protocol).
  if (waiters_.load(std::memory_order_seq_cst) == 0) return;
  // seq_cst: after the waiters_ load; the maxima were stored before it.
  if (undispatched() > wait_max_undispatched_.load(std::memory_order_seq_cst) ||
      unexecuted() > wait_max_unexecuted_.load(std::memory_order_seq_cst)) {
    return;  // no unsignalled waiter can hold yet
  }
  std::unique_lock<std::mutex> l(wait_mu_);
  bool any = false;
  for (WaitRecord* r : wait_records_) {
    if (!r->signalled && Holds(*r)) {
      r->signalled = true;  // out of the maxima until it re-arms
      any = true;
    }
  }
  if (!any) return;
  StoreWaitMaximaLocked();
  waiter_wakeups_.fetch_add(1, std::memory_order_relaxed);  // a statistic
  wait_cv_.notify_all();
}

bool WorkDispatcher::Holds(const WaitRecord& r) const noexcept {
  return undispatched() <= r.max_undispatched &&
         unexecuted() <= r.max_unexecuted;
}

int WorkDispatcher::waiting_threads() const noexcept {
  return waiters_.load(std::memory_order_relaxed);  // a statistic
}

uint64_t WorkDispatcher::waiter_wakeups() const noexcept {
  return waiter_wakeups_.load(std::memory_order_relaxed);  // a statistic
}

void WorkDispatcher::StoreWaitMaximaLocked() noexcept {
  uint64_t a = 0, b = 0;
  for (const WaitRecord* r : wait_records_) {
    if (r->signalled) continue;
    a = std::max<uint64_t>(a, r->max_undispatched);
    b = std::max<uint64_t>(b, r->max_unexecuted);
  }
  // seq_cst: read by NotifyWaiters after its waiters_ load.  With no
  // unsignalled waiter the maxima stay at 0: a notifier may then still lock
  // and find nothing to signal, which is harmless.
  wait_max_undispatched_.store(a, std::memory_order_seq_cst);
  wait_max_unexecuted_.store(b, std::memory_order_seq_cst);
}

size_t WorkDispatcher::undispatched() const noexcept {
  // dispatched_ first: submitted_ read later is never smaller.
  const uint64_t d = dispatched_.load(std::memory_order_seq_cst);
  return static_cast<size_t>(submitted_.load(std::memory_order_seq_cst) - d);
}

size_t WorkDispatcher::unexecuted() const noexcept {
  const uint64_t c = completed_.load(std::memory_order_seq_cst);  // as above
  return static_cast<size_t>(submitted_.load(std::memory_order_seq_cst) - c);
}

int WorkDispatcher::active_workers() const {
  std::unique_lock<std::mutex> l(mu_);
  int n = 0;
  for (const Worker* w : workers_) n += w->quit_requested_ ? 0 : 1;
  return n;
}

bool WorkDispatcher::Wait(size_t max_undispatched, size_t max_unexecuted,
                          absl::Duration timeout) {
  const auto deadline = DeadlineAfter(timeout);
  std::unique_lock<std::mutex> l(wait_mu_);
  WaitRecord me{max_undispatched, max_unexecuted, false};
  wait_records_.push_back(&me);
  StoreWaitMaximaLocked();  // before the add (see the protocol)
  waiters_.fetch_add(1, std::memory_order_seq_cst);  // see NotifyWaiters
  bool ok;
  for (;;) {
    if ((ok = Holds(me))) break;
    if (me.signalled) {
      // Signalled, but the counters rose again: count in the maxima once
      // more, then check again before sleeping (see the protocol).
      me.signalled = false;
      StoreWaitMaximaLocked();
      continue;
    }
    if (wait_cv_.wait_until(l, deadline) == std::cv_status::timeout) {
      ok = Holds(me);
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);  // a spare signal is harmless
  wait_records_.erase(
      std::find(wait_records_.begin(), wait_records_.end(), &me));
  StoreWaitMaximaLocked();
  return ok;
}

}  // namespace spindle::dispatch
