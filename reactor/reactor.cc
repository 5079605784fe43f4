#include "reactor/reactor.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "reactor/internal/epoll_driver.h"
#include "reactor/internal/uring_driver.h"
#include "timing/clock.h"

namespace spindle::reactor {

using reactor_internal::OpCode;
using reactor_internal::S;

constinit thread_local char reactor_internal::tl_thread_key = 0;

namespace {

std::string ErrnoText(int err) {
  const char* name = strerrorname_np(err);
  return absl::StrFormat("%s (%s)", name != nullptr ? name : "errno",
                         std::string(std::strerror(err)));
}

bool IsPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

// valgrind runs its client with its preload library in LD_PRELOAD
// (vgpreload_core-<arch>.so), every tool alike.
bool UnderValgrind() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload != nullptr && std::strstr(preload, "vgpreload") != nullptr;
}

// Says on stderr, once per process for each `flag`, why a reactor runs on
// epoll under BackendChoice::kAuto.
void LogFallbackOnce(std::once_flag& flag, const std::string& reason) {
  std::call_once(flag, [&] {
    std::fprintf(stderr, "spindle reactor: %s (logged once)\n",
                 reason.c_str());
  });
}

}  // namespace

std::string_view BackendName(Backend backend) noexcept {
  return backend == Backend::kIoUring ? "io_uring" : "epoll";
}

absl::StatusOr<BackendChoice> ReactorOptions::ParseBackend(
    std::string_view raw) {
  // Any case, as the SPINDLE_* tier variables accept.
  const std::string value = absl::AsciiStrToLower(std::string(raw));
  if (value.empty() || value == "auto") return BackendChoice::kAuto;
  if (value == "io_uring") return BackendChoice::kIoUring;
  if (value == "epoll") return BackendChoice::kEpoll;
  return absl::InvalidArgumentError(
      absl::StrCat("SPINDLE_REACTOR=\"", std::string(raw),
                   "\" is not a reactor backend; valid values: auto, "
                   "io_uring, epoll"));
}

absl::StatusOr<UringSetup> ReactorOptions::ParseUringSetup(
    std::string_view raw) {
  const std::string value = absl::AsciiStrToLower(std::string(raw));
  for (UringSetup s : {UringSetup::kAuto, UringSetup::kPlain,
                       UringSetup::kCoopTaskrun, UringSetup::kDeferTaskrun,
                       UringSetup::kSqpoll}) {
    if (value == UringSetupName(s)) return s;
  }
  if (value.empty()) return UringSetup::kAuto;
  return absl::InvalidArgumentError(absl::StrCat(
      "SPINDLE_URING_SETUP=\"", std::string(raw),
      "\" is not an io_uring setup; valid values: auto, plain, coop_taskrun, "
      "defer_taskrun, sqpoll"));
}

absl::StatusOr<ReactorOptions> ReactorOptions::FromEnv() {
  ReactorOptions options;
  if (const char* setup = std::getenv("SPINDLE_URING_SETUP")) {
    absl::StatusOr<UringSetup> s = ParseUringSetup(setup);
    if (!s.ok()) return s.status();
    options.uring_setup = *s;
  }
  const char* value = std::getenv("SPINDLE_REACTOR");
  absl::StatusOr<BackendChoice> choice =
      ParseBackend(value == nullptr ? std::string_view() : value);
  if (!choice.ok()) return choice.status();
  options.backend = *choice;
  return options;
}

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(
    const ReactorOptions& options) {
  if (!IsPowerOfTwo(options.ring_entries) || options.ring_entries < 2 ||
      options.ring_entries > 32768) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ReactorOptions::ring_entries = %u is invalid: must be a power of two "
        "in [2, 32768]",
        options.ring_entries));
  }
  if (options.sqpoll_idle_ms < 1 || options.sqpoll_idle_ms > 60000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ReactorOptions::sqpoll_idle_ms = %u is invalid: valid range "
        "1..60000",
        options.sqpoll_idle_ms));
  }
  UringSetup setup = options.uring_setup;
  if (options.sqpoll && setup == UringSetup::kAuto) setup = UringSetup::kSqpoll;
  std::unique_ptr<Reactor> r(new Reactor());
  // valgrind (3.19) holds its global lock while a thread waits in
  // io_uring_enter: a thread parked in its ring (a Runtime worker) stops
  // every other thread, the one that would wake it included, and the
  // program hangs.  Under auto, epoll instead; an explicit io_uring is kept
  // (a single thread that waits in its ring alone runs).
  const bool valgrind =
      options.backend == BackendChoice::kAuto && UnderValgrind();
  if (valgrind) {
    r->fallback_reason_ =
        "running under valgrind, which stops every thread while one waits "
        "in io_uring_enter; using epoll (SPINDLE_REACTOR=io_uring keeps "
        "io_uring)";
    static std::once_flag logged_valgrind;
    LogFallbackOnce(logged_valgrind, r->fallback_reason_);
  }
  if (options.backend != BackendChoice::kEpoll && !valgrind) {
    int err = 0;
    std::string what;
    std::unique_ptr<reactor_internal::UringDriver> d =
        reactor_internal::UringDriver::Create(&r->core_, options.ring_entries,
                                              setup, options.sqpoll_idle_ms,
                                              &err, &what);
    if (d != nullptr) {
      r->backend_ = Backend::kIoUring;
      r->core_.set_driver(d.get());
      r->driver_ = std::move(d);
      return r;
    }
    const std::string msg =
        absl::StrFormat("io_uring setup failed: %s with %u entries: %s", what,
                        options.ring_entries, ErrnoText(err));
    if (options.backend == BackendChoice::kIoUring ||
        (setup != UringSetup::kAuto && err == EINVAL)) {
      // An explicit setup the kernel refuses (EINVAL) is an error even
      // under auto: the user asked for those flags.
      if (err == ENOMEM) return absl::ResourceExhaustedError(msg);
      return absl::UnavailableError(msg);
    }
    if (err != EPERM && err != ENOSYS && err != ENOMEM) {
      return absl::UnavailableError(absl::StrCat(
          msg, "; auto falls back to epoll only for EPERM, ENOSYS, ENOMEM"));
    }
    r->fallback_reason_ = absl::StrCat(msg, "; using epoll");
    static std::once_flag logged;
    LogFallbackOnce(logged, r->fallback_reason_);
  }
  int err = 0;
  std::string what;
  std::unique_ptr<reactor_internal::EpollDriver> d =
      reactor_internal::EpollDriver::Create(&r->core_, &err, &what);
  if (d == nullptr) {
    return absl::UnavailableError(
        absl::StrFormat("epoll setup failed: %s: %s", what, ErrnoText(err)));
  }
  r->backend_ = Backend::kEpoll;
  r->core_.set_driver(d.get());
  r->driver_ = std::move(d);
  return r;
}

Reactor::~Reactor() {
  if (driver_ == nullptr) return;  // Create failed before a backend existed.
  // Shutdown sequence: see reactor/internal/core.h.
  const bool foreign = !OwnedByCurrentThread();
  core_.shutting_down = true;
  core_.CancelAllTimers();
  if (foreign) {
    // Not the owner: an io_uring ring refuses this thread (SINGLE_ISSUER:
    // every io_uring_enter fails with EEXIST), so cancelling and reaping
    // would spin until the give-up below.  Tear down instead.
    driver_->Abandon();
  } else {
    driver_->CancelAll();
  }
  const uint64_t give_up = timing::MonotonicClock::Now() + 10'000'000'000u;
  for (;;) {
    core_.RunReady();
    if (core_.outstanding() == 0 && driver_->Quiescent()) break;
    if (timing::MonotonicClock::Now() > give_up) {
      ABSL_RAW_LOG(ERROR,
                   "spindle reactor: %zu operations still in flight after 10 "
                   "s of shutdown; closing the ring",
                   core_.outstanding());
      break;
    }
    driver_->Wait(1'000'000, UINT64_MAX);
  }
  driver_.reset();
}

bool Reactor::OwnedByCurrentThread() const noexcept {
  // Relaxed: see owner_.
  const void* owner = owner_.load(std::memory_order_relaxed);
  return owner == nullptr || owner == &reactor_internal::tl_thread_key;
}

void Reactor::WrongThread(const char* what) const noexcept {
  ABSL_RAW_LOG(
      FATAL,
      "spindle reactor: %s on thread %d, but this %s reactor belongs "
      "to thread %d (the first thread that polled it%s); only the "
      "owner may use it (see \"The owner\" in reactor/reactor.h)",
      what, static_cast<int>(syscall(SYS_gettid)),
      std::string(BackendName(backend_)).c_str(), owner_thread_id(),
      backend_ == Backend::kIoUring ? ", and its ring's single issuer" : "");
  std::abort();  // Unreachable: FATAL aborts.
}

[[gnu::always_inline]] inline void Reactor::Begin(Operation* op, OpCode code,
                                                  int fd) noexcept {
  CheckOwner("starting an operation");
  ABSL_RAW_CHECK(!op->pending(), "Operation started while still pending");
  reactor_internal::OpState& s = S(op);
  s.code = code;
  s.fd = fd;
  s.bits = 0;
  s.link = nullptr;
  core_.NoteStarted();
}

[[gnu::always_inline]] inline void Reactor::StartIo(Operation* op,
                                                    OpCode code) noexcept {
  if (core_.shutting_down) [[unlikely]] {
    core_.PushReady(op, -ECANCELED);
    return;
  }
  if (backend_ == Backend::kIoUring) {
    // Direct and inline, with the opcode as a constant (Begin's store to
    // the Operation is not one the compiler may read back).
    static_cast<reactor_internal::UringDriver*>(driver_.get())
        ->StartInline(op, code);
  } else {
    driver_->Start(op);
  }
}

void Reactor::Nop(Operation* op) noexcept {
  Begin(op, OpCode::kNop, -1);
  StartIo(op, OpCode::kNop);
}

void Reactor::SleepUntil(Operation* op, uint64_t deadline_ns) noexcept {
  Begin(op, OpCode::kTimer, -1);
  S(op).deadline_ns = deadline_ns;
  if (core_.shutting_down) [[unlikely]] {
    core_.PushReady(op, -ECANCELED);
    return;
  }
  core_.StartTimer(op);
}

void Reactor::SleepFor(Operation* op, uint64_t duration_ns) noexcept {
  const uint64_t now = timing::MonotonicClock::Now();
  SleepUntil(op, duration_ns > UINT64_MAX - now ? UINT64_MAX
                                                 : now + duration_ns);
}

// Byte counts: above SSIZE_MAX the result could not be reported (read(2)
// leaves it implementation-defined; Linux fails it with EFAULT or EINVAL), so
// it is -EINVAL on both backends.  Otherwise the count is clamped to
// kMaxRwCount, as the kernel's rw_verify_area / import_ubuf do for read(2)
// and send(2): io_uring's SQE length is 32 bits (a 4 GiB count would become
// 0 and look like EOF), and the clamped count always fits the int32 result.
[[gnu::always_inline]] inline bool Reactor::SetLength(Operation* op,
                                                      size_t len) noexcept {
  if (len > static_cast<size_t>(SSIZE_MAX)) [[unlikely]] {
    core_.PushReady(op, -EINVAL);
    return false;
  }
  S(op).len = std::min<uint64_t>(len, kMaxRwCount);
  return true;
}

[[gnu::always_inline]] inline bool Reactor::SetIovecCount(Operation* op,
                                                          int iovcnt) noexcept {
  if (iovcnt < 0) [[unlikely]] {  // readv(2) fails it the same way.
    core_.PushReady(op, -EINVAL);
    return false;
  }
  S(op).len = static_cast<uint64_t>(iovcnt);
  return true;
}

void Reactor::Read(Operation* op, int fd, void* buf, size_t len,
                   int64_t offset) noexcept {
  Begin(op, OpCode::kRead, fd);
  S(op).addr = buf;
  S(op).offset = offset;
  if (SetLength(op, len)) StartIo(op, OpCode::kRead);
}

void Reactor::Write(Operation* op, int fd, const void* buf, size_t len,
                    int64_t offset) noexcept {
  Begin(op, OpCode::kWrite, fd);
  S(op).addr = const_cast<void*>(buf);
  S(op).offset = offset;
  if (SetLength(op, len)) StartIo(op, OpCode::kWrite);
}

void Reactor::Readv(Operation* op, int fd, const iovec* iov, int iovcnt,
                    int64_t offset) noexcept {
  Begin(op, OpCode::kReadv, fd);
  S(op).addr = const_cast<iovec*>(iov);
  S(op).offset = offset;
  if (SetIovecCount(op, iovcnt)) StartIo(op, OpCode::kReadv);
}

void Reactor::Writev(Operation* op, int fd, const iovec* iov, int iovcnt,
                     int64_t offset) noexcept {
  Begin(op, OpCode::kWritev, fd);
  S(op).addr = const_cast<iovec*>(iov);
  S(op).offset = offset;
  if (SetIovecCount(op, iovcnt)) StartIo(op, OpCode::kWritev);
}

void Reactor::Accept(Operation* op, int fd, sockaddr* addr,
                     socklen_t* addrlen) noexcept {
  Begin(op, OpCode::kAccept, fd);
  S(op).addr = addr;
  S(op).addr2 = addrlen;
  StartIo(op, OpCode::kAccept);
}

void Reactor::Connect(Operation* op, int fd, const sockaddr* addr,
                      socklen_t len) noexcept {
  Begin(op, OpCode::kConnect, fd);
  S(op).addr = const_cast<sockaddr*>(addr);
  S(op).len = len;
  StartIo(op, OpCode::kConnect);
}

void Reactor::Recv(Operation* op, int fd, void* buf, size_t len,
                   int flags) noexcept {
  Begin(op, OpCode::kRecv, fd);
  S(op).addr = buf;
  S(op).flags = flags;
  if (SetLength(op, len)) StartIo(op, OpCode::kRecv);
}

void Reactor::Send(Operation* op, int fd, const void* buf, size_t len,
                   int flags) noexcept {
  Begin(op, OpCode::kSend, fd);
  S(op).addr = const_cast<void*>(buf);
  S(op).flags = flags;
  if (SetLength(op, len)) StartIo(op, OpCode::kSend);
}

void Reactor::Close(Operation* op, int fd) noexcept {
  Begin(op, OpCode::kClose, fd);
  StartIo(op, OpCode::kClose);
}

void Reactor::Fsync(Operation* op, int fd) noexcept {
  Begin(op, OpCode::kFsync, fd);
  StartIo(op, OpCode::kFsync);
}

void Reactor::PollReadable(Operation* op, int fd) noexcept {
  Begin(op, OpCode::kPollIn, fd);
  StartIo(op, OpCode::kPollIn);
}

void Reactor::PollWritable(Operation* op, int fd) noexcept {
  Begin(op, OpCode::kPollOut, fd);
  StartIo(op, OpCode::kPollOut);
}

void Reactor::Timeout(Operation* op, Operation* timeout_op,
                      uint64_t timeout_ns) noexcept {
  Begin(timeout_op, OpCode::kTimer, -1);
  reactor_internal::OpState& t = S(timeout_op);
  t.bits = reactor_internal::kBitTimeoutTimer;
  const uint64_t now = timing::MonotonicClock::Now();
  t.deadline_ns = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
  if (core_.shutting_down || !op->pending()) {
    core_.PushReady(timeout_op, -ECANCELED);
    return;
  }
  ABSL_RAW_CHECK(S(op).link == nullptr, "Operation already has a Timeout");
  t.link = op;
  S(op).link = timeout_op;
  core_.StartTimer(timeout_op);
}

void Reactor::Cancel(Operation* op) noexcept {
  CheckOwner("Cancel");
  core_.Cancel(op);
}

bool Reactor::HasPendingWork() const noexcept {
  return driver_->HasPendingWork();
}

bool Reactor::PeeksCompletions() const noexcept {
  return driver_->PeeksCompletions();
}

int Reactor::Poll(uint64_t timeout_ns) noexcept {
  // Relaxed: see owner_.
  if (owner_.load(std::memory_order_relaxed) == nullptr) [[unlikely]] {
    owner_tid_.store(static_cast<int>(syscall(SYS_gettid)),
                     std::memory_order_relaxed);  // For messages only.
    owner_.store(&reactor_internal::tl_thread_key,
                 std::memory_order_relaxed);
  }
  CheckOwner("Poll");
  int n = core_.RunReady();
  if (!core_.timers().empty()) {
    core_.ExpireTimers(timing::MonotonicClock::Now());
    n += core_.RunReady();
  }
  const uint64_t wait = (n > 0 || core_.has_ready()) ? 0 : timeout_ns;
  // A non-blocking poll with nothing in the kernel (every outstanding
  // operation is a timer in our heap) has nothing to submit or reap: skip
  // the system call.  The executor polls this way every few dozen task polls.
  if (wait != 0 || core_.outstanding() != core_.timers().size() ||
      !driver_->Idle()) {
    n += driver_->Wait(wait, core_.timers().EarliestDeadline());
  } else {
    driver_->Claim();
  }
  if (!core_.timers().empty()) {
    core_.ExpireTimers(timing::MonotonicClock::Now());
  }
  n += core_.RunReady();
  return n;
}

void Reactor::Wake() noexcept {
  // Relaxed: a statistic; the eventfd write carries the wake-up itself.
  wakes_.fetch_add(1, std::memory_order_relaxed);
  driver_->Wake();
}

bool Reactor::WakeFrom(Reactor& source) noexcept {
  // MSG_RING is an SQE on `source`'s ring, which only its owner may submit.
  if (backend_ == Backend::kIoUring && source.backend_ == Backend::kIoUring &&
      source.OwnedByCurrentThread()) {
    auto* target = static_cast<reactor_internal::UringDriver*>(driver_.get());
    auto* from =
        static_cast<reactor_internal::UringDriver*>(source.driver_.get());
    if (target->WakeFrom(from)) {
      wakes_.fetch_add(1, std::memory_order_relaxed);  // Statistic only.
      return true;
    }
  }
  Wake();
  return false;
}

ReactorStats Reactor::Stats() const {
  const reactor_internal::DriverStats d = driver_->Stats();
  ReactorStats s;
  s.backend = backend_;
  s.fallback_reason = fallback_reason_;
  s.features = d.features;
  if (backend_ == Backend::kIoUring) {
    const uint32_t f = d.setup_flags;
    s.uring_setup = std::string(UringSetupName(
        (f & IORING_SETUP_SQPOLL)             ? UringSetup::kSqpoll
        : (f & (1u << 13)) /* DEFER_TASKRUN */ ? UringSetup::kDeferTaskrun
        : (f & (1u << 8)) /* COOP_TASKRUN */   ? UringSetup::kCoopTaskrun
                                               : UringSetup::kPlain));
  }
  s.started = core_.started();
  s.submitted = d.submitted;
  s.completed = core_.completed();
  s.cancelled = core_.cancelled();
  s.cancel_requests = core_.cancel_requests();
  s.sq_full_waits = d.sq_full_waits;
  s.sq_flushes = d.sq_flushes;
  s.syscalls = d.syscalls;
  s.timers_fired = core_.timers_fired();
  s.wakes = wakes_.load(std::memory_order_relaxed);  // Statistic only.
  s.wakes_received = d.wakes_received;
  s.wake_fallbacks = d.wake_fallbacks;
  s.ioprio_fallbacks = d.ioprio_fallbacks;
  s.timers_pending = core_.timers().size();
  s.queued = d.queued;
  s.inflight = core_.outstanding();
  s.ring_entries = d.ring_entries;
  s.cq_entries = d.cq_entries;
  return s;
}

void SetIoUringSetupFailureForTesting(int err) {
  reactor_internal::g_forced_setup_errno.store(err, std::memory_order_relaxed);
}

int IoUringSetupAttemptsForTesting() {
  return reactor_internal::g_setup_attempts.load(std::memory_order_relaxed);
}

}  // namespace spindle::reactor
