// executor/task.h: Spindle's task type, its header, and the join handle.
//
// Reach for `Task<T>` (a lazily started C++20 coroutine) and `JoinHandle<T>`
// (what spawning returns).  `TaskHeader` is what the schedulers and the run
// loop see; users never touch it.
//
// Memory layout of one task (one allocation, from the frame allocator):
//
//   [ TaskCell<T>: TaskHeader | result slot ][ coroutine frame ... ]
//
// The cell sits in front of the frame so that it can outlive the frame: a
// JoinHandle keeps the cell (state and result) after the frame is destroyed,
// and the frame's operator delete only drops the frame's reference.  The
// cell is freed when the last reference (frame, join handle, an in-flight
// cross-thread abort) is gone.

#ifndef SPINDLE_EXECUTOR_TASK_H_
#define SPINDLE_EXECUTOR_TASK_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "budget/tier.h"
#include "executor/frame_allocator.h"
#include "executor/internal/published_ptr.h"
#include "executor/internal/task_ticks.h"
#include "sched/task_node.h"
#include "steal/injector.h"

namespace spindle {

class LocalExecutor;
template <typename T>
class Task;
template <typename T>
class JoinHandle;

// How a task ended, as its JoinHandle reports it.
enum class JoinStatus : uint8_t {
  kPending = 0,    // not finished yet
  kCompleted = 1,  // returned a value
  kFailed = 2,     // threw; the exception is rethrown by Join / co_await
  kCancelled = 3,  // aborted, or dropped when its executor shut down
};

// Thrown for a misuse of a handle that would otherwise hang or return
// garbage: joining a task from inside its own executor (a deadlock), a task
// awaiting itself, two tasks awaiting one handle at once, taking a value
// twice, or using an empty (default-constructed or moved-from) handle.
class TaskMisuseError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// Thrown by JoinHandle::Join / co_await for a cancelled task.
class TaskCancelledError : public std::exception {
 public:
  const char* what() const noexcept override {
    return "spindle: the task was cancelled (aborted, or dropped at "
           "executor shutdown)";
  }
};

// A task's timeline in TSC ticks (timing::TscClock::ToNanos converts; 0:
// has not happened), recorded by executors built with
// ExecutorBuilder::TaskTiming() (RuntimeBuilder::TaskTiming()), for
// coroutine and fiber tasks alike.
struct TaskTiming {
  uint64_t spawned = 0;         // submitted to the executor
  uint64_t first_run = 0;       // its first poll began
  uint64_t last_resumed = 0;    // its latest poll began
  uint64_t last_suspended = 0;  // its latest poll that did not finish it ended
  uint64_t completed = 0;       // it returned, threw or was cancelled
  uint64_t run_ticks = 0;       // the length of all its polls
};

namespace executor_internal {

struct Inbox;

// Bits of TaskHeader::state, the only task field other threads touch.  The
// low 32 bits are flags; the high 32 bits count the task's references
// (kStateRefOne each: the frame, a join handle, a Waker, an abort in
// flight), so that a completion publishes its bits and drops the frame's
// reference in one RMW.  64-bit constants: `~kStateX` keeps the count.
inline constexpr uint64_t kStateComplete = 1u << 0;    // result stored
inline constexpr uint64_t kStateCancelled = 1u << 1;   // dropped unfinished
inline constexpr uint64_t kStateFailed = 1u << 2;      // result is an exception
inline constexpr uint64_t kStateJoinWaiter = 1u << 3;  // join_waiter is set
inline constexpr uint64_t kStateNotified = 1u << 4;    // a wake is queued
inline constexpr uint64_t kStateCancelRequested = 1u << 5;
// owner and inbox are set (a task of a Runtime is spawned unbound and bound
// to the worker that first runs it: a release RMW after writing them).
inline constexpr uint64_t kStateBound = 1u << 6;
// A thread blocks in Join()/Wait() on the state word: the completer calls
// notify_all (a futex syscall) only when this is set.
inline constexpr uint64_t kStateThreadWaiter = 1u << 7;
inline constexpr uint64_t kStateDone = kStateComplete | kStateCancelled;
inline constexpr uint64_t kStateRefOne = uint64_t{1} << 32;
// The reference count of a state word.
inline constexpr uint32_t RefsOf(uint64_t state) noexcept {
  return static_cast<uint32_t>(state >> 32);
}

// Owner-thread-only scheduling state.
enum class RunState : uint8_t {
  kNew,        // created, not yet spawned
  kQueued,     // linked in a queue of the QueueSet
  kRunning,    // being polled
  kYielded,    // suspended by a yield: the loop re-queues it after the poll
  kSuspended,  // waiting for a wake (I/O, timer, join, user awaiter)
  kDone,       // reached final_suspend
  // Handed by a Runtime worker to another one (a yielded task; see
  // LocalExecutor::MoveTo), in the new worker's inbox until it adopts it.
  kMoving,
};

// What a suspended task waits for (so Abort knows how to cancel it).
//   kIo: a reactor operation (wait_object); cancelled through the driver,
//        the task is cancelled when the operation's completion wakes it,
//        unless the operation completed with a real result, which is
//        delivered first (cancellation then takes effect at the task's next
//        suspension point).
//   kJoin: another task's completion (wait_object is its header).
//   kWaker: a Waker (executor/waker.h); the task is cancelled at once, and
//        the waker's later Wake() is a no-op.
//   kAborted: nothing: the task asked to suspend while an abort was
//        pending; the run loop cancels it after the poll.
enum class WaitKind : uint8_t { kNone, kIo, kJoin, kWaker, kAborted };

// Link for the executor's cross-thread inbox (intrusive MPSC queue): the
// node type of steal::Injector, so that one link of the task header serves
// the injector before the task is bound and the inbox's `wakes` after it
// (WakeNodeOf).  A task has one per inbox list; the list says which, and
// the task is found from the node's address (TaskOfNode,
// local_executor.cc).
using InboxNode = steal::InjectorNode;

struct TaskHeader;

// A task type's entries: one static table per type (a coroutine's
// Task<T>, a fiber returning T), so the header holds one pointer for all.
struct TaskOps {
  // Runs the body to its next suspension (PollTask; the slice loop
  // resumes a coroutine through `resume_point` without it).
  void (*resume)(TaskHeader*) noexcept;
  // Ends the task's body (a finished one, or a cancelled one at its
  // suspension point: a coroutine's frame is destroyed, a fiber's stack
  // unwound) and drops the body's reference, which may free the cell
  // (unless body_ref_kept).
  void (*destroy)(TaskHeader*) noexcept;
  // Frees the cell (destroys the result, returns the memory).
  void (*free_cell)(TaskHeader*) noexcept;
  // The exception the task ended with (set when `threw`), type-erased.
  std::exception_ptr (*error_of)(TaskHeader*) noexcept;
};

// One runnable thing.  See docs/architecture.md, "The task".  A Runtime
// queues tasks that have not run yet on its injectors (the second base).
//
// Size: a spawn writes the whole header, and a burst of 100k spawns is
// bound by the memory it writes, so the header is packed to 211 bytes of
// fields in 224 (TaskCell<void>'s result fills the last 8: 224 in all;
// allocation_test holds it).
// `ctx` is [[no_unique_address]] so that the small fields after it sit in
// its tail padding, and the second base's link is also the inbox link
// (`wakes`): a task is on an injector only before it is bound, and on an
// inbox's `wakes` only after (see WakeNodeOf).
struct TaskHeader : sched::TaskNode, steal::InjectorNode {
  // Field order: what every poll reads or writes comes first (after the
  // queue links of the bases), so that a poll touches few cache lines.

  // The task's entries.  Its resume entry, for a coroutine, resumes
  // `resume_point`; for a fiber (executor/fiber.h), it switches to the
  // fiber's stack, where the fiber resumes `resume_point` itself.
  const TaskOps* ops = nullptr;
  // The innermost suspended coroutine: the task's own, or, in a fiber, the
  // one this_fiber::Await is running.
  std::coroutine_handle<> resume_point;

  // Memory ordering: completion sets kStateComplete/kStateCancelled with a
  // release RMW after the result is written; JoinHandle readers acquire.
  // A joiner publishes join_waiter, then sets kStateJoinWaiter with a
  // release CAS; the completer's acq_rel CAS reads it.
  // The flags above and, in the high half, the references (the frame's
  // first: kStateRefOne).
  std::atomic<uint64_t> state{kStateRefOne};

  // Accounting: service time is TaskNode::attained_service (charged by
  // QueueSet::Charge for queues that observe it), the spawn tick below.
  uint32_t alloc_size = 0;
  uint16_t home_queue = 0;
  uint8_t io_priority = 1;  // reactor::IoPriority (kNormal)
  RunState run_state = RunState::kNew;

  // 16-byte TaskBudget, id, name, tier state, priority; 49 bytes in 64.
  [[no_unique_address]] budget::TaskContext ctx;

  // In ctx's tail padding.
  WaitKind wait_kind = WaitKind::kNone;
  bool woken = false;   // queued by a Wake: clear kStateNotified at poll
  bool threw = false;   // ended by an exception
  bool bounce = false;  // resume `resume_point` again (nested await/return)
  bool abort_seen = false;  // owner: the abort was acted on (idempotence)
  // ops->resume == &ResumeFiber (else &ResumeCoroutine): the run loop's
  // test, one byte compare.
  bool fiber = false;
  // The destroy entry leaves the body's reference to its caller, which
  // still uses the cell after the frame is gone (DestroyAndComplete).
  bool body_ref_kept = false;

  // Set before the task is published (LocalExecutor, Spawner) or, for a
  // Runtime's stealable task, by the worker that first runs it, before its
  // release RMW of kStateBound.  Other threads read them only after seeing
  // kStateBound (or after the task ran).  A Runtime worker may move a
  // yielded stealable task to another worker (LocalExecutor::MoveTo):
  // inbox, then owner, are rewritten while other threads may read them; a
  // message sent to the old owner is forwarded (see runtime_shared.h).
  PublishedPtr<LocalExecutor> owner;
  PublishedPtr<Inbox> inbox;  // owner's inbox, for wakes from other threads

  void* wait_object = nullptr;  // reactor::Operation* or join target
  TaskHeader* join_waiter = nullptr;

  // Per-task timing (ExecutorBuilder::TaskTiming), attached and written by
  // the owner; run time: TaskNode::attained_service.  Until the adoption,
  // the spawn tick is TaskNode::enqueue_tick (the queue delay starts there;
  // 0: spawned outside a Run, not stamped).
  TaskTicksPtr ticks;

  // Spawns and wakes from other threads use the second base (WakeNodeOf).
  InboxNode waker_node;            // Waker wakes from other threads
  InboxNode abort_node;            // aborts from other threads
  TaskHeader* all_prev = nullptr;  // executor's list of live tasks
  TaskHeader* all_next = nullptr;

  bool value_taken = false;  // the result was moved out by a join
  // A Runtime's stealable coroutine task (bound by the worker that first
  // ran it): a worker may move it to another once it has started (MoveTo).
  bool movable = false;
  // Moved to the isolation thread below tier isolate, for a slow poll that
  // kept other tasks of its worker waiting (FinishPoll); written by the
  // worker that moves it, before the move.
  bool moved_for_latency = false;
  // Moved at a yield to a worker that asked (Q4, executor/task_move.cc);
  // cleared when it is next offered at a wake.  Owner-written, before a
  // move, like moved_for_latency.
  bool moved_at_yield = false;
};

// The header's link on an inbox's `wakes` (spawns and wakes from other
// threads): the injector's link, free once the task has left the injector.
// Neither queue touches a node after popping it.
inline InboxNode* WakeNodeOf(TaskHeader* t) noexcept { return t; }
inline TaskHeader* TaskOfWakeNode(InboxNode* n) noexcept {
  return static_cast<TaskHeader*>(n);
}

// The join handle's reference, taken at spawn before the cell is published
// (only the spawning thread knows it yet): a plain increment, no RMW.
inline void AddUnpublishedRef(TaskHeader* h) noexcept {
  h->state.store(h->state.load(std::memory_order_relaxed) + kStateRefOne,
                 std::memory_order_relaxed);
}

// Drops one reference; frees the cell at zero.
inline void ReleaseRef(TaskHeader* h) noexcept {
  // Sole owner (the common case of a detached task): no other reference can
  // appear, so no RMW.  acquire: sees the writes of earlier releasers.
  if (RefsOf(h->state.load(std::memory_order_acquire)) == 1) {
    h->ops->free_cell(h);
    return;
  }
  // acq_rel: the last releaser must see every write of the others.
  if (RefsOf(h->state.fetch_sub(kStateRefOne, std::memory_order_acq_rel)) ==
      1) {
    h->ops->free_cell(h);
  }
}

// Wakes a suspended task from any thread (I/O completion, join, user code).
// Duplicate wakes before the task runs again are ignored.
void Wake(TaskHeader* task) noexcept;
// Wakes a task from the one event its suspension waits for: a reactor
// operation's completion (wait_kind kIo) or a joined task's (kJoin).
void WakeSole(TaskHeader* task) noexcept;

// Requests cancellation of a task from any thread (JoinHandle::Abort).
void RequestAbort(TaskHeader* task) noexcept;

// Counts a join registration of `waiter` in its executor's inbox, so that
// the executor's destruction waits for a completer that is waking it from
// another thread (see LocalExecutor's shutdown protocol).  JoinWaitEnd
// undoes it: called by whoever consumes the registration.
void JoinWaitBegin(TaskHeader* waiter) noexcept;
void JoinWaitEnd(Inbox* waiter_inbox) noexcept;

// The task being polled on this thread, or nullptr outside a poll.
inline TaskHeader* CurrentTask() noexcept;

// Whether the task's executor recorded its timing: a timed task has a
// first run or, cancelled before it ran, an end (a TSC tick is never 0).
inline bool IsTimed(const TaskHeader* t) noexcept {
  const TaskTicks* k = t->ticks.get();
  return k != nullptr && (k->first_run | k->done) != 0;
}

inline TaskTiming TimingOf(const TaskHeader* t) noexcept {
  TaskTiming out;
  if (const TaskTicks* k = t->ticks.get(); k != nullptr) {
    out.spawned = k->spawned;
    out.first_run = k->first_run;
    out.last_resumed = k->resumed;
    out.last_suspended = k->suspended;
    out.completed = k->done;
    out.run_ticks = t->attained_service;
  }
  return out;
}

// Reports a misuse that cannot be an exception (a noexcept path) on stderr
// and aborts the process.
[[noreturn]] void FatalMisuse(const char* what) noexcept;

// The join rules, checked before a task or thread waits for `target`:
// throws TaskMisuseError for a join that could never finish.
void CheckJoin(const TaskHeader* target, bool from_task);

template <typename T>
struct ResultSlot {
  bool has_value = false;
  std::exception_ptr error;
  union {
    T value;
  };
  ResultSlot() noexcept {}
  ~ResultSlot() {
    if (has_value) value.~T();
  }
  template <typename U>
  void Set(U&& v) {
    ::new (static_cast<void*>(std::addressof(value))) T(std::forward<U>(v));
    has_value = true;
  }
  T Take() {
    if (error) std::rethrow_exception(error);
    return std::move(value);
  }
};

template <>
struct ResultSlot<void> {
  std::exception_ptr error;
  void Take() {
    if (error) std::rethrow_exception(error);
  }
};

template <typename T>
struct TaskCell : TaskHeader {
  ResultSlot<T> result;
};

// The cell is padded so the frame after it keeps the default new alignment.
template <typename T>
inline constexpr size_t kCellSize =
    (sizeof(TaskCell<T>) + __STDCPP_DEFAULT_NEW_ALIGNMENT__ - 1) &
    ~(size_t{__STDCPP_DEFAULT_NEW_ALIGNMENT__} - 1);

template <typename T>
TaskCell<T>* CellOfFrame(void* frame) noexcept {
  return reinterpret_cast<TaskCell<T>*>(static_cast<char*>(frame) -
                                        kCellSize<T>);
}

// The task being polled on this thread (null between polls); defined in
// task_protocol.cc.
extern constinit thread_local TaskHeader* tl_task;

inline TaskHeader* CurrentTask() noexcept { return tl_task; }

inline void ResumeCoroutine(TaskHeader* h) noexcept {
  h->resume_point.resume();
}

// A coroutine task's destroy entry: its top-level frame follows the cell.
template <typename T>
void DestroyCoroutine(TaskHeader* h) noexcept {
  std::coroutine_handle<>::from_address(reinterpret_cast<char*>(h) +
                                        kCellSize<T>)
      .destroy();
}

template <typename T>
std::exception_ptr ErrorOfCell(TaskHeader* h) noexcept {
  return static_cast<TaskCell<T>*>(h)->result.error;
}

inline std::exception_ptr ErrorOf(TaskHeader* h) noexcept {
  return h->ops->error_of(h);
}

template <typename T>
void FreeCell(TaskHeader* h) noexcept {
  auto* cell = static_cast<TaskCell<T>*>(h);
  const size_t size = cell->alloc_size;
  cell->~TaskCell<T>();
  FreeFrame(cell, size);
}

// The entries of a coroutine task returning T.
template <typename T>
inline constexpr TaskOps kCoroutineOps{&ResumeCoroutine, &DestroyCoroutine<T>,
                                       &FreeCell<T>, &ErrorOfCell<T>};

struct PromiseBase {
  std::coroutine_handle<> continuation;  // the awaiting parent, if nested

  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      TaskHeader* t = CurrentTask();
      if (p.continuation) {
        // Back to the awaiting parent, through the run loop's trampoline.
        t->resume_point = p.continuation;
        t->bounce = true;
        return;
      }
      // A top-level task: back to the run loop, which completes it.
      t->run_state = RunState::kDone;
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
};

template <typename T>
struct PromiseStorage : PromiseBase {
  template <typename U>
  void return_value(U&& v) {
    Cell()->result.Set(std::forward<U>(v));
  }
  TaskCell<T>* Cell() noexcept {
    return CellOfFrame<T>(
        std::coroutine_handle<PromiseStorage>::from_promise(*this).address());
  }
};

template <>
struct PromiseStorage<void> : PromiseBase {
  void return_void() noexcept {}
  TaskCell<void>* Cell() noexcept {
    return CellOfFrame<void>(
        std::coroutine_handle<PromiseStorage>::from_promise(*this).address());
  }
};

template <typename T>
struct Promise : PromiseStorage<T> {
  Task<T> get_return_object() noexcept;

  void unhandled_exception() noexcept {
    TaskCell<T>* cell = this->Cell();
    cell->result.error = std::current_exception();
    cell->threw = true;
  }

  static void* operator new(size_t size) {
    void* mem = AllocateFrame(kCellSize<T> + size);
    // Default-initialised, not value-initialised: every field has its own
    // initialiser, and zero-filling the whole cell first costs a rep stos.
    auto* cell = ::new (mem) TaskCell<T>;
    cell->alloc_size = static_cast<uint32_t>(kCellSize<T> + size);
    cell->ops = &kCoroutineOps<T>;
    return static_cast<char*>(mem) + kCellSize<T>;
  }
  static void operator delete(void* frame, size_t) noexcept {
    TaskHeader* cell = CellOfFrame<T>(frame);
    if (!cell->body_ref_kept) [[likely]] ReleaseRef(cell);
  }
};

}  // namespace executor_internal

// Task<T>: a lazily started coroutine returning T.
//
// A Task does nothing until it is spawned on an executor or awaited by
// another task.  `co_await task` runs it to completion and yields its value
// (or rethrows its exception); the transfer is symmetric, so 10,000 nested
// awaits do not grow the stack (the run loop is the trampoline).
//
// Thread safety: a Task is a plain move-only value; it may be created on one
// thread and spawned on another's executor through a Spawner.
//
// Example:
//   spindle::Task<int> Add(int a, int b) { co_return a + b; }
//   spindle::Task<int> Twice() { co_return co_await Add(1, 2) * 2; }
template <typename T = void>
class [[nodiscard]] Task {
 public:
  using promise_type = executor_internal::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;

  Task() noexcept = default;
  explicit Task(Handle h) noexcept : handle_(h) {}
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (handle_) handle_.destroy();
  }

  bool valid() const noexcept { return static_cast<bool>(handle_); }

  struct Awaiter {
    Handle handle;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> parent) noexcept {
      handle.promise().continuation = parent;
      // Symmetric transfer without relying on the compiler's tail calls
      // (gcc does not make them at -O0 or under ASan): the run loop resumes
      // `resume_point` again at once, so the stack stays flat at any depth.
      executor_internal::TaskHeader* t = executor_internal::CurrentTask();
      t->resume_point = handle;
      t->bounce = true;
    }
    T await_resume() { return handle.promise().Cell()->result.Take(); }
  };
  Awaiter operator co_await() && noexcept { return Awaiter{Awaitable()}; }
  Awaiter operator co_await() & noexcept { return Awaiter{Awaitable()}; }

  // Executor use: gives up ownership of the frame.
  executor_internal::TaskCell<T>* Release() noexcept {
    if (!handle_) {
      executor_internal::FatalMisuse(
          "Spawn of an empty Task (default-constructed or moved-from)");
    }
    auto* cell = handle_.promise().Cell();
    handle_ = {};
    return cell;
  }

 private:
  Handle Awaitable() const noexcept {
    if (!handle_) {
      executor_internal::FatalMisuse(
          "co_await of an empty Task (default-constructed or moved-from)");
    }
    if (handle_.done() || handle_.promise().continuation) {
      executor_internal::FatalMisuse(
          "a Task was awaited twice (a Task runs once: keep its result)");
    }
    return handle_;
  }
  Handle handle_;
};

namespace executor_internal {
template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  auto h = std::coroutine_handle<Promise>::from_promise(*this);
  TaskCell<T>* cell = this->Cell();
  cell->resume_point = h;
  return Task<T>(h);
}

void BlockUntilDone(TaskHeader* task) noexcept;
}  // namespace executor_internal

}  // namespace spindle

// JoinHandle, the other half of a spawn, lives in its own header.
#include "executor/join_handle.h"  // IWYU pragma: export

#endif  // SPINDLE_EXECUTOR_TASK_H_
