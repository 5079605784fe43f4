// steal/work_deque.h: the per-worker work-stealing deque.
//
// `WorkDeque<T>` is a bounded, lock-free split deque of `T*`: its owner
// pushes and pops at the bottom (LIFO, cache-warm), any thread steals from the
// top (FIFO, oldest first), one task or up to half the stealable part at a
// time.  Reach for it for the stealable part of a worker's run queue; tasks
// submitted from outside any worker go to `Injector` (steal/injector.h).
//
// Why split.  A Chase-Lev pop must order its store of bottom before its load
// of top (a store-load fence: a locked instruction on x86-64, ~6 ns here,
// against ~1 ns for a whole push+pop on a plain array).  The ring is split in
// two (the split deque of Dinan et al., SC 2009, and of Lace, van Dijk and van
// de Pol, Euro-Par 2014): the newest items, [split, bottom), are the owner's
// private part, pushed and popped with plain stores and no fence; the older
// items, [top, split), are the public part, a Chase-Lev deque whose bottom is
// `split`.  Items become stealable when the owner publishes them:
//   - `Publish()` makes every private item stealable (one release store);
//   - a thief that finds the public part empty while the owner holds private
//     items raises a request flag; the owner's next `Pop` (or a `Push` that
//     finds the ring full) sees it (one relaxed load) and publishes the older
//     half of its private items.  Pushes do not look: a run of pushes is
//     short, and the flag costs Push a load and a branch.
// So a private item waits for its owner's next `Pop` (or `Publish`) to be
// stealable.  An owner that may stop operating on the deque with items in it
// for long (a worker about to run a task that may block) calls `Publish`
// first: the Runtime publishes every spawn at once, so a stuck poll never
// strands queued tasks, and pays what a Chase-Lev push costs (a release
// store, no fence).  Owners that push and pop in bursts keep the fast path.
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
// Zappa Nardelli, PPoPP 2013, for the public part).
//   State: `top_` (next index a thief takes), `split_` (end of the public
//   part), `bottom_` (next index the owner pushes to), the ring `slots_`, and
//   the thieves' `request_` flag.  Indices are free-running unsigned `Index`
//   values that wrap; top <= split <= bottom on the wrapped differences, so
//   `kCapacity <= 2^(bits-1)`.  Ownership: only the owner writes `split_`,
//   `bottom_` and `slots_`; `top_` only moves forward, and only by a
//   successful compare-and-swap (thieves, and the owner when it races for the
//   last public element).
//   1. Push: write slot[bottom], then bottom+1, both relaxed: the slot is
//      private.  Refused when bottom - top == kCapacity (top is read only
//      when bottom reaches kCapacity past the last top read).
//   2. Publish / share: a release store of a larger split publishes the slots
//      below it (a Chase-Lev push of several items at once).
//   3. Pop: a private item (bottom > split): take slot[bottom-1], relaxed: no
//      thief reads at or above split.  Otherwise the Chase-Lev pop on the
//      public part: decrement split first, then read top.  More than one
//      public element left: slot split-1 is the owner's without a CAS.
//      Exactly one: race the thieves with a CAS on top, then reset
//      split = top.  None: restore split.
//   4. Steal: read top, then split; if non-empty read slot[top] and CAS top
//      to top+1; the slot value is kept only if the CAS wins.  Empty: raise
//      the request flag if the owner holds private items.
//   5. StealBatch: Steal repeated, re-reading split after every successful
//      CAS, up to half the observed public size.  One CAS per task: a single
//      CAS of top by n would let the owner, whose Pop takes without a CAS
//      whenever it sees more than one public element, pop a slot the batch
//      had claimed.
//   The store of split in Pop must be ordered before its load of top, and a
//   thief's load of top before its load of split (store-load order).  Le et
//   al. put a seq_cst fence between each pair; here those four accesses are
//   seq_cst operations instead, which gives the same order in the single total
//   order of seq_cst operations and is understood by ThreadSanitizer (gcc's
//   -Wtsan rejects standalone fences).  On x86-64 the cost is the same: one
//   locked instruction in a Pop of a public item, plain loads in Steal.
//   The request flag and the thieves' reads of bottom_ (size, whether to
//   raise the flag) are hints: relaxed, they order nothing.  A missed or
//   stale request only delays a steal until the thief asks again.
//   Shutdown: the deque never owns its items; the owner drains it with Pop
//   (or publishes and thieves Steal) before destroying it.  The destructor
//   does not free anything.
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

// WorkDeque: a bounded lock-free work-stealing split deque of `T*`.
//
// Requires: `kCapacity` is a power of two, at least 2, at most
// 2^(bits of Index - 1); `Index` is an unsigned integer type.  Only one thread
// at a time (the owner) calls `Push`, `PushOrOverflow`, `Publish` and `Pop`;
// ownership may move between threads only through some other
// synchronisation.  Items are non-null.
// Guarantees: every pushed item is returned exactly once by `Pop`, `Steal`,
// `StealBatch` or handed to an overflow sink; never allocates.  Push, Pop,
// Publish, Steal and StealBatch are wait-free (a bounded number of steps: a
// thief that loses a race returns what it has instead of retrying);
// PushOrOverflow is lock-free.  `Pop` is LIFO, thieves take the oldest
// published item first.  A pushed item is stealable once the owner has
// called `Publish`, or, after a thief asked (an empty `Steal` while the owner
// held private items), once the owner's next `Pop`, or `Push` that found
// the ring full, has returned (the older half of the private items, each
// time).
// Thread safety: `Steal`, `StealBatch`, `size` and `empty` are safe from any
// thread concurrently with everything, including the owner's operations.
// Memory ordering: everything the owner wrote before publishing an item
// happens-before everything a thief does after stealing it (release store of
// split_ in Publish and Pop, seq_cst load of split_ in Steal); likewise a
// thief's reads of a slot happen-before the owner reuses it (seq_cst CAS on
// top_, acquire load of top_ in Push).
//
// Example:
//   steal::WorkDeque<Task> local;                   // owned by this worker
//   if (!local.Push(task)) injector.Push(task);     // full: go global
//   local.Publish();                                // stealable from now on
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
      : slots_{},
        top_(first_index),
        split_(first_index),
        request_(false),
        bottom_(first_index),
        push_limit_(static_cast<Index>(first_index + kCapacity)) {
    for (auto& slot : slots_) slot.store(nullptr, std::memory_order_relaxed);
  }

  WorkDeque(const WorkDeque&) = delete;
  WorkDeque& operator=(const WorkDeque&) = delete;

  static constexpr size_t capacity() noexcept { return kCapacity; }

  // Owner only.  Pushes `item` at the bottom, private until published (see
  // the class comment).  Returns false, leaving the deque unchanged and
  // `item` with the caller, when the deque is full.
  [[nodiscard]] bool Push(T* item) noexcept {
    // Only the owner writes bottom_: its own last store.
    const Index b = bottom_.load(std::memory_order_relaxed);
    // b never passes push_limit_ (see PushSlow), so reaching it is the test.
    if (b == push_limit_) [[unlikely]] {
      return PushSlow(item);
    }
    // Private: no thief reads slots at or above split_; published later by a
    // release store of split_.  No thief still reads this slot: see
    // PushSlow.
    slots_[b & kMask].store(item, std::memory_order_relaxed);
    // Relaxed: thieves read bottom_ only as a hint (size, request).
    bottom_.store(static_cast<Index>(b + 1), std::memory_order_relaxed);
    return true;
  }

  // Owner only.  Pushes `item` and publishes every private item; when the
  // deque is full, claims the oldest half of it instead (TakeOldest: one
  // CAS, racing thieves fairly, oldest first) and calls
  // `overflow(T** items, size_t n)` once with those items followed by
  // `item`.  `overflow` must take ownership of all n
  // items (e.g. Injector::PushBatch), must not throw, and must not call this
  // deque's owner operations.
  template <class Overflow>
  void PushOrOverflow(T* item, Overflow&& overflow) noexcept {
    while (!Push(item)) {
      // Full: make everything stealable so that the batch below can take
      // the oldest half, private or not.
      Publish();
      std::array<T*, kMaxBatch + 1> moved;
      const size_t n = TakeOldest(moved.data(), kMaxBatch);
      if (n > 0) {
        moved[n] = item;
        std::forward<Overflow>(overflow)(moved.data(), n + 1);
        return;
      }
      // Thieves emptied the ring between our Push and TakeOldest: there is
      // room now, so the next Push succeeds.
    }
    Publish();
  }

  // Owner only.  Makes every item in the deque stealable.  Costs two
  // relaxed loads when there is nothing private, else one release store more.
  void Publish() noexcept {
    // Only the owner writes bottom_ and split_: its own last stores.
    const Index b = bottom_.load(std::memory_order_relaxed);
    if (split_.load(std::memory_order_relaxed) == b) return;
    // A pending request stays set: the next Pop finds nothing private to
    // share and clears it.  Release: pairs with the seq_cst load of split_ in
    // Steal / StealBatch, publishing the slots below b (Le et al.'s Push).
    split_.store(b, std::memory_order_release);
  }

  // Owner only.  Takes the most recently pushed item, or returns nullptr when
  // the deque is empty (or a thief won the race for the last item).
  T* Pop() noexcept {
    // Only the owner writes bottom_ and split_: its own last stores.
    Index b = bottom_.load(std::memory_order_relaxed);
    const Index s = split_.load(std::memory_order_relaxed);
    if (b != s) [[likely]] {
      // A private item: no thief reads slots at or above split_.
      b = static_cast<Index>(b - 1);
      T* item = slots_[b & kMask].load(std::memory_order_relaxed);
      bottom_.store(b, std::memory_order_relaxed);  // a hint for thieves
      AnswerRequest();
      return item;
    }
    return PopPublic(s);
  }

  // Owner only.  The item the next Pop would take, or a stale value (an
  // item thieves took since, or nullptr) when the deque is empty: a hint
  // for an owner that wants one particular item back (compare, then Pop:
  // a thief can take the newest item only after every older one, so when
  // it is gone the deque is empty and Pop returns nullptr).  Plain loads:
  // only the owner writes bottom_ and the slots.
  T* Newest() const noexcept {
    const Index b = bottom_.load(std::memory_order_relaxed);
    return slots_[static_cast<Index>(b - 1) & kMask].load(
        std::memory_order_relaxed);
  }

  // Any thread.  Takes the oldest published item, or returns nullptr when
  // there is none (raising the request flag if the owner holds private
  // items) or another thread took that item first (the caller moves on; it
  // does not spin here).
  T* Steal() noexcept {
    // seq_cst (Le et al.: acquire load + seq_cst fence): ordered before the
    // load of split_ below.
    Index t = top_.load(std::memory_order_seq_cst);
    // seq_cst (Le et al.: acquire); pairs with the release stores of split_
    // in Publish / AnswerRequest, which publish the slots.
    const Index s = split_.load(std::memory_order_seq_cst);
    if (Diff(s, t) <= 0) {
      Request(s);
      return nullptr;
    }
    return TakeTop(t);
  }

  // Any thread.  Takes up to `max` of the oldest published items, and at
  // most half of them (rounded up), writing them oldest first to `into`,
  // which has room for `max` pointers.  Returns how many it took; 0 when
  // nothing is published (raising the request flag as Steal does) or another
  // thread won the race for its top.
  size_t StealBatch(T** into, size_t max) noexcept {
    if (max == 0) return 0;
    // As in Steal.
    Index t = top_.load(std::memory_order_seq_cst);
    Index s = split_.load(std::memory_order_seq_cst);
    const Signed avail = Diff(s, t);
    if (avail <= 0) {
      Request(s);
      return 0;
    }
    const size_t half = static_cast<size_t>(avail - avail / 2);
    const size_t want = std::min(max, half);
    size_t n = 0;
    while (true) {
      T* item = TakeTop(t);
      if (item == nullptr) break;  // another thread moved top_
      into[n++] = item;
      t = static_cast<Index>(t + 1);  // our own CAS wrote this value
      if (n == want) break;
      // seq_cst: ordered after our CAS on top_, as the load of split_ in
      // Steal is after its load of top_; pairs with the release stores of
      // split_.
      s = split_.load(std::memory_order_seq_cst);
      if (Diff(s, t) <= 0) break;
    }
    return n;
  }

  // Owner only.  Takes up to `max` of the oldest published items with one
  // CAS of top_, writing them oldest first to `into`, which has room for
  // `max` pointers; returns how many (0 when nothing is published).  One
  // CAS for a whole batch is safe for the owner and not for a thief
  // (StealBatch): the owner's Pop, which takes from the bottom of the
  // public part without a CAS while more than one item is left there,
  // cannot run meanwhile, and thieves move top_ one item at a time, so a
  // thief's claim either comes first (the CAS fails and is retried from
  // the new top) or fails.  For an owner moving its oldest items elsewhere
  // (PushOrOverflow, the runtime's spill past its stealable capacity).
  size_t TakeOldest(T** into, size_t max) noexcept {
    // seq_cst as in Steal (a thief's CAS is ordered before it).
    Index t = top_.load(std::memory_order_seq_cst);
    const Index s = split_.load(std::memory_order_relaxed);  // own store
    for (;;) {
      const Signed avail = Diff(s, t);
      if (avail <= 0 || max == 0) return 0;
      const size_t n = std::min(max, static_cast<size_t>(avail));
      // On failure t is the new top: retried with fewer items available.
      if (top_.compare_exchange_strong(t, static_cast<Index>(t + n),
                                       std::memory_order_seq_cst,
                                       std::memory_order_seq_cst)) {
        // [t, t + n) is ours; only the owner (here) rewrites slots.
        for (size_t i = 0; i < n; ++i) {
          into[i] = slots_[static_cast<Index>(t + i) & kMask].load(
              std::memory_order_relaxed);
        }
        return n;
      }
    }
  }

  // Any thread that owns `into` (a thief moving loot into its own deque).
  // Steals up to `max` items (at most half of this deque's published items
  // and at most the free room in `into`), pushes them onto `into`, oldest at
  // the bottom, so the owner of `into` pops the newest stolen item first, and
  // publishes `into` (loot stays stealable).  Returns how many moved.
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
    if (n > 0) into.Publish();
    return n;
  }

  // Any thread.  The number of items, private ones included: exact when no
  // other operation runs concurrently, otherwise a value the deque held
  // recently (0..kCapacity).
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

  // Push when bottom_ has reached push_limit_: answers a pending request,
  // then rereads top_ and either refuses (full) or pushes.
  [[gnu::noinline]] bool PushSlow(T* item) noexcept {
    AnswerRequest();
    const Index b = bottom_.load(std::memory_order_relaxed);  // own store
    // Pairs with the seq_cst CAS on top_ in Steal / StealBatch / Pop: a
    // thief's read of a slot below t happens-before our reuse of it.  Every
    // slot Push writes until bottom_ reaches t + kCapacity held an index
    // below t, so push_limit_ only ever holds values computed this way.
    const Index t = top_.load(std::memory_order_acquire);
    push_limit_ = static_cast<Index>(t + kCapacity);
    if (b == push_limit_) return false;  // bottom - top == kCapacity: full
    slots_[b & kMask].store(item, std::memory_order_relaxed);  // as in Push
    bottom_.store(static_cast<Index>(b + 1), std::memory_order_relaxed);
    return true;
  }

  // Owner only: if a thief asked, publishes the older half (rounded up) of
  // the private items.
  void AnswerRequest() noexcept {
    // Relaxed: a hint (see the protocol comment).
    if (request_.load(std::memory_order_relaxed)) [[unlikely]] {
      Share();
    }
  }

  // Out of line so that Push and Pop stay small.
  [[gnu::noinline]] void Share() noexcept {
    // Cleared before the items are published: a thief that asks after this
    // store and finds them gone again asks again.
    request_.store(false, std::memory_order_relaxed);
    const Index b = bottom_.load(std::memory_order_relaxed);  // own store
    const Index s = split_.load(std::memory_order_relaxed);   // own store
    const Index n = static_cast<Index>(b - s);
    if (n == 0) return;
    // As in Publish.
    split_.store(static_cast<Index>(s + n - n / 2), std::memory_order_release);
  }

  // Any thread: the public part looked empty at split `s`; asks the owner to
  // share if it holds private items.  Relaxed: hints (the protocol comment).
  void Request(Index s) noexcept {
    if (bottom_.load(std::memory_order_relaxed) == s) return;
    if (request_.load(std::memory_order_relaxed)) return;  // keep it shared
    request_.store(true, std::memory_order_relaxed);
  }

  // Owner only, no private items (split_ == bottom_ == s): the Chase-Lev pop
  // on the public part, whose bottom is split_.
  T* PopPublic(Index s) noexcept {
    const Index b = static_cast<Index>(s - 1);
    // seq_cst store then seq_cst load of top_: the store-load order that Le et
    // al. get from a seq_cst fence.  A thief that then reads top_ and split_
    // (both seq_cst) sees the decrement or loses the CAS below.
    split_.store(b, std::memory_order_seq_cst);
    Index t = top_.load(std::memory_order_seq_cst);
    const Signed left = Diff(b, t);
    if (left < 0) {
      // Empty.  Release (Le et al.: relaxed) so that a thief reading this
      // value still synchronises with the store that published the slots.
      split_.store(s, std::memory_order_release);
      return nullptr;
    }
    // The owner wrote this slot itself.
    T* item = slots_[b & kMask].load(std::memory_order_relaxed);
    if (left > 0) {
      // Not the last: no thief can reach slot b.  bottom_ follows split_
      // (relaxed: a hint).
      bottom_.store(b, std::memory_order_relaxed);
      return item;
    }
    // The last item: whoever moves top_ from t to t+1 owns it.
    const bool won = top_.compare_exchange_strong(
        t, static_cast<Index>(t + 1), std::memory_order_seq_cst,
        std::memory_order_relaxed);  // on failure the value is not used
    // Either way top_ is now t+1 == s: empty, with split_ == bottom_ ==
    // top_.  Release for the same reason as above.
    split_.store(s, std::memory_order_release);
    return won ? item : nullptr;
  }

  // Reads slot[t] and claims it with a CAS of top_ from t to t+1.  Returns
  // the item, or nullptr when top_ was no longer t.
  T* TakeTop(Index t) noexcept {
    // Published by a release store of split_ (our seq_cst load of split_
    // acquired it).  If the owner has since reused the slot, top_ has moved
    // past t and the CAS below fails, so a stale value is discarded.
    T* item = slots_[t & kMask].load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(t, static_cast<Index>(t + 1),
                                      std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return nullptr;  // failure order: the observed value is not used
    }
    return item;
  }

  // The slots first: at offset 0 a slot's address is one scaled index.
  // Thieves hammer top_; they read split_ and write request_ rarely; the
  // owner touches bottom_, push_limit_ and the slots on every operation.
  alignas(64) std::array<Slot, kCapacity> slots_;
  alignas(64) typename Atomics::template Atomic<Index> top_;
  alignas(64) typename Atomics::template Atomic<Index> split_;
  typename Atomics::template Atomic<bool> request_;
  alignas(64) typename Atomics::template Atomic<Index> bottom_;
  // Owner only: kCapacity past a value top_ has had (top_ only grows).
  Index push_limit_;
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_WORK_DEQUE_H_
