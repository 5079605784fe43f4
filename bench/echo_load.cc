// bench/echo_load.cc: //bench:echo_load, a load client for an echo server
// on 127.0.0.1 (e.g. executor/examples/echo_server.cc).
//
//   echo_load --port P [--connections 64] [--seconds 5] [--size 64]
//             [--threads 2]
//
// Opens --connections TCP connections, each with one message of --size
// bytes in flight: send it, wait until all of it came back, record the
// round trip, repeat, until --seconds have passed.  Prints requests per
// second and round-trip latency percentiles p50/p90/p99/p99.9.  Plain
// blocking sends and an epoll loop per thread for the replies; it does not
// use Spindle's executor.  Exit 2 on a bad flag, 1 when it cannot connect or
// a connection fails.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "timing/clock.h"

namespace {

using spindle::timing::MonotonicClock;

struct Flags {
  int64_t port = 0;
  int64_t connections = 64;
  int64_t seconds = 5;
  int64_t size = 64;
  int64_t threads = 2;
};

[[noreturn]] void Usage(const std::string& msg) {
  std::fprintf(stderr,
               "echo_load: %s\nusage: echo_load --port P [--connections N "
               "(1..10000, 64)] [--seconds S (1..600, 5)] [--size B "
               "(1..65536, 64)] [--threads T (1..64, 2)]\n",
               msg.c_str());
  std::exit(2);
}

int64_t ParseFlag(const char* name, const char* v, int64_t lo, int64_t hi) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || x < lo || x > hi) {
    Usage(std::string("--") + name + "='" + v + "' must be an integer in [" +
          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return x;
}

struct Conn {
  int fd = -1;
  uint64_t sent_at = 0;
  int64_t received = 0;
};

struct ThreadResult {
  std::vector<uint32_t> latencies_ns;  // saturated at ~4.29 s
  uint64_t requests = 0;
  std::string error;
};

void Worker(const Flags& f, std::vector<Conn>* conns, uint64_t deadline,
            ThreadResult* out) {
  std::vector<char> msg(static_cast<size_t>(f.size), 'x');
  std::vector<char> buf(static_cast<size_t>(f.size));
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) {
    out->error = std::string("epoll_create1: ") + std::strerror(errno);
    return;
  }
  auto send_all = [&](Conn& c) -> bool {
    c.sent_at = MonotonicClock::Now();
    c.received = 0;
    size_t off = 0;
    while (off < msg.size()) {
      const ssize_t n =
          send(c.fd, msg.data() + off, msg.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        out->error = std::string("send: ") + std::strerror(errno);
        return false;
      }
      off += static_cast<size_t>(n);
    }
    return true;
  };
  for (size_t i = 0; i < conns->size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, (*conns)[i].fd, &ev);
    if (!send_all((*conns)[i])) {
      close(ep);
      return;
    }
  }
  epoll_event events[64];
  while (MonotonicClock::Now() < deadline) {
    const int n = epoll_wait(ep, events, 64, 100);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out->error = std::string("epoll_wait: ") + std::strerror(errno);
      break;
    }
    for (int i = 0; i < n; ++i) {
      Conn& c = (*conns)[events[i].data.u64];
      const ssize_t r = recv(c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (r <= 0) {
        out->error = r == 0 ? "the server closed a connection"
                            : std::string("recv: ") + std::strerror(errno);
        close(ep);
        return;
      }
      c.received += r;
      if (c.received < f.size) continue;
      const uint64_t rtt = MonotonicClock::Now() - c.sent_at;
      out->latencies_ns.push_back(
          static_cast<uint32_t>(std::min<uint64_t>(rtt, UINT32_MAX)));
      ++out->requests;
      if (MonotonicClock::Now() >= deadline) break;
      if (!send_all(c)) {
        close(ep);
        return;
      }
    }
  }
  close(ep);
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string v;
    if (a == "--help" || a == "-h") Usage("load client for an echo server");
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      v = argv[++i];
    } else {
      Usage(a + " needs a value");
    }
    if (a == "--port") {
      f.port = ParseFlag("port", v.c_str(), 1, 65535);
      have_port = true;
    } else if (a == "--connections") {
      f.connections = ParseFlag("connections", v.c_str(), 1, 10000);
    } else if (a == "--seconds") {
      f.seconds = ParseFlag("seconds", v.c_str(), 1, 600);
    } else if (a == "--size") {
      f.size = ParseFlag("size", v.c_str(), 1, 65536);
    } else if (a == "--threads") {
      f.threads = ParseFlag("threads", v.c_str(), 1, 64);
    } else {
      Usage("unknown flag '" + a + "'");
    }
  }
  if (!have_port) Usage("--port is required");
  f.threads = std::min(f.threads, f.connections);

  std::vector<std::vector<Conn>> per_thread(static_cast<size_t>(f.threads));
  for (int64_t i = 0; i < f.connections; ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(f.port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      std::fprintf(stderr, "echo_load: cannot connect to 127.0.0.1:%lld: %s\n",
                   static_cast<long long>(f.port), std::strerror(errno));
      return 1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    per_thread[static_cast<size_t>(i % f.threads)].push_back(Conn{fd});
  }
  const uint64_t start = MonotonicClock::Now();
  const uint64_t deadline =
      start + static_cast<uint64_t>(f.seconds) * 1'000'000'000;
  std::vector<ThreadResult> results(static_cast<size_t>(f.threads));
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < f.threads; ++t) {
    threads.emplace_back(Worker, std::cref(f),
                         &per_thread[static_cast<size_t>(t)], deadline,
                         &results[static_cast<size_t>(t)]);
  }
  for (std::thread& t : threads) t.join();
  const double elapsed =
      static_cast<double>(MonotonicClock::Now() - start) / 1e9;
  for (auto& conns : per_thread) {
    for (Conn& c : conns) close(c.fd);
  }
  std::vector<uint32_t> all;
  uint64_t requests = 0;
  for (ThreadResult& r : results) {
    if (!r.error.empty()) {
      std::fprintf(stderr, "echo_load: %s\n", r.error.c_str());
      return 1;
    }
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    requests += r.requests;
  }
  std::sort(all.begin(), all.end());
  auto pct = [&](double q) -> double {
    if (all.empty()) return 0;
    size_t rank = static_cast<size_t>(q * static_cast<double>(all.size()));
    if (rank >= all.size()) rank = all.size() - 1;
    return all[rank] / 1e3;
  };
  std::printf(
      "echo_load: 127.0.0.1:%lld, %lld connections, %lld-byte messages, "
      "%.1f s\n"
      "requests: %llu, %.0f requests/s\n"
      "latency us: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f\n",
      static_cast<long long>(f.port), static_cast<long long>(f.connections),
      static_cast<long long>(f.size), elapsed,
      static_cast<unsigned long long>(requests), requests / elapsed, pct(0.5),
      pct(0.9), pct(0.99), pct(0.999));
  return 0;
}
