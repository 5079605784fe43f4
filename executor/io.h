// executor/io.h: I/O and timers for tasks, on the executor's reactor.
//
// Reach for the awaitables: `co_await spindle::SleepFor(1ms)`,
// `int n = co_await spindle::Read(fd, buf, len)`, ...  Each returns the
// kernel's result: >= 0 on success, -errno on failure, -ECANCELED when
// cancelled or timed out (`Timeout`).  They work on both reactor backends
// (io_uring and epoll; see reactor/reactor.h for the few differences).
//
// How an operation runs: the awaiter lives in the task's frame and holds the
// reactor::Operation; it starts the operation on the executor's reactor and
// suspends the task; the completion callback wakes the task (a queue push on
// the executor's thread).  Every operation consumes one unit of the task's
// budget, and since completions always arrive through the run loop (the
// reactor never completes inline), a task that does nothing but I/O still
// goes back through its queue after every operation: it cannot starve the
// others.  Aborting a task that waits on an operation cancels the operation
// (ASYNC_CANCEL on io_uring, deregistration on epoll); the task's frame is
// destroyed only after the operation's callback ran, so buffers in the frame
// stay valid until the kernel is done with them.
//
// Requires: called from a task running on a LocalExecutor built with a
// reactor (the default).  Without one (ExecutorBuilder::NoReactor) every
// operation returns -ENOTSUP at once.

#ifndef SPINDLE_EXECUTOR_IO_H_
#define SPINDLE_EXECUTOR_IO_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "executor/driver.h"
#include "executor/local_executor.h"
#include "executor/task.h"
#include "reactor/reactor.h"
#include "timing/clock.h"

namespace spindle {

// ReactorDriver: the run loop's driver backed by a reactor::Reactor.
// Cross-thread wake-ups use IORING_OP_MSG_RING when the waking thread runs
// an executor with an io_uring reactor of its own, and the reactor's eventfd
// otherwise.
class ReactorDriver final : public Driver {
 public:
  static absl::StatusOr<std::unique_ptr<ReactorDriver>> Create(
      const reactor::ReactorOptions& options);

  int Poll(uint64_t timeout_ns) noexcept override;
  void Wake() noexcept override;
  void Cancel(void* op) noexcept override;
  void Shutdown() noexcept override;
  std::string_view Name() const noexcept override;
  reactor::Reactor* reactor() noexcept override { return reactor_.get(); }

 private:
  explicit ReactorDriver(std::unique_ptr<reactor::Reactor> r)
      : reactor_(std::move(r)) {}
  std::unique_ptr<reactor::Reactor> reactor_;
};

namespace executor_internal {

// The reactor of the executor running on this thread, or nullptr.
reactor::Reactor* ThisThreadReactor() noexcept;

// What PrepareIo decided.
enum class IoStart : uint8_t {
  kStart,     // start the operation on the returned reactor
  kNoReactor, // op.result = -ENOTSUP: continue at once
  kAborted,   // the task is being aborted: stay suspended, start nothing
};

// Registers the calling task as waiting on `op` and makes `op` wake it.
// Sets *r to the reactor when the result is kStart.  A task with an abort
// pending starts nothing and is cancelled after this poll (its
// cancellation takes effect at this suspension point).
inline IoStart PrepareIo(reactor::Operation& op, std::coroutine_handle<> h,
                         reactor::Reactor** out) noexcept {
  TaskHeader* t = CurrentTask();
  reactor::Reactor* r = t->owner->io_reactor();
  if (r == nullptr) {
    op.result = -ENOTSUP;
    return IoStart::kNoReactor;
  }
  // relaxed: the abort is acted on by this thread after the poll; a bit
  // set by another thread meanwhile is seen there.
  if (t->state.load(std::memory_order_relaxed) & kStateCancelRequested)
      [[unlikely]] {
    op.result = -ECANCELED;
    t->resume_point = h;
    t->run_state = RunState::kSuspended;
    t->wait_kind = WaitKind::kAborted;
    return IoStart::kAborted;
  }
  (void)t->ctx.budget.Consume();
  t->resume_point = h;
  t->run_state = RunState::kSuspended;
  t->wait_kind = WaitKind::kIo;
  t->wait_object = &op;
  op.user = t;
  op.on_complete = [](reactor::Operation* o) noexcept {
    WakeSole(static_cast<TaskHeader*>(o->user));
  };
  op.priority = static_cast<reactor::IoPriority>(t->io_priority);
  *out = r;
  return IoStart::kStart;
}

// One operation: `start(reactor, op)` issues it.
template <typename Start>
struct IoAwaiter {
  Start start;
  reactor::Operation op;

  explicit IoAwaiter(Start s) : start(std::move(s)) {}
  // Before it is awaited (WhenAny / Timeout move it into a child task):
  // the operation has not started, so a fresh one is equivalent.
  IoAwaiter(IoAwaiter&& o) noexcept(
      std::is_nothrow_move_constructible_v<Start>)
      : start(std::move(o.start)) {}
  // Suspends through the task protocol only: a fiber awaits it directly
  // (executor_internal::FiberDirectAwaiter).
  static constexpr bool kFiberDirect = true;
  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    reactor::Reactor* r = nullptr;
    switch (PrepareIo(op, h, &r)) {
      case IoStart::kStart:
        start(*r, &op);
        return true;
      case IoStart::kNoReactor:
        return false;
      case IoStart::kAborted:
        return true;
    }
    return true;
  }
  int32_t await_resume() const noexcept { return op.result; }
};

template <typename Start>
IoAwaiter<Start> MakeIo(Start s) {
  return IoAwaiter<Start>(std::move(s));
}

// An operation bounded by a timeout: the task resumes when both the
// operation's and the timeout's callbacks have run (so neither Operation is
// referenced by the kernel any more).
template <typename Start>
struct TimeoutAwaiter {
  struct Half : reactor::Operation {
    TimeoutAwaiter* owner = nullptr;
  };
  Start start;
  uint64_t timeout_ns;
  Half op;
  Half timeout_op;
  int remaining = 2;

  TimeoutAwaiter(Start s, uint64_t ns) : start(std::move(s)), timeout_ns(ns) {}
  static constexpr bool kFiberDirect = true;  // as IoAwaiter's

  static void OnEither(reactor::Operation* o) noexcept {
    TimeoutAwaiter* self = static_cast<Half*>(o)->owner;
    if (--self->remaining == 0) {
      WakeSole(static_cast<TaskHeader*>(self->op.user));
    }
  }

  bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) noexcept {
    reactor::Reactor* r = nullptr;
    switch (PrepareIo(op, h, &r)) {
      case IoStart::kStart:
        break;
      case IoStart::kNoReactor:
        return false;
      case IoStart::kAborted:
        return true;
    }
    op.owner = this;
    op.on_complete = &OnEither;
    timeout_op.owner = this;
    timeout_op.on_complete = &OnEither;
    timeout_op.user = op.user;
    start(*r, &op);
    r->Timeout(&op, &timeout_op, timeout_ns);
    return true;
  }
  int32_t await_resume() const noexcept { return op.result; }
};

}  // namespace executor_internal

// Sleeps for `d` (at least; the reactor wakes at the deadline), counted
// from the co_await, not from the call.  Result 0, or -ECANCELED.
inline auto SleepFor(std::chrono::nanoseconds d) {
  const uint64_t ns = d.count() > 0 ? static_cast<uint64_t>(d.count()) : 0;
  return executor_internal::MakeIo(
      [ns](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.SleepFor(op, ns);
      });
}

// Sleeps until MonotonicClock::Now() >= deadline_ns.
inline auto SleepUntil(uint64_t deadline_ns) {
  return executor_internal::MakeIo(
      [deadline_ns](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.SleepUntil(op, deadline_ns);
      });
}

// Completes at the next reactor poll (an io_uring NOP).  Result 0.
inline auto Nop() {
  return executor_internal::MakeIo(
      [](reactor::Reactor& r, reactor::Operation* op) noexcept { r.Nop(op); });
}

// offset >= 0: file offset; -1: current position, or a socket / pipe.
inline auto Read(int fd, void* buf, size_t len, int64_t offset = -1) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Read(op, fd, buf, len, offset);
      });
}
inline auto Write(int fd, const void* buf, size_t len, int64_t offset = -1) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Write(op, fd, buf, len, offset);
      });
}
inline auto Readv(int fd, const iovec* iov, int iovcnt, int64_t offset = -1) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Readv(op, fd, iov, iovcnt, offset);
      });
}
inline auto Writev(int fd, const iovec* iov, int iovcnt, int64_t offset = -1) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Writev(op, fd, iov, iovcnt, offset);
      });
}
// Result: the accepted descriptor.
inline auto Accept(int fd, sockaddr* addr = nullptr,
                   socklen_t* addrlen = nullptr) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Accept(op, fd, addr, addrlen);
      });
}
inline auto Connect(int fd, const sockaddr* addr, socklen_t len) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Connect(op, fd, addr, len);
      });
}
inline auto Recv(int fd, void* buf, size_t len, int flags = 0) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Recv(op, fd, buf, len, flags);
      });
}
inline auto Send(int fd, const void* buf, size_t len, int flags = 0) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Send(op, fd, buf, len, flags);
      });
}
inline auto Close(int fd) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Close(op, fd);
      });
}
inline auto Fsync(int fd) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.Fsync(op, fd);
      });
}
// Result: the poll(2) revents mask.
inline auto PollReadable(int fd) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.PollReadable(op, fd);
      });
}
inline auto PollWritable(int fd) {
  return executor_internal::MakeIo(
      [=](reactor::Reactor& r, reactor::Operation* op) noexcept {
        r.PollWritable(op, fd);
      });
}

// Bounds an operation by `d`: `co_await Timeout(Read(fd, buf, n), 5ms)`
// returns the read's result, or -ECANCELED if it did not finish in time.
template <typename Start>
auto Timeout(executor_internal::IoAwaiter<Start>&& op,
             std::chrono::nanoseconds d) {
  return executor_internal::TimeoutAwaiter<Start>(
      std::move(op.start),
      static_cast<uint64_t>(d.count() > 0 ? d.count() : 0));
}

}  // namespace spindle

#endif  // SPINDLE_EXECUTOR_IO_H_
