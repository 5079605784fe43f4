// reactor/internal/timer_heap.h: an intrusive binary min-heap of timer
// Operations keyed by OpState::deadline_ns.
//
// Push, Pop and Remove are O(log n); Top is O(1).  Each Operation records its
// slot in OpState::heap_index, so Remove (cancellation) needs no search.  The
// heap stores one pointer per pending timer in a vector that only grows: a
// million pending sleeps cost 8 MB here plus the caller's Operations, and no
// allocation once the vector has reached its high-water mark.
//
// Thread safety: none; owned by one Reactor.

#ifndef SPINDLE_REACTOR_INTERNAL_TIMER_HEAP_H_
#define SPINDLE_REACTOR_INTERNAL_TIMER_HEAP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "reactor/internal/operation.h"

namespace spindle::reactor::reactor_internal {

class TimerHeap {
 public:
  TimerHeap() { heap_.reserve(64); }

  bool empty() const noexcept { return heap_.empty(); }
  size_t size() const noexcept { return heap_.size(); }
  // Requires !empty().
  Operation* Top() const noexcept { return heap_.front(); }
  uint64_t EarliestDeadline() const noexcept {
    return heap_.empty() ? UINT64_MAX : S(heap_.front()).deadline_ns;
  }

  // Adds `op` (its deadline_ns already set).  Allocates only when the heap
  // grows past its previous maximum size.
  void Push(Operation* op);
  // Removes and returns the earliest timer.  Requires !empty().
  Operation* Pop() noexcept;
  // Removes `op`, which must be in this heap.
  void Remove(Operation* op) noexcept;

 private:
  bool Less(size_t a, size_t b) const noexcept {
    return S(heap_[a]).deadline_ns < S(heap_[b]).deadline_ns;
  }
  void Place(size_t i, Operation* op) noexcept {
    heap_[i] = op;
    S(op).heap_index = static_cast<uint32_t>(i);
  }
  void SiftUp(size_t i) noexcept;
  void SiftDown(size_t i) noexcept;

  std::vector<Operation*> heap_;
};

}  // namespace spindle::reactor::reactor_internal

#endif  // SPINDLE_REACTOR_INTERNAL_TIMER_HEAP_H_
