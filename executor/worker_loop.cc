// executor/worker_loop.cc: a Runtime worker's run loop, where it finds work
// (own deque, injectors, stealing, requests) and how it sleeps (its spin
// before a park: worker_spin.cc).  The protocol and the step names (F1-F4,
// I1-I4, N1-N3, S1-S4) are in internal/runtime_shared.h; Q0-Q3 in
// task_move.cc.

#include <sched.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/base/internal/raw_logging.h"
#include "executor/internal/cpu_relax.h"
#include "executor/internal/inbox.h"
#include "executor/internal/runtime_shared.h"
#include "executor/internal/task_protocol.h"
#include "executor/local_executor.h"
#include "timing/clock.h"

namespace spindle {

using executor_internal::RuntimeShared;
using executor_internal::TaskHeader;
using executor_internal::Worker;

namespace executor_internal {

constinit thread_local Worker* tl_worker = nullptr;

namespace {

// idle_mu guards a few instructions at a time, taken by workers going idle
// and waking each other: a contended lock tries again for a while before
// it blocks, since a futex sleep and its wake-up cost ~10 us on a VM (two
// workers passing one task back and forth met there at every hand-off).
std::unique_lock<std::mutex> LockIdle(std::mutex& mu) noexcept {
  for (int i = 0; i < 64; ++i) {
    if (mu.try_lock()) {
      return std::unique_lock<std::mutex>(mu, std::adopt_lock);
    }
    CpuRelax();
  }
  return std::unique_lock<std::mutex>(mu);
}

// Raises `peak` to `v` (stats; slow path).
void RaisePeak(std::atomic<uint64_t>& peak, uint64_t v) noexcept {
  uint64_t p = peak.load(std::memory_order_relaxed);
  while (v > p &&
         !peak.compare_exchange_weak(p, v, std::memory_order_relaxed)) {
  }
}

}  // namespace

bool RuntimeShared::NotifyOne() noexcept {
  // N1: a seq_cst fence, then a load, ordered with I1's and F3's RMWs (see
  // the protocol).  Not an RMW: every spawn runs this, and an RMW would take
  // the line from the other workers each time.
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences (GCC refuses them under it): the
  // RMW orders the same way.
  const uint64_t s = idle_state.fetch_add(0, std::memory_order_seq_cst);
#else
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint64_t s = idle_state.load(std::memory_order_relaxed);
#endif
  return WakeIfNoneSearches(s);  // N2-N3
}

bool RuntimeShared::WakeOne(WakeIf when) noexcept {
  Worker* sleeper = nullptr;
  {
    const std::unique_lock<std::mutex> lock = LockIdle(idle_mu);
    if (idle_list.empty()) return false;
    const bool searcher = when != WakeIf::kNotAsSearcher;
    if (searcher) {
      // One parked worker fewer, one searcher more.  A CAS: the parked
      // count changes only under idle_mu, the searchers also outside it
      // (F1, F3); N3 gives up if one started searching since N1, F4 once
      // half the workers search (so N3, F4 and F1 together keep the bound).
      uint64_t s = idle_state.load(std::memory_order_relaxed);
      do {
        if (when == WakeIf::kNoneSearches && (s & kSearcherMask) != 0) {
          return false;
        }
        if (when == WakeIf::kWithinBound &&
            2 * (s & kSearcherMask) >= workers.size()) {
          return false;
        }
      } while (!idle_state.compare_exchange_weak(s, s - kParked + kSearcher,
                                                 std::memory_order_seq_cst,
                                                 std::memory_order_relaxed));
      RaisePeak(max_searching, (s & kSearcherMask) + 1);
    } else {
      // B1: one parked worker fewer, the searchers unchanged.
      idle_state.fetch_sub(kParked, std::memory_order_seq_cst);
    }
    sleeper = idle_list.back();
    idle_list.pop_back();
    sleeper->idle_listed = false;
    sleeper->woken_searching = searcher;  // I4 reads it
  }
  wakes_sent.fetch_add(1, std::memory_order_relaxed);
  sleeper->inbox->Nudge();
  return true;
}

bool RuntimeShared::StartSearching(Worker& w) noexcept {
  if (w.searching) return true;
  const uint64_t n = workers.size();
  uint64_t s = idle_state.load(std::memory_order_relaxed);
  do {
    if (n > 1 && 2 * (s & kSearcherMask) >= n) {  // F1: the bound
      searches_refused.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  } while (!idle_state.compare_exchange_weak(s, s + kSearcher,
                                             std::memory_order_seq_cst,
                                             std::memory_order_relaxed));
  w.searching = true;
  RaisePeak(max_searching, (s & kSearcherMask) + 1);
  return true;
}

void RuntimeShared::EndSearching(Worker& w) noexcept {
  if (!w.searching) return;
  w.searching = false;
  // F3: the last searcher to leave hands the search on while work is left.
  const uint64_t s = idle_state.fetch_sub(kSearcher, std::memory_order_seq_cst);
  if ((s & kSearcherMask) == 1 && AnyWork(w)) NotifyOne();
  if (w.stole_batch) [[unlikely]] FanOut(w);
}

void RuntimeShared::FanOut(Worker& w) noexcept {
  w.stole_batch = false;
  for (uint32_t k = 1; k < wake_fanout; ++k) {
    // What it stole and has not started yet, as a thief would see it.
    if (!w.policy->MayStealFrom(w.deque.size())) return;
    // Relaxed: a hint; WakeOne's CAS decides.
    const uint64_t s = idle_state.load(std::memory_order_relaxed);
    if (s < kParked || 2 * (s & kSearcherMask) >= workers.size()) return;
    if (!WakeOne(WakeIf::kWithinBound)) return;
    fanout_wakes.fetch_add(1, std::memory_order_relaxed);
  }
}

void RuntimeShared::WakeForBlockOn() noexcept {
  if (workers.size() < 2) return;
  for (uint32_t k = 1; k < wake_fanout; ++k) {
    if (!WakeOne(WakeIf::kNotAsSearcher)) return;
    block_on_wakes.fetch_add(1, std::memory_order_relaxed);
  }
}

bool RuntimeShared::MaySearch() const noexcept {
  const uint64_t n = workers.size();
  // Relaxed: a hint for I0; F1's CAS decides.
  return n > 1 &&
         2 * (idle_state.load(std::memory_order_relaxed) & kSearcherMask) < n;
}

bool RuntimeShared::AnyWork(const Worker& self) const noexcept {
  if (AnyInjected(self)) return true;
  // Another worker's queues count only where a thief may take from them
  // (StealPolicy::MayStealFrom: past the locality margin, or any for a
  // stuck worker), as in a steal scan: a searcher that counted tasks it
  // may not take never parked while they waited behind a long poll.
  for (const auto& w : workers) {
    const size_t queued = w->deque.size() + w->preferred.size();
    const bool takes = w.get() == &self
                           ? queued != 0
                           : self.policy->MayStealFrom(
                                 queued, queued != 0 && w->KeepsNoLocality());
    if (takes) return true;
  }
  return false;
}

void RuntimeShared::CancelUnbound(TaskHeader* t) noexcept {
  DestroyCancelled(t);
}

namespace {

// I2, I4: leaves the idle list if the worker is still on it; if a waker
// took it off as a searcher (N3, F4), it is a searcher now (B1's wake
// leaves woken_searching false: it is awake and not searching).
void LeaveIdle(RuntimeShared& rt, Worker& w) {
  const std::unique_lock<std::mutex> lock = LockIdle(rt.idle_mu);
  if (w.idle_listed) {
    w.idle_listed = false;
    auto it = std::find(rt.idle_list.begin(), rt.idle_list.end(), &w);
    if (it != rt.idle_list.end()) rt.idle_list.erase(it);
    rt.idle_state.fetch_sub(RuntimeShared::kParked, std::memory_order_seq_cst);
  } else if (w.woken_searching) {
    w.searching = true;
  }
  w.woken_searching = false;
}

// I1: joins the idle list (one parked worker more, one searcher fewer if
// it searched); true if it was the last searcher.
bool JoinIdle(RuntimeShared& rt, Worker& w) {
  const std::unique_lock<std::mutex> lock = LockIdle(rt.idle_mu);
  ABSL_RAW_CHECK(!w.idle_listed, "a parking worker is already idle-listed");
  w.idle_listed = true;
  rt.idle_list.push_back(&w);
  const uint64_t add = w.searching
                           ? RuntimeShared::kParked - RuntimeShared::kSearcher
                           : RuntimeShared::kParked;
  const uint64_t old = rt.idle_state.fetch_add(add, std::memory_order_seq_cst);
  const bool last =
      w.searching && (old & RuntimeShared::kSearcherMask) == 1;
  w.searching = false;
  return last;
}

// Starts fetching a task built on another thread, for writing: its header
// and the start of its frame (six lines).  When it runs, each of those
// lines is a miss, one after the other; fetched together for a batch, the
// misses overlap.
[[gnu::always_inline]] inline void PrefetchTask(const TaskHeader* t) noexcept {
  const char* p = reinterpret_cast<const char*>(t);
  for (int line = 0; line < 6; ++line) __builtin_prefetch(p + 64 * line, 1);
}

// A batch of n tasks taken from the shared queues by w, which runs
// items[0]: the others go to w's deque (stealable), past its room (counted
// by the caller) back to the injector.
void KeepRest(RuntimeShared& rt, Worker& w, TaskHeader* const* items,
              size_t n) noexcept {
  for (size_t i = 1; i < n; ++i) {
    if (!w.deque.Push(items[i])) rt.injector.Push(items[i]);
  }
}

// After KeepRest: the batch is counted, and what w keeps is stealable
// before NotifyOne (P1 before N1) looks for a worker to take `others`.
void Announce(RuntimeShared& rt, Worker& w, size_t n, bool others) noexcept {
  w.policy->counters().AddInjected(n);
  w.deque.Publish();
  if (others) rt.NotifyOne();
}

// O2: the oldest task of a spilled batch, or null; as many of the batch's
// other tasks as w's deque has room for go there (stealable), the rest
// back on `overflow`.  The tasks were built on another worker: the ones w
// runs first (the newest: its deque is LIFO) are fetched together now.
TaskHeader* PopOverflow(RuntimeShared& rt, Worker& w) noexcept {
  OverflowBatch* b = rt.overflow.Pop();
  if (b == nullptr) return nullptr;
  const size_t room = w.deque.capacity() - w.deque.size();
  const size_t n = std::min<size_t>(b->size - b->next, room + 1);
  TaskHeader* const* items = b->items.data() + b->next;
  for (size_t i = n; i-- > 1 && n - i <= 16;) PrefetchTask(items[i]);
  PrefetchTask(items[0]);
  KeepRest(rt, w, items, n);
  TaskHeader* first = items[0];
  b->next += static_cast<uint32_t>(n);
  if (b->next < b->size) {
    rt.overflow.Push(b);
  } else {
    b->home->GiveBack(b);
  }
  Announce(rt, w, n, n > 1 || !rt.overflow.empty());
  return first;
}

// A task queued for worker `w` (its preferred injector) or for anyone (the
// shared injectors: spilled batches and the linked one, in turn); a batch
// from those goes to w's deque (still stealable) after the first.
TaskHeader* PopInjected(RuntimeShared& rt, Worker& w) noexcept {
  if (TaskHeader* t = w.preferred.Pop()) {
    w.policy->counters().AddInjected(1);
    return t;
  }
  w.overflow_first = !w.overflow_first;
  if (w.overflow_first) {
    if (TaskHeader* t = PopOverflow(rt, w)) return t;
  }
  if (rt.injector.empty()) {
    return w.overflow_first ? nullptr : PopOverflow(rt, w);
  }
  std::array<TaskHeader*, 16> batch;
  const size_t room = w.deque.capacity() - w.deque.size();
  const size_t want = std::min<size_t>(batch.size(), room + 1);
  const size_t n = rt.injector.PopBatch(batch.data(), want);
  if (n == 0) return w.overflow_first ? nullptr : PopOverflow(rt, w);
  for (size_t i = 0; i < n; ++i) PrefetchTask(batch[i]);
  KeepRest(rt, w, batch.data(), n);
  Announce(rt, w, n, n > 1);
  return batch[0];
}

// The newest task of the worker's own deque, counted as a local hit, or
// null.  empty() first: two plain loads before the Pop's store.
TaskHeader* PopOwn(Worker& w) noexcept {
  if (w.deque.empty()) return nullptr;
  TaskHeader* t = w.deque.Pop();
  if (t != nullptr) w.policy->counters().AddLocal(1);
  return t;
}

// Q3 (executor/task_move.cc): `w` has work of its own; its request, if
// still unanswered, is taken back.
void Withdraw(RuntimeShared& rt, Worker& w) noexcept {
  uint32_t mine = static_cast<uint32_t>(w.index + 1);
  (void)rt.workers[w.asked - 1]->request.compare_exchange_strong(
      mine, 0, std::memory_order_relaxed);
  w.asked = 0;
}

// Q1: a searcher that found nothing to steal asks a worker whose queues
// hold tasks for the next one woken there; one request at a time.
void AskForWork(RuntimeShared& rt, Worker& w) noexcept {
  const auto mine = static_cast<uint32_t>(w.index + 1);
  if (w.asked != 0) {
    if (rt.workers[w.asked - 1]->request.load(std::memory_order_relaxed) ==
        mine) {
      return;  // not answered yet
    }
    w.asked = 0;
  }
  const size_t n = rt.workers.size();
  for (size_t i = 1; i < n; ++i) {
    Worker& v = *rt.workers[(w.index + i) % n];
    if (!v.backlog.load(std::memory_order_relaxed) ||
        v.stuck.load(std::memory_order_relaxed) ||
        v.request.load(std::memory_order_relaxed) != 0) {
      continue;
    }
    uint32_t none = 0;
    if (v.request.compare_exchange_strong(none, mine,
                                          std::memory_order_relaxed)) {
      w.asked = static_cast<uint32_t>(v.index + 1);
      Worker::Bump(w.work_requests);
      return;
    }
  }
}

// The executor's queues are empty: its own deque (a task popped at the top
// of the loop may have been cancelled instead of queued), injectors (every
// worker), then a steal scan (searchers only: F1-F2), else a request for a
// task woken on a busy worker (Q1; a task found here is queued, and the
// loop's next turn withdraws the request, Q3).
TaskHeader* FindWork(RuntimeShared& rt, Worker& w) noexcept {
  if (TaskHeader* t = PopOwn(w)) return t;
  if (TaskHeader* t = PopInjected(rt, w)) return t;
  const size_t n = rt.workers.size();
  if (n < 2 || !rt.StartSearching(w)) return nullptr;
  const steal::StealPolicy::ScanResult scan = w.policy->Scan(
      w.index, n,
      [&](size_t v) {
        const Worker& victim = *rt.workers[v];
        return victim.deque.size() + victim.preferred.size();
      },
      [&](size_t v, size_t max) -> size_t {
        Worker& victim = *rt.workers[v];
        size_t got = victim.deque.StealBatch(w.deque, max);
        if (got == 0) {
          if (TaskHeader* t = victim.preferred.Pop()) {
            if (w.deque.Push(t)) {
              w.deque.Publish();  // stealable while we run what we took
              got = 1;
            } else {
              victim.preferred.Push(t);
            }
          }
        }
        return got;
      },
      [&](size_t v) { return rt.workers[v]->KeepsNoLocality(); });
  w.stole_batch = scan.stolen >= 2;  // F4, when it leaves the searchers
  // What was stolen sits in our deque; the newest first.
  if (TaskHeader* t = w.deque.Pop()) return t;
  AskForWork(rt, w);
  return nullptr;
}

// Records this thread's CPU for the other workers' spins, and says whether
// another worker that is awake (not parked) last began a spin on it.
bool SharesCpuWithAwakeWorker(RuntimeShared& rt, Worker& w) noexcept {
  const int me = sched_getcpu();
  w.last_cpu.store(me, std::memory_order_relaxed);
  if (me < 0) return false;
  for (const auto& other : rt.workers) {
    if (other.get() == &w) continue;
    // relaxed: a hint for a yield, never for correctness.
    if (other->last_cpu.load(std::memory_order_relaxed) == me &&
        !other->inbox->parked.load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

}  // namespace
}  // namespace executor_internal

void LocalExecutor::BindAndAdopt(TaskHeader* t, bool unpublished) noexcept {
  t->owner = this;
  t->inbox = inbox_.get();
  // Stealable: may move on once started (task_move.cc); a fiber stays on
  // the worker that started it.
  t->movable = !t->fiber;
  if (unpublished) {
    // No other thread can reach the task yet (its JoinHandle does not exist
    // until the spawn returns; handing that to another thread publishes
    // these stores): a plain store.  A locked RMW here waited, at every
    // spawn, for the stores that built the task (in a cold block) to leave
    // the store buffer.
    t->state.store(t->state.load(std::memory_order_relaxed) |
                       executor_internal::kStateBound,
                   std::memory_order_relaxed);
  } else {
    // release: an Abort that sees kStateBound reads owner and inbox;
    // acquire: an Abort that came first left kStateCancelRequested, which
    // Adopt reads.
    t->state.fetch_or(executor_internal::kStateBound,
                      std::memory_order_acq_rel);
  }
  Adopt(t);
}

sched::TaskNode* LocalExecutor::RefillSlice(
    sched::QueueSet::SliceCursor& slice) noexcept {
  TaskHeader* t = executor_internal::PopOwn(*worker_);
  if (t == nullptr) return nullptr;
  Worker::Bump(worker_->started);  // as RunWorker's `start`
  BindAndAdopt(t);
  // Queued in its own queue: the slice's next task if that is the slice's
  // queue (otherwise the slice ends and the next Pick chooses).
  return slice.Next();
}

void LocalExecutor::RunWorker(Worker* w) {
  RuntimeShared& rt = *w->rt;
  ABSL_RAW_CHECK(!running_, "a Runtime worker's executor is already running");
  running_ = true;
  if (monitored_) executor_internal::Monitor::Get().RunStarted();
  inbox_->running.store(true, std::memory_order_relaxed);
  executor_internal::tl_executor = this;
  if (w->isolation) {
    // One poll per slice: every yield goes through FinishPoll, which sends
    // a task whose tier came back down to a worker.
    isolation_thread_ = true;
    for (SliceQuota& sq : slice_quota_) sq.quota = sq.max_quota = 1;
  }
  // Slices go on with the deque's tasks (RefillSlice); not on the
  // isolation thread, whose stealable spawns go to the shared injector.
  if (!w->isolation) {
    worker_ = w;
    // Q0-Q3: a worker with peers.
    if (rt.workers.size() > 1) work_request_ = &w->request;
  }
  DrainInbox();
  uint64_t now = timing::TscClock::Now();
  last_driver_tick_ = now;
  if (tiers_ != nullptr) MarkCpu(now);
  // F3 (EndSearching) is not here: every started task is picked, and the
  // loop ends the search before the slice that polls it.
  auto start = [&](TaskHeader* t) {
    Worker::Bump(w->started);
    BindAndAdopt(t);
  };
  TaskHeader* carry = nullptr;  // picked by the last slice, not yet polled
  uint64_t spin_deadline = 0;   // I0's end in this idle spell; 0: none yet
  bool spin_yields = false;     // the spell's spin yields its CPU at times
  for (;;) {
    stats_.loop_iterations++;
    // A stuck report's poll is over (Worker::stuck).
    if (w->stuck.load(std::memory_order_relaxed)) [[unlikely]] {
      w->stuck.store(false, std::memory_order_relaxed);
    }
    if (carry != nullptr) {
      // Nothing ran since the last slice picked it (see RunUntil).
      TaskHeader* t = carry;
      carry = nullptr;
      now = RunSlice<false>(t, nullptr, now, &carry);
      continue;
    }
    // S2: relaxed, a line every worker only reads until shutdown.
    if (rt.closing.load(std::memory_order_relaxed)) break;
    // Q1: whether tasks wait here, for the searchers that ask; Q3: this
    // worker has work of its own again.
    if (work_request_ != nullptr &&
        !queue_set_->Empty() != w->backlog_published) [[unlikely]] {
      w->PublishBacklog(!w->backlog_published);
      if (w->backlog_published && w->asked != 0) {
        executor_internal::Withdraw(rt, *w);
      }
    }
    // One task from the own deque per iteration, so that the deque drains
    // even while the executor's queues are busy; what stays there can be
    // stolen.
    if (TaskHeader* t = executor_internal::PopOwn(*w)) start(t);
    sched::TaskNode* node = queue_set_->Pick();
    if (node == nullptr && w->isolation) {
      // Nothing to search for: it sleeps until a task moves here (its
      // inbox's doorbell) or the shutdown's Nudge (S2).
      if (rt.closing.load(std::memory_order_seq_cst)) break;
      Worker::Bump(w->parks);
      Park();
      now = timing::TscClock::Now();
      continue;
    }
    if (node == nullptr) {
      if (TaskHeader* t = executor_internal::FindWork(rt, *w)) {
        start(t);
        continue;
      }
      // I0: one spin per idle spell (until a slice runs or it parks),
      // however often something seen in it turns out taken by another.
      if (w->spin_ticks != 0) {
        now = timing::TscClock::Now();
        if (spin_deadline == 0) {
          spin_deadline = now + w->spin_ticks;
          spin_yields = executor_internal::SharesCpuWithAwakeWorker(rt, *w);
        }
        if (now < spin_deadline &&
            SpinBeforePark(now, spin_deadline, spin_yields)) {
          DrainInbox();  // a wake (or a Nudge) came while it was awake
          now = timing::TscClock::Now();
          continue;
        }
      }
      // I1-I4.
      const bool last_searcher = executor_internal::JoinIdle(rt, *w);
      if ((last_searcher ? rt.AnyWork(*w) : rt.AnyInjected(*w)) ||
          rt.closing.load(std::memory_order_seq_cst)) {
        executor_internal::LeaveIdle(rt, *w);
        continue;
      }
      Worker::Bump(w->parks);
      Park();
      executor_internal::LeaveIdle(rt, *w);
      spin_deadline = 0;
      now = timing::TscClock::Now();
      continue;
    }
    rt.EndSearching(*w);  // F3: it found work (picked: started or woken)
    spin_deadline = 0;
    now = RunSlice<false>(static_cast<TaskHeader*>(node), nullptr, now,
                          &carry);
    // Not while a task is carried: the driver's wakes and aborts must find
    // it in its queue.  It is polled next, on its own.
    // Completions are looked for at every slice's end, not only every
    // MaxPollsPerYield polls or DriverYield: a ready one is reaped at once.
    // Not when nothing is runnable: parking polls the driver anyway, in the
    // same system call as its wait.
    if (carry == nullptr &&
        (polls_since_driver_ >= max_polls_per_yield_ ||
         now - last_driver_tick_ >= driver_yield_ticks_ ||
         (!queue_set_->Empty() && IoDue(now)))) {
      DriverYield(now);
      // Tasks from outside are taken at driver yields too, so busy local
      // queues cannot starve them (not by the isolation thread).
      if (!w->isolation) {
        if (TaskHeader* t = executor_internal::PopInjected(rt, *w)) start(t);
      }
      now = timing::TscClock::Now();
    }
  }
  worker_ = nullptr;
  work_request_ = nullptr;  // no moves outside the loop (S2, S3)
  executor_internal::tl_executor = nullptr;
  inbox_->running.store(false, std::memory_order_relaxed);
  if (monitored_) executor_internal::Monitor::Get().RunEnded();
  running_ = false;
}

}  // namespace spindle
