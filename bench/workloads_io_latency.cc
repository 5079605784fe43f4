// bench/workloads_io_latency.cc: io_latency, request/response latency of
// one I/O task on a share-8 queue, alone or beside a share-1 queue that
// CPU-bound tasks (calling YieldMaybe) keep saturated.  Shares should mean
// responsiveness: the loaded p99 is the figure the monitor issue targets.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/quiet.h"
#include "bench/workloads.h"
#include "executor/executor.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;
using timing::TscClock;

constexpr int kRounds = 400;      // round trips per client and iteration
constexpr int kCpuTasks = 2;      // on the share-1 queue when loaded
constexpr QueueId kIoQueue = 1;   // share 8
constexpr QueueId kCpuQueue = 2;  // share 1

Task<void> Client(int fd, std::vector<double>* out, std::atomic<bool>* stop) {
  char byte = 'x';
  for (int i = 0; i < kRounds; ++i) {
    const uint64_t t0 = MonotonicClock::Now();
    if (co_await Send(fd, &byte, 1) != 1) break;
    if (co_await Recv(fd, &byte, 1) != 1) break;
    out->push_back(static_cast<double>(MonotonicClock::Now() - t0));
  }
  // relaxed: read by tasks of the same thread.
  stop->store(true, std::memory_order_relaxed);
}

Task<void> CpuBound(std::atomic<bool>* stop) {
  while (!stop->load(std::memory_order_relaxed)) {
    const uint64_t end = TscClock::Now() + TscClock::FromNanos(20'000);
    while (TscClock::Now() < end) {
    }
    co_await YieldMaybe();
  }
}

}  // namespace

absl::StatusOr<Rows> SpindleIoLatency(const std::string& id, int64_t clients,
                                      bool loaded) {
  ExecutorBuilder b = QuietExecutor();
  b.WithQueue(kIoQueue, 8).WithQueue(kCpuQueue, 1);
  auto ex = b.Build();
  if (!ex.ok()) return ex.status();
  std::vector<int> fds;
  std::vector<std::thread> peers;
  for (int64_t c = 0; c < clients; ++c) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
      return absl::InternalError("io_latency: socketpair failed");
    }
    fds.push_back(sv[0]);
    // The peer: a plain thread echoing each byte (blocking I/O), until EOF.
    peers.emplace_back([fd = sv[1]] {
      char byte;
      while (read(fd, &byte, 1) == 1) {
        if (write(fd, &byte, 1) != 1) break;
      }
      close(fd);
    });
  }
  std::vector<std::vector<double>> lat(static_cast<size_t>(clients));
  std::atomic<bool> stop{false};
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t c = 0; c < clients; ++c) {
    lat[c].reserve(kRounds);
    (*ex)->SpawnDetached(kIoQueue, Client(fds[c], &lat[c], &stop));
  }
  if (loaded) {
    for (int i = 0; i < kCpuTasks; ++i) {
      (*ex)->SpawnDetached(kCpuQueue, CpuBound(&stop));
    }
  }
  (*ex)->Run();
  Rows rows{
      Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos}};
  for (int fd : fds) shutdown(fd, SHUT_RDWR);
  for (std::thread& t : peers) t.join();
  for (int fd : fds) close(fd);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  if (all.size() != static_cast<size_t>(clients) * kRounds) {
    return absl::InternalError("io_latency: a round trip failed");
  }
  const auto n = static_cast<int64_t>(all.size());
  rows.push_back(Row{id + "_p50", Quantile(all, 0.50), Unit::kNanos, n});
  rows.push_back(Row{id + "_p99", Quantile(all, 0.99), Unit::kNanos, n});
  return rows;
}

}  // namespace spindle::bench
