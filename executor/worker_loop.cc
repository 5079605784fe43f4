// executor/worker_loop.cc: a Runtime worker's run loop, where it finds work
// (own deque, injectors, stealing) and how it sleeps.  The protocol and the
// step numbers (I1-I4, P1-P3, S1-S4) are in internal/runtime_shared.h.

#include <algorithm>
#include <array>
#include <cstdint>
#include <mutex>

#include "absl/base/internal/raw_logging.h"
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

bool RuntimeShared::NotifyOne() noexcept {
  // P2: an RMW, so that it is ordered with I1's (see the protocol).
  if (idle_count.fetch_add(0, std::memory_order_seq_cst) == 0) return false;
  Worker* sleeper = nullptr;
  {
    std::lock_guard<std::mutex> lock(idle_mu);
    if (idle_list.empty()) return false;
    sleeper = idle_list.back();
    idle_list.pop_back();
    sleeper->idle_listed = false;
    idle_count.fetch_sub(1, std::memory_order_seq_cst);
  }
  wakes_sent.fetch_add(1, std::memory_order_relaxed);
  sleeper->inbox->Nudge();  // P3
  return true;
}

bool RuntimeShared::AnyWork(const Worker& self) const noexcept {
  if (!injector.empty() || !self.preferred.empty()) return true;
  for (const auto& w : workers) {
    if (!w->deque.empty() || !w->preferred.empty()) return true;
  }
  return false;
}

void RuntimeShared::CancelUnbound(TaskHeader* t) noexcept {
  DestroyCancelled(t);
}

namespace {

// Leaves the idle list if the worker is still on it (I2, I4).
void LeaveIdle(RuntimeShared& rt, Worker& w) {
  std::lock_guard<std::mutex> lock(rt.idle_mu);
  if (!w.idle_listed) return;
  w.idle_listed = false;
  auto it = std::find(rt.idle_list.begin(), rt.idle_list.end(), &w);
  if (it != rt.idle_list.end()) rt.idle_list.erase(it);
  rt.idle_count.fetch_sub(1, std::memory_order_seq_cst);
}

// A task queued for worker `w` (its preferred injector) or for anyone (the
// shared injector); a batch from the shared injector goes to w's deque
// (still stealable) after the first.
TaskHeader* PopInjected(RuntimeShared& rt, Worker& w) noexcept {
  if (TaskHeader* t = w.preferred.Pop()) {
    w.policy->counters().AddInjected(1);
    return t;
  }
  if (rt.injector.empty()) return nullptr;
  std::array<TaskHeader*, 16> batch;
  const size_t room = w.deque.capacity() - w.deque.size();
  const size_t want = std::min<size_t>(batch.size(), room + 1);
  const size_t n = rt.injector.PopBatch(batch.data(), want);
  if (n == 0) return nullptr;
  w.policy->counters().AddInjected(n);
  for (size_t i = 1; i < n; ++i) {
    // Room was counted above and only this thread pushes.
    if (!w.deque.Push(batch[i])) rt.injector.Push(batch[i]);
  }
  // Stealable before NotifyOne (P1 before P2), and while batch[0] runs.
  w.deque.Publish();
  if (n > 1) rt.NotifyOne();  // tasks others may take
  return batch[0];
}

// The executor's queues are empty: injectors, then a steal scan.
TaskHeader* FindWork(RuntimeShared& rt, Worker& w) noexcept {
  if (TaskHeader* t = PopInjected(rt, w)) return t;
  const size_t n = rt.workers.size();
  if (n < 2) return nullptr;
  w.policy->Scan(
      w.index, n,
      [&](size_t v) {
        return rt.workers[v]->deque.size() + rt.workers[v]->preferred.size();
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
      });
  // What was stolen sits in our deque; the newest first.
  return w.deque.Pop();
}

}  // namespace
}  // namespace executor_internal

void LocalExecutor::BindAndAdopt(TaskHeader* t) noexcept {
  t->owner = this;
  t->inbox = inbox_.get();
  // release: an Abort that sees kStateBound reads owner and inbox; acquire:
  // an Abort that came first left kStateCancelRequested, which Adopt reads.
  t->state.fetch_or(executor_internal::kStateBound, std::memory_order_acq_rel);
  Adopt(t);
}

void LocalExecutor::RunWorker(Worker* w) {
  RuntimeShared& rt = *w->rt;
  ABSL_RAW_CHECK(!running_, "a Runtime worker's executor is already running");
  running_ = true;
  if (monitored_) executor_internal::Monitor::Get().RunStarted();
  inbox_->running.store(true, std::memory_order_relaxed);
  executor_internal::tl_executor = this;
  DrainInbox();
  uint64_t now = timing::TscClock::Now();
  last_driver_tick_ = now;
  if (tiers_ != nullptr) MarkCpu(now);
  auto start = [&](TaskHeader* t) {
    Worker::Bump(w->started);
    BindAndAdopt(t);
  };
  TaskHeader* carry = nullptr;  // picked by the last slice, not yet polled
  for (;;) {
    stats_.loop_iterations++;
    if (carry != nullptr) {
      // Nothing ran since the last slice picked it (see RunUntil).
      TaskHeader* t = carry;
      carry = nullptr;
      now = RunSlice<false>(t, nullptr, now, &carry);
      continue;
    }
    // S2: relaxed, a line every worker only reads until shutdown.
    if (rt.closing.load(std::memory_order_relaxed)) break;
    // One task from the own deque per iteration, so that the deque drains
    // even while the executor's queues are busy; what stays there can be
    // stolen.  empty(): two plain loads before the Pop's locked store.
    if (!w->deque.empty()) {
      if (TaskHeader* t = w->deque.Pop()) {
        w->policy->counters().AddLocal(1);
        start(t);
      }
    }
    sched::TaskNode* node = queue_set_->Pick();
    if (node == nullptr) {
      if (TaskHeader* t = executor_internal::FindWork(rt, *w)) {
        start(t);
        continue;
      }
      // I1-I4.
      {
        std::lock_guard<std::mutex> lock(rt.idle_mu);
        if (!w->idle_listed) {
          w->idle_listed = true;
          rt.idle_list.push_back(w);
          rt.idle_count.fetch_add(1, std::memory_order_seq_cst);
        }
      }
      if (rt.AnyWork(*w) || rt.closing.load(std::memory_order_seq_cst)) {
        executor_internal::LeaveIdle(rt, *w);
        continue;
      }
      Worker::Bump(w->parks);
      Park();
      executor_internal::LeaveIdle(rt, *w);
      now = timing::TscClock::Now();
      continue;
    }
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
      // queues cannot starve them.
      if (TaskHeader* t = executor_internal::PopInjected(rt, *w)) start(t);
      now = timing::TscClock::Now();
    }
  }
  executor_internal::tl_executor = nullptr;
  inbox_->running.store(false, std::memory_order_relaxed);
  if (monitored_) executor_internal::Monitor::Get().RunEnded();
  running_ = false;
}

}  // namespace spindle
