/* Classify one image with a model bnncc compiled into a static C library: no runtime, nothing to install.
 *   classify IMAGE [-t THREADS] [-o OUT.f32] [-r REPEATS]
 * IMAGE: a binary PPM (P6, the model's input height x width, scaled to [0, 1]) or raw float32 of the input
 * size. Prints the top 5; -o writes the whole output as raw float32; -r times REPEATS more runs (median ms on
 * stderr). Build: see Makefile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float input[BNNCC_MODEL_INPUT_ELEMS], output[BNNCC_MODEL_OUTPUT_ELEMS];

static int by_value(const void *a, const void *b) { return (*(double *)a > *(double *)b) - (*(double *)a < *(double *)b); }

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int read_input(const char *path) {
  FILE *f = fopen(path, "rb");
  int w, h, maxval, ok = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "P6 %d %d %d", &w, &h, &maxval) == 3 && fgetc(f) != EOF) { /* PPM: one whitespace, then pixels */
    const long shape[] = BNNCC_MODEL_INPUT_SHAPE, n = (long)w * h * 3;
    if (BNNCC_MODEL_INPUT_NDIM == 4 && shape[1] == h && shape[2] == w && shape[3] == 3 && maxval == 255) {
      unsigned char *px = malloc(n);
      ok = px != NULL && fread(px, 1, n, f) == (size_t)n;
      for (long i = 0; ok && i < n; i++) input[i] = px[i] / 255.0f;
      free(px);
    }
  } else {
    rewind(f);
    ok = fread(input, sizeof input, 1, f) == 1 && fgetc(f) == EOF;
  }
  fclose(f);
  return ok;
}

int main(int argc, char **argv) {
  const char *image = NULL, *out = NULL;
  int repeats = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-t") && i + 1 < argc) bnncc_set_num_threads(atoi(argv[++i]));
    else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "-r") && i + 1 < argc) repeats = atoi(argv[++i]);
    else image = argv[i];
  }
  if (image == NULL) return fprintf(stderr, "usage: %s IMAGE [-t THREADS] [-o OUT.f32]\n", argv[0]), 2;
  if (!read_input(image)) return fprintf(stderr, "%s: not a %s input (PPM P6 or raw float32)\n", image,
                                         BNNCC_MODEL_NAME), 2;
  if (bnncc_model_run(input, output) != 0) return fprintf(stderr, "%s\n", bnncc_last_error()), 1;
  if (repeats > 0) {
    double *ms = malloc(repeats * sizeof *ms);
    for (int r = 0; ms != NULL && r < repeats; r++) {
      double t0 = now_ms();
      bnncc_model_run(input, output);
      ms[r] = now_ms() - t0;
    }
    if (ms == NULL) return 1;
    qsort(ms, repeats, sizeof *ms, by_value);
    fprintf(stderr, "median_ms %.4f over %d runs\n", ms[repeats / 2], repeats);
    free(ms);
  }
  FILE *f = out ? fopen(out, "wb") : NULL;
  if (out && (f == NULL || fwrite(output, sizeof output, 1, f) != 1 || fclose(f) != 0))
    return fprintf(stderr, "%s: cannot write\n", out), 1;
  for (int k = 0; k < 5 && k < BNNCC_MODEL_OUTPUT_ELEMS; k++) { /* top 5 by selection: the output is small */
    int best = -1;
    for (int i = 0; i < BNNCC_MODEL_OUTPUT_ELEMS; i++)
      if (output[i] == output[i] && (best < 0 || output[i] > output[best])) best = i;
    if (best < 0) break;
    printf("%d %.6g\n", best, output[best]);
    output[best] = -__builtin_inff();
  }
  return 0;
}
