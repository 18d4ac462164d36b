/*
 * insncount.c -- a QEMU TCG plugin that counts the guest instructions a user-mode program executes, with
 * marker system calls so that the program can bracket the region it wants measured.
 *
 *   gcc -O2 -shared -fPIC -fvisibility=hidden -o insncount.so insncount.c
 *   qemu-aarch64 -plugin ./insncount.so[,count=insn] -d plugin -D counts.log ./program
 *
 * Output (QEMU's log, hence `-d plugin`; use a file for -D, see README.md):
 *   MARK <tag> <instructions so far>      each time the guest calls syscall(0x4d41, tag)
 *   TOTAL <instructions> vcpus <n>        when the program exits; n = guest threads (vCPUs) started
 *
 * The count is one 64-bit counter that the translated code increments inline (no helper call per block).
 * Inline additions are not atomic, so the count is exact only while one guest thread runs: `vcpus` lets the
 * reader check that. count=block (default) adds a block's length when the block starts; count=insn adds 1 per
 * instruction, so a block left before its end (a faulting load) counts only what ran, at some speed cost.
 */
#include <stdio.h>
#include <string.h>

#include "qemu-plugin-api.h"

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

/* "MA": a syscall number no Linux ABI allocates, so the kernel (or qemu's emulation) answers -ENOSYS and the
 * marker changes nothing in the guest besides the one svc instruction it costs. */
#define MARKER_SYSCALL 0x4d41

static uint64_t executed;
static unsigned int vcpus_started;
static int count_each_insn;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t n = qemu_plugin_tb_n_insns(tb);

    (void)id;
    if (!count_each_insn) {
        qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        qemu_plugin_register_vcpu_insn_exec_inline(qemu_plugin_tb_get_insn(tb, i), QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &executed, 1);
    }
}

static void on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    (void)id;
    (void)vcpu_index;
    __atomic_add_fetch(&vcpus_started, 1, __ATOMIC_RELAXED);
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    char line[80];

    (void)id, (void)vcpu_index, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num != MARKER_SYSCALL) {
        return;
    }
    /* the block that ends with this svc was counted when it started: the mark includes the svc itself */
    snprintf(line, sizeof line, "MARK %llu %llu\n", (unsigned long long)a1, (unsigned long long)executed);
    qemu_plugin_outs(line);
}

static void on_program_exit(qemu_plugin_id_t id, void *userdata)
{
    char line[80];

    (void)id, (void)userdata;
    snprintf(line, sizeof line, "TOTAL %llu vcpus %u\n", (unsigned long long)executed,
             __atomic_load_n(&vcpus_started, __ATOMIC_RELAXED));
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    if (info->system_emulation) {
        fprintf(stderr, "insncount: user-mode emulation only (qemu-<arch>, not qemu-system-<arch>)\n");
        return 1;
    }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "count=insn") == 0) {
            count_each_insn = 1;
        } else if (strcmp(argv[i], "count=block") == 0) {
            count_each_insn = 0;
        } else {
            fprintf(stderr, "insncount: unknown option '%s' (known: count=block, count=insn)\n", argv[i]);
            return 1;
        }
    }
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_program_exit, NULL);
    return 0;
}
