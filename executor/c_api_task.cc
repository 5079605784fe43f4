// executor/c_api_task.cc: the calls a C task makes on itself (yields,
// sleeps, file and socket I/O; executor/spindle.h).  Each waits by
// suspending the task's fiber; a cancelled task gets -ECANCELED.

#include <sys/socket.h>

#include <chrono>

#include "executor/internal/c_api_impl.h"

using spindle::c_api_internal::CheckSelf;
using spindle::c_api_internal::Fail;
using spindle::c_api_internal::Guard;

extern "C" {

int spindle_yield(spindle_task_t* self) {
  return Guard("spindle_yield", [&]() -> int {
    if (int r = CheckSelf("spindle_yield", self); r != 0) return r;
    spindle::this_fiber::Yield();
    return 0;
  });
}

int spindle_yield_maybe(spindle_task_t* self) {
  return Guard("spindle_yield_maybe", [&]() -> int {
    if (int r = CheckSelf("spindle_yield_maybe", self); r != 0) return r;
    spindle::this_fiber::YieldMaybe();
    return 0;
  });
}

int spindle_sleep(spindle_task_t* self, uint64_t ns) {
  return Guard("spindle_sleep", [&]() -> int {
    if (int r = CheckSelf("spindle_sleep", self); r != 0) return r;
    spindle::this_fiber::SleepFor(
        std::chrono::nanoseconds(static_cast<int64_t>(ns)));
    return 0;
  });
}

int64_t spindle_read(spindle_task_t* self, int fd, void* buf, size_t len,
                     int64_t offset) {
  return Guard("spindle_read", [&]() -> int {
    if (int r = CheckSelf("spindle_read", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Read(fd, buf, len, offset));
  });
}

int64_t spindle_write(spindle_task_t* self, int fd, const void* buf,
                      size_t len, int64_t offset) {
  return Guard("spindle_write", [&]() -> int {
    if (int r = CheckSelf("spindle_write", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Write(fd, buf, len, offset));
  });
}

int spindle_fsync(spindle_task_t* self, int fd) {
  return Guard("spindle_fsync", [&]() -> int {
    if (int r = CheckSelf("spindle_fsync", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Fsync(fd));
  });
}

int spindle_accept(spindle_task_t* self, int fd, struct sockaddr* addr,
                   socklen_t* addrlen) {
  return Guard("spindle_accept", [&]() -> int {
    if (int r = CheckSelf("spindle_accept", self); r != 0) return r;
    if ((addr == nullptr) != (addrlen == nullptr)) {
      return Fail(EINVAL, "spindle_accept: addr and addrlen must both be "
                          "NULL or both be set");
    }
    return spindle::this_fiber::Await(spindle::Accept(fd, addr, addrlen));
  });
}

int spindle_connect(spindle_task_t* self, int fd, const struct sockaddr* addr,
                    socklen_t addrlen) {
  return Guard("spindle_connect", [&]() -> int {
    if (int r = CheckSelf("spindle_connect", self); r != 0) return r;
    if (addr == nullptr) return Fail(EINVAL, "spindle_connect: addr is NULL");
    return spindle::this_fiber::Await(spindle::Connect(fd, addr, addrlen));
  });
}

int64_t spindle_recv(spindle_task_t* self, int fd, void* buf, size_t len,
                     int flags) {
  return Guard("spindle_recv", [&]() -> int {
    if (int r = CheckSelf("spindle_recv", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Recv(fd, buf, len, flags));
  });
}

int64_t spindle_send(spindle_task_t* self, int fd, const void* buf,
                     size_t len, int flags) {
  return Guard("spindle_send", [&]() -> int {
    if (int r = CheckSelf("spindle_send", self); r != 0) return r;
    return spindle::this_fiber::Await(spindle::Send(fd, buf, len, flags));
  });
}


}  // extern "C"
