// budget/hooks.h: user hooks around every poll, replaceable at run time.
//
// Reach for `HookRegistry`: the executor calls `CallBeforePoll`,
// `CallAfterPoll`, `CallOnYield`, `CallOnComplete` and `CallOnCancel` from its
// run loop; any
// thread may `Install` a new `PollHooks` set or `Clear` it meanwhile.  With no
// hooks installed each call is one load and a branch, inlined.
//
// Reclamation: hazard pointers.  The registry publishes an immutable
// snapshot (a heap copy of PollHooks) through one atomic pointer.  A caller
// announces the snapshot it is about to use in a per-thread hazard slot,
// re-checks that the snapshot is still current, calls, and clears the slot.
// Install swaps in the new snapshot and retires the old one to a list;
// once the list is long enough (every 64 retirements) the installer scans
// every thread's hazard slots and frees the retired snapshots nobody
// announces.  So Install never waits for callers, callers never block or
// write shared cache lines (only their own slot), and a snapshot is freed
// only after every caller that could have seen it is done with it.
// Why not std::atomic<std::shared_ptr>: libstdc++ 12 implements it with a
// lock on every load, which would put a lock on the hot path.
//
// Memory ordering: publication (Install's exchange, seq_cst) and the
// caller's load (acquire) make the snapshot's contents visible to callers.
// The caller's hazard store and re-load, and the installer's exchange and
// hazard scan, are seq_cst: in their single total order either the caller's
// re-load sees the new pointer (and it retries) or the scan sees the hazard
// (and the snapshot survives).  Clearing a slot is a release store, paired
// with the scan's load, so a snapshot's use happens before its deletion.

#ifndef SPINDLE_BUDGET_HOOKS_H_
#define SPINDLE_BUDGET_HOOKS_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "budget/tier.h"

namespace spindle::budget {

// The set of hooks.  Any member may be empty (not called).  Hooks must not
// throw: they run inside noexcept calls, so an exception terminates the
// program.  A hook may call into a HookRegistry (nesting up to
// HookRegistry::kMaxNesting deep per thread) and may Install or Clear any
// registry, the calling one included: the running set stays alive until the
// call returns.
struct PollHooks {
  std::function<void(const TaskContext&)> before_poll;
  std::function<void(const TaskContext&, PollOutcome, uint64_t elapsed_ticks)>
      after_poll;
  std::function<void(const TaskContext&)> on_yield;
  // A task ended by returning or by an exception.
  std::function<void(const TaskContext&)> on_complete;
  // A task ended by cancellation (aborted, stopped, or dropped at shutdown,
  // maybe never polled); it gets no on_complete call.
  std::function<void(const TaskContext&)> on_cancel;

  bool empty() const noexcept {
    return !before_poll && !after_poll && !on_yield && !on_complete &&
           !on_cancel;
  }
};

namespace budget_internal {
struct HookSnapshot {
  PollHooks hooks;
};
// Test hook: whether the calling thread's hazard record is held (in use) by
// it; true at any point of the thread's life, thread exit included.
bool ThisThreadHazardRecordOwnedForTesting();
}  // namespace budget_internal

// HookRegistry: an atomically replaceable PollHooks set.
//
// Requires: no call is in flight on any thread when the registry is
// destroyed.  Hook calls nest at most kMaxNesting deep on one thread (a hook
// calling into a registry, whose hook calls into one, ...).
// Guarantees: a Call* runs the hooks of exactly one installed set (the one
// current when it started), or nothing; a replaced set is destroyed only
// after every call using it has returned, on the thread of a later Install,
// Clear or the destructor.  Installing a set whose members are all empty is
// the same as Clear().
// Thread safety: every member function may be called from any thread at any
// time, concurrently with the others (except the destructor).
//
// Example:
//   HookRegistry hooks;
//   PollHooks h;
//   h.before_poll = [](const TaskContext& c) { Trace(c); };
//   hooks.Install(std::move(h));
//   hooks.CallBeforePoll(ctx);   // runs Trace
//   hooks.Clear();
//   hooks.CallBeforePoll(ctx);   // one load and a branch
class HookRegistry {
 public:
  static constexpr int kMaxNesting = 8;

  HookRegistry() = default;
  ~HookRegistry();
  HookRegistry(const HookRegistry&) = delete;
  HookRegistry& operator=(const HookRegistry&) = delete;

  // Replaces the whole set.  Allocates one snapshot; never waits for callers.
  void Install(PollHooks hooks);
  void Clear();

  bool empty() const noexcept {
    return current_.load(std::memory_order_acquire) == nullptr;
  }

  void CallBeforePoll(const TaskContext& ctx) noexcept {
    // Acquire pairs with Install's exchange (a plain load on x86).
    if (current_.load(std::memory_order_acquire) == nullptr) [[likely]] return;
    CallBeforePollSlow(ctx);
  }
  void CallAfterPoll(const TaskContext& ctx, PollOutcome outcome,
                     uint64_t elapsed_ticks) noexcept {
    if (current_.load(std::memory_order_acquire) == nullptr) [[likely]] return;
    CallAfterPollSlow(ctx, outcome, elapsed_ticks);
  }
  void CallOnYield(const TaskContext& ctx) noexcept {
    if (current_.load(std::memory_order_acquire) == nullptr) [[likely]] return;
    CallOnYieldSlow(ctx);
  }
  void CallOnComplete(const TaskContext& ctx) noexcept {
    if (current_.load(std::memory_order_acquire) == nullptr) [[likely]] return;
    CallOnCompleteSlow(ctx);
  }
  void CallOnCancel(const TaskContext& ctx) noexcept {
    if (current_.load(std::memory_order_acquire) == nullptr) [[likely]] return;
    CallOnCancelSlow(ctx);
  }

  // Frees every retired set no caller is using.  Install and Clear do this
  // on their own every kRetireBatch retirements; exposed for tests and for
  // an owner that wants memory back sooner.
  void Reclaim();
  // Retired sets not yet freed (for tests).
  size_t retired_count() const;

  static constexpr size_t kRetireBatch = 64;

 private:
  void Publish(budget_internal::HookSnapshot* snapshot);
  // Removes from retired_ and returns the snapshots no hazard slot names.
  std::vector<budget_internal::HookSnapshot*> CollectFreeableLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void CallBeforePollSlow(const TaskContext& ctx) noexcept;
  void CallAfterPollSlow(const TaskContext& ctx, PollOutcome outcome,
                         uint64_t elapsed_ticks) noexcept;
  void CallOnYieldSlow(const TaskContext& ctx) noexcept;
  void CallOnCompleteSlow(const TaskContext& ctx) noexcept;
  void CallOnCancelSlow(const TaskContext& ctx) noexcept;

  std::atomic<budget_internal::HookSnapshot*> current_{nullptr};
  mutable std::mutex mu_;  // serialises writers; callers never take it
  std::vector<budget_internal::HookSnapshot*> retired_ ABSL_GUARDED_BY(mu_);
};

}  // namespace spindle::budget

#endif  // SPINDLE_BUDGET_HOOKS_H_
