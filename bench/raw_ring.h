// bench/raw_ring.h: a raw liburing ring for the floors (no Spindle code).
#ifndef SPINDLE_BENCH_RAW_RING_H_
#define SPINDLE_BENCH_RAW_RING_H_

#include <liburing.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace spindle::bench {

class RawRing {
 public:
  RawRing() = default;
  RawRing(const RawRing&) = delete;
  RawRing& operator=(const RawRing&) = delete;
  absl::Status Init(unsigned entries) {
    const int rc = io_uring_queue_init(entries, &ring_, 0);
    if (rc < 0) {
      return absl::UnavailableError(
          absl::StrCat("io_uring_queue_init: ", std::strerror(-rc)));
    }
    ok_ = true;
    return absl::OkStatus();
  }
  ~RawRing() {
    if (ok_) io_uring_queue_exit(&ring_);
  }
  io_uring* get() { return &ring_; }

 private:
  io_uring ring_{};
  bool ok_ = false;
};

}  // namespace spindle::bench

#endif  // SPINDLE_BENCH_RAW_RING_H_
