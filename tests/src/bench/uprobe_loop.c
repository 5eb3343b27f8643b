/* The probe-cost phase of apiscope-bench: calls one tiny function N times and prints the CPU
 * time per call (user + system, CLOCK_PROCESS_CPUTIME_ID). Each function starts with a
 * different kind of instruction; the bench puts a uprobe on that first instruction and
 * compares. Built with `gcc -O1 -no-pie` by the bench. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void probe_helper(void) { __asm__ volatile(""); }

__asm__(
    ".globl site_cmp_mem\n site_cmp_mem:\n cmpq 16(%rsp), %rsp\n ret\n"
    ".globl site_test\n site_test:\n test %rax, %rax\n ret\n"
    ".globl site_mov\n site_mov:\n mov %rdi, %rax\n ret\n"
    ".globl site_ret\n site_ret:\n ret\n"
    ".globl site_push\n site_push:\n push %rbp\n pop %rbp\n ret\n"
    ".globl site_jcc\n site_jcc:\n test %rax, %rax\n jne 1f\n 1: ret\n"
    ".globl site_call\n site_call:\n call probe_helper\n ret\n"
    ".globl site_jmp\n site_jmp:\n jmp 2f\n 2: ret\n"
    ".globl site_nop\n site_nop:\n nop\n ret\n");

void site_cmp_mem(void), site_test(void), site_mov(void), site_ret(void), site_push(void),
    site_jcc(void), site_call(void), site_jmp(void), site_nop(void);

static const struct {
    const char *name;
    void (*function)(void);
} sites[] = {
    {"cmp_mem", site_cmp_mem}, {"test", site_test}, {"mov", site_mov},
    {"ret", site_ret},         {"push", site_push}, {"jcc", site_jcc},
    {"call", site_call},       {"jmp", site_jmp},   {"nop", site_nop},
};

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SITE CALLS\n", argv[0]);
        return 2;
    }
    long calls = atol(argv[2]);
    for (size_t i = 0; i < sizeof sites / sizeof sites[0]; i++) {
        if (strcmp(sites[i].name, argv[1]) != 0) continue;
        struct timespec start, end;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
        for (long call = 0; call < calls; call++) sites[i].function();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &end);
        double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
        printf("%.1f\n", ns / calls);
        return 0;
    }
    fprintf(stderr, "unknown site %s\n", argv[1]);
    return 2;
}
