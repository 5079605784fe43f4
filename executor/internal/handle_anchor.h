// executor/internal/handle_anchor.h: what a JoinHandle holds to keep its
// executor's inbox (a Runtime's shared state) alive, counted without an
// atomic operation where handles are made and dropped most: on the
// executor's own thread, inside its Run.
//
// Why.  A handle must keep the inbox alive so that Abort() from any thread
// may post to it while (or after) the executor is destroyed.  A
// std::shared_ptr copy per handle costs two locked read-modify-writes (one
// when the handle is made, one when it goes): ~4% of mt_fib, where every
// call spawns a child and joins it.
//
// How (biased reference counting, as in Choi, Shull and Torrellas, PACT
// 2018).  One anchor per executor (and per Runtime worker), made with the
// executor.  Two counts:
//   - `owner_refs_`, plain: handles made or dropped on the owner's thread
//     while the owner runs there (`tl_executor == owner_`).  It may go
//     below zero (a handle made elsewhere and dropped here).
//   - `shared_`, atomic: every other acquisition and release, plus a bias
//     of kBias that stands for the owner while it lives, so it never
//     reaches zero before the owner retires.
// The anchor holds `keep_` (a reference to the inbox, or to the Runtime's
// state, which contains it) until the handles are gone and the owner has
// retired: Retire() adds the plain count to the shared one and takes the
// bias away; whoever brings the sum to zero drops `keep_`.
//
// After that, an acquisition finds zero and fails (AcquireShared never
// raises a zero count): the caller's task was submitted to an executor that
// has gone (or goes before the handle exists), so it is cancelled, and a
// handle of a finished task never touches the inbox (Abort returns at the
// done bit); it gets no anchor.
//
// Thread safety: Acquire and Release from any thread; the plain path is
// taken only on the owner's thread while it runs, and Retire runs after the
// owner's last run (the executor's destructor; ~Runtime after joining its
// workers), ordered after every plain access by the owner's own thread or
// by the join.

#ifndef SPINDLE_EXECUTOR_INTERNAL_HANDLE_ANCHOR_H_
#define SPINDLE_EXECUTOR_INTERNAL_HANDLE_ANCHOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>

namespace spindle {
class LocalExecutor;
}  // namespace spindle

namespace spindle::executor_internal {

// The executor running on this thread (executor/internal/task_protocol.h).
extern constinit thread_local LocalExecutor* tl_executor;

class HandleAnchor {
 public:
  // Unarmed: every acquisition fails (no handle keeps anything alive).
  HandleAnchor() noexcept : owner_(this) {}
  HandleAnchor(const HandleAnchor&) = delete;
  HandleAnchor& operator=(const HandleAnchor&) = delete;

  // Before the first handle: `owner` counts plainly on its own thread
  // (null: every count is atomic; a thread outside any executor has a null
  // tl_executor too); `keep` is what the handles keep alive (it may
  // contain this anchor).
  void Arm(const LocalExecutor* owner, std::shared_ptr<void> keep) noexcept {
    keep_ = std::move(keep);
    shared_.store(kBias, std::memory_order_relaxed);
    owner_.store(owner != nullptr ? static_cast<const void*>(owner) : this,
                 std::memory_order_relaxed);
  }

  // A handle's reference, or nullptr once the owner has retired and no
  // handle holds the anchor (see the top comment).
  static HandleAnchor* Acquire(HandleAnchor* a) noexcept {
    // relaxed: on the owner's thread it reads the owner's own store; on
    // any other it can never equal that thread's executor.
    if (a->owner_.load(std::memory_order_relaxed) == tl_executor) {
      ++a->owner_refs_;
      return a;
    }
    return a->AcquireShared() ? a : nullptr;
  }

  static void Release(HandleAnchor* a) noexcept {
    if (a->owner_.load(std::memory_order_relaxed) == tl_executor) {
      --a->owner_refs_;
      return;
    }
    a->ReleaseShared();
  }

  // The owner is gone (its destructor, after its last run): from now on
  // every count is atomic, and the last handle drops `keep_`.  Idempotent;
  // a no-op on an unarmed anchor.
  void Retire() noexcept {
    if (retired_ || !keep_) return;  // retired, or never armed
    retired_ = true;
    owner_.store(this, std::memory_order_relaxed);  // never an executor
    const int64_t add = owner_refs_ - kBias;
    owner_refs_ = 0;
    // acq_rel: as a release below.
    if (shared_.fetch_add(add, std::memory_order_acq_rel) + add == 0) {
      DropKeep();
    }
  }

  // Tests: the two counts (shared_ includes the bias until Retire).
  int64_t owner_refs_for_testing() const noexcept { return owner_refs_; }
  int64_t shared_refs_for_testing() const noexcept {
    return shared_.load(std::memory_order_relaxed);
  }
  static constexpr int64_t kBias = int64_t{1} << 40;

 private:
  bool AcquireShared() noexcept {
    // relaxed: the caller holds a reference to what contains the anchor
    // (a Spawner, the executor itself), as for a std::shared_ptr copy.
    int64_t c = shared_.load(std::memory_order_relaxed);
    while (c != 0) {
      if (shared_.compare_exchange_weak(c, c + 1, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  void ReleaseShared() noexcept {
    // acq_rel: the last release sees every other holder's writes before
    // `keep_` goes (and with it, maybe, the inbox).
    if (shared_.fetch_sub(1, std::memory_order_acq_rel) == 1) DropKeep();
  }
  void DropKeep() noexcept {
    // Moved out first: dropping it may destroy this anchor.
    std::shared_ptr<void> keep = std::move(keep_);
  }

  // The executor whose thread counts plainly; `this` (no executor's
  // address) while unarmed and once retired.
  std::atomic<const void*> owner_;
  int64_t owner_refs_ = 0;
  std::atomic<int64_t> shared_{0};
  bool retired_ = false;  // the owner's (Retire's) own flag
  std::shared_ptr<void> keep_;
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_HANDLE_ANCHOR_H_
