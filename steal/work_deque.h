// steal/work_deque.h: the per-worker work-stealing deque.
//
// `WorkDeque<T>` is a bounded, lock-free Chase-Lev deque of `T*`: its owner
// pushes and pops at the bottom (LIFO, cache-warm), any thread steals from the
// top (FIFO, oldest first), one task or up to half the queue at a time.  Reach
// for it for the stealable part of a worker's run queue; tasks submitted from
// outside any worker go to `Injector` (steal/injector.h).
//
// Why bounded.  A growable Chase-Lev deque has to retire old buffers while
// thieves may still read them (crossbeam's resize race, CVE-2021-32810, came
// from exactly that), needs an allocator on the push path, and lets one worker
// hoard an unbounded backlog that others can only take a slice of at a time.
// A fixed ring of `kCapacity` slots (256 by default, as in Tokio) needs no
// reclamation, never allocates, and turns overflow into an explicit decision
// for the caller: `Push` returns false when full, and `PushOrOverflow` moves
// the oldest half of the ring plus the new item to a caller-supplied sink
// (the runtime's sink is the `Injector`, as Tokio does), so a burst spreads
// out instead of being refused.
//
// Protocol (Chase and Lev 2005, with the memory orders of Le, Pop, Cohen and
// Zappa Nardelli, PPoPP 2013).
//   State: `top_` (next index a thief takes), `bottom_` (next index the owner
//   pushes to) and the ring `slots_`.  Indices are free-running unsigned
//   `Index` values that wrap; the queue holds slots [top, bottom), and every
//   comparison is on the wrapped difference, so `kCapacity <= 2^(bits-1)`.
//   Ownership: only the owner writes `bottom_` and `slots_`; `top_` only
//   moves forward, and only by a successful compare-and-swap (thieves, and
//   the owner when it races for the last element).
//   1. Push: write slot[bottom], then publish it with a release store of
//      bottom+1.  Refused when bottom - top == kCapacity.
//   2. Pop: decrement bottom first, then read top.  More than one element
//      left: the bottom slot is the owner's without a CAS (a thief that read
//      the old bottom can only take slot[top] < bottom).  Exactly one: race the
//      thieves with a CAS on top, then reset bottom = top.  None: restore
//      bottom.
//   3. Steal: read top, then bottom; if non-empty read slot[top] and CAS top
//      to top+1; the slot value is kept only if the CAS wins.
//   4. StealBatch: Steal repeated, re-reading bottom after every successful
//      CAS, up to half the observed size.  One CAS per task: a single CAS of
//      top by n would let the owner, whose Pop takes without a CAS whenever it
//      sees more than one element, pop a slot the batch had claimed.
//   The store of bottom in Pop must be ordered before its load of top, and a
//   thief's load of top before its load of bottom (store-load order).  Le et
//   al. put a seq_cst fence between each pair; here those four accesses are
//   seq_cst operations instead, which gives the same order in the single total
//   order of seq_cst operations and is understood by ThreadSanitizer (gcc's
//   -Wtsan rejects standalone fences).  On x86-64 the cost is the same: one
//   locked instruction in Pop, plain loads in Steal.
//   Shutdown: the deque never owns its items; the owner drains it with Pop
//   (or thieves with Steal) before destroying it.  The destructor does not
//   free anything.
//
// ABA.  A thief that stalls between reading top and its CAS could succeed
// wrongly only if top advanced by a whole 2^bits in between (Tokio's 16-bit
// ring hit this, tokio#5041).  The default `uint64_t` index makes that
// impossible; narrower indices exist for the exhaustive test, which uses
// 8-bit indices to reach wrap-around.

#ifndef SPINDLE_STEAL_WORK_DEQUE_H_
#define SPINDLE_STEAL_WORK_DEQUE_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

#include "steal/atomics.h"

namespace spindle::steal {

// WorkDeque: a bounded lock-free work-stealing deque of `T*`.
//
// Requires: `kCapacity` is a power of two, at least 2, at most
// 2^(bits of Index - 1); `Index` is an unsigned integer type.  Only one thread
// at a time (the owner) calls `Push`, `PushOrOverflow` and `Pop`; ownership
// may move between threads only through some other synchronisation.  Items
// are non-null.
// Guarantees: every pushed item is returned exactly once by `Pop`, `Steal`,
// `StealBatch` or handed to an overflow sink; never allocates.  Push, Pop,
// Steal and StealBatch are wait-free (a bounded number of steps: a thief that
// loses a race returns what it has instead of retrying); PushOrOverflow is
// lock-free.  `Pop` is LIFO, thieves take the oldest item first.
// Thread safety: `Steal`, `StealBatch`, `size` and `empty` are safe from any
// thread concurrently with everything, including the owner's operations.
// Memory ordering: everything the owner wrote before pushing an item
// happens-before everything a thief does after stealing it (release store of
// bottom in Push, seq_cst load of bottom in Steal); likewise a thief's reads
// of a slot happen-before the owner reuses it (seq_cst CAS on top, acquire
// load of top in Push).
//
// Example:
//   steal::WorkDeque<Task> local;                   // owned by this worker
//   if (!local.Push(task)) injector.Push(task);     // full: go global
//   Task* next = local.Pop();                       // owner, LIFO
//   Task* loot = victim.Steal();                    // any thread, FIFO
template <class T, size_t kCapacity = 256, class Index = uint64_t,
          class Atomics = StdAtomics>
class WorkDeque {
  static_assert(std::is_unsigned_v<Index> && !std::is_same_v<Index, bool>,
                "Index must be an unsigned integer type");
  static_assert(kCapacity >= 2 && (kCapacity & (kCapacity - 1)) == 0,
                "kCapacity must be a power of two, at least 2");
  static_assert(kCapacity - 1 <= std::numeric_limits<Index>::max() / 2,
                "kCapacity must be at most 2^(bits of Index - 1)");

  using Signed = std::make_signed_t<Index>;

 public:
  using value_type = T*;
  static constexpr size_t kMaxBatch = kCapacity / 2;

  // An empty deque whose indices start at 0.
  WorkDeque() noexcept : WorkDeque(Index{0}) {}

  // An empty deque whose indices start at `first_index`.  Only tests need
  // this: with a narrow `Index` they start next to the wrap-around point.
  explicit WorkDeque(Index first_index) noexcept
      : top_(first_index), bottom_(first_index) {
    for (auto& slot : slots_) slot.store(nullptr, std::memory_order_relaxed);
  }

  WorkDeque(const WorkDeque&) = delete;
  WorkDeque& operator=(const WorkDeque&) = delete;

  static constexpr size_t capacity() noexcept { return kCapacity; }

  // Owner only.  Pushes `item` at the bottom.  Returns false, leaving the
  // deque unchanged and `item` with the caller, when the deque is full.
  [[nodiscard]] bool Push(T* item) noexcept {
    // Only the owner writes bottom_: its own last store.
    const Index b = bottom_.load(std::memory_order_relaxed);
    // Pairs with the seq_cst CAS on top_ in Steal / StealBatch / Pop: a
    // thief's read of the slot we are about to reuse happens-before our write.
    const Index t = top_.load(std::memory_order_acquire);
    if (Diff(b, t) >= static_cast<Signed>(kCapacity)) return false;
    // Published by the release store of bottom_ just below.
    slots_[b & kMask].store(item, std::memory_order_relaxed);
    // Pairs with the seq_cst load of bottom_ in Steal / StealBatch (Le et al.:
    // release fence + relaxed store).
    bottom_.store(static_cast<Index>(b + 1), std::memory_order_release);
    return true;
  }

  // Owner only.  Pushes `item`; when the deque is full, claims the oldest
  // half of it instead (racing thieves fairly, oldest first) and calls
  // `overflow(T** items, size_t n)` once with those items followed by `item`.
  // `overflow` must take ownership of all n items (e.g. Injector::PushBatch),
  // must not throw, and must not call this deque's owner operations.
  template <class Overflow>
  void PushOrOverflow(T* item, Overflow&& overflow) noexcept {
    while (!Push(item)) {
      std::array<T*, kMaxBatch + 1> moved;
      const size_t n = StealBatch(moved.data(), kMaxBatch);
      if (n > 0) {
        moved[n] = item;
        std::forward<Overflow>(overflow)(moved.data(), n + 1);
        return;
      }
      // Thieves emptied the ring between our Push and StealBatch: there is
      // room now, so the next Push succeeds.
    }
  }

  // Owner only.  Takes the most recently pushed item, or returns nullptr when
  // the deque is empty (or a thief won the race for the last item).
  T* Pop() noexcept {
    // Only the owner writes bottom_.
    const Index b =
        static_cast<Index>(bottom_.load(std::memory_order_relaxed) - 1);
    // seq_cst store then seq_cst load of top_: the store-load order that Le et
    // al. get from a seq_cst fence.  A thief that then reads top_ and bottom_
    // (both seq_cst) sees the decrement or loses the CAS below.
    bottom_.store(b, std::memory_order_seq_cst);
    Index t = top_.load(std::memory_order_seq_cst);
    const Signed left = Diff(b, t);
    if (left < 0) {
      // Empty.  Release (Le et al.: relaxed) so that a thief reading this
      // value still synchronises with the Push that wrote the slots.
      bottom_.store(static_cast<Index>(b + 1), std::memory_order_release);
      return nullptr;
    }
    // The owner wrote this slot itself.
    T* item = slots_[b & kMask].load(std::memory_order_relaxed);
    if (left > 0) return item;  // not the last: no thief can reach slot b
    // The last item: whoever moves top_ from t to t+1 owns it.
    const bool won = top_.compare_exchange_strong(
        t, static_cast<Index>(t + 1), std::memory_order_seq_cst,
        std::memory_order_relaxed);  // on failure the value is not used
    // Either way top_ is now t+1: empty, with bottom_ == top_.  Release for
    // the same reason as above.
    bottom_.store(static_cast<Index>(b + 1), std::memory_order_release);
    return won ? item : nullptr;
  }

  // Any thread.  Takes the oldest item, or returns nullptr when the deque is
  // empty or another thread took that item first (the caller moves on; it
  // does not spin here).
  T* Steal() noexcept {
    // seq_cst (Le et al.: acquire load + seq_cst fence): ordered before the
    // load of bottom_ below.
    Index t = top_.load(std::memory_order_seq_cst);
    // seq_cst (Le et al.: acquire); pairs with the release store in Push,
    // which publishes the slot.
    const Index b = bottom_.load(std::memory_order_seq_cst);
    if (Diff(b, t) <= 0) return nullptr;
    return TakeTop(t);
  }

  // Any thread.  Takes up to `max` of the oldest items, and at most half of
  // the items present (rounded up), writing them oldest first to `into`,
  // which has room for `max` pointers.  Returns how many it took; 0 when the
  // deque is empty or another thread won the race for its top.
  size_t StealBatch(T** into, size_t max) noexcept {
    if (max == 0) return 0;
    // As in Steal.
    Index t = top_.load(std::memory_order_seq_cst);
    Index b = bottom_.load(std::memory_order_seq_cst);
    const Signed avail = Diff(b, t);
    if (avail <= 0) return 0;
    const size_t half = static_cast<size_t>(avail - avail / 2);
    const size_t want = std::min(max, half);
    size_t n = 0;
    while (true) {
      T* item = TakeTop(t);
      if (item == nullptr) break;  // another thread moved top_
      into[n++] = item;
      t = static_cast<Index>(t + 1);  // our own CAS wrote this value
      if (n == want) break;
      // seq_cst: ordered after our CAS on top_, as the load of bottom_ in
      // Steal is after its load of top_; pairs with the release store in Push.
      b = bottom_.load(std::memory_order_seq_cst);
      if (Diff(b, t) <= 0) break;
    }
    return n;
  }

  // Any thread that owns `into` (a thief moving loot into its own deque).
  // Steals up to `max` items (at most half of this deque and at
  // most the free room in `into`) and pushes them onto `into`, oldest at the
  // bottom, so the owner of `into` pops the newest stolen item first.
  // Returns how many moved.
  template <size_t kIntoCapacity, class IntoIndex>
  size_t StealBatch(WorkDeque<T, kIntoCapacity, IntoIndex, Atomics>& into,
                    size_t max) noexcept {
    const size_t room = kIntoCapacity - into.size();
    max = std::min({max, room, kMaxBatch});
    std::array<T*, kMaxBatch> buf;
    const size_t n = StealBatch(buf.data(), max);
    for (size_t i = 0; i < n; ++i) {
      // Cannot fail: only we push to `into`, and its thieves only free room.
      const bool pushed = into.Push(buf[i]);
      (void)pushed;
    }
    return n;
  }

  // Any thread.  The number of items, exact when no other operation runs
  // concurrently, otherwise a value the deque held recently (0..kCapacity).
  size_t size() const noexcept {
    // Relaxed: an estimate, publishes nothing.
    const Index b = bottom_.load(std::memory_order_relaxed);
    const Index t = top_.load(std::memory_order_relaxed);
    const Signed d = Diff(b, t);
    if (d <= 0) return 0;
    return std::min(static_cast<size_t>(d), kCapacity);
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  using Slot = typename Atomics::template Atomic<T*>;
  static constexpr Index kMask = static_cast<Index>(kCapacity - 1);

  // a - b on the wrapped index ring, as a signed distance.
  static Signed Diff(Index a, Index b) noexcept {
    return static_cast<Signed>(static_cast<Index>(a - b));
  }

  // Reads slot[t] and claims it with a CAS of top_ from t to t+1.  Returns
  // the item, or nullptr when top_ was no longer t.
  T* TakeTop(Index t) noexcept {
    // Published by the release store of bottom_ in Push (our seq_cst load of
    // bottom_ acquired it).  If the owner has since reused the slot, top_ has
    // moved past t and the CAS below fails, so a stale value is discarded.
    T* item = slots_[t & kMask].load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(t, static_cast<Index>(t + 1),
                                      std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;  // failure order: the observed value is not used
    }
    return item;
  }

  // Thieves hammer top_; the owner mostly touches bottom_ and the slots.
  alignas(64) typename Atomics::template Atomic<Index> top_;
  alignas(64) typename Atomics::template Atomic<Index> bottom_;
  alignas(64) std::array<Slot, kCapacity> slots_;
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_WORK_DEQUE_H_
