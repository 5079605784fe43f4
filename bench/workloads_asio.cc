// bench/workloads_asio.cc: the Asio 1.22 peer (what a C++ user would pick
// for a single-threaded executor and timers).
//   1A: io_context::post of N handlers, then run().
//   1B: co_spawn of N coroutines that each `co_await post(use_awaitable)`.
//   1C: steady_timer, each task re-arming its own timer.
//   channel_pingpong: two coroutines, two experimental::concurrent_channel.
#include <asio.hpp>
#include <asio/experimental/concurrent_channel.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "bench/workloads.h"
#include "timing/clock.h"

namespace spindle::bench {
namespace {

using timing::MonotonicClock;

Row Wall(const std::string& id, uint64_t t0) {
  return Row{id, static_cast<double>(MonotonicClock::Now() - t0), Unit::kNanos};
}

asio::awaitable<void> AsioYielder(asio::io_context::executor_type ex, int64_t k,
                                  uint64_t* counter) {
  for (int64_t i = 0; i < k; ++i) {
    ++*counter;
    co_await asio::post(ex, asio::use_awaitable);
  }
  co_return;
}

// One 1C task: a timer that re-arms itself kSleepsPerTask times.
struct TimerTask {
  explicit TimerTask(asio::io_context& io) : timer(io) {}
  asio::steady_timer timer;
  uint64_t started = 0;
  int done = 0;
  double* out = nullptr;
  void Arm() {
    started = MonotonicClock::Now();
    timer.expires_after(std::chrono::nanoseconds(kSleepNs));
    timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      out[done] = static_cast<double>(MonotonicClock::Now() - started);
      if (++done < kSleepsPerTask) Arm();
    });
  }
};

using PingChannel =
    asio::experimental::concurrent_channel<void(asio::error_code, int64_t)>;

// One side of channel_pingpong (the server sends first).
asio::awaitable<void> AsioBounce(PingChannel* in, PingChannel* out,
                                 int64_t rounds, bool serve, int64_t* sum) {
  for (int64_t i = 0; i < rounds; ++i) {
    if (serve)
      co_await out->async_send(asio::error_code{}, i, asio::use_awaitable);
    const int64_t v = co_await in->async_receive(asio::use_awaitable);
    *sum += v;
    if (!serve)
      co_await out->async_send(asio::error_code{}, v, asio::use_awaitable);
  }
}

}  // namespace

absl::StatusOr<Rows> AsioChannelPingPong(const std::string& id, int64_t workers,
                                         int64_t rounds) {
  // One io_context per worker thread; each side runs on its own.
  asio::io_context io_a(1), io_b(1);
  asio::io_context& ctx_b = workers > 1 ? io_b : io_a;
  PingChannel ab(io_a, 1), ba(ctx_b, 1);
  int64_t sa = 0, sb = 0;
  const uint64_t t0 = MonotonicClock::Now();
  asio::co_spawn(io_a, AsioBounce(&ba, &ab, rounds, true, &sa), asio::detached);
  asio::co_spawn(ctx_b, AsioBounce(&ab, &ba, rounds, false, &sb),
                 asio::detached);
  std::thread other;
  if (workers > 1) other = std::thread([&] { io_b.run(); });
  io_a.run();
  if (other.joinable()) other.join();
  Rows rows{Wall(id, t0)};
  if (sa != sb || sa != rounds * (rounds - 1) / 2) {
    return absl::InternalError("asio channel_pingpong: messages were lost");
  }
  return rows;
}

absl::StatusOr<Rows> AsioSpawn(const std::string& id, int64_t n) {
  asio::io_context io(1);
  std::atomic<uint64_t> counter{0};
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < n; ++i) {
    asio::post(io, [&counter] {
      // relaxed: one thread; read after io.run() returns.
      counter.fetch_add(1, std::memory_order_relaxed);
    });
  }
  io.run();
  Rows rows{Wall(id, t0)};
  if (counter.load() != static_cast<uint64_t>(n)) {
    return absl::InternalError("asio 1A: not every handler ran");
  }
  return rows;
}

absl::StatusOr<Rows> AsioYield(const std::string& id, int64_t tasks,
                               int64_t yields) {
  asio::io_context io(1);
  uint64_t counter = 0;
  const uint64_t t0 = MonotonicClock::Now();
  for (int64_t i = 0; i < tasks; ++i) {
    asio::co_spawn(io, AsioYielder(io.get_executor(), yields, &counter),
                   asio::detached);
  }
  io.run();
  Rows rows{Wall(id, t0)};
  if (counter != static_cast<uint64_t>(tasks * yields)) {
    return absl::InternalError("asio 1B: yield count mismatch");
  }
  return rows;
}

absl::StatusOr<Rows> AsioSleep(const std::string& id, int64_t tasks) {
  asio::io_context io(1);
  std::vector<double> actual(static_cast<size_t>(tasks) * kSleepsPerTask);
  std::vector<std::unique_ptr<TimerTask>> timers;
  for (int64_t i = 0; i < tasks; ++i) {
    timers.push_back(std::make_unique<TimerTask>(io));
    timers.back()->out = &actual[static_cast<size_t>(i) * kSleepsPerTask];
  }
  const uint64_t t0 = MonotonicClock::Now();
  for (auto& t : timers) t->Arm();
  io.run();
  Rows rows{Wall(id, t0)};
  AppendSleepRows(id, actual, rows);
  return rows;
}

}  // namespace spindle::bench
