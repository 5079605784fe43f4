// executor/examples/fiber_lines.cc: a fiber runs ordinary, synchronous-
// looking code (a line reader and a word counter that know nothing of
// co_await) over a pipe that a coroutine task fills slowly.  Each time the
// reader runs dry, the fiber suspends on the read, deep inside the
// counter's loop, and the executor runs the writer meanwhile.
//
//   bazel run //executor:fiber_lines

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>

#include "executor/executor.h"

namespace {

// Plain C++: Next() blocks the fiber (not the thread) until a line is in.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}

  std::optional<std::string> Next() {
    for (;;) {
      const size_t nl = buffered_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffered_.substr(0, nl);
        buffered_.erase(0, nl + 1);
        return line;
      }
      char chunk[16];
      const int32_t n =
          spindle::this_fiber::Await(spindle::Read(fd_, chunk, sizeof chunk));
      reads_++;
      if (n <= 0) {
        if (buffered_.empty()) return std::nullopt;
        std::string rest;
        rest.swap(buffered_);
        return rest;
      }
      buffered_.append(chunk, static_cast<size_t>(n));
    }
  }
  int reads() const { return reads_; }

 private:
  int fd_;
  std::string buffered_;
  int reads_ = 0;
};

struct Counts {
  int lines = 0;
  int words = 0;
  int reads = 0;
};

// Knows nothing of tasks: a loop over lines.
Counts CountWords(LineReader& reader) {
  Counts c;
  while (std::optional<std::string> line = reader.Next()) {
    c.lines++;
    std::istringstream words(*line);
    for (std::string w; words >> w;) c.words++;
  }
  c.reads = reader.reads();
  return c;
}

// A coroutine task writes the text a piece at a time, then closes the pipe.
spindle::Task<void> Writer(int fd) {
  const char* pieces[] = {"the quick brown ", "fox\njumps over\n",
                          "the lazy dog\n",   "and runs ",
                          "away\n"};
  for (const char* p : pieces) {
    co_await spindle::SleepFor(std::chrono::milliseconds(2));
    co_await spindle::Write(fd, p, std::char_traits<char>::length(p));
  }
  co_await spindle::Close(fd);
}

}  // namespace

int main() {
  auto ex = spindle::ExecutorBuilder().Build();
  if (!ex.ok()) {
    std::fprintf(stderr, "fiber_lines: %s\n", ex.status().ToString().c_str());
    return 1;
  }
  int fds[2];
  if (pipe(fds) != 0) {
    std::perror("fiber_lines: pipe");
    return 1;
  }
  spindle::JoinHandle<Counts> counts = (*ex)->SpawnFiber([fd = fds[0]] {
    LineReader reader(fd);
    return CountWords(reader);
  });
  (*ex)->SpawnDetached(Writer(fds[1]));
  (*ex)->Run();
  const Counts c = counts.Join();
  close(fds[0]);
  std::printf("lines %d, words %d, reads %d\n", c.lines, c.words, c.reads);
  return c.lines == 4 && c.words == 12 ? 0 : 1;
}
