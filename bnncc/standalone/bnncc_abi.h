/* The C ABI between TVM-generated kernels and the code that calls them, as bnncc's standalone libraries use it:
 * DLPack's tensor descriptor and TVM FFI's argument cell and parallel-task environment (TVM 0.27, tvm-ffi 0.1).
 * Declared here rather than included so that a generated library builds with nothing but a C compiler;
 * tests/standalone checks every size and offset against the real headers. */
#ifndef BNNCC_ABI_H_
#define BNNCC_ABI_H_
#include <stdint.h>

typedef struct { int32_t device_type, device_id; } bnncc_dl_device;          /* DLDevice */
typedef struct { uint8_t code, bits; uint16_t lanes; } bnncc_dl_dtype;         /* DLDataType */
typedef struct {                                                               /* DLTensor */
  void *data;
  bnncc_dl_device device;
  int32_t ndim;
  bnncc_dl_dtype dtype;
  int64_t *shape;
  int64_t *strides; /* NULL: compact row-major */
  uint64_t byte_offset;
} bnncc_dl_tensor;

typedef struct {                                                               /* TVMFFIAny */
  int32_t type_index;
  uint32_t zero_padding;
  union { int64_t v_int64; double v_float64; void *v_ptr; };
} bnncc_any;

enum { BNNCC_ANY_NONE = 0, BNNCC_ANY_INT = 1, BNNCC_ANY_DLTENSOR_PTR = 7 };   /* TVMFFITypeIndex */
enum { BNNCC_DL_CPU = 1 };                                                     /* kDLCPU */

/* A kernel's entry point: TVMFFISafeCallType; 0 on success. */
typedef int32_t (*bnncc_kernel)(void *self, const bnncc_any *args, int32_t num_args, bnncc_any *result);

typedef struct { void *sync_handle; int32_t num_task; } bnncc_parallel_env;   /* TVMParallelGroupEnv */
typedef int (*bnncc_parallel_lambda)(int task_id, bnncc_parallel_env *env, void *cdata); /* FTVMParallelLambda */

/* The runtime (bnncc_runtime.c) a model's run function uses. */
void bnncc_rt_use_workspace(uint8_t *main_thread, uint64_t main_bytes, uint8_t *workers, uint64_t worker_bytes,
                            int max_threads);
int bnncc_rt_fail(const char *model, const char *kernel);
void bnncc_rt_clear_error(void);
#endif
