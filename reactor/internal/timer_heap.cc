#include "reactor/internal/timer_heap.h"

#include <utility>

namespace spindle::reactor::reactor_internal {

void TimerHeap::Push(Operation* op) {
  heap_.push_back(op);
  S(op).heap_index = static_cast<uint32_t>(heap_.size() - 1);
  SiftUp(heap_.size() - 1);
}

Operation* TimerHeap::Pop() noexcept {
  Operation* top = heap_.front();
  Remove(top);
  return top;
}

void TimerHeap::Remove(Operation* op) noexcept {
  const size_t i = S(op).heap_index;
  const size_t last = heap_.size() - 1;
  S(op).heap_index = kNoHeapIndex;
  if (i != last) {
    Place(i, heap_[last]);
    heap_.pop_back();
    // The moved element may belong above or below slot i.
    if (i > 0 && Less(i, (i - 1) / 2)) {
      SiftUp(i);
    } else {
      SiftDown(i);
    }
  } else {
    heap_.pop_back();
  }
}

void TimerHeap::SiftUp(size_t i) noexcept {
  Operation* op = heap_[i];
  const uint64_t key = S(op).deadline_ns;
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (S(heap_[parent]).deadline_ns <= key) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, op);
}

void TimerHeap::SiftDown(size_t i) noexcept {
  const size_t n = heap_.size();
  Operation* op = heap_[i];
  const uint64_t key = S(op).deadline_ns;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && Less(child + 1, child)) ++child;
    if (key <= S(heap_[child]).deadline_ns) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, op);
}

}  // namespace spindle::reactor::reactor_internal
