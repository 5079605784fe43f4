// HookRegistry protocol (hazard pointers; see hooks.h for the why).
//
// Shared state:
//   current_          the published snapshot or null.  Written by Publish
//                     (exchange, seq_cst); read by every Call*.
//   g_records         a process-wide, push-only list of per-thread hazard
//                     records.  A record is owned by one thread while its
//                     in_use flag is set (acquired by CAS, released at thread
//                     exit) and is never freed, so a scanner may walk the list
//                     at any time.
//   record->slots[d]  the snapshot a thread is using at nesting depth d, or
//                     null.  Written only by the owning thread; read by
//                     scanners.
//   retired_          snapshots swapped out of current_, not yet freed;
//                     guarded by mu_.
//
// A call (caller thread):
//   1. p = current_; null -> return (the inline fast path in hooks.h).
//   2. slot = p (seq_cst); re-load current_ (seq_cst); if it changed, retry
//      with the new value (null -> nothing to call).
//   3. call p's hook; slot = null (release).
// An install (any thread):
//   1. old = current_.exchange(new) (seq_cst).
//   2. under mu_: push old on retired_; every kRetireBatch retirements take
//      the hazards of every record (seq_cst loads) and move the retired
//      snapshots no slot names into a local list.
//   3. outside mu_: delete them (user destructors may call Install).
// Why it is safe: if a caller's step-2 re-load returned p, its slot store
// precedes the exchange that retired p in the seq_cst order, so the scan
// (after the exchange) sees the slot unless the caller already cleared it
// (release) after using p, which the scan's load then synchronises with.
// Shutdown: the destructor (no calls in flight, by contract) deletes
// current_ and every retired snapshot.

#include "budget/hooks.h"

#include <algorithm>
#include <utility>

#include "absl/base/internal/raw_logging.h"

namespace spindle::budget {
namespace budget_internal {
namespace {

struct alignas(64) HazardRecord {
  std::atomic<const void*> slots[HookRegistry::kMaxNesting] = {};
  std::atomic<bool> in_use{false};
  HazardRecord* next = nullptr;  // immutable once pushed
  int depth = 0;                 // owner thread only
};

std::atomic<HazardRecord*> g_records{nullptr};

HazardRecord* AcquireRecord() {
  // Acquire pairs with the release CAS that pushed each record.
  for (HazardRecord* r = g_records.load(std::memory_order_acquire);
       r != nullptr; r = r->next) {
    bool expected = false;
    // Acquire pairs with the release store in ~RecordOwner of the previous
    // owner, so its slot writes are ordered before ours.
    if (!r->in_use.load(std::memory_order_relaxed) &&
        r->in_use.compare_exchange_strong(expected, true,
                                          std::memory_order_acquire)) {
      return r;
    }
  }
  auto* r = new HazardRecord;
  r->in_use.store(true, std::memory_order_relaxed);
  HazardRecord* head = g_records.load(std::memory_order_relaxed);
  do {
    r->next = head;
    // Release publishes r's initialised fields to list walkers.
  } while (!g_records.compare_exchange_weak(head, r, std::memory_order_release,
                                            std::memory_order_relaxed));
  return r;
}

// The thread's record.  A constant-initialised pointer (no destructor), so
// hook calls from destructors of other thread_locals that run after the
// record was given back at thread exit still find a record of their own.
constinit thread_local HazardRecord* tl_record = nullptr;
constinit thread_local bool tl_record_released = false;

// Gives the record back when the thread exits (constructed at the thread's
// first hook call, so destroyed before thread_locals built earlier).
struct RecordOwner {
  ~RecordOwner() {
    HazardRecord* record = tl_record;
    for (auto& s : record->slots) s.store(nullptr, std::memory_order_release);
    record->depth = 0;
    tl_record = nullptr;
    tl_record_released = true;
    // Pairs with the acquire CAS in AcquireRecord.
    record->in_use.store(false, std::memory_order_release);
  }
};

HazardRecord* ThisThreadRecord() {
  if (tl_record != nullptr) [[likely]] return tl_record;
  tl_record = AcquireRecord();
  if (!tl_record_released) {
    thread_local RecordOwner owner;
    (void)owner;
  }
  // After the owner's destructor ran (thread exit), the record acquired
  // here stays taken: one record per such thread, reused by none.
  return tl_record;
}

}  // namespace

bool ThisThreadHazardRecordOwnedForTesting() {
  HazardRecord* r = ThisThreadRecord();
  return r->in_use.load(std::memory_order_relaxed);
}

namespace {

// Announces the current snapshot for the guard's lifetime.
class HazardGuard {
 public:
  explicit HazardGuard(const std::atomic<HookSnapshot*>& current) noexcept
      : record_(ThisThreadRecord()) {
    ABSL_RAW_CHECK(record_->depth < HookRegistry::kMaxNesting,
                   "HookRegistry: hook calls nested deeper than kMaxNesting");
    slot_ = &record_->slots[record_->depth++];
    HookSnapshot* p = current.load(std::memory_order_acquire);
    while (p != nullptr) {
      // seq_cst store then seq_cst re-load: see the protocol comment.
      slot_->store(p, std::memory_order_seq_cst);
      HookSnapshot* q = current.load(std::memory_order_seq_cst);
      if (q == p) break;
      p = q;
    }
    snapshot_ = p;
  }
  ~HazardGuard() {
    // Release pairs with the scan's load in CollectFreeableLocked.
    slot_->store(nullptr, std::memory_order_release);
    --record_->depth;
  }
  HazardGuard(const HazardGuard&) = delete;
  HazardGuard& operator=(const HazardGuard&) = delete;

  const HookSnapshot* snapshot() const noexcept { return snapshot_; }

 private:
  HazardRecord* record_;
  std::atomic<const void*>* slot_;
  const HookSnapshot* snapshot_ = nullptr;
};

}  // namespace
}  // namespace budget_internal

using budget_internal::HazardGuard;
using budget_internal::HookSnapshot;

HookRegistry::~HookRegistry() {
  delete current_.load(std::memory_order_acquire);
  std::lock_guard<std::mutex> lock(mu_);
  for (HookSnapshot* s : retired_) delete s;
  retired_.clear();
}

void HookRegistry::Install(PollHooks hooks) {
  if (hooks.empty()) {
    Publish(nullptr);
    return;
  }
  Publish(new HookSnapshot{std::move(hooks)});
}

void HookRegistry::Clear() { Publish(nullptr); }

void HookRegistry::Publish(HookSnapshot* snapshot) {
  // seq_cst: ordered against callers' hazard stores (protocol comment).
  HookSnapshot* old = current_.exchange(snapshot, std::memory_order_seq_cst);
  if (old == nullptr) return;
  std::vector<HookSnapshot*> to_free;
  {
    std::lock_guard<std::mutex> lock(mu_);
    retired_.push_back(old);
    if (retired_.size() < kRetireBatch) return;
    to_free = CollectFreeableLocked();
  }
  for (HookSnapshot* s : to_free) delete s;
}

std::vector<HookSnapshot*> HookRegistry::CollectFreeableLocked() {
  std::vector<const void*> hazards;
  for (auto* r = budget_internal::g_records.load(std::memory_order_acquire);
       r != nullptr; r = r->next) {
    for (const auto& slot : r->slots) {
      // seq_cst: see the protocol comment; also pairs with the release
      // store that clears a slot.
      const void* h = slot.load(std::memory_order_seq_cst);
      if (h != nullptr) hazards.push_back(h);
    }
  }
  std::sort(hazards.begin(), hazards.end());
  std::vector<HookSnapshot*> to_free;
  auto keep = std::partition(
      retired_.begin(), retired_.end(), [&](HookSnapshot* s) {
        return std::binary_search(hazards.begin(), hazards.end(),
                                  static_cast<const void*>(s));
      });
  to_free.assign(keep, retired_.end());
  retired_.erase(keep, retired_.end());
  return to_free;
}

void HookRegistry::Reclaim() {
  std::vector<HookSnapshot*> to_free;
  {
    std::lock_guard<std::mutex> lock(mu_);
    to_free = CollectFreeableLocked();
  }
  for (HookSnapshot* s : to_free) delete s;
}

size_t HookRegistry::retired_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return retired_.size();
}

void HookRegistry::CallBeforePollSlow(const TaskContext& ctx) noexcept {
  HazardGuard g(current_);
  if (g.snapshot() != nullptr && g.snapshot()->hooks.before_poll) {
    g.snapshot()->hooks.before_poll(ctx);
  }
}

void HookRegistry::CallAfterPollSlow(const TaskContext& ctx,
                                     PollOutcome outcome,
                                     uint64_t elapsed_ticks) noexcept {
  HazardGuard g(current_);
  if (g.snapshot() != nullptr && g.snapshot()->hooks.after_poll) {
    g.snapshot()->hooks.after_poll(ctx, outcome, elapsed_ticks);
  }
}

void HookRegistry::CallOnYieldSlow(const TaskContext& ctx) noexcept {
  HazardGuard g(current_);
  if (g.snapshot() != nullptr && g.snapshot()->hooks.on_yield) {
    g.snapshot()->hooks.on_yield(ctx);
  }
}

void HookRegistry::CallOnCompleteSlow(const TaskContext& ctx) noexcept {
  HazardGuard g(current_);
  if (g.snapshot() != nullptr && g.snapshot()->hooks.on_complete) {
    g.snapshot()->hooks.on_complete(ctx);
  }
}

void HookRegistry::CallOnCancelSlow(const TaskContext& ctx) noexcept {
  HazardGuard g(current_);
  if (g.snapshot() != nullptr && g.snapshot()->hooks.on_cancel) {
    g.snapshot()->hooks.on_cancel(ctx);
  }
}

}  // namespace spindle::budget
