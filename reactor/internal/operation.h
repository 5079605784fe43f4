// reactor/internal/operation.h: the Operation record and its reactor-private
// state.  Include reactor/reactor.h instead; this header exists so that the
// backends (reactor_internal) and the public Reactor share one definition.
//
// An Operation is caller-owned storage for one in-flight operation.  The
// reactor links it into its queues through the intrusive fields below, so
// starting an operation never allocates.  Its lifecycle (`OpPhase`):
//
//   kIdle --Start--> kTimer     (in the timer heap; both backends)
//                 -> kQueued    (io_uring: parked for an SQ/CQ slot)
//                 -> kInflight  (io_uring: in the kernel; epoll: waiting for
//                                readiness in a per-fd waiter list)
//                 -> kReady     (result known, callback not yet run)
//   any of those --completion--> kIdle, then `on_complete` runs.
//
// The reactor sets the phase to kIdle and detaches every link before it calls
// `on_complete`, so the callback may start the same Operation again.

#ifndef SPINDLE_REACTOR_INTERNAL_OPERATION_H_
#define SPINDLE_REACTOR_INTERNAL_OPERATION_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace spindle::reactor {

// Which kernel interface a Reactor drives.
enum class Backend : uint8_t { kIoUring, kEpoll };

// I/O priority of an operation.  On io_uring it sets the SQE's ioprio for
// reads and writes (real-time class, unset, idle class); on both backends it
// orders the resumption queue when operations wait for submission slots.
enum class IoPriority : uint8_t { kHigh = 0, kNormal = 1, kLow = 2 };

// How an io_uring ring is set up (ReactorOptions::uring_setup).
//   kAuto          the most capable the kernel takes: kDeferTaskrun (6.1+),
//                  else kCoopTaskrun (5.19+), else kPlain.
//   kPlain         no flags: completions run as task work at any syscall.
//   kCoopTaskrun   IORING_SETUP_COOP_TASKRUN | TASKRUN_FLAG (5.19+).
//   kDeferTaskrun  IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (6.1+):
//                  completions only when the owner asks for them.
//   kSqpoll        IORING_SETUP_SQPOLL: a kernel thread polls the SQ (idle
//                  after ReactorOptions::sqpoll_idle_ms).
// An explicit choice the kernel refuses is Unavailable, naming the flags
// and the errno; only kAuto falls back.
enum class UringSetup : uint8_t {
  kAuto,
  kPlain,
  kCoopTaskrun,
  kDeferTaskrun,
  kSqpoll
};

// "auto", "plain", "coop_taskrun", "defer_taskrun", "sqpoll".
constexpr std::string_view UringSetupName(UringSetup setup) noexcept {
  switch (setup) {
    case UringSetup::kAuto:
      return "auto";
    case UringSetup::kPlain:
      return "plain";
    case UringSetup::kCoopTaskrun:
      return "coop_taskrun";
    case UringSetup::kDeferTaskrun:
      return "defer_taskrun";
    case UringSetup::kSqpoll:
      return "sqpoll";
  }
  return "?";
}


struct Operation;

namespace reactor_internal {

enum class OpCode : uint8_t {
  kNone,
  kNop,
  kTimer,
  kRead,
  kWrite,
  kReadv,
  kWritev,
  kAccept,
  kConnect,
  kRecv,
  kSend,
  kClose,
  kFsync,
  kPollIn,
  kPollOut,
};

enum class OpPhase : uint8_t { kIdle, kTimer, kQueued, kInflight, kReady };

// Flag bits in OpState::bits.
inline constexpr uint8_t kBitCancelRequested = 1;  // Cancel was asked for.
inline constexpr uint8_t kBitCancelQueued = 2;     // io_uring: in cancel queue.
inline constexpr uint8_t kBitConnectStarted = 4;   // epoll: connect() issued.
inline constexpr uint8_t kBitTimeoutTimer = 8;     // Timer of a Timeout pair.
inline constexpr uint8_t kBitRtIoprio = 16;        // io_uring: sent as RT class.

inline constexpr uint32_t kNoHeapIndex = UINT32_MAX;

// The reactor-private part of an Operation.
struct OpState {
  Operation* next = nullptr;  // Intrusive links: ready list, parked queue,
  Operation* prev = nullptr;  // cancel queue, epoll per-fd waiter lists.

  Operation* inext = nullptr;  // io_uring: the driver's list of
  Operation* iprev = nullptr;  // operations in the kernel (kInflight).

  Operation* link = nullptr;  // The other half of a Timeout pair.
  void* addr = nullptr;       // Buffer, iovec array or sockaddr.
  void* addr2 = nullptr;      // Accept: socklen_t* addrlen.
  uint64_t len = 0;           // Byte count, iovcnt or socklen.
  int64_t offset = 0;         // File offset (-1: current position).
  uint64_t deadline_ns = 0;   // Timers: MonotonicClock deadline.
  int32_t fd = -1;
  int32_t flags = 0;          // Recv/Send flags.
  uint32_t heap_index = kNoHeapIndex;
  OpCode code = OpCode::kNone;
  OpPhase phase = OpPhase::kIdle;
  uint8_t bits = 0;
};

struct OpAccess;

}  // namespace reactor_internal

// One in-flight operation: see reactor/reactor.h.
struct Operation {
  // Called once, from Reactor::Poll (or the Reactor's destructor) on the
  // reactor's thread, when the operation is over.  The callback may start new
  // operations, including on this same Operation.
  void (*on_complete)(Operation* op) noexcept = nullptr;
  // >= 0: success value (bytes, new fd, poll mask, 0).  < 0: -errno as the
  // kernel reports it; -ECANCELED when cancelled.
  int32_t result = 0;
  IoPriority priority = IoPriority::kNormal;
  // Free for the caller (the executor stores its task pointer here).
  void* user = nullptr;

  Operation() = default;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;

  // True between starting the operation and the start of its callback.
  bool pending() const noexcept {
    return state_.phase != reactor_internal::OpPhase::kIdle;
  }

 private:
  friend struct reactor_internal::OpAccess;
  reactor_internal::OpState state_;
};

namespace reactor_internal {

struct OpAccess {
  static OpState& Of(Operation* op) noexcept { return op->state_; }
};

inline OpState& S(Operation* op) noexcept { return OpAccess::Of(op); }

// An intrusive doubly linked FIFO of Operations through the OpState links
// `Next` / `Prev`.
template <Operation* OpState::*Next, Operation* OpState::*Prev>
class BasicOpList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  size_t size() const noexcept { return size_; }
  Operation* front() const noexcept { return head_; }

  void PushBack(Operation* op) noexcept {
    OpState& s = S(op);
    s.*Next = nullptr;
    s.*Prev = tail_;
    if (tail_ != nullptr) {
      S(tail_).*Next = op;
    } else {
      head_ = op;
    }
    tail_ = op;
    ++size_;
  }

  Operation* PopFront() noexcept {
    Operation* op = head_;
    if (op != nullptr) Remove(op);
    return op;
  }

  void Remove(Operation* op) noexcept {
    OpState& s = S(op);
    if (s.*Prev != nullptr) {
      S(s.*Prev).*Next = s.*Next;
    } else {
      head_ = s.*Next;
    }
    if (s.*Next != nullptr) {
      S(s.*Next).*Prev = s.*Prev;
    } else {
      tail_ = s.*Prev;
    }
    s.*Next = s.*Prev = nullptr;
    --size_;
  }

  // The element after `op` (for walks that may remove `op`: read it first).
  static Operation* After(Operation* op) noexcept { return S(op).*Next; }

  // Moves every element to the returned list, leaving this one empty.
  BasicOpList Detach() noexcept {
    BasicOpList out = *this;
    head_ = tail_ = nullptr;
    size_ = 0;
    return out;
  }

 private:
  Operation* head_ = nullptr;
  Operation* tail_ = nullptr;
  size_t size_ = 0;
};

using OpList = BasicOpList<&OpState::next, &OpState::prev>;
using InflightList = BasicOpList<&OpState::inext, &OpState::iprev>;

}  // namespace reactor_internal
}  // namespace spindle::reactor

#endif  // SPINDLE_REACTOR_INTERNAL_OPERATION_H_
