// steal/injector.h: the runtime-wide queue for work submitted from outside
// any worker.
//
// `Injector<T>` is an intrusive multi-producer queue: any thread pushes with
// one atomic exchange (wait-free, no allocation), and workers take FIFO
// batches.  `T` derives from `InjectorNode`, which holds the link, so a task
// header embeds its own node.  Reach for `WorkDeque` (steal/work_deque.h) for
// a worker's own work; the injector is for the outside world and for a
// deque's overflow (`WorkDeque::PushOrOverflow`).
//
// Protocol (Vyukov's intrusive MPSC queue, with consumers serialised by a
// try-lock so that any worker may consume).
//   State: `tail_` (the last linked node, producers exchange it), `head_`
//   (the next node to pop; consumer-owned), a `stub_` node that keeps the
//   list non-empty, `consuming_` (a consumer holds the queue) and `len_` (an
//   estimate of the number of items).
//   1. Push(chain first..last): last->next = null; prev = tail_.exchange(last);
//      prev->next = first (release).  Between the exchange and that store the
//      chain is not yet reachable from head_; consumers see the queue end at
//      prev and retry later, so a producer preempted there delays the items
//      behind it, but loses nothing.
//   2. PopBatch: take `consuming_` with an exchange (a second consumer gets 0
//      at once instead of waiting), pop nodes from head_ following `next`,
//      skipping the stub; when head_ is the last node, re-push the stub behind
//      it so head_ can advance past it; release `consuming_`.
//   3. Only the consumer holding `consuming_` reads or writes head_; the
//      acquire/release pair on `consuming_` hands head_ from one consumer to
//      the next.
//   Shutdown: the injector owns no items.  1. stop producers; 2. PopBatch
//   until it returns 0 with `size()` == 0; 3. destroy.
//
// Thread safety: every member is safe from any thread.

#ifndef SPINDLE_STEAL_INJECTOR_H_
#define SPINDLE_STEAL_INJECTOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "steal/atomics.h"

namespace spindle::steal {

// BasicInjectorNode: the link an `Injector` threads its items on.
//
// Requires: a type queued on an injector derives from it (publicly, once).
// Guarantees: between push and pop the injector owns the link and touches
// nothing else of the item.
// Thread safety: only the injector reads or writes the link.
//
// Example:
//   struct Job : steal::InjectorNode { void (*run)(Job*); };
template <class Atomics = StdAtomics>
struct BasicInjectorNode {
  typename Atomics::template Atomic<BasicInjectorNode*> injector_next{nullptr};
};
using InjectorNode = BasicInjectorNode<StdAtomics>;

// Injector: lock-free multi-producer FIFO with non-blocking batch pop.
//
// Requires: `T` derives from `BasicInjectorNode<Atomics>`; an item is on at
// most one injector at a time and stays alive until popped.  The injector
// outlives every call on it.
// Guarantees: every pushed item is popped exactly once, and items pushed by
// one thread are popped in push order (a batch keeps its order).  Push is
// wait-free and never allocates.  PopBatch never waits: it returns 0 when
// the queue is empty, when another thread is popping, or while the producer
// of the next item is between its two steps.
// Thread safety: all members may be called from any thread concurrently.
// Memory ordering: everything a producer did before pushing an item
// happens-before everything the consumer does after popping it.  Push and
// PopBatch each perform a seq_cst read-modify-write / load of the length, so a
// Dekker-style "push, then look for a sleeper" / "announce sleep, then check
// the queue" protocol can be built on them.
//
// Example:
//   struct Job : steal::InjectorNode { ... };
//   steal::Injector<Job> inbox;
//   inbox.Push(job);                        // any thread
//   Job* batch[32];
//   size_t n = inbox.PopBatch(batch, 32);   // a worker
template <class T, class Atomics = StdAtomics>
class Injector {
  using Node = BasicInjectorNode<Atomics>;
  static_assert(std::is_base_of_v<Node, T>,
                "T must derive from steal::BasicInjectorNode<Atomics>");

 public:
  Injector() noexcept : consuming_(false), tail_(&stub_), len_(0) {}
  Injector(const Injector&) = delete;
  Injector& operator=(const Injector&) = delete;

  // Any thread.  Appends `item`.
  void Push(T* item) noexcept {
    Node* n = item;
    LinkChain(n, n);
    // seq_cst: see Memory ordering in the class comment.
    len_.fetch_add(1, std::memory_order_seq_cst);
  }

  // Any thread.  Appends `items[0..n)` in order, with one exchange.
  void PushBatch(T* const* items, size_t n) noexcept {
    if (n == 0) return;
    for (size_t i = 0; i + 1 < n; ++i) {
      // The chain is private until LinkChain publishes it (release store).
      static_cast<Node*>(items[i])->injector_next.store(
          items[i + 1], std::memory_order_relaxed);
    }
    LinkChain(items[0], items[n - 1]);
    // seq_cst: see Memory ordering in the class comment.
    len_.fetch_add(static_cast<int64_t>(n), std::memory_order_seq_cst);
  }

  // Any thread.  Pops up to `max` items, oldest first, into `into`.  Returns
  // how many; 0 when empty, busy with another consumer, or mid-push.
  size_t PopBatch(T** into, size_t max) noexcept {
    // seq_cst: pairs with the fetch_add in Push (see Memory ordering).
    if (max == 0 || len_.load(std::memory_order_seq_cst) <= 0) return 0;
    // Acquire: pairs with the release store below by the previous consumer,
    // which hands over head_.
    if (consuming_.exchange(true, std::memory_order_acquire)) return 0;
    size_t n = 0;
    while (n < max) {
      Node* node = PopOne();
      if (node == nullptr) break;
      into[n++] = static_cast<T*>(node);
    }
    // Pairs with the acquire exchange above in the next consumer.
    consuming_.store(false, std::memory_order_release);
    if (n > 0) {
      // Relaxed: an estimate; the items themselves were acquired via links.
      len_.fetch_sub(static_cast<int64_t>(n), std::memory_order_relaxed);
    }
    return n;
  }

  // Any thread.  Pops one item, or nullptr (see PopBatch).
  T* Pop() noexcept {
    T* item = nullptr;
    return PopBatch(&item, 1) == 1 ? item : nullptr;
  }

  // Any thread.  The number of items, exact when nothing runs concurrently.
  size_t size() const noexcept {
    // Relaxed: an estimate (transiently low while a push is half done).
    const int64_t n = len_.load(std::memory_order_relaxed);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  // Links the private chain first..last at the tail.
  void LinkChain(Node* first, Node* last) noexcept {
    // Private until the exchange below makes `last` reachable as tail_.
    last->injector_next.store(nullptr, std::memory_order_relaxed);
    // acq_rel: release orders the store above before `last` becomes the tail
    // other producers link behind; acquire pairs with the previous producer's
    // exchange, so `prev` is a fully initialised node.
    Node* prev = tail_.exchange(last, std::memory_order_acq_rel);
    // Release: pairs with the acquire loads of injector_next in PopOne; this
    // store publishes the chain (and the items) to the consumer.
    prev->injector_next.store(first, std::memory_order_release);
  }

  // Consumer (holding consuming_) only.  One node, or nullptr.
  Node* PopOne() noexcept {
    Node* head = head_;
    // Acquire: pairs with the release store in LinkChain.
    Node* next = head->injector_next.load(std::memory_order_acquire);
    if (head == &stub_) {
      if (next == nullptr) return nullptr;  // empty
      head_ = next;
      head = next;
      next = head->injector_next.load(std::memory_order_acquire);  // as above
    }
    if (next != nullptr) {
      head_ = next;
      return head;
    }
    // `head` is the last linked node.  If it is also the tail, put the stub
    // behind it so head_ can move on; if not, a producer has exchanged the
    // tail but not linked yet: come back later.
    // Acquire: pairs with the acq_rel exchange in LinkChain.
    if (tail_.load(std::memory_order_acquire) != head) return nullptr;
    LinkChain(&stub_, &stub_);
    next = head->injector_next.load(std::memory_order_acquire);  // as above
    if (next == nullptr) return nullptr;
    head_ = next;
    return head;
  }

  // Consumer-side fields apart from the producers' tail.
  alignas(64) Node stub_;
  Node* head_ = &stub_;  // guarded by consuming_
  typename Atomics::template Atomic<bool> consuming_;
  alignas(64) typename Atomics::template Atomic<Node*> tail_;
  alignas(64) typename Atomics::template Atomic<int64_t> len_;
};

}  // namespace spindle::steal

#endif  // SPINDLE_STEAL_INJECTOR_H_
