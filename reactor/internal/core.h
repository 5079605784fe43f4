// reactor/internal/core.h: the backend-independent half of a Reactor (the
// ready list, the timer heap, completion and cancellation dispatch, counters)
// and `Driver`, the interface each kernel backend implements.
//
// Protocol (one thread owns everything here; see reactor/reactor.h):
//   - Starting an operation fills its OpState and hands it to Core (timers)
//     or to the Driver (everything else).  No callback runs while starting.
//   - Results found without the kernel (epoll syscalls that did not block,
//     cancelled queued operations, expired timers) go to the ready list;
//     Core::RunReady runs their callbacks.  RunReady detaches the list first,
//     so operations re-started from callbacks wait for the next pass and a
//     Poll always terminates.
//   - io_uring completions call Core::Complete directly while reaping.
//   - Complete resolves a Timeout pair (the loser is cancelled), marks the
//     operation idle and then calls its callback, so the callback may reuse
//     the Operation.
// Shutdown sequence (Reactor::~Reactor):
//   1. shutting_down = true: operations started from now on complete with
//      -ECANCELED without reaching the kernel.
//   2. Every pending timer is cancelled (ready list, -ECANCELED).
//   3. Driver::CancelAll asks the kernel to cancel every in-flight operation
//      (io_uring: one ASYNC_CANCEL with IORING_ASYNC_CANCEL_ANY, or one per
//      operation before 5.19; epoll: the waiter lists are emptied).  On a
//      thread other than the owner, Driver::Abandon instead (io_uring:
//      completions already in the CQ are delivered, the ring is closed, the
//      rest complete with -ECANCELED at once).
//   4. Poll until no operation is outstanding, so every callback has run and
//      the kernel no longer touches any buffer.
//   5. The driver closes its file descriptors (ring, eventfd, epoll, timerfd).

#ifndef SPINDLE_REACTOR_INTERNAL_CORE_H_
#define SPINDLE_REACTOR_INTERNAL_CORE_H_

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

#include "reactor/internal/operation.h"
#include "reactor/internal/timer_heap.h"

namespace spindle::reactor::reactor_internal {

// What a driver reports for ReactorStats.
struct DriverStats {
  uint64_t submitted = 0;       // Operations handed to the kernel.
  uint64_t sq_full_waits = 0;   // Operations parked for want of a slot.
  uint64_t sq_flushes = 0;      // Early submits because the SQ was full.
  uint64_t syscalls = 0;        // io_uring_enter / epoll_wait calls.
  uint64_t wakes_received = 0;  // Doorbell (eventfd / MSG_RING) wake-ups.
  uint64_t wake_fallbacks = 0;  // Failed MSG_RING sends redone by eventfd.
  uint64_t ioprio_fallbacks = 0;  // kHigh refused (no CAP_SYS_NICE): normal.
  uint32_t ring_entries = 0;    // io_uring SQ size (0 on epoll).
  uint32_t cq_entries = 0;      // io_uring CQ size (0 on epoll).
  uint32_t setup_flags = 0;     // io_uring setup flags in effect.
  size_t queued = 0;            // Operations parked in the resumption queue.
  std::string features;         // Human-readable feature list.
};

class Core;

// A kernel backend.  All methods run on the reactor's thread except Wake.
class Driver {
 public:
  virtual ~Driver() = default;
  // Starts a non-timer operation whose OpState is filled in.
  virtual void Start(Operation* op) noexcept = 0;
  // Cancels an operation in phase kQueued or kInflight.
  virtual void Cancel(Operation* op) noexcept = 0;
  // Submits what is pending and waits for events: at most `timeout_ns` (0:
  // do not block; UINT64_MAX: no limit) and not past `deadline_ns`
  // (MonotonicClock; UINT64_MAX: none).  Returns the callbacks it ran.
  virtual int Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept = 0;
  // Called by a Poll that skips Wait (nothing in the kernel): the first
  // poll still binds the backend to the polling thread.
  virtual void Claim() noexcept {}
  // False when the driver has something to submit or reap even though no
  // operation is outstanding (io_uring: a failed WakeFrom send's CQE), so a
  // non-blocking Poll must not skip Wait.
  virtual bool Idle() const noexcept { return true; }
  // Whether a non-blocking Poll now would submit or deliver something,
  // found without a system call; false where the backend cannot tell
  // cheaply (epoll).
  virtual bool HasPendingWork() const noexcept { return false; }
  // Whether HasPendingWork sees every completion (io_uring unless
  // DEFER_TASKRUN came without TASKRUN_FLAG).
  virtual bool PeeksCompletions() const noexcept { return false; }
  // Thread-safe: makes a blocked Wait return.
  virtual void Wake() noexcept = 0;
  // Shutdown step 3.
  virtual void CancelAll() noexcept = 0;
  // Shutdown step 3 on a thread that is not the owner, where the kernel may
  // refuse this thread (io_uring SINGLE_ISSUER): deliver what has completed,
  // release the kernel side without submitting or waiting, and put every
  // other operation on the ready list with -ECANCELED.  Afterwards
  // Quiescent() holds.
  virtual void Abandon() noexcept { CancelAll(); }
  // True when the kernel holds no request of this driver that could still
  // write to user memory (the driver's own wake-up read excepted).
  virtual bool Quiescent() const noexcept = 0;
  virtual DriverStats Stats() const = 0;
};

class Core {
 public:
  void set_driver(Driver* driver) noexcept { driver_ = driver; }
  Driver* driver() const noexcept { return driver_; }

  // Records that an operation was started (for inflight()).
  void NoteStarted() noexcept { ++started_; }

  // Queues `op` to complete with `res` at the next RunReady.
  void PushReady(Operation* op, int32_t res) noexcept {
    OpState& s = S(op);
    s.phase = OpPhase::kReady;
    op->result = res;
    ready_.PushBack(op);
  }

  // Finishes `op` with `res` and runs its callback.
  void Complete(Operation* op, int32_t res) noexcept {
    OpState& s = S(op);
    s.phase = OpPhase::kIdle;
    op->result = res;
    ++completed_;
    if (res == -ECANCELED) ++cancelled_;
    if (s.link != nullptr) [[unlikely]] ResolveTimeout(op, res);
    s.bits = 0;
    op->on_complete(op);
  }

  // Runs the callbacks of everything on the ready list now.
  int RunReady() noexcept;

  // Moves every timer due at `now_ns` to the ready list.
  void ExpireTimers(uint64_t now_ns) noexcept;

  // Adds a timer (OpState filled in).
  void StartTimer(Operation* op) noexcept;

  // Requests cancellation of `op` in whatever phase it is.
  void Cancel(Operation* op) noexcept;

  bool has_ready() const noexcept { return !ready_.empty(); }
  const TimerHeap& timers() const noexcept { return timers_; }
  size_t outstanding() const noexcept { return started_ - completed_; }
  uint64_t completed() const noexcept { return completed_; }
  uint64_t cancelled() const noexcept { return cancelled_; }
  uint64_t cancel_requests() const noexcept { return cancel_requests_; }
  uint64_t started() const noexcept { return started_; }
  uint64_t timers_fired() const noexcept { return timers_fired_; }

  bool shutting_down = false;

  // Shutdown step 2.
  void CancelAllTimers() noexcept;

 private:
  // The Timeout pair of `op` is decided: cancel the loser.
  void ResolveTimeout(Operation* op, int32_t res) noexcept;

  Driver* driver_ = nullptr;
  OpList ready_;
  TimerHeap timers_;
  uint64_t started_ = 0;
  uint64_t completed_ = 0;
  uint64_t cancelled_ = 0;
  uint64_t cancel_requests_ = 0;
  uint64_t timers_fired_ = 0;
};

}  // namespace spindle::reactor::reactor_internal

#endif  // SPINDLE_REACTOR_INTERNAL_CORE_H_
