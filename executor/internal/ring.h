// executor/internal/ring.h: the growable FIFO ring a Channel buffers in.
//
// Sized once for the channel's capacity, so steady-state sends and receives
// do not allocate; it grows (doubling) only when a cancelled receiver gives
// back a message it had been handed while senders refilled the buffer.

#ifndef SPINDLE_EXECUTOR_INTERNAL_RING_H_
#define SPINDLE_EXECUTOR_INTERNAL_RING_H_

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace spindle::executor_internal {

template <typename T>
class Ring {
 public:
  explicit Ring(size_t capacity) { Allocate(capacity < 1 ? 1 : capacity); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() {
    while (size_ != 0) PopFront();
    ::operator delete (slots_, std::align_val_t{alignof(T)});
  }

  size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  void PushBack(T&& v) {
    if (size_ == cap_) [[unlikely]] Grow();
    ::new (Slot(Wrap(head_ + size_))) T(std::move(v));
    ++size_;
  }
  void PushFront(T&& v) {
    if (size_ == cap_) [[unlikely]] Grow();
    head_ = Wrap(head_ + cap_ - 1);
    ::new (Slot(head_)) T(std::move(v));
    ++size_;
  }
  T PopFront() {
    T* p = Slot(head_);
    T v = std::move(*p);
    p->~T();
    head_ = Wrap(head_ + 1);
    --size_;
    return v;
  }

 private:
  T* Slot(size_t i) noexcept { return slots_ + i; }
  // i mod cap_ for i < 2 * cap_: a compare, not a division (a 64-bit
  // divide is tens of cycles, per message).
  size_t Wrap(size_t i) const noexcept { return i >= cap_ ? i - cap_ : i; }
  void Allocate(size_t n) {
    slots_ = static_cast<T*>(
        ::operator new (n * sizeof(T), std::align_val_t{alignof(T)}));
    cap_ = n;
  }
  [[gnu::noinline, gnu::cold]] void Grow() {
    T* old = slots_;
    const size_t old_cap = cap_;
    Allocate(old_cap * 2);
    for (size_t i = 0; i < size_; ++i) {
      T* p = old + (head_ + i) % old_cap;  // rare: a division is fine
      ::new (Slot(i)) T(std::move(*p));
      p->~T();
    }
    head_ = 0;
    ::operator delete (old, std::align_val_t{alignof(T)});
  }

  T* slots_ = nullptr;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace spindle::executor_internal

#endif  // SPINDLE_EXECUTOR_INTERNAL_RING_H_
