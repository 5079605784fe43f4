// echo_server: a TCP echo server on one LocalExecutor, or on a Runtime of
// N workers with --workers N.
//
//   ./bazelw run -c opt //executor:echo_server -- --port 7777 [--seconds N]
//       [--workers N] [--idle-timeout S]
//   ./bazelw run -c opt //bench:echo_load -- --port 7777 --connections 64
//
// Listens on 127.0.0.1:PORT (0 picks a free port, printed at start), and
// echoes back whatever each connection sends, one task per connection.
// --seconds bounds the run (default: until SIGINT / SIGTERM, read from a
// signalfd, which call RequestStop()); SPINDLE_REACTOR picks the backend.
// A transient accept error (EMFILE under a low `ulimit -n`, ECONNABORTED)
// is retried; the server keeps serving.  With --workers, the accept loop
// runs on worker 0 and each connection is a stealable task: it runs on the
// worker that starts it, its I/O on that worker's ring; a stop destroys
// the Runtime, which cancels every connection.
//
// Each read waits at most --idle-timeout seconds (default 300): a client
// silent that long is closed (spindle::Timeout bounds the read).  Each
// connection reports what it echoed, once, when it ends (closed, idle, or
// cancelled by the stop), through a spindle::Channel to one reporter task
// that keeps the totals: no counter shared by the connections.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "executor/executor.h"
#include "reactor/reactor.h"

namespace {

// Closes the descriptor if the task is cancelled before it closed it.
struct OwnedFd {
  int fd;
  ~OwnedFd() {
    if (fd >= 0) close(fd);
  }
};

using Counter = std::atomic<uint64_t>;

// What a connection says when it ends.
struct ConnReport {
  uint64_t bytes = 0;
  bool idle = false;  // closed by the idle timeout
};
using Reports = spindle::Channel<ConnReport>;

// The reporter's totals (written by the reporter task, read by main after
// the executor or Runtime stopped).
struct Totals {
  uint64_t closed = 0;
  uint64_t idle = 0;
  uint64_t bytes = 0;
  void Add(const ConnReport& r) {
    ++closed;
    idle += r.idle ? 1 : 0;
    bytes += r.bytes;
  }
};

std::chrono::nanoseconds g_idle_timeout = std::chrono::seconds(300);
// Room for the final reports of every connection open at a stop.
constexpr size_t kReportCapacity = size_t{1} << 16;

// The totals, once the executor or Runtime has stopped: the reporter's,
// plus the reports it did not receive before it was cancelled.
void PrintSummary(uint64_t connections, Totals totals, Reports* reports) {
  while (std::optional<ConnReport> r = reports->TryRecv()) totals.Add(*r);
  std::printf("echo_server: %llu connections, %llu bytes echoed, %llu closed "
              "idle\n",
              static_cast<unsigned long long>(connections),
              static_cast<unsigned long long>(totals.bytes),
              static_cast<unsigned long long>(totals.idle));
}

// Sends the connection's report when the connection's task ends, however
// it ends: TrySend never waits, so it works from a destructor too (a stop
// cancels the task); the channel is large enough for every open
// connection, and main drains what the reporter did not get to.
struct ReportOnExit {
  Reports* reports;
  ConnReport report;
  ~ReportOnExit() { (void)reports->TrySend(report); }
};

spindle::Task<void> Reporter(Reports* reports, Totals* totals) {
  while (std::optional<ConnReport> r = co_await reports->Recv()) {
    totals->Add(*r);
  }
}

// Spawns on the Runtime when there is one (a stealable task), else on the
// executor running the caller.
void SpawnHere(spindle::Task<void> task) {
  if (spindle::Runtime* rt = spindle::Runtime::Current()) {
    rt->SpawnDetached(std::move(task));
  } else {
    spindle::CurrentExecutor()->SpawnDetached(std::move(task));
  }
}

// Stops the server: the executor's RequestStop, or, on a Runtime, SIGTERM
// to the process (main waits for it and destroys the Runtime).
void StopServer() {
  if (spindle::Runtime::Current() != nullptr) {
    kill(getpid(), SIGTERM);
  } else {
    spindle::CurrentExecutor()->RequestStop();
  }
}

spindle::Task<void> Serve(int conn, Reports* reports) {
  OwnedFd owned{conn};
  ReportOnExit report{reports, {}};
  char buf[16 * 1024];
  for (;;) {
    // The read, bounded by the idle timeout (-ECANCELED when it expired).
    const int n = co_await spindle::Timeout(
        spindle::Recv(conn, buf, sizeof(buf)), g_idle_timeout);
    if (n == -ECANCELED) {
      report.report.idle = true;
      break;
    }
    if (n <= 0) break;
    int off = 0;
    while (off < n) {
      const int w = co_await spindle::Send(conn, buf + off, n - off);
      if (w <= 0) {
        off = -1;
        break;
      }
      off += w;
    }
    if (off < 0) break;
    report.report.bytes += static_cast<uint64_t>(n);
  }
  owned.fd = -1;
  co_await spindle::Close(conn);
}

// accept(2) errors after which the listener still works: out of
// descriptors or memory (wait a little: a connection closing frees one),
// or a connection that died before it was accepted (retry at once).
bool TransientAcceptError(int err) {
  switch (err) {
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
      return true;
    case ECONNABORTED:
    case EINTR:
    case EAGAIN:
    case EPROTO:
    case EPERM:  // a firewall rule refused this one connection
      return true;
    default:
      return false;
  }
}

spindle::Task<void> AcceptLoop(int listener, Counter* connections,
                               Reports* reports) {
  uint64_t transient = 0;
  for (;;) {
    const int fd = co_await spindle::Accept(listener);
    if (fd == -ECANCELED) break;  // stopping
    if (fd < 0) {
      if (!TransientAcceptError(-fd)) {
        std::fprintf(stderr, "echo_server: accept: %s; stopping\n",
                     std::strerror(-fd));
        StopServer();
        break;
      }
      // Say so once per burst, not once per retry.
      if (transient++ == 0) {
        std::fprintf(stderr, "echo_server: accept: %s; retrying\n",
                     std::strerror(-fd));
      }
      if (-fd == EMFILE || -fd == ENFILE || -fd == ENOBUFS || -fd == ENOMEM) {
        co_await spindle::SleepFor(std::chrono::milliseconds(10));
      }
      continue;
    }
    transient = 0;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connections->fetch_add(1, std::memory_order_relaxed);
    SpawnHere(Serve(fd, reports));
  }
}

// Stops the executor on SIGINT or SIGTERM, read from a signalfd like any
// other descriptor (no flag to poll, no work in a signal handler).
spindle::Task<void> StopOnSignal(int sfd) {
  signalfd_siginfo info;
  const int n = co_await spindle::Read(sfd, &info, sizeof(info));
  if (n == static_cast<int>(sizeof(info))) {
    std::printf("echo_server: signal %u, stopping\n", info.ssi_signo);
    std::fflush(stdout);
    spindle::CurrentExecutor()->RequestStop();
  }
}

spindle::Task<void> StopAfter(double seconds) {
  co_await spindle::SleepFor(
      std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9)));
  spindle::CurrentExecutor()->RequestStop();
}

// A listening socket on 127.0.0.1:port (0: any free port, written to
// *bound); -1 after printing why.
int Listen(long port, int* bound) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 4096) != 0) {
    std::fprintf(stderr, "echo_server: cannot listen on 127.0.0.1:%ld: %s\n",
                 port, std::strerror(errno));
    close(listener);
    return -1;
  }
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  *bound = ntohs(addr.sin_port);
  return listener;
}

// --workers N: the accept loop on worker 0 of a Runtime; this thread waits
// for SIGINT / SIGTERM (blocked in every thread, read from the signalfd
// here) or the --seconds deadline, then destroys the Runtime,
// which cancels the accept loop and every connection (their sockets are
// closed by OwnedFd) and joins the workers.
int ServeOnRuntime(int sfd, long port, double seconds, long workers) {
  auto rt =
      spindle::RuntimeBuilder().Workers(static_cast<size_t>(workers)).Build();
  if (!rt.ok()) {
    std::fprintf(stderr, "echo_server: %s\n",
                 std::string(rt.status().message()).c_str());
    return 1;
  }
  int bound = 0;
  const int listener = Listen(port, &bound);
  if (listener < 0) return 1;
  const spindle::RuntimeStats stats = (*rt)->Stats();
  std::printf("echo_server: listening on 127.0.0.1:%d (%s reactor, %ld "
              "workers)\n",
              bound,
              stats.workers.empty()
                  ? "?"
                  : std::string(stats.workers[0].driver).c_str(),
              workers);
  std::fflush(stdout);
  Counter connections{0};
  auto reports = Reports::Create(kReportCapacity).value();
  Totals totals;
  spindle::RuntimeSpawnOptions on0;
  on0.placement = spindle::Placement::Pinned(0);
  (*rt)->SpawnDetached(Reporter(reports.get(), &totals));
  (*rt)->SpawnDetached(AcceptLoop(listener, &connections, reports.get()), on0);
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::nanoseconds(static_cast<int64_t>(seconds * 1e9));
  for (;;) {
    signalfd_siginfo info;
    pollfd p{sfd, POLLIN, 0};
    int timeout_ms = -1;
    if (seconds > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      timeout_ms = static_cast<int>(left.count());
    }
    const int n = poll(&p, 1, timeout_ms);
    if (n > 0 && read(sfd, &info, sizeof(info)) ==
                     static_cast<ssize_t>(sizeof(info))) {
      std::printf("echo_server: signal %u, stopping\n", info.ssi_signo);
      break;
    }
    if (n < 0 && errno != EINTR) break;
  }
  const spindle::RuntimeStats end = (*rt)->Stats();
  std::printf("echo_server: connections started per worker:");
  for (uint64_t started : end.started_per_worker) {
    std::printf(" %llu", static_cast<unsigned long long>(started));
  }
  std::printf("\n");
  rt->reset();  // cancels the accept loop and the connections
  PrintSummary(connections.load(), totals, reports.get());
  close(listener);
  close(sfd);
  return 0;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "echo_server: %s\nusage: echo_server --port P (0..65535) "
               "[--seconds S (> 0)] [--workers N (1..1024)] "
               "[--idle-timeout S (> 0, default 300)]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  long port = -1;
  double seconds = 0;
  long workers = 0;  // 0: one LocalExecutor on this thread
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--port" && i + 1 < argc) {
      char* end = nullptr;
      port = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || port < 0 || port > 65535) {
        return Usage(
            ("bad --port '" + std::string(argv[i]) + "': valid range 0..65535")
                .c_str());
      }
    } else if (a == "--seconds" && i + 1 < argc) {
      char* end = nullptr;
      seconds = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(seconds > 0)) {
        return Usage(
            ("bad --seconds '" + std::string(argv[i]) + "': must be > 0")
                .c_str());
      }
    } else if (a == "--idle-timeout" && i + 1 < argc) {
      char* end = nullptr;
      const double idle = std::strtod(argv[++i], &end);
      if (*end != '\0' || !(idle > 0) || idle > 1e6) {
        return Usage(("bad --idle-timeout '" + std::string(argv[i]) +
                      "': must be > 0 and <= 1e6 seconds")
                         .c_str());
      }
      g_idle_timeout =
          std::chrono::nanoseconds(static_cast<int64_t>(idle * 1e9));
    } else if (a == "--workers" && i + 1 < argc) {
      char* end = nullptr;
      workers = std::strtol(argv[++i], &end, 10);
      if (*end != '\0' || workers < 1 || workers > 1024) {
        return Usage(("bad --workers '" + std::string(argv[i]) +
                      "': valid range 1..1024")
                         .c_str());
      }
    } else {
      return Usage(("unknown argument '" + a + "'").c_str());
    }
  }
  if (port < 0) return Usage("--port is required");

  signal(SIGPIPE, SIG_IGN);
  // SIGINT / SIGTERM arrive through a signalfd (blocked for the thread).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);
  const int sfd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sfd < 0) {
    std::fprintf(stderr, "echo_server: signalfd: %s\n", std::strerror(errno));
    return 1;
  }
  // Many connections need more descriptors than the usual soft limit.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  if (workers > 0) return ServeOnRuntime(sfd, port, seconds, workers);

  auto ex = spindle::ExecutorBuilder().Build();
  if (!ex.ok()) {
    std::fprintf(stderr, "echo_server: %s\n",
                 std::string(ex.status().message()).c_str());
    return 1;
  }
  int bound = 0;
  const int listener = Listen(port, &bound);
  if (listener < 0) return 1;
  std::printf("echo_server: listening on 127.0.0.1:%d (%s reactor)\n", bound,
              std::string((*ex)->Stats().driver).c_str());
  std::fflush(stdout);

  Counter connections{0};
  auto reports = Reports::Create(kReportCapacity).value();
  Totals totals;
  (*ex)->SpawnDetached(Reporter(reports.get(), &totals));
  (*ex)->SpawnDetached(AcceptLoop(listener, &connections, reports.get()));
  (*ex)->SpawnDetached(StopOnSignal(sfd));
  if (seconds > 0) (*ex)->SpawnDetached(StopAfter(seconds));
  // Runs until a stop: then every task left (the accept loop, open
  // connections) is cancelled, their sockets closed, and Run returns.
  (*ex)->Run();
  PrintSummary(connections.load(), totals, reports.get());
  ex->reset();
  close(listener);
  close(sfd);
  return 0;
}
