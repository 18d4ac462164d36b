/* bnncc's standalone runtime: the backend entry points TVM-generated kernels call, and nothing else.
 *
 * - TVMBackendParallelLaunch / TVMBackendParallelBarrier: a fixed pool of pthreads started on the first
 *   parallel kernel (spinning briefly between kernels, then sleeping), or none when built with
 *   -DBNNCC_SINGLE_THREAD. The kernels reach these through the function pointers __TVMBackend*, which the
 *   kernel object declares weak (TVM's library loader fills them); the definitions here take their place.
 * - TVMBackendAllocWorkspace / FreeWorkspace: stack-like bump allocation from the model's static workspace
 *   (one region per thread, sized at compile time from the kernels' allocation sites). No malloc, ever.
 * - TVMFFIErrorSetRaisedFromCStrParts: a kernel's error message, kept for bnncc_last_error().
 *
 * One inference at a time: a model's activations live in a static arena. Several models may be linked into
 * one program; they share this runtime (each model archive holds a copy; the linker takes the first).
 */
#include <stdint.h>
#include <string.h>

#include "bnncc_abi.h"

#define BNNCC_MAX_THREADS 64
#define BNNCC_ERROR_BYTES 512
#define BNNCC_WORKSPACE_ALIGN 64

static char error_text[BNNCC_ERROR_BYTES];

const char *bnncc_last_error(void) { return error_text; }
void bnncc_rt_clear_error(void) { error_text[0] = 0; }

static void append_error(const char *s) { /* truncates at the buffer's end */
  size_t n = strlen(error_text);
  while (s != NULL && *s && n + 1 < sizeof error_text) error_text[n++] = *s++;
  error_text[n] = 0;
}

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **parts, int32_t num_parts) {
  error_text[0] = 0;
  append_error(kind);
  append_error(": ");
  for (int32_t i = 0; i < num_parts; i++) append_error(parts[i]);
}

void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message) {
  TVMFFIErrorSetRaisedFromCStrParts(kind, &message, 1);
}

int bnncc_rt_fail(const char *model, const char *kernel) {
  char kernel_error[BNNCC_ERROR_BYTES];
  memcpy(kernel_error, error_text, sizeof kernel_error);
  error_text[0] = 0;
  append_error(model);
  append_error(": kernel ");
  append_error(kernel);
  append_error(" failed: ");
  append_error(kernel_error[0] ? kernel_error : "(no message)");
  return -1;
}

/* ---- workspace ---------------------------------------------------------------------------------------- */

#define BNNCC_MAX_LIVE 32 /* workspace buffers one thread holds at once (a kernel has a handful) */

static struct {
  uint8_t *main_thread, *workers;
  uint64_t main_bytes, worker_bytes;
  int max_threads;
} ws;

/* Per thread: the live allocations as a stack of end offsets; a buffer freed out of order is popped with the
 * ones above it once they are all free. */
static _Thread_local int thread_index; /* 0: the caller's thread; 1..: pool workers */
static _Thread_local struct {
  uint64_t end[BNNCC_MAX_LIVE];
  uint8_t *start[BNNCC_MAX_LIVE];
  uint8_t freed[BNNCC_MAX_LIVE];
  int depth;
} live;

void bnncc_rt_use_workspace(uint8_t *main_thread, uint64_t main_bytes, uint8_t *workers, uint64_t worker_bytes,
                            int max_threads) {
  ws.main_thread = main_thread;
  ws.main_bytes = main_bytes;
  ws.workers = workers;
  ws.worker_bytes = worker_bytes;
  ws.max_threads = max_threads;
  live.depth = 0;
}

static void *alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  (void)device_type, (void)device_id, (void)dtype_code, (void)dtype_bits;
  int t = thread_index;
  uint8_t *base = t == 0 ? ws.main_thread : ws.workers + (uint64_t)(t - 1) * ws.worker_bytes;
  uint64_t limit = t == 0 ? ws.main_bytes : ws.worker_bytes;
  uint64_t used = live.depth ? live.end[live.depth - 1] : 0;
  uint64_t start = (used + BNNCC_WORKSPACE_ALIGN - 1) & ~(uint64_t)(BNNCC_WORKSPACE_ALIGN - 1);
  if (t >= ws.max_threads || base == NULL || start + nbytes > limit || live.depth == BNNCC_MAX_LIVE) {
    const char *msg = "workspace exhausted (the compile-time workspace plan does not cover this allocation)";
    TVMFFIErrorSetRaisedFromCStr("MemoryError", msg);
    return NULL;
  }
  live.start[live.depth] = base + start;
  live.end[live.depth] = start + nbytes;
  live.freed[live.depth++] = 0;
  return base + start;
}

static int free_workspace(int device_type, int device_id, void *ptr) {
  (void)device_type, (void)device_id;
  int i = live.depth - 1;
  while (i >= 0 && live.start[i] != ptr) i--;
  if (i < 0) {
    TVMFFIErrorSetRaisedFromCStr("MemoryError", "freeing a workspace buffer that is not allocated");
    return -1;
  }
  live.freed[i] = 1;
  while (live.depth > 0 && live.freed[live.depth - 1]) live.depth--;
  return 0;
}

void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = free_workspace;

/* ---- parallel launch ---------------------------------------------------------------------------------- */

#ifdef BNNCC_SINGLE_THREAD

int bnncc_set_num_threads(int n) { return n == 1 ? 1 : -1; }
int bnncc_num_threads(void) { return 1; }

static int parallel_launch(bnncc_parallel_lambda f, void *cdata, int num_task) {
  bnncc_parallel_env env = {NULL, num_task > 0 ? num_task : 1};
  int status = 0;
  for (int t = 0; t < env.num_task; t++) status |= f(t, &env, cdata);
  return status ? -1 : 0;
}

static int parallel_barrier(int task_id, bnncc_parallel_env *env) {
  (void)task_id;
  return env->num_task == 1 ? 0 : -1; /* tasks run one after another: a barrier among several would hang */
}

#else

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__) || defined(__arm__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* Waiting threads yield the CPU while they spin (as TVM's pool does): on a loaded machine the thread they wait
 * for may need this very core. A worker spins this many rounds (~ms: the gap between two kernels of one
 * inference), then sleeps until the next parallel kernel. */
#define SPIN_ROUNDS 20000

static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  atomic_int generation, pending, status;
  bnncc_parallel_lambda f;
  void *cdata;
  int num_task, threads, started;
  atomic_int barrier_count, barrier_sense;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static int configured_threads;

static int default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > BNNCC_MAX_THREADS ? BNNCC_MAX_THREADS : (int)n;
}

/* Threads for the kernels from now on (1..64, or 0 for one per online CPU); the count in use, -1 if invalid. */
int bnncc_set_num_threads(int n) {
  if (n < 0 || n > BNNCC_MAX_THREADS) return -1;
  configured_threads = n == 0 ? default_threads() : n;
  return configured_threads;
}

int bnncc_num_threads(void) {
  if (configured_threads == 0) configured_threads = default_threads();
  return configured_threads;
}

static void run_tasks(int t) {
  bnncc_parallel_env env = {NULL, pool.num_task};
  for (int task = t; task < pool.num_task; task += pool.threads) {
    if (pool.f(task, &env, pool.cdata) != 0) atomic_store(&pool.status, -1);
  }
}

static void *worker(void *arg) {
  thread_index = (int)(intptr_t)arg;
  int seen = 0;
  for (;;) {
    int g, spin = 0;
    while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
      if (++spin < SPIN_ROUNDS) {
        cpu_relax();
        sched_yield();
        continue;
      }
      pthread_mutex_lock(&pool.mu);
      while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = g;
    if (thread_index < pool.threads) run_tasks(thread_index);
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
  }
  return NULL;
}

static int start_workers(int threads) {
  while (pool.started < threads - 1) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(pool.started + 1)) != 0) return -1;
    pthread_detach(t);
    pool.started++;
  }
  return 0;
}

static int parallel_launch(bnncc_parallel_lambda f, void *cdata, int num_task) {
  int threads = bnncc_num_threads();
  if (threads > ws.max_threads) threads = ws.max_threads; /* the workspace plan's thread count */
  if (num_task <= 0) num_task = threads;
  if (threads == 1 || num_task == 1 || thread_index != 0 || start_workers(threads) != 0) {
    bnncc_parallel_env env = {NULL, num_task};
    int status = 0;
    for (int t = 0; t < num_task; t++) status |= f(t, &env, cdata);
    return status ? -1 : 0;
  }
  pool.f = f;
  pool.cdata = cdata;
  pool.num_task = num_task;
  pool.threads = threads;
  atomic_store(&pool.status, 0);
  atomic_store(&pool.pending, pool.started);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  run_tasks(0);
  while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) sched_yield();
  return atomic_load(&pool.status);
}

/* All num_task tasks meet here; only valid when every task has its own thread (as in TVM's pool). */
static int parallel_barrier(int task_id, bnncc_parallel_env *env) {
  (void)task_id;
  if (env->num_task == 1) return 0;
  if (env->num_task > pool.threads) return -1;
  int sense = atomic_load(&pool.barrier_sense);
  if (atomic_fetch_add(&pool.barrier_count, 1) == env->num_task - 1) {
    atomic_store(&pool.barrier_count, 0);
    atomic_store(&pool.barrier_sense, !sense);
  } else {
    while (atomic_load(&pool.barrier_sense) == sense) sched_yield();
  }
  return 0;
}

#endif

int (*__TVMBackendParallelLaunch)(bnncc_parallel_lambda, void *, int) = parallel_launch;
int (*__TVMBackendParallelBarrier)(int, bnncc_parallel_env *) = parallel_barrier;
