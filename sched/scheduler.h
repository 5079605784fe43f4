// sched/scheduler.h: per-queue task schedulers.
//
// Reach for `FifoScheduler` first: it is the default of every QueueSet queue,
// runs tasks by their CPU priority (`TaskNode::priority`: high, normal, low)
// and first in, first out within one, and costs two pointer writes per push
// or pop.  `PriorityScheduler` has the same order and can age waiting tasks
// up a level.  `LifoScheduler` runs the newest task first (cache-warm) but
// takes the oldest every Nth pop so nothing starves; `LasScheduler` runs the
// task with the least attained service first; neither reads the priority.
// A user-defined scheduler implements `TaskScheduler` and plugs into a
// QueueSet queue the same way; it may honour the priority or ignore it.
//
// None of them allocates per operation, reads a clock, or takes a lock.
//
// Measured (medians, `./bazelw run -c opt //sched:sched_benchmark`, 2-core
// AMD EPYC VM, 64 tasks queued): push+pop FIFO ~1.3 ns with normal tasks
// only (~3 ns with the three priorities mixed) beside ~1.2 ns for a bare
// singly-linked intrusive list; LIFO ~2.6 ns; priority ~5 ns; LAS ~40 ns.

#ifndef SPINDLE_SCHED_SCHEDULER_H_
#define SPINDLE_SCHED_SCHEDULER_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "sched/task_node.h"

namespace spindle::sched {

// TaskScheduler: the policy that orders the tasks of one queue.
//
// Requires: a task passed to Push is not queued anywhere (`queued == false`);
// a task passed to Remove is either not queued or queued in *this*
// scheduler (a scheduler cannot tell another scheduler's node from its own in
// O(1); QueueSet guarantees it through `TaskNode::queue_index`).
// Guarantees: Push sets `queued`, Pop and a successful Remove clear it; Pop
// returns nullptr when empty; Remove returns false for a node that is not
// queued.  Push, Pop and Remove are O(1) or O(log n) (Size of the list-based
// FIFO and LIFO is a walk), noexcept and allocation-free
// (LasScheduler: allocation-free once its capacity covers the largest number
// of tasks queued at once; see there).
// Thread safety: none; one thread uses a scheduler at a time.
//
// Example (a user-defined policy):
//   class Mine final : public TaskScheduler {
//     void Push(TaskNode* t) noexcept override { ... t->queued = true; }
//     TaskNode* Pop() noexcept override { ... }
//     ...
//   };
//   queue_set.AddQueue(7, 100, std::make_unique<Mine>());
class TaskScheduler {
 public:
  virtual ~TaskScheduler() = default;
  virtual void Push(TaskNode* task) noexcept = 0;
  // Returns nullptr when empty.
  virtual TaskNode* Pop() noexcept = 0;
  // Unlinks a queued task (cancellation).  False if it is not queued here.
  virtual bool Remove(TaskNode* task) noexcept = 0;
  virtual size_t Size() const noexcept = 0;
  bool Empty() const noexcept { return Size() == 0; }
  // Called after each poll of `task` (already popped) with the ticks it ran.
  virtual void Observe([[maybe_unused]] TaskNode* task,
                       [[maybe_unused]] uint64_t service_ticks) noexcept {}
  virtual std::string_view Name() const noexcept = 0;
};

namespace sched_internal {

// A circular doubly-linked list of TaskNodes through a sentinel.  Not movable:
// the sentinel's address is in the nodes.
class TaskList {
 public:
  TaskList() noexcept { head_.next = head_.prev = &head_; }
  TaskList(const TaskList&) = delete;
  TaskList& operator=(const TaskList&) = delete;

  bool empty() const noexcept { return head_.next == &head_; }
  // O(n): a walk.  Lists keep no count, see FifoScheduler.
  size_t CountNodes() const noexcept {
    size_t n = 0;
    for (const TaskNode* t = head_.next; t != &head_; t = t->next) ++n;
    return n;
  }
  TaskNode* front() const noexcept { return empty() ? nullptr : head_.next; }
  TaskNode* back() const noexcept { return empty() ? nullptr : head_.prev; }

  void PushBack(TaskNode* t) noexcept {
    TaskNode* last = head_.prev;
    t->next = &head_;
    // Between t's two links (it may alias one as far as the compiler
    // knows): keeps GCC from pairing them into one vector store, which
    // takes five instructions for what two moves do.
    last->next = t;
    t->prev = last;
    head_.prev = t;
  }
  void PushFront(TaskNode* t) noexcept {
    TaskNode* first = head_.next;
    t->prev = &head_;
    first->prev = t;
    t->next = first;
    head_.next = t;
  }
  // An unlinked node's next / prev are left stale: `queued` is the truth.
  static void Unlink(TaskNode* t) noexcept {
    t->prev->next = t->next;
    t->next->prev = t->prev;
  }
  TaskNode* PopFront() noexcept {
    TaskNode* t = head_.next;
    if (t == &head_) return nullptr;
    TaskNode* n = t->next;
    head_.next = n;
    n->prev = &head_;
    return t;
  }
  TaskNode* PopBack() noexcept {
    TaskNode* t = head_.prev;
    if (t == &head_) return nullptr;
    TaskNode* p = t->prev;
    head_.prev = p;
    p->next = &head_;
    return t;
  }

 private:
  TaskNode head_;
};

}  // namespace sched_internal

// FifoScheduler: by CPU priority (high, then normal, then low), first in,
// first out within one priority.  The default of every QueueSet queue.
//
// Strict: a queued task of a higher priority always pops before any of a
// lower one, so low tasks wait while higher ones stay runnable (a yielding
// high task goes to the back of the high tasks, still ahead of the rest).
// PriorityScheduler adds aging against that.  A queue whose order should
// ignore priority takes a scheduler that says so: LifoScheduler(1) is pure
// arrival order; LifoScheduler, LasScheduler and a user's TaskScheduler
// order as they document.  A priority value past kLow counts as kLow.
// Cost: one intrusive list per priority.  Normal tasks take a fast path:
// Push compares the priority byte, Pop and IsEmpty test one byte that says
// whether a high or low task is queued; with only normal tasks that is all
// this costs beyond a single list.
// Guarantees: push, pop and remove are O(1); nothing allocates.
// Thread safety: none.
// Example:
//   FifoScheduler fifo;
//   a.node.priority = Priority::kLow;   fifo.Push(&a.node);
//   b.node.priority = Priority::kHigh;  fifo.Push(&b.node);
//   TaskNode* t = fifo.Pop();  // &b.node
class FifoScheduler final : public TaskScheduler {
 public:
  FifoScheduler() = default;
  void Push(TaskNode* task) noexcept override {
    task->queued = true;
    if (task->priority == Priority::kNormal) [[likely]] {
      normal_.PushBack(task);
    } else {
      PushOther(task);
    }
  }
  // Push for a task of normal priority (no call); false for another
  // priority, which Push handles.  Push keeps its own copy of these lines:
  // written as a call of this one it cost one more instruction per yield
  // in the run loop (callgrind, poll_profile, measured 2026-12-04).
  bool TryPushNormal(TaskNode* task) noexcept {
    if (task->priority != Priority::kNormal) return false;
    task->queued = true;
    normal_.PushBack(task);
    return true;
  }
  TaskNode* Pop() noexcept override {
    TaskNode* t = others_ == 0 ? normal_.PopFront() : PopOther();
    if (t != nullptr) t->queued = false;
    return t;
  }
  bool Remove(TaskNode* task) noexcept override {
    if (!task->queued) return false;
    sched_internal::TaskList::Unlink(task);
    task->queued = false;
    // Which list held it is not recorded (the priority may have changed
    // since the push): recompute both bits.
    others_ = (high_.empty() ? 0 : kHighBit) | (low_.empty() ? 0 : kLowBit);
    return true;
  }
  // O(n) (a walk): keeping a count would put a read-modify-write of one
  // memory word on every push and pop, a ~5-cycle recurrence that doubles
  // their cost; sizes are read for stats, not on the hot path.
  size_t Size() const noexcept override {
    return high_.CountNodes() + normal_.CountNodes() + low_.CountNodes();
  }
  // O(1), non-virtual, for callers that know the type (QueueSet).
  bool IsEmpty() const noexcept { return others_ == 0 && normal_.empty(); }
  // Whether a task of high priority is queued (Pop would take it first).
  bool HasHigh() const noexcept { return (others_ & kHighBit) != 0; }
  // A task of normal priority, ahead of the other normal ones (one that
  // was due before all of them: the executor's hand-off slot).
  void PushFrontNormal(TaskNode* task) noexcept {
    task->queued = true;
    normal_.PushFront(task);
  }
  std::string_view Name() const noexcept override { return "fifo"; }

 private:
  static constexpr uint8_t kHighBit = 1;
  static constexpr uint8_t kLowBit = 2;
  void PushOther(TaskNode* task) noexcept;
  TaskNode* PopOther() noexcept;

  sched_internal::TaskList normal_;
  // kHighBit: high_ holds a task; kLowBit: low_ does.
  uint8_t others_ = 0;
  sched_internal::TaskList high_;
  sched_internal::TaskList low_;
};

// LifoScheduler: newest first, with a skip interval against starvation.
//
// Every `skip_interval`-th pop takes the oldest task instead of the newest
// (as Tokio's and clockworker's LIFO slots bound how long the rest wait), so
// a task that is never the newest still runs within about skip_interval x
// (its position) pops.  skip_interval 1 is FIFO; 0 disables the skip (pure
// LIFO, may starve).
// Guarantees: O(1) push, pop, remove.
// Thread safety: none.
class LifoScheduler final : public TaskScheduler {
 public:
  static constexpr uint32_t kDefaultSkipInterval = 16;
  explicit LifoScheduler(uint32_t skip_interval = kDefaultSkipInterval) noexcept
      : skip_interval_(skip_interval) {}
  void Push(TaskNode* task) noexcept override {
    task->queued = true;
    list_.PushBack(task);
  }
  TaskNode* Pop() noexcept override {
    if (list_.empty()) return nullptr;
    TaskNode* t;
    if (skip_interval_ != 0 && ++pops_ >= skip_interval_) {
      pops_ = 0;
      t = list_.PopFront();
    } else {
      t = list_.PopBack();
    }
    t->queued = false;
    return t;
  }
  bool Remove(TaskNode* task) noexcept override {
    if (!task->queued) return false;
    sched_internal::TaskList::Unlink(task);
    task->queued = false;
    return true;
  }
  // O(n) (a walk), as FifoScheduler's.
  size_t Size() const noexcept override { return list_.CountNodes(); }
  std::string_view Name() const noexcept override { return "lifo"; }
  uint32_t skip_interval() const noexcept { return skip_interval_; }

 private:
  sched_internal::TaskList list_;
  uint32_t skip_interval_;
  uint32_t pops_ = 0;
};

// PriorityScheduler: high, then normal, then low; FIFO within a level.
// Without aging this is FifoScheduler's order (FifoScheduler is cheaper: it
// keeps no pop count); reach for this one for aging.
//
// Aging (optional): with `aging_pops` > 0, a task that has waited at its level
// while `aging_pops` pops were served is moved to the back of the next level
// up ("served as if one level higher"; a task can climb twice).  Waiting is
// counted in pops of this scheduler, not clock time, so Pop reads no clock and
// the bound holds whatever the polls cost: with a steady stream of high
// tasks, a low task waits at most about (its place in line + 2) x aging_pops
// pops.  0 disables aging (strict priority; low may starve).  The pop count
// at which a task entered its level is kept in `TaskNode::aux`.
// Guarantees: O(1) push, pop (at most two promotions per pop), remove.
// Thread safety: none.
class PriorityScheduler final : public TaskScheduler {
 public:
  explicit PriorityScheduler(uint32_t aging_pops = 0) noexcept
      : aging_pops_(aging_pops) {}
  void Push(TaskNode* task) noexcept override {
    int level = static_cast<int>(task->priority);
    if (level >= kNumPriorities) level = kNumPriorities - 1;
    task->queued = true;
    task->aux = pops_;
    levels_[level].PushBack(task);
  }
  TaskNode* Pop() noexcept override;
  bool Remove(TaskNode* task) noexcept override {
    if (!task->queued) return false;
    sched_internal::TaskList::Unlink(task);
    task->queued = false;
    return true;
  }
  // O(n) (a walk), as FifoScheduler's.
  size_t Size() const noexcept override {
    size_t n = 0;
    for (const auto& level : levels_) n += level.CountNodes();
    return n;
  }
  std::string_view Name() const noexcept override { return "priority"; }
  uint32_t aging_pops() const noexcept { return aging_pops_; }
  // Tasks moved up a level by aging so far.
  uint64_t promotions() const noexcept { return promotions_; }

 private:
  sched_internal::TaskList levels_[kNumPriorities];
  uint32_t aging_pops_;
  uint32_t pops_ = 0;
  uint64_t promotions_ = 0;
};

// LasScheduler: least attained service first (ties: push order).
//
// A binary min-heap of (attained_service at push, push sequence, node) in an
// array; the node's slot is kept in `TaskNode::aux`, so Remove is O(log n).
// The key is read at Push: QueueSet::Charge adds the poll's service to
// `attained_service` before the task is pushed again.  Users driving a
// LasScheduler without a QueueSet add it themselves.
// Requires: reserve capacity at setup (constructor or Reserve) for the most
// tasks queued at once; beyond it Push grows the array (doubling), which is
// the only allocation, so steady state allocates nothing.
// Guarantees: O(log n) push, pop and remove.
// Thread safety: none.
class LasScheduler final : public TaskScheduler {
 public:
  static constexpr size_t kDefaultCapacity = 1024;
  explicit LasScheduler(size_t capacity = kDefaultCapacity);
  void Reserve(size_t capacity);
  void Push(TaskNode* task) noexcept override;
  TaskNode* Pop() noexcept override;
  bool Remove(TaskNode* task) noexcept override;
  size_t Size() const noexcept override { return size_; }
  std::string_view Name() const noexcept override { return "las"; }
  size_t capacity() const noexcept { return capacity_; }

 private:
  struct Entry {
    uint64_t key;
    uint64_t seq;
    TaskNode* node;
  };
  static bool Less(const Entry& a, const Entry& b) noexcept {
    return a.key < b.key || (a.key == b.key && a.seq < b.seq);
  }
  void Place(size_t i, const Entry& e) noexcept {
    heap_[i] = e;
    e.node->aux = static_cast<uint32_t>(i);
  }
  void SiftUp(size_t i, Entry e) noexcept;
  void SiftDown(size_t i, Entry e) noexcept;
  void Grow() noexcept;

  std::unique_ptr<Entry[]> heap_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace spindle::sched

#endif  // SPINDLE_SCHED_SCHEDULER_H_
