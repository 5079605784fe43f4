// executor/task.h: Spindle's task type and its cell.
//
// Reach for `Task<T>` (a lazily started C++20 coroutine) and `JoinHandle<T>`
// (what spawning returns; executor/join_handle.h).  `TaskHeader`
// (executor/internal/task_header.h) is what the schedulers and the run loop
// see; users never touch it.
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

#include "executor/frame_allocator.h"
#include "executor/internal/task_header.h"
#include "executor/internal/task_ticks.h"

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
