/* The C interface from C (C11, -Wall -Wextra -Werror -pedantic): every
 * function, its error paths (NULL handles, bad attributes, a size from a
 * newer or an older version), tasks that sleep, yield, read and write a
 * pipe and sockets, abort and join with a timeout (from threads and from
 * tasks), a spawn from another thread, and runtimes with placements. */

#define _POSIX_C_SOURCE 200809L /* mkstemp, pipe, pthreads under -std=c11 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executor/spindle.h"

static int failures = 0;

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n",    \
              __FILE__, __LINE__, #cond, spindle_last_error());        \
      failures++;                                                      \
    }                                                                  \
  } while (0)

static int Add(spindle_task_t* self, void* arg) {
  int* v = (int*)arg;
  CHECK(spindle_yield(self) == 0);
  CHECK(spindle_yield_maybe(self) == 0);
  CHECK(spindle_sleep(self, 1000000) == 0); /* 1 ms */
  return *v + 1;
}

struct Pipe {
  int fds[2];
  char got[16];
};

static int Reader(spindle_task_t* self, void* arg) {
  struct Pipe* p = (struct Pipe*)arg;
  int64_t n = spindle_read(self, p->fds[0], p->got, 5, -1);
  return (int)n;
}

static int Writer(spindle_task_t* self, void* arg) {
  struct Pipe* p = (struct Pipe*)arg;
  CHECK(spindle_sleep(self, 1000000) == 0);
  return (int)spindle_write(self, p->fds[1], "hello", 5, -1);
}

/* What a Sleeper saw: that it began, and that its sleep was cancelled. */
struct SleepSeen {
  atomic_int started;
  int saw_cancel;
};

/* Sleeps long; once aborted, every call says so and it returns. */
static int Sleeper(spindle_task_t* self, void* arg) {
  struct SleepSeen* seen = (struct SleepSeen*)arg;
  atomic_store(&seen->started, 1);
  int r = spindle_sleep(self, 60ull * 1000000000ull);
  if (r == -ECANCELED) seen->saw_cancel = 1;
  CHECK(spindle_yield(self) == -ECANCELED);
  return 7;
}

static int FileTask(spindle_task_t* self, void* arg) {
  (void)arg;
  char path[] = "/tmp/spindle_c_api_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return -errno;
  unlink(path);
  int64_t w = spindle_write(self, fd, "abcdef", 6, 0);
  int s = spindle_fsync(self, fd);
  char buf[8] = {0};
  int64_t r = spindle_read(self, fd, buf, 6, 2);
  close(fd);
  return (w == 6 && s == 0 && r == 4 && memcmp(buf, "cdef", 4) == 0) ? 0 : -1;
}

struct FromThread {
  spindle_executor_t* ex;
  spindle_spawner_t* sp;
  spindle_task_t* task;
  int rc;
  int direct_rc;
};

static int Constant(spindle_task_t* self, void* arg) {
  (void)self;
  return (int)(size_t)arg;
}

static void* SpawnFromThread(void* p) {
  struct FromThread* ft = (struct FromThread*)p;
  ft->rc = spindle_spawner_spawn(ft->sp, Constant, (void*)(size_t)41, NULL,
                                 &ft->task);
  /* Not the executor's thread: spindle_spawn refuses. */
  ft->direct_rc = spindle_spawn(ft->ex, Constant, NULL, NULL, NULL);
  return NULL;
}

static void TestErrors(void) {
  spindle_executor_t* ex = NULL;
  CHECK(spindle_executor_create(NULL, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "out is NULL") != NULL);
  CHECK(spindle_executor_destroy(NULL) == -EINVAL);
  CHECK(spindle_executor_run(NULL, 0, -1, 0) == -EINVAL);
  CHECK(spindle_spawn(NULL, Add, NULL, NULL, NULL) == -EINVAL);
  CHECK(spindle_task_join(NULL, NULL, -1) == -EINVAL);
  CHECK(spindle_task_abort(NULL) == -EINVAL);
  CHECK(spindle_task_release(NULL) == -EINVAL);
  CHECK(spindle_spawner_create(NULL, NULL) == -EINVAL);
  CHECK(spindle_spawner_destroy(NULL) == -EINVAL);
  CHECK(spindle_spawner_spawn(NULL, Add, NULL, NULL, NULL) == -EINVAL);
  CHECK(spindle_executor_stats(NULL, NULL) == -EINVAL);
  CHECK(spindle_yield(NULL) == -EINVAL);
  CHECK(spindle_yield_maybe(NULL) == -EINVAL);
  CHECK(spindle_sleep(NULL, 1) == -EINVAL);
  CHECK(spindle_read(NULL, 0, NULL, 0, -1) == -EINVAL);
  CHECK(spindle_write(NULL, 0, NULL, 0, -1) == -EINVAL);
  CHECK(spindle_fsync(NULL, 0) == -EINVAL);
  CHECK(spindle_accept(NULL, 0, NULL, NULL) == -EINVAL);
  CHECK(spindle_connect(NULL, 0, NULL, 0) == -EINVAL);
  CHECK(spindle_recv(NULL, 0, NULL, 0, 0) == -EINVAL);
  CHECK(spindle_send(NULL, 0, NULL, 0, 0) == -EINVAL);
  CHECK(spindle_runtime_create(NULL, NULL) == -EINVAL);
  CHECK(spindle_runtime_destroy(NULL) == -EINVAL);
  CHECK(spindle_runtime_workers(NULL) == -EINVAL);
  CHECK(spindle_runtime_stats(NULL, NULL) == -EINVAL);
  CHECK(spindle_runtime_spawn(NULL, Add, NULL, NULL, NULL) == -EINVAL);
  spindle_runtime_attr_t rattr;
  spindle_runtime_attr_init(&rattr);
  rattr.workers = 2000;
  spindle_runtime_t* rt = NULL;
  CHECK(spindle_runtime_create(&rattr, &rt) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "workers 2000") != NULL);
  CHECK(rt == NULL);
  spindle_runtime_attr_init(&rattr);
  rattr.tiers = 7;
  CHECK(spindle_runtime_create(&rattr, &rt) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "tiers 7") != NULL);

  /* Bad attributes, each named in the message. */
  spindle_executor_attr_t attr;
  spindle_executor_attr_init(&attr);
  attr.reactor = 9;
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "reactor 9") != NULL);
  spindle_executor_attr_init(&attr);
  uint32_t ids[1] = {5};
  uint32_t shares[1] = {0};
  attr.num_queues = 1;
  attr.queue_ids = ids;
  attr.queue_shares = shares;
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);
  CHECK(ex == NULL);
  spindle_executor_attr_init(&attr);
  attr.size = 4; /* older than any version */
  CHECK(spindle_executor_create(&attr, &ex) == -EINVAL);

  /* A struct from a newer version: unknown trailing fields must be 0. */
  struct {
    spindle_executor_attr_t base;
    uint64_t newer_field;
  } newer;
  memset(&newer, 0, sizeof(newer));
  spindle_executor_attr_init(&newer.base);
  newer.base.size = sizeof(newer);
  newer.base.reactor = SPINDLE_REACTOR_NONE;
  CHECK(spindle_executor_create(&newer.base, &ex) == 0);
  CHECK(spindle_executor_destroy(ex) == 0);
  ex = NULL;
  newer.newer_field = 1;
  CHECK(spindle_executor_create(&newer.base, &ex) == -E2BIG);

  /* Task attributes. */
  CHECK(spindle_executor_create(NULL, &ex) == 0);
  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.stack_size = 100;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "stack_size 100") != NULL);
  spindle_task_attr_init(&ta);
  ta.queue = 77;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  spindle_task_attr_init(&ta);
  ta.cpu_priority = 5;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  CHECK(spindle_spawn(ex, NULL, NULL, NULL, NULL) == -EINVAL);
  spindle_task_attr_init(&ta);
  ta.placement = SPINDLE_PLACE_PINNED;
  CHECK(spindle_spawn(ex, Add, NULL, &ta, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "is for runtimes") != NULL);
  /* A version 1 struct (it ended before `placement`) is accepted. */
  spindle_task_attr_init(&ta);
  ta.size = offsetof(spindle_task_attr_t, placement);
  spindle_task_t* old = NULL;
  CHECK(spindle_spawn(ex, Constant, (void*)(size_t)3, &ta, &old) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  int three = 0;
  CHECK(spindle_task_join(old, &three, -1) == 0 && three == 3);
  CHECK(spindle_task_release(old) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, 99) == -EINVAL);
  spindle_stats_t st;
  st.size = 3;
  CHECK(spindle_executor_stats(ex, &st) == -EINVAL);
  CHECK(spindle_executor_destroy(ex) == 0);
}

/* ---- Sockets: a TCP accept / connect on loopback, then a ping-pong. */

struct Net {
  int listener;
  struct sockaddr_in addr;
  char server_got[8];
  char client_got[8];
};

static int Server(spindle_task_t* self, void* arg) {
  struct Net* n = (struct Net*)arg;
  struct sockaddr_in peer;
  socklen_t len = sizeof(peer);
  int fd = spindle_accept(self, n->listener, (struct sockaddr*)&peer, &len);
  if (fd < 0) return fd;
  CHECK(len == sizeof(peer) && peer.sin_family == AF_INET);
  CHECK(spindle_accept(self, n->listener, (struct sockaddr*)&peer, NULL) ==
        -EINVAL);
  int64_t r = spindle_recv(self, fd, n->server_got, 4, 0);
  int64_t w = spindle_send(self, fd, "pong", 4, 0);
  close(fd);
  return (r == 4 && w == 4) ? 0 : -1;
}

static int Client(spindle_task_t* self, void* arg) {
  struct Net* n = (struct Net*)arg;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -errno;
  CHECK(spindle_connect(self, fd, NULL, 0) == -EINVAL);
  int c = spindle_connect(self, fd, (const struct sockaddr*)&n->addr,
                          sizeof(n->addr));
  int64_t w = spindle_send(self, fd, "ping", 4, 0);
  int64_t r = spindle_recv(self, fd, n->client_got, 4, 0);
  close(fd);
  return (c == 0 && w == 4 && r == 4) ? 0 : -1;
}

static void TestSockets(void) {
  struct Net n;
  memset(&n, 0, sizeof(n));
  n.listener = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(n.listener >= 0);
  n.addr.sin_family = AF_INET;
  n.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(n.addr);
  CHECK(bind(n.listener, (struct sockaddr*)&n.addr, sizeof(n.addr)) == 0);
  CHECK(getsockname(n.listener, (struct sockaddr*)&n.addr, &len) == 0);
  CHECK(listen(n.listener, 4) == 0);
  spindle_executor_t* ex = NULL;
  CHECK(spindle_executor_create(NULL, &ex) == 0);
  if (ex == NULL) return;
  spindle_task_t* server = NULL;
  spindle_task_t* client = NULL;
  CHECK(spindle_spawn(ex, Server, &n, NULL, &server) == 0);
  CHECK(spindle_spawn(ex, Client, &n, NULL, &client) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  int rs = 1;
  int rc = 1;
  CHECK(spindle_task_join(server, &rs, -1) == 0 && rs == 0);
  CHECK(spindle_task_join(client, &rc, -1) == 0 && rc == 0);
  CHECK(memcmp(n.server_got, "ping", 4) == 0);
  CHECK(memcmp(n.client_got, "pong", 4) == 0);
  CHECK(spindle_task_release(server) == 0);
  CHECK(spindle_task_release(client) == 0);
  CHECK(spindle_executor_destroy(ex) == 0);
  close(n.listener);
}

/* ---- Joins from inside tasks suspend the task; destroy from a task. */

struct Joiner {
  spindle_executor_t* ex;
  struct SleepSeen sleep;
  int child_result;
  int timeout_rc;
  int zero_rc;
  int destroy_rc;
  int run_rc;
};

static int Joins(spindle_task_t* self, void* arg) {
  struct Joiner* j = (struct Joiner*)arg;
  (void)self;
  spindle_task_t* child = NULL;
  spindle_task_t* sleeper = NULL;
  CHECK(spindle_spawn(j->ex, Add, &j->child_result, NULL, &child) == 0);
  CHECK(spindle_spawn(j->ex, Sleeper, &j->sleep, NULL, &sleeper) == 0);
  j->zero_rc = spindle_task_join(child, NULL, 0); /* not run yet */
  int v = 0;
  CHECK(spindle_task_join(child, &v, -1) == 0); /* suspends this task */
  CHECK(v == j->child_result + 1);
  CHECK(spindle_task_join(child, &v, -1) == 0 && v == j->child_result + 1);
  j->timeout_rc = spindle_task_join(sleeper, NULL, 2000000); /* 2 ms */
  CHECK(spindle_task_abort(sleeper) == 0);
  CHECK(spindle_task_join(sleeper, NULL, -1) == -ECANCELED);
  j->destroy_rc = spindle_executor_destroy(j->ex);
  j->run_rc = spindle_executor_run(j->ex, 0, -1, 0);
  CHECK(spindle_task_release(child) == 0);
  CHECK(spindle_task_release(sleeper) == 0);
  return 0;
}

static void TestJoinFromTasks(void) {
  struct Joiner j;
  memset(&j, 0, sizeof(j));
  j.child_result = 9;
  CHECK(spindle_executor_create(NULL, &j.ex) == 0);
  if (j.ex == NULL) return;
  spindle_task_t* t = NULL;
  CHECK(spindle_spawn(j.ex, Joins, &j, NULL, &t) == 0);
  CHECK(spindle_executor_run(j.ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  CHECK(spindle_task_join(t, NULL, -1) == 0);
  CHECK(j.zero_rc == -ETIMEDOUT);
  CHECK(j.timeout_rc == -ETIMEDOUT);
  CHECK(j.sleep.saw_cancel == 1);
  CHECK(j.destroy_rc == -EBUSY);
  CHECK(j.run_rc == -EBUSY);
  CHECK(spindle_task_release(t) == 0);
  CHECK(spindle_executor_destroy(j.ex) == 0);
}

/* ---- Runtimes: spawns from this thread and from tasks, placements. */

struct OnRuntime {
  spindle_runtime_t* rt;
  int destroy_rc;
  int stats_rc;
  int sum;
};

static int SpawnsAndJoins(spindle_task_t* self, void* arg) {
  struct OnRuntime* o = (struct OnRuntime*)arg;
  spindle_task_t* kids[8];
  for (size_t i = 0; i < 8; ++i) {
    CHECK(spindle_runtime_spawn(o->rt, Constant, (void*)(i + 1), NULL,
                                &kids[i]) == 0);
  }
  for (size_t i = 0; i < 8; ++i) {
    int v = 0;
    CHECK(spindle_task_join(kids[i], &v, -1) == 0);
    o->sum += v;
    CHECK(spindle_task_release(kids[i]) == 0);
  }
  o->destroy_rc = spindle_runtime_destroy(o->rt);
  spindle_stats_t st;
  st.size = sizeof(st);
  o->stats_rc = spindle_runtime_stats(o->rt, &st);
  CHECK(spindle_yield(self) == 0);
  return 0;
}

static void TestRuntime(void) {
  uint32_t ids[1] = {4};
  uint32_t shares[1] = {2};
  spindle_runtime_attr_t attr;
  spindle_runtime_attr_init(&attr);
  attr.workers = 2;
  attr.num_queues = 1;
  attr.queue_ids = ids;
  attr.queue_shares = shares;
  spindle_runtime_t* rt = NULL;
  CHECK(spindle_runtime_create(&attr, &rt) == 0);
  if (rt == NULL) return;
  CHECK(spindle_runtime_workers(rt) == 2);

  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.placement = SPINDLE_PLACE_PINNED;
  ta.placement_arg = 2; /* workers are 0 and 1 */
  CHECK(spindle_runtime_spawn(rt, Constant, NULL, &ta, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "placement_arg 2") != NULL);
  ta.placement = 9;
  CHECK(spindle_runtime_spawn(rt, Constant, NULL, &ta, NULL) == -EINVAL);
  CHECK(strstr(spindle_last_error(), "placement 9") != NULL);

  /* Every placement, each on queue 4. */
  const int places[5] = {SPINDLE_PLACE_STEALABLE, SPINDLE_PLACE_PINNED,
                         SPINDLE_PLACE_PREFERRED, SPINDLE_PLACE_ROUND_ROBIN,
                         SPINDLE_PLACE_STICKY};
  spindle_task_t* hs[40];
  for (size_t i = 0; i < 40; ++i) {
    spindle_task_attr_init(&ta);
    ta.queue = 4;
    ta.placement = places[i % 5];
    ta.placement_arg = i % 2;
    CHECK(spindle_runtime_spawn(rt, Constant, (void*)i, &ta, &hs[i]) == 0);
  }
  int sum = 0;
  for (size_t i = 0; i < 40; ++i) {
    int v = 0;
    CHECK(spindle_task_join(hs[i], &v, 1000000000) == 0);
    sum += v;
    CHECK(spindle_task_release(hs[i]) == 0);
  }
  CHECK(sum == 39 * 40 / 2);

  /* A task spawns and joins on its runtime; it cannot destroy it. */
  struct OnRuntime o;
  memset(&o, 0, sizeof(o));
  o.rt = rt;
  spindle_task_t* t = NULL;
  CHECK(spindle_runtime_spawn(rt, SpawnsAndJoins, &o, NULL, &t) == 0);
  CHECK(spindle_task_join(t, NULL, -1) == 0);
  CHECK(o.sum == 36);
  CHECK(o.destroy_rc == -EBUSY);
  CHECK(o.stats_rc == -EBUSY);
  CHECK(spindle_task_release(t) == 0);

  spindle_stats_t st;
  st.size = sizeof(st);
  CHECK(spindle_runtime_stats(rt, &st) == 0);
  CHECK(st.spawns >= 49);
  CHECK(st.completions >= 49);
  CHECK(st.live_tasks == 0);

  /* Destroy with a sleeping task: it is cancelled, its handle says so.
   * Wait (1 ms joins) until a worker has begun it: a loaded machine may
   * not have polled it yet, and a task cancelled before its first poll
   * never sees -ECANCELED from a call. */
  struct SleepSeen seen;
  memset(&seen, 0, sizeof(seen));
  spindle_task_t* left = NULL;
  CHECK(spindle_runtime_spawn(rt, Sleeper, &seen, NULL, &left) == 0);
  while (atomic_load(&seen.started) == 0) {
    CHECK(spindle_task_join(left, NULL, 1000000) == -ETIMEDOUT);
  }
  CHECK(spindle_runtime_destroy(rt) == 0);
  CHECK(spindle_task_join(left, NULL, -1) == -ECANCELED);
  CHECK(seen.saw_cancel == 1);
  CHECK(spindle_task_release(left) == 0);
}

int main(void) {
  CHECK(strlen(spindle_version()) >= 5);
  TestErrors();
  TestSockets();
  TestJoinFromTasks();
  TestRuntime();

  uint32_t ids[2] = {1, 2};
  uint32_t shares[2] = {3, 1};
  spindle_executor_attr_t attr;
  spindle_executor_attr_init(&attr);
  attr.num_queues = 2;
  attr.queue_ids = ids;
  attr.queue_shares = shares;
  spindle_executor_t* ex = NULL;
  CHECK(spindle_executor_create(&attr, &ex) == 0);
  if (ex == NULL) return 1;

  /* A task that yields and sleeps, on queue 2 at high priority. */
  int v = 41;
  spindle_task_attr_t ta;
  spindle_task_attr_init(&ta);
  ta.queue = 2;
  ta.cpu_priority = SPINDLE_PRIORITY_HIGH;
  ta.stack_size = 32 * 1024;
  ta.name = "adder";
  spindle_task_t* add = NULL;
  CHECK(spindle_spawn(ex, Add, &v, &ta, &add) == 0);
  CHECK(spindle_task_join(add, NULL, 0) == -ETIMEDOUT); /* not run yet */

  /* A pipe read by one task and written by another. */
  struct Pipe p;
  memset(&p, 0, sizeof(p));
  CHECK(pipe(p.fds) == 0);
  spindle_task_t* reader = NULL;
  CHECK(spindle_spawn(ex, Reader, &p, NULL, &reader) == 0);
  CHECK(spindle_spawn(ex, Writer, &p, NULL, NULL) == 0);
  spindle_task_t* file = NULL;
  CHECK(spindle_spawn(ex, FileTask, NULL, NULL, &file) == 0);

  /* Bounded runs: one poll, then a zero timeout, then to the end. */
  CHECK(spindle_executor_run(ex, 1, -1, 0) == SPINDLE_RUN_POLL_LIMIT);
  /* Joining an unfinished task on the thread that runs its executor could
   * never end. */
  CHECK(spindle_task_join(add, NULL, -1) == -EDEADLK);
  CHECK(strstr(spindle_last_error(), "could never finish") != NULL);
  int r = spindle_executor_run(ex, 0, 0, 0);
  CHECK(r == SPINDLE_RUN_TIMEOUT || r == SPINDLE_RUN_DONE);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);

  int result = 0;
  CHECK(spindle_task_join(add, &result, -1) == 0);
  CHECK(result == 42);
  CHECK(spindle_task_join(reader, &result, -1) == 0);
  CHECK(result == 5);
  CHECK(memcmp(p.got, "hello", 5) == 0);
  CHECK(spindle_task_join(file, &result, -1) == 0);
  CHECK(result == 0);
  CHECK(spindle_task_release(add) == 0);
  CHECK(spindle_task_release(reader) == 0);
  CHECK(spindle_task_release(file) == 0);
  close(p.fds[0]);
  close(p.fds[1]);

  /* Abort of a sleeping task: its calls return -ECANCELED, join says so. */
  struct SleepSeen seen;
  memset(&seen, 0, sizeof(seen));
  spindle_task_t* sleeper = NULL;
  CHECK(spindle_spawn(ex, Sleeper, &seen, NULL, &sleeper) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, SPINDLE_RUN_UNTIL_IDLE) ==
        SPINDLE_RUN_IDLE);
  CHECK(spindle_task_abort(sleeper) == 0);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  CHECK(seen.saw_cancel == 1);
  CHECK(spindle_task_join(sleeper, &result, -1) == -ECANCELED);
  CHECK(spindle_task_release(sleeper) == 0);

  /* A spawn from another thread; a join with a timeout from there too. */
  spindle_spawner_t* sp = NULL;
  CHECK(spindle_spawner_create(ex, &sp) == 0);
  struct FromThread ft;
  memset(&ft, 0, sizeof(ft));
  ft.ex = ex;
  ft.sp = sp;
  pthread_t th;
  CHECK(pthread_create(&th, NULL, SpawnFromThread, &ft) == 0);
  CHECK(pthread_join(th, NULL) == 0);
  CHECK(ft.rc == 0);
  CHECK(ft.direct_rc == -EPERM);
  CHECK(spindle_executor_run(ex, 0, -1, 0) == SPINDLE_RUN_DONE);
  CHECK(spindle_task_join(ft.task, &result, 1000000000) == 0);
  CHECK(result == 41);
  CHECK(spindle_task_release(ft.task) == 0);

  spindle_stats_t st;
  st.size = sizeof(st);
  CHECK(spindle_executor_stats(ex, &st) == 0);
  CHECK(st.spawns == 6);
  CHECK(st.completions == 5);
  CHECK(st.cancellations == 1);
  CHECK(st.live_tasks == 0);

  /* Destroying with a task left cancels it; its handle outlives. */
  memset(&seen, 0, sizeof(seen));
  spindle_task_t* left = NULL;
  CHECK(spindle_spawn(ex, Sleeper, &seen, NULL, &left) == 0);
  CHECK(spindle_executor_destroy(ex) == 0);
  CHECK(spindle_task_join(left, NULL, 0) == -ECANCELED);
  CHECK(spindle_task_release(left) == 0);
  /* The spawner outlives its executor: a spawn is cancelled at once. */
  spindle_task_t* late = NULL;
  CHECK(spindle_spawner_spawn(sp, Constant, NULL, NULL, &late) == 0);
  CHECK(spindle_task_join(late, NULL, 1000000000) == -ECANCELED);
  CHECK(spindle_task_release(late) == 0);
  CHECK(spindle_spawner_destroy(sp) == 0);

  if (failures != 0) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("c_api_test: all checks passed\n");
  return 0;
}
