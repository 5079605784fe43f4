#include "sched/scheduler.h"

#include <algorithm>
#include <cstring>

namespace spindle::sched {

std::string_view PriorityName(Priority priority) noexcept {
  switch (priority) {
    case Priority::kHigh:
      return "high";
    case Priority::kNormal:
      return "normal";
    case Priority::kLow:
      return "low";
  }
  return "unknown";
}

void FifoScheduler::PushOther(TaskNode* task) noexcept {
  if (task->priority == Priority::kHigh) {
    high_.PushBack(task);
    others_ |= kHighBit;
  } else {  // kLow, or a value past it.
    low_.PushBack(task);
    others_ |= kLowBit;
  }
}

TaskNode* FifoScheduler::PopOther() noexcept {
  // others_ != 0: high_ or low_ holds a task.
  if (TaskNode* t = high_.PopFront()) {
    if (high_.empty()) others_ &= ~kHighBit;
    return t;
  }
  if (TaskNode* t = normal_.PopFront()) return t;
  TaskNode* t = low_.PopFront();
  if (low_.empty()) others_ &= ~kLowBit;
  return t;
}

TaskNode* PriorityScheduler::Pop() noexcept {
  if (aging_pops_ != 0) {
    // Promote the oldest task of a level once it has waited aging_pops pops
    // there.  Normal first, so a low task promoted now is not promoted again
    // in the same pop.  Unsigned subtraction is wrap-safe.
    for (int level = 1; level < kNumPriorities; ++level) {
      TaskNode* oldest = levels_[level].front();
      if (oldest != nullptr && pops_ - oldest->aux >= aging_pops_) {
        sched_internal::TaskList::Unlink(oldest);
        oldest->aux = pops_;
        levels_[level - 1].PushBack(oldest);
        ++promotions_;
      }
    }
  }
  for (auto& level : levels_) {
    if (TaskNode* t = level.PopFront()) {
      t->queued = false;
      ++pops_;  // Counts pops that served a task, the unit of aging.
      return t;
    }
  }
  return nullptr;
}

LasScheduler::LasScheduler(size_t capacity) { Reserve(capacity); }

void LasScheduler::Reserve(size_t capacity) {
  if (capacity <= capacity_) return;
  auto bigger = std::make_unique<Entry[]>(capacity);
  if (size_ != 0) std::memcpy(bigger.get(), heap_.get(), size_ * sizeof(Entry));
  heap_ = std::move(bigger);
  capacity_ = capacity;
}

void LasScheduler::Grow() noexcept {
  // The one allocation LAS may make: only when more tasks are queued at once
  // than ever before.  Failure to allocate terminates (noexcept).
  Reserve(std::max<size_t>(16, capacity_ * 2));
}

void LasScheduler::SiftUp(size_t i, Entry e) noexcept {
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!Less(e, heap_[parent])) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, e);
}

void LasScheduler::SiftDown(size_t i, Entry e) noexcept {
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= size_) break;
    if (child + 1 < size_ && Less(heap_[child + 1], heap_[child])) ++child;
    if (!Less(heap_[child], e)) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, e);
}

void LasScheduler::Push(TaskNode* task) noexcept {
  if (size_ == capacity_) Grow();
  task->queued = true;
  const size_t i = size_++;
  SiftUp(i, Entry{task->attained_service, seq_++, task});
}

TaskNode* LasScheduler::Pop() noexcept {
  if (size_ == 0) return nullptr;
  TaskNode* top = heap_[0].node;
  --size_;
  if (size_ != 0) SiftDown(0, heap_[size_]);
  top->queued = false;
  return top;
}

bool LasScheduler::Remove(TaskNode* task) noexcept {
  if (!task->queued) return false;
  const size_t i = task->aux;
  if (i >= size_ || heap_[i].node != task) return false;
  --size_;
  if (i != size_) {
    const Entry last = heap_[size_];
    if (i > 0 && Less(last, heap_[(i - 1) / 2])) {
      SiftUp(i, last);
    } else {
      SiftDown(i, last);
    }
  }
  task->queued = false;
  return true;
}

}  // namespace spindle::sched
