// reactor/reactor.h: Spindle's I/O reactor.
//
// Reach for `Reactor` first: `Reactor::Create(ReactorOptions{})` gives an
// io_uring reactor where the kernel allows one and an epoll reactor where it
// does not.  Operations are started with a caller-owned `Operation` (no
// allocation per operation) and report through a plain callback that runs
// inside `Reactor::Poll` on the reactor's thread.  The executor wraps these
// operations in C++20 awaitables and drives `Poll` from its run loop; this
// layer knows nothing about tasks.
//
// Backends:
//   - io_uring (liburing): one SQE per operation, submitted in batches by
//     Poll; IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN where the kernel has
//     them (6.1+), else COOP_TASKRUN (5.19+), else plain; or the setup the
//     user picks (ReactorOptions::uring_setup, SPINDLE_URING_SETUP: plain,
//     coop_taskrun, defer_taskrun, sqpoll).
//   - epoll: the same operations emulated by readiness (try the system call,
//     wait for readiness on EAGAIN, retry).
//   Timers are the same on both: an intrusive binary heap in the reactor
//   (O(log n) per start, cancel and expiry, 8 bytes per pending timer), with
//   the kernel wait bounded by the earliest deadline (io_uring: the
//   io_uring_enter timeout; epoll: a timerfd at the deadline).  This keeps a
//   million pending sleeps out of the ring, where each would hold a CQ slot.
//
// Selection: `ReactorOptions::backend` or SPINDLE_REACTOR=auto|io_uring|epoll
// (`ReactorOptions::FromEnv`).  `auto` falls back to epoll when ring setup
// fails with EPERM, ENOSYS or ENOMEM (io_uring disabled by sysctl or seccomp,
// missing, or over the memlock limit), logs that once on stderr and reports
// the reason in `fallback_reason()` and `Stats()`.  `auto` also picks epoll
// when the program runs under valgrind (LD_PRELOAD holds its vgpreload
// library): valgrind stops every thread while one waits in io_uring_enter,
// so a Runtime whose worker parks in its ring would hang; logged and
// reported the same way.  `epoll` never touches io_uring.
//
// Results are the kernel's: a value >= 0 on success, -errno on failure,
// -ECANCELED when cancelled.  Differences between the backends that show:
//   - epoll puts stream descriptors it waits on into O_NONBLOCK mode; on
//     io_uring an O_NONBLOCK descriptor returns -EAGAIN as the kernel does.
//   - epoll runs regular-file reads, writes and fsync synchronously inside
//     the call that starts them (their callbacks still run from Poll).
//   - Close a descriptor that has pending operations only through
//     Reactor::Close, which cancels them first on both backends (they
//     complete with -ECANCELED and a peer sees EOF), or after they completed.
//   - IoPriority sets the SQE ioprio on io_uring only (it does not apply
//     to epoll).  kHigh (real-time class) needs CAP_SYS_NICE or
//     CAP_SYS_ADMIN: without it the kernel refuses the read or write with
//     -EPERM, and the reactor runs it (and later kHigh ones) at normal
//     priority instead, logging that once (ReactorStats::ioprio_fallbacks).

#ifndef SPINDLE_REACTOR_REACTOR_H_
#define SPINDLE_REACTOR_REACTOR_H_

// Spindle is C++20: an older -std stops here, with one error that says so.
#if __cplusplus < 202002L
#error "Spindle requires C++20: compile with -std=c++20 (or later)"
#include "Spindle requires C++20, see the error above"  // Stops the build.
#endif

#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "reactor/internal/core.h"
#include "reactor/internal/operation.h"

namespace spindle::reactor {

// The reactor layer's version (see reactor/VERSION and reactor/CHANGELOG.md).
inline constexpr std::string_view kVersion = "0.2.0";

// The most bytes one Read, Write, Recv or Send transfers: Linux's
// MAX_RW_COUNT (INT_MAX & PAGE_MASK with 4 KiB pages), the count read(2)
// and send(2) clamp to.  Longer requests are clamped to it on both backends
// (the result is then a short count); a length above SSIZE_MAX fails with
// -EINVAL, as does a negative iovcnt.
inline constexpr size_t kMaxRwCount = 0x7ffff000;

// Which backend to use.
enum class BackendChoice : uint8_t { kAuto, kIoUring, kEpoll };

std::string_view BackendName(Backend backend) noexcept;

// UringSetup (reactor/internal/operation.h): how an io_uring ring is set
// up, ReactorOptions::uring_setup.


// Reactor configuration.
struct ReactorOptions {
  BackendChoice backend = BackendChoice::kAuto;
  // io_uring SQ size.  A power of two in [2, 32768].  The CQ is twice that
  // but at least 4096 entries (kernels without CQSIZE, before 5.5: twice).
  uint32_t ring_entries = 256;
  // io_uring ring setup (see UringSetup).
  UringSetup uring_setup = UringSetup::kAuto;
  // The same as uring_setup = kSqpoll (kept for existing callers).
  bool sqpoll = false;
  // kSqpoll: milliseconds the SQ thread spins before it sleeps, 1..60000.
  uint32_t sqpoll_idle_ms = 100;

  // Defaults, with `backend` from SPINDLE_REACTOR (auto|io_uring|epoll;
  // unset or empty means auto) and `uring_setup` from SPINDLE_URING_SETUP
  // (auto|plain|coop_taskrun|defer_taskrun|sqpoll), any case.
  // InvalidArgument names an unknown value and the valid ones.
  static absl::StatusOr<ReactorOptions> FromEnv();
  // The same parsing for a given value.
  static absl::StatusOr<BackendChoice> ParseBackend(std::string_view value);
  static absl::StatusOr<UringSetup> ParseUringSetup(std::string_view value);
};

// A snapshot of a Reactor's counters.
struct ReactorStats {
  Backend backend = Backend::kEpoll;
  std::string fallback_reason;  // Why auto chose epoll; empty otherwise.
  std::string features;         // io_uring setup flags and probed features.
  // The io_uring setup in use (UringSetupName; empty on epoll).
  std::string uring_setup;
  uint64_t started = 0;         // Operations started (timers included).
  uint64_t submitted = 0;       // Handed to the kernel (SQEs / syscalls).
  uint64_t completed = 0;       // Callbacks run.
  uint64_t cancelled = 0;       // Completed with -ECANCELED.
  uint64_t cancel_requests = 0; // Cancel calls that found a pending op.
  uint64_t sq_full_waits = 0;   // Operations parked for an SQE or CQ slot.
  uint64_t sq_flushes = 0;      // Early submits because the SQ was full.
  uint64_t syscalls = 0;        // io_uring_enter / epoll_wait calls.
  uint64_t timers_fired = 0;
  uint64_t wakes = 0;           // Wake() / WakeFrom() calls.
  uint64_t wakes_received = 0;  // Doorbells seen by Poll.
  uint64_t wake_fallbacks = 0;  // WakeFrom sends that failed: eventfd used.
  // IoPriority::kHigh refused for want of CAP_SYS_NICE: from then on such
  // reads and writes run at normal priority (logged once).
  uint64_t ioprio_fallbacks = 0;
  size_t timers_pending = 0;
  size_t queued = 0;            // Operations in the resumption queue now.
  size_t inflight = 0;          // Started, callback not yet run.
  uint32_t ring_entries = 0;
  uint32_t cq_entries = 0;
};

// Reactor: starts I/O operations and timers and runs their callbacks.
//
// Requires: every Operation passed in stays alive, unmodified, until its
// callback has run; so do the buffers, iovec arrays and sockaddrs it names.
// `on_complete` is set before the operation is started.  Callbacks must not
// call Poll or destroy the reactor.
//
// The owner: a reactor belongs to the first thread that calls Poll on it,
// on both backends (with io_uring that thread becomes the ring's single
// issuer, IORING_SETUP_SINGLE_ISSUER, and only it may submit or wait).
// Before that first Poll any one thread at a time may start operations: they
// wait, unsubmitted, for the owner's first Poll.  From then on only the owner
// may start, cancel or time out operations and Poll; doing so on another
// thread is a bug and aborts the process with a message naming both threads
// (use OwnedByCurrentThread() to check first).  Ownership never moves.
// Destroy the reactor on its owner: the destructor then cancels and reaps
// everything.  Destroyed on another thread it does not spin: io_uring
// delivers the completions already in the CQ, closes the ring (the kernel
// cancels what is left as the ring exits) and completes every other
// operation with -ECANCELED without waiting; an operation that an io_uring
// worker is still executing may touch its buffer briefly after that (a
// regular-file read, say), so keep buffers alive until the owner thread has
// stopped using the reactor, or destroy it on the owner.
//
// Guarantees: every started operation's callback runs exactly once, from
// Poll or from the destructor, never from inside the call that started it.
// A callback runs only when the kernel has finished with the operation's
// buffers.  Starting an operation does not allocate (the timer heap and the
// epoll descriptor table grow to their high-water mark once) and does not
// block; io_uring operations are submitted by the next Poll, in batches.
// Any number of operations may wait at once (on io_uring the kernel keeps
// completions that do not fit the CQ, IORING_FEAT_NODROP, 5.5+); new ones
// still run, and Cancel, Timeout and Wake() never wait behind idle ones.
// Only on a kernel without NODROP are the requests in the ring capped at the
// CQ size (a slot kept for the wake-up and a few for cancels): operations
// beyond the cap wait in a resumption queue, highest IoPriority first, and
// are submitted as completions free slots.  The destructor cancels every
// pending operation, runs every callback (with -ECANCELED unless the
// operation had already finished) and closes every descriptor it opened.
//
// Thread safety: only Wake(), WakeFrom()'s target, OwnedByCurrentThread()
// and owner_thread_id() may be used from other threads; everything else
// belongs to the owner.
//
// Memory ordering: Wake() writes an eventfd; the kernel orders that write
// before the wake-up that a Poll on the reactor's thread observes.  Data a
// waking thread wrote before Wake() needs its own synchronisation (the
// executor's inbox).
//
// Example:
//   auto reactor = Reactor::Create(ReactorOptions{}).value();
//   Operation op;
//   op.on_complete = [](Operation* o) noexcept { Use(o->result); };
//   reactor->Read(&op, fd, buf, sizeof(buf), /*offset=*/0);
//   while (op.pending()) reactor->Poll(UINT64_MAX);
namespace reactor_internal {
// Its address names the calling thread (Reactor's owner check).
extern constinit thread_local char tl_thread_key;
}  // namespace reactor_internal

class Reactor {
 public:
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(
      const ReactorOptions& options);

  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;
  ~Reactor();

  Backend backend() const noexcept { return backend_; }
  std::string_view fallback_reason() const noexcept { return fallback_reason_; }

  // ---- Operations.  Each calls op->on_complete exactly once. -------------
  // Result 0.
  void Nop(Operation* op) noexcept;
  // Completes with 0 once MonotonicClock::Now() >= deadline_ns (io_uring's
  // -ETIME for an expired timeout is reported as 0), or -ECANCELED.
  void SleepUntil(Operation* op, uint64_t deadline_ns) noexcept;
  void SleepFor(Operation* op, uint64_t duration_ns) noexcept;
  // offset >= 0: file offset (pread/pwrite); -1: current position, or a
  // socket / pipe.  Result: bytes transferred.
  void Read(Operation* op, int fd, void* buf, size_t len,
            int64_t offset) noexcept;
  void Write(Operation* op, int fd, const void* buf, size_t len,
             int64_t offset) noexcept;
  void Readv(Operation* op, int fd, const iovec* iov, int iovcnt,
             int64_t offset) noexcept;
  void Writev(Operation* op, int fd, const iovec* iov, int iovcnt,
              int64_t offset) noexcept;
  // Result: the accepted descriptor (blocking, no CLOEXEC: accept(2) flags
  // 0).  addr / addrlen may be null.
  void Accept(Operation* op, int fd, sockaddr* addr,
              socklen_t* addrlen) noexcept;
  // Result 0 or -errno (e.g. -ECONNREFUSED).
  void Connect(Operation* op, int fd, const sockaddr* addr,
               socklen_t len) noexcept;
  void Recv(Operation* op, int fd, void* buf, size_t len, int flags) noexcept;
  void Send(Operation* op, int fd, const void* buf, size_t len,
            int flags) noexcept;
  void Close(Operation* op, int fd) noexcept;
  void Fsync(Operation* op, int fd) noexcept;
  // Result: the poll(2) revents mask (POLLIN / POLLOUT, plus POLLERR /
  // POLLHUP when set).
  void PollReadable(Operation* op, int fd) noexcept;
  void PollWritable(Operation* op, int fd) noexcept;

  // Bounds `op`, already started and pending, by `timeout_ns`: if it has not
  // completed by then it is cancelled (its result is -ECANCELED unless it
  // wins the race).  `timeout_op` is a second caller-owned Operation whose
  // callback also runs exactly once: with -ETIME when the timeout fired,
  // -ECANCELED when `op` completed first.  If `op` is not pending,
  // `timeout_op` completes with -ECANCELED at the next Poll.
  void Timeout(Operation* op, Operation* timeout_op,
               uint64_t timeout_ns) noexcept;

  // Requests cancellation.  The callback still runs exactly once: with
  // -ECANCELED, or with the real result if the operation won the race.
  // Ignored for an operation that is not pending.
  void Cancel(Operation* op) noexcept;

  // ---- Driving. ----------------------------------------------------------
  // Submits pending work, waits and runs callbacks.  timeout_ns: 0 = do not
  // block; UINT64_MAX = block until something completes or Wake(); else
  // block at most that long.  Never blocks past the earliest timer, nor at
  // all when a callback is ready to run.  Returns the callbacks run.  The
  // first Poll makes the calling thread the owner; a Poll on any other
  // thread afterwards aborts (see "The owner" above).
  int Poll(uint64_t timeout_ns) noexcept;

  // Thread-safe: true when the calling thread may Poll: it is the owner, or
  // nobody has polled yet (the first Poll would make it the owner).
  bool OwnedByCurrentThread() const noexcept;
  // Thread-safe: the owner's kernel thread id (gettid), 0 before the first
  // Poll.  For messages.
  int owner_thread_id() const noexcept {
    // Relaxed: a value for messages; the owner writes it once.
    return owner_tid_.load(std::memory_order_relaxed);
  }

  // Thread-safe: makes a blocked (or the next) Poll return.
  void Wake() noexcept;

  // Wakes this reactor through IORING_OP_MSG_RING sent on `source`'s ring
  // (one SQE, no eventfd, no CQE on `source` when it succeeds).  Call on
  // `source`'s owner thread (otherwise, or before `source`'s first Poll,
  // this is Wake()).  Both must be io_uring reactors and the kernel must
  // have MSG_RING (5.18+); otherwise falls back to Wake() and returns false.
  // If the kernel fails the send, `source`'s next Poll calls Wake() on this
  // reactor instead (counted in `source`'s wake_fallbacks), unless this
  // reactor has been destroyed meanwhile.
  bool WakeFrom(Reactor& source) noexcept;

  // Operations started whose callback has not run yet.
  size_t inflight() const noexcept { return core_.outstanding(); }
  // Owner thread: the timers among them (SleepUntil, SleepFor, a Timeout's
  // timer), which live in the reactor's heap, not in the kernel:
  // `inflight() - pending_timers()` operations wait on the kernel.
  size_t pending_timers() const noexcept { return core_.timers().size(); }
  // Owner thread: the MonotonicClock deadline (ns) of the earliest pending
  // timer (SleepUntil, SleepFor, a Timeout's timer), UINT64_MAX if none.
  // A Poll(0) at or after it runs that timer's callback.
  uint64_t NextTimerDeadline() const noexcept {
    return core_.timers().EarliestDeadline();
  }
  // Owner thread, without a system call: whether Poll(0) now would submit
  // or deliver something (io_uring: unsubmitted entries, posted
  // completions, or completion work the kernel holds for this thread).
  // Always false on epoll, which cannot tell without epoll_wait.
  bool HasPendingWork() const noexcept;
  // Whether HasPendingWork sees every completion as soon as the kernel has
  // it (io_uring with TASKRUN_FLAG or without DEFER_TASKRUN); otherwise
  // only a Poll finds them.
  bool PeeksCompletions() const noexcept;

  ReactorStats Stats() const;

 private:
  Reactor() = default;
  void Begin(Operation* op, reactor_internal::OpCode code, int fd) noexcept;
  void StartIo(Operation* op, reactor_internal::OpCode code) noexcept;
  bool SetLength(Operation* op, size_t len) noexcept;
  bool SetIovecCount(Operation* op, int iovcnt) noexcept;
  // Aborts unless the calling thread may use the reactor (the owner, or no
  // owner yet, or the destructor is running).
  void CheckOwner(const char* what) const noexcept {
    // Relaxed: see owner_.  A key's address, not pthread_self(): no call
    // into libc on every operation.
    const void* owner = owner_.load(std::memory_order_relaxed);
    if (owner != nullptr && owner != &reactor_internal::tl_thread_key &&
        !core_.shutting_down) [[unlikely]] {
      WrongThread(what);
    }
  }
  [[noreturn, gnu::cold, gnu::noinline]] void WrongThread(
      const char* what) const noexcept;

  Backend backend_ = Backend::kEpoll;
  std::string fallback_reason_;
  reactor_internal::Core core_;
  std::unique_ptr<reactor_internal::Driver> driver_;
  std::atomic<uint64_t> wakes_{0};
  // The owner: its &reactor_internal::tl_thread_key (null until the first
  // Poll).  Written once, by the owner, in its first Poll; read by other
  // threads only to compare against their own key (relaxed: no data is
  // published with it).
  std::atomic<const void*> owner_{nullptr};
  std::atomic<int> owner_tid_{0};
};

// Test hook: while `err` is non-zero, io_uring ring setup fails with that
// errno (e.g. EPERM) instead of calling the kernel.  0 restores normal setup.
void SetIoUringSetupFailureForTesting(int err);
// Test hook: how many times ring setup has been attempted in this process.
int IoUringSetupAttemptsForTesting();

}  // namespace spindle::reactor

#endif  // SPINDLE_REACTOR_REACTOR_H_
