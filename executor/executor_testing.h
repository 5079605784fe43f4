// executor/executor_testing.h: test and benchmark helpers for the executor.
//
// The floor of docs/measuring.md: the least code that spawns and runs coroutine
// tasks (frames from a free list, a ring of handles; no accounting, no
// fairness, no wake-ups).  Benchmarks measure Spindle beside it, in the same
// binary and run.  Single-threaded: one FloorLoop per thread.

#ifndef SPINDLE_EXECUTOR_EXECUTOR_TESTING_H_
#define SPINDLE_EXECUTOR_EXECUTOR_TESTING_H_

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace spindle::executor_testing {

// The least code that spawns and runs coroutine tasks: frames from a free
// list, a ring of handles, no accounting, no fairness, no wake-ups.

struct FloorFreeList {
  static constexpr size_t kBlock = 512;  // every frame here is smaller
  struct Block {
    Block* next;
  };
  Block* head = nullptr;
  void* Get(size_t n) {
    if (n > kBlock) return std::malloc(n);
    if (head != nullptr) {
      Block* b = head;
      head = b->next;
      return b;
    }
    return std::malloc(kBlock);
  }
  void Put(void* p, size_t n) {
    if (n > kBlock) {
      std::free(p);
      return;
    }
    auto* b = static_cast<Block*>(p);
    b->next = head;
    head = b;
  }
  ~FloorFreeList() {
    while (head != nullptr) {
      Block* n = head->next;
      std::free(head);
      head = n;
    }
  }
};
inline thread_local FloorFreeList g_floor_frames;

struct FloorLoop {
  std::vector<std::coroutine_handle<>> ring;
  size_t head = 0;
  size_t tail = 0;
  size_t mask = 0;
  explicit FloorLoop(size_t capacity) {
    size_t c = 1;
    while (c < capacity) c <<= 1;
    ring.resize(c);
    mask = c - 1;
  }
  void Push(std::coroutine_handle<> h) { ring[tail++ & mask] = h; }
  void Run() {
    while (head != tail) ring[head++ & mask].resume();
  }
};
inline thread_local FloorLoop* g_floor_loop = nullptr;

struct FloorTask {
  struct promise_type {
    FloorTask get_return_object() {
      return FloorTask{
          std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::abort(); }
    static void* operator new(size_t n) { return g_floor_frames.Get(n); }
    static void operator delete(void* p, size_t n) { g_floor_frames.Put(p, n); }
  };
  std::coroutine_handle<promise_type> handle;
};

struct FloorYield {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) const noexcept {
    g_floor_loop->Push(h);
  }
  void await_resume() const noexcept {}
};

// The floor's tasks for the spawn and yield benchmarks.
inline FloorTask FloorBump(std::atomic<uint64_t>* counter) {
  // relaxed: one thread; read after the loop ran.
  counter->fetch_add(1, std::memory_order_relaxed);
  co_return;
}

inline FloorTask FloorYielder(int64_t k, uint64_t* counter) {
  for (int64_t i = 0; i < k; ++i) {
    ++*counter;
    co_await FloorYield{};
  }
  co_return;
}

}  // namespace spindle::executor_testing

#endif  // SPINDLE_EXECUTOR_EXECUTOR_TESTING_H_
