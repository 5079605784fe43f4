// echo_check: a test client for echo_server (used by examples_test.sh).
//
//   echo_check --port P [--idle N] [--active M] [--rounds R] [--hold-ms T]
//
// Opens N idle connections (they send nothing), then M active connections
// that each do R request/response round trips of a 32-byte line, checking
// every reply, while the idle ones stay open; then holds everything for T
// ms and closes it.  Exit 0 when every reply came back intact within 10 s,
// 1 otherwise (with the reason), 2 on a bad flag.  Plain blocking sockets:
// it does not use Spindle.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

int Fail(const std::string& why) {
  std::fprintf(stderr, "echo_check: FAIL: %s\n", why.c_str());
  return 1;
}

bool ParseInt(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

int Connect(const sockaddr_in& addr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    const int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

// Reads exactly `len` bytes within `timeout_ms`; false on EOF, error or
// timeout.
bool ReadFull(int fd, char* buf, size_t len, int timeout_ms) {
  size_t got = 0;
  while (got < len) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    const ssize_t n = read(fd, buf + got, len - got);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long port = -1, idle = 0, active = 1, rounds = 20, hold_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    long* target = a == "--port"      ? &port
                   : a == "--idle"    ? &idle
                   : a == "--active"  ? &active
                   : a == "--rounds"  ? &rounds
                   : a == "--hold-ms" ? &hold_ms
                                      : nullptr;
    const long hi = a == "--port" ? 65535 : 1'000'000;
    if (target == nullptr || i + 1 >= argc ||
        !ParseInt(argv[++i], 0, hi, target)) {
      std::fprintf(stderr,
                   "echo_check: bad argument '%s'\nusage: echo_check --port P "
                   "(1..65535) [--idle N] [--active M] [--rounds R] "
                   "[--hold-ms T] (each 0..1000000)\n",
                   a.c_str());
      return 2;
    }
  }
  if (port <= 0) {
    std::fprintf(stderr, "echo_check: --port is required (1..65535)\n");
    return 2;
  }
  // Thousands of connections need more descriptors than the usual 1024.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));

  std::vector<int> idle_fds;
  for (long i = 0; i < idle; ++i) {
    const int fd = Connect(addr);
    if (fd < 0) {
      return Fail("idle connection " + std::to_string(i) + ": " +
                  std::strerror(-fd));
    }
    idle_fds.push_back(fd);
  }
  std::vector<int> active_fds;
  for (long i = 0; i < active; ++i) {
    const int fd = Connect(addr);
    if (fd < 0) {
      return Fail("active connection " + std::to_string(i) + ": " +
                  std::strerror(-fd));
    }
    active_fds.push_back(fd);
  }
  for (long r = 0; r < rounds; ++r) {
    for (size_t c = 0; c < active_fds.size(); ++c) {
      char line[64];
      std::snprintf(line, sizeof(line), "%010ld %010ld echo.....\n", r,
                    static_cast<long>(c));
      if (write(active_fds[c], line, 32) != 32) {
        return Fail("send on active connection " + std::to_string(c));
      }
    }
    for (size_t c = 0; c < active_fds.size(); ++c) {
      char want[64], got[32];
      std::snprintf(want, sizeof(want), "%010ld %010ld echo.....\n", r,
                    static_cast<long>(c));
      if (!ReadFull(active_fds[c], got, 32, 10'000)) {
        return Fail("no reply on active connection " + std::to_string(c) +
                    " in round " + std::to_string(r) + " with " +
                    std::to_string(idle_fds.size()) + " idle connections");
      }
      if (std::memcmp(got, want, 32) != 0) {
        return Fail("wrong reply on active connection " + std::to_string(c));
      }
    }
  }
  if (hold_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  for (int fd : active_fds) close(fd);
  for (int fd : idle_fds) close(fd);
  std::printf("echo_check: ok: %ld idle, %ld active x %ld rounds\n", idle,
              active, rounds);
  return 0;
}
