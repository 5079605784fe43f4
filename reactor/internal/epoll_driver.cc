#include "reactor/internal/epoll_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace spindle::reactor::reactor_internal {

namespace {

void EnsureNonBlocking(int fd) noexcept {
  const int flags = fcntl(fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) == 0) {
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
}

int32_t Result(ssize_t r) noexcept {
  return r < 0 ? -errno : static_cast<int32_t>(std::min<ssize_t>(r, INT32_MAX));
}

}  // namespace

std::unique_ptr<EpollDriver> EpollDriver::Create(Core* core, int* err,
                                                 std::string* what) {
  std::unique_ptr<EpollDriver> d(new EpollDriver(core));
  d->epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (d->epoll_fd_ < 0) {
    *err = errno;
    *what = "epoll_create1";
    return nullptr;
  }
  d->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (d->event_fd_ < 0) {
    *err = errno;
    *what = "eventfd";
    return nullptr;
  }
  d->timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (d->timer_fd_ < 0) {
    *err = errno;
    *what = "timerfd_create";
    return nullptr;
  }
  for (int fd : {d->event_fd_, d->timer_fd_}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<uint64_t>(fd);
    if (epoll_ctl(d->epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      *err = errno;
      *what = "epoll_ctl(EPOLL_CTL_ADD)";
      return nullptr;
    }
  }
  d->fds_.resize(256);
  d->stats_.features = "epoll+timerfd";
  return d;
}

EpollDriver::~EpollDriver() {
  for (int fd : {timer_fd_, event_fd_, epoll_fd_}) {
    if (fd >= 0) close(fd);
  }
}

bool EpollDriver::IsReader(OpCode code) noexcept {
  switch (code) {
    case OpCode::kRead:
    case OpCode::kReadv:
    case OpCode::kAccept:
    case OpCode::kRecv:
    case OpCode::kPollIn:
      return true;
    default:
      return false;
  }
}

int32_t EpollDriver::Try(Operation* op) noexcept {
  OpState& s = S(op);
  switch (s.code) {
    case OpCode::kRead:
      if (s.offset < 0) {
        EnsureNonBlocking(s.fd);
        return Result(read(s.fd, s.addr, s.len));
      }
      return Result(pread(s.fd, s.addr, s.len, s.offset));
    case OpCode::kWrite:
      if (s.offset < 0) {
        EnsureNonBlocking(s.fd);
        return Result(write(s.fd, s.addr, s.len));
      }
      return Result(pwrite(s.fd, s.addr, s.len, s.offset));
    case OpCode::kReadv: {
      const auto* iov = static_cast<const iovec*>(s.addr);
      const int n = static_cast<int>(s.len);
      if (s.offset < 0) {
        EnsureNonBlocking(s.fd);
        return Result(readv(s.fd, iov, n));
      }
      return Result(preadv(s.fd, iov, n, s.offset));
    }
    case OpCode::kWritev: {
      const auto* iov = static_cast<const iovec*>(s.addr);
      const int n = static_cast<int>(s.len);
      if (s.offset < 0) {
        EnsureNonBlocking(s.fd);
        return Result(writev(s.fd, iov, n));
      }
      return Result(pwritev(s.fd, iov, n, s.offset));
    }
    case OpCode::kAccept:
      EnsureNonBlocking(s.fd);
      return Result(accept(s.fd, static_cast<sockaddr*>(s.addr),
                           static_cast<socklen_t*>(s.addr2)));
    case OpCode::kConnect: {
      if ((s.bits & kBitConnectStarted) == 0) {
        EnsureNonBlocking(s.fd);
        if (connect(s.fd, static_cast<const sockaddr*>(s.addr),
                    static_cast<socklen_t>(s.len)) == 0) {
          return 0;
        }
        if (errno != EINPROGRESS && errno != EAGAIN) return -errno;
        s.bits |= kBitConnectStarted;
        return -EAGAIN;
      }
      pollfd p{s.fd, POLLOUT, 0};
      if (poll(&p, 1, 0) == 0) return -EAGAIN;
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
        return -errno;
      }
      return -err;
    }
    case OpCode::kRecv:
      return Result(recv(s.fd, s.addr, s.len, s.flags | MSG_DONTWAIT));
    case OpCode::kSend:
      return Result(send(s.fd, s.addr, s.len, s.flags | MSG_DONTWAIT));
    case OpCode::kPollIn:
    case OpCode::kPollOut: {
      const short want = s.code == OpCode::kPollIn ? POLLIN : POLLOUT;
      pollfd p{s.fd, want, 0};
      const int r = poll(&p, 1, 0);
      if (r < 0) return -errno;
      if (r == 0) return -EAGAIN;
      if (p.revents & POLLNVAL) return -EBADF;
      return p.revents;
    }
    case OpCode::kNop:
      return 0;
    case OpCode::kClose:
      return close(s.fd) == 0 ? 0 : -errno;
    case OpCode::kFsync:
      return fsync(s.fd) == 0 ? 0 : -errno;
    case OpCode::kNone:
    case OpCode::kTimer:
      return -EINVAL;
  }
  return -EINVAL;
}

void EpollDriver::Start(Operation* op) noexcept {
  OpState& s = S(op);
  ++stats_.submitted;
  if (s.code == OpCode::kClose) CancelWaiters(s.fd);
  const int32_t r = Try(op);
  // A caller's MSG_DONTWAIT asks for the non-blocking answer, as recv(2),
  // send(2) and io_uring give it: -EAGAIN now, no waiting for readiness.
  const bool dont_wait = (s.code == OpCode::kRecv || s.code == OpCode::kSend) &&
                         (s.flags & MSG_DONTWAIT) != 0;
  if (r != -EAGAIN || dont_wait) {
    core_->PushReady(op, r);
    return;
  }
  Enqueue(op);
}

void EpollDriver::Enqueue(Operation* op) noexcept {
  OpState& s = S(op);
  if (s.fd < 0) {
    core_->PushReady(op, -EBADF);
    return;
  }
  const size_t fd = static_cast<size_t>(s.fd);
  if (fd >= fds_.size()) fds_.resize(std::max(fd + 1, fds_.size() * 2));
  FdWaiters& w = fds_[fd];
  const bool was_idle = w.readers.empty() && w.writers.empty();
  (IsReader(s.code) ? w.readers : w.writers).PushBack(op);
  s.phase = OpPhase::kInflight;
  ++waiting_;
  if (!was_idle) return;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.u64 = fd;
  // MOD first: the descriptor usually stays registered between waits.
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, s.fd, &ev) == 0) return;
  if (errno == ENOENT && epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, s.fd, &ev) == 0) {
    return;
  }
  // EPERM: the descriptor does not support epoll (a regular file can not
  // get here: it never reports EAGAIN).
  const int32_t err = -errno;
  (IsReader(s.code) ? w.readers : w.writers).Remove(op);
  --waiting_;
  core_->PushReady(op, err);
}

void EpollDriver::Retry(OpList& list) noexcept {
  while (Operation* op = list.front()) {
    const int32_t r = Try(op);
    if (r == -EAGAIN) break;
    list.Remove(op);
    --waiting_;
    core_->PushReady(op, r);
  }
}

void EpollDriver::Cancel(Operation* op) noexcept {
  OpState& s = S(op);
  if (s.phase != OpPhase::kInflight) return;
  FdWaiters& w = fds_[static_cast<size_t>(s.fd)];
  (IsReader(s.code) ? w.readers : w.writers).Remove(op);
  --waiting_;
  core_->PushReady(op, -ECANCELED);
}

void EpollDriver::CancelWaiters(int fd) noexcept {
  if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
  FdWaiters& w = fds_[static_cast<size_t>(fd)];
  for (OpList* list : {&w.readers, &w.writers}) {
    while (Operation* op = list->PopFront()) {
      --waiting_;
      core_->PushReady(op, -ECANCELED);
    }
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
}

void EpollDriver::CancelAll() noexcept {
  for (size_t fd = 0; fd < fds_.size() && waiting_ > 0; ++fd) {
    FdWaiters& w = fds_[fd];
    for (OpList* list : {&w.readers, &w.writers}) {
      while (Operation* op = list->PopFront()) {
        --waiting_;
        core_->PushReady(op, -ECANCELED);
      }
    }
  }
}

void EpollDriver::ArmTimer(uint64_t deadline_ns) noexcept {
  if (deadline_ns == armed_deadline_) return;
  itimerspec its{};
  if (deadline_ns != UINT64_MAX) {
    // 0 would disarm; a deadline at 0 is simply in the past.
    const uint64_t d = std::max<uint64_t>(deadline_ns, 1);
    its.it_value.tv_sec = static_cast<time_t>(d / 1'000'000'000u);
    its.it_value.tv_nsec = static_cast<long>(d % 1'000'000'000u);
  }
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
  armed_deadline_ = deadline_ns;
}

int EpollDriver::Wait(uint64_t timeout_ns, uint64_t deadline_ns) noexcept {
  int ms;
  if (timeout_ns == 0) {
    ms = 0;
  } else {
    ArmTimer(deadline_ns);
    ms = timeout_ns == UINT64_MAX
             ? -1
             : static_cast<int>(std::min<uint64_t>(
                   (timeout_ns + 999'999) / 1'000'000, INT_MAX));
  }
  epoll_event evs[64];
  ++stats_.syscalls;
  const int n = epoll_wait(epoll_fd_, evs, 64, ms);
  for (int i = 0; i < n; ++i) {
    const int fd = static_cast<int>(evs[i].data.u64);
    const uint32_t e = evs[i].events;
    uint64_t drain;
    if (fd == event_fd_) {
      if (read(event_fd_, &drain, sizeof(drain)) > 0) ++stats_.wakes_received;
      continue;
    }
    if (fd == timer_fd_) {
      [[maybe_unused]] ssize_t r = read(timer_fd_, &drain, sizeof(drain));
      armed_deadline_ = UINT64_MAX;  // One-shot: it has fired.
      continue;
    }
    if (static_cast<size_t>(fd) >= fds_.size()) continue;
    FdWaiters& w = fds_[static_cast<size_t>(fd)];
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) Retry(w.readers);
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) Retry(w.writers);
  }
  return 0;  // Completions are on the ready list.
}

void EpollDriver::Wake() noexcept {
  const uint64_t one = 1;
  // EAGAIN only when the counter is saturated: a wake is pending anyway.
  [[maybe_unused]] ssize_t r = write(event_fd_, &one, sizeof(one));
}

DriverStats EpollDriver::Stats() const {
  DriverStats s = stats_;
  s.queued = 0;
  return s;
}

}  // namespace spindle::reactor::reactor_internal
